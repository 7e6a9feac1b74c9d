"""Attentive-probe training on frozen features: a grid of probe heads trained together.

Every (lr, wd) point of the grid is its own probe head with stacked parameters (leading axis
H), all updated in one vmapped step and identical to training each alone. Recipe (the
originals' video_classification_frozen): AdamW (0.9, 0.999, eps 1e-8), lr warmup then cosine
to final_lr, weight decay cosine to final_weight_decay (optim.make_schedules), biases and
1-D tensors not decayed (V-JEPA 1; V-JEPA 2 decays all, optim.decay_mask), gradient norm
clipped to 1.0, cross-entropy averaged over views.

    grid = GridProbe(spec, [(1e-3, 0.01), (3e-3, 0.01)], seed, config.optim, total_steps, warmup_steps)
    loss, correct = grid.train_step(tokens (B, V, L, D), labels (B,))     # per head (H,)
    probs = grid.predict(tokens)                                          # (H, B, C)
"""
from __future__ import annotations

import itertools
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from vjepa_jax import optim as optim_lib
from vjepa_jax.models.probe import probe_from_spec

HEAD = 'linear'


# ----------------------------------------------------------------------------------------
# The grid of probe heads (pure functions)
# ----------------------------------------------------------------------------------------
def grid_points(optim) -> list:
    """[(lr, wd)] for every pair of optim.lr x optim.weight_decay (floats or lists)."""
    as_list = lambda v: [float(x) for x in (v if isinstance(v, (list, tuple)) else [v])]  # noqa: E731
    return list(itertools.product(as_list(optim.lr), as_list(optim.weight_decay)))


def schedules(step, total_steps: int, warmup_steps: int, lr, wd, optim):
    """lr and wd at 0-based `step`: optim.make_schedules' warmup-cosine lr (from start_lr, or lr
    when it is 0) and cosine wd, counted in steps. lr, wd may be traced (one grid head's)."""
    opt = types.SimpleNamespace(ipe=1, epochs=total_steps, ipe_scale=1.0, warmup=warmup_steps,
                                lr_schedule='warmup_cosine', anneal=0, start_lr=optim.start_lr or lr, lr=lr,
                                final_lr=optim.final_lr, weight_decay=wd, final_weight_decay=optim.final_weight_decay,
                                ema=(0.0, 0.0))
    sched = optim_lib.make_schedules(opt)
    return sched.lr(step), sched.wd(step)


def adamw(lr, wd, decay_all: bool, clip: float) -> optax.GradientTransformation:
    """AdamW (0.9, 0.999, 1e-8) at this step's lr and wd, optim.decay_mask, global-norm clipping."""
    return optax.chain(optax.clip_by_global_norm(clip) if clip > 0 else optax.identity(),
                       optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8),
                       optax.add_decayed_weights(wd, mask=lambda p: optim_lib.decay_mask(p, decay_all)),
                       optax.scale(-lr))


def cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()


def view_logits(graphdef, params, tokens):
    """One probe: tokens (B, V, L, D) -> logits (B, V, C) of each view."""
    b, v = tokens.shape[:2]
    probe = nnx.merge(graphdef, params)
    return probe(tokens.reshape(b * v, *tokens.shape[2:]))[HEAD].reshape(b, v, -1)


def view_probs(graphdef, params, tokens):
    """One probe: tokens (B, V, L, D) -> (B, C), the softmax averaged over views (test time)."""
    return jax.nn.softmax(view_logits(graphdef, params, tokens).astype(jnp.float32), -1).mean(1)


class GridProbe:
    """H probe heads with stacked params (leading axis H); hparams (H, 2) = (lr, wd)."""

    def __init__(self, spec: dict, points: list, seed: int, optim, total_steps: int, warmup_steps: int,
                 attention_impl: str = 'auto'):
        self.spec, self.points, self.optim = spec, points, optim
        self.total_steps, self.warmup_steps = total_steps, warmup_steps
        self.hparams = jnp.asarray(points, jnp.float32)
        probes = [probe_from_spec(spec, nnx.Rngs(seed + h), attention_impl=attention_impl) for h in range(len(points))]
        self.graphdef = nnx.graphdef(probes[0])
        self.params = jax.tree.map(lambda *x: jnp.stack(x), *[nnx.state(p, nnx.Param) for p in probes])
        tx = adamw(0.0, 0.0, optim.decay_all, optim.clip_grad)
        self.opt_state = jax.vmap(tx.init)(self.params)
        self.step = 0
        self._train = jax.jit(self._train_step, donate_argnums=(0, 1))
        self._train_scan = jax.jit(self._scan_steps, donate_argnums=(0, 1))
        self._eval = jax.jit(self._eval_step)

    def _logits(self, params, tokens):
        return view_logits(self.graphdef, params, tokens)

    def _train_step(self, params, opt_state, step, tokens, labels, hparams):
        def one(params, opt_state, hp):
            def loss_fn(p):
                logits = self._logits(p, tokens)
                loss = jnp.mean(jax.vmap(cross_entropy, in_axes=(1, None))(logits, labels))
                return loss, logits
            (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            lr_t, wd_t = schedules(step, self.total_steps, self.warmup_steps, hp[0], hp[1], self.optim)
            updates, opt_state = adamw(lr_t, wd_t, self.optim.decay_all, self.optim.clip_grad).update(
                grads, opt_state, params)
            correct = jnp.sum(jnp.argmax(jax.nn.softmax(logits).mean(1), -1) == labels)
            return optax.apply_updates(params, updates), opt_state, loss, correct
        return jax.vmap(one, in_axes=(0, 0, 0))(params, opt_state, hparams)

    def _scan_steps(self, params, opt_state, steps, tokens, labels, hparams):
        def body(carry, xs):
            params, opt_state, loss, correct = self._train_step(*carry, *xs, hparams)
            return (params, opt_state), (loss, correct)
        (params, opt_state), (loss, correct) = jax.lax.scan(body, (params, opt_state), (steps, tokens, labels))
        return params, opt_state, loss, correct

    def _eval_step(self, params, tokens):
        """-> probabilities (H, B, C): softmax averaged over the V views."""
        return jax.vmap(lambda p: view_probs(self.graphdef, p, tokens))(params)

    def train_step(self, tokens, labels) -> tuple:
        """One optimiser step of every head; -> (loss (H,), correct count (H,))."""
        self.params, self.opt_state, loss, correct = self._train(self.params, self.opt_state, self.step, tokens,
                                                                 jnp.asarray(labels), self.hparams)
        self.step += 1
        return np.asarray(loss), np.asarray(correct)

    def train_steps(self, tokens, labels) -> tuple:
        """S optimiser steps in one call (one jitted scan): tokens (S, B, V, L, D), labels (S, B)
        -> (loss (S, H), correct count (S, H)). The same updates as S train_step calls."""
        steps = self.step + jnp.arange(tokens.shape[0], dtype=jnp.int32)
        self.params, self.opt_state, loss, correct = self._train_scan(self.params, self.opt_state, steps,
                                                                      jnp.asarray(tokens), jnp.asarray(labels),
                                                                      self.hparams)
        self.step += tokens.shape[0]
        return np.asarray(loss), np.asarray(correct)

    def predict(self, tokens) -> np.ndarray:
        return np.asarray(self._eval(self.params, tokens))

    def head_params(self, h: int):
        return jax.tree.map(lambda x: x[h], self.params)
