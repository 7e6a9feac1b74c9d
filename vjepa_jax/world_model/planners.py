"""Planners over an energy of action sequences: pure, jit-able, batched over samples.

An energy maps candidate action sequences (S, H, A) to (S,) scores, lower is better (for a
world model: the distance between the predicted final representation and the goal's). Both
planners keep actions inside [low, high] per dimension.

    best, energy = cem(energy_fn, key, CEMConfig(horizon=2, action_dim=2), low, high)
    best, energy = gradient_plan(energy_fn, key, GradientConfig(horizon=2, action_dim=2), low, high)

cem: the cross-entropy method: sample `samples` sequences from a diagonal Gaussian (clipped to
the bounds), keep the `elites` lowest-energy ones, move the mean and std toward theirs, keeping
`momentum_mean` / `momentum_std` of the old values; `iterations` rounds; returns the final mean.
gradient_plan: `restarts` sequences optimised by Adam on the energy (gradients through the
predictor), projected onto the bounds after every step; returns the best restart.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class CEMConfig:
    horizon: int = 2           # actions per plan
    action_dim: int = 2
    samples: int = 800
    elites: int = 10
    iterations: int = 10
    momentum_mean: float = 0.15  # fraction of the previous mean kept each round
    momentum_std: float = 0.15
    init_std: float = 1.0      # in units of the half-range (high - low) / 2


@dataclasses.dataclass(frozen=True)
class GradientConfig:
    horizon: int = 2
    action_dim: int = 2
    restarts: int = 8
    steps: int = 100
    learning_rate: float = 0.05  # in units of the half-range


def _bounds(low, high, action_dim: int) -> tuple:
    """Scalar or per-dimension bounds -> (low (A,), high (A,)) float32."""
    return tuple(jnp.broadcast_to(jnp.asarray(v, jnp.float32), (action_dim,)) for v in (low, high))


def cem(energy_fn: Callable, key: jax.Array, cfg: CEMConfig, low, high, init_mean=None) -> tuple:
    """-> (actions (H, A), energy of them). energy_fn: (S, H, A) -> (S,). init_mean (H, A): where
    the search starts (default: the middle of the bounds; MPC passes its previous plan, shifted)."""
    low, high = _bounds(low, high, cfg.action_dim)
    shape = (cfg.horizon, cfg.action_dim)
    mean = jnp.broadcast_to((low + high) / 2, shape)
    if init_mean is not None:  # NaN entries: no previous plan there
        mean = jnp.where(jnp.isnan(init_mean), mean, jnp.clip(init_mean, low, high))
    std = jnp.broadcast_to(cfg.init_std * (high - low) / 2, shape)

    def round_(carry, key):
        mean, std = carry
        samples = mean + std * jax.random.normal(key, (cfg.samples, *shape))
        samples = jnp.clip(samples, low, high)
        energy = energy_fn(samples)
        elite = samples[jnp.argsort(energy)[:cfg.elites]]
        mean = cfg.momentum_mean * mean + (1 - cfg.momentum_mean) * elite.mean(0)
        std = cfg.momentum_std * std + (1 - cfg.momentum_std) * elite.std(0)
        return (mean, std), energy.min()

    (mean, _), _ = jax.lax.scan(round_, (mean, std), jax.random.split(key, cfg.iterations))
    return mean, energy_fn(mean[None])[0]


def gradient_plan(energy_fn: Callable, key: jax.Array, cfg: GradientConfig, low, high) -> tuple:
    """-> (actions (H, A), energy of them). energy_fn: (S, H, A) -> (S,), differentiable."""
    low, high = _bounds(low, high, cfg.action_dim)
    actions = jax.random.uniform(key, (cfg.restarts, cfg.horizon, cfg.action_dim), minval=low, maxval=high)
    tx = optax.adam(cfg.learning_rate * jnp.max(high - low) / 2)

    def step(carry, _):
        actions, opt_state = carry
        grads = jax.grad(lambda a: energy_fn(a).sum())(actions)  # restarts are independent
        updates, opt_state = tx.update(grads, opt_state)
        return (jnp.clip(optax.apply_updates(actions, updates), low, high), opt_state), None

    (actions, _), _ = jax.lax.scan(step, (actions, tx.init(actions)), None, length=cfg.steps)
    energy = energy_fn(actions)
    best = jnp.argmin(energy)
    return actions[best], energy[best]
