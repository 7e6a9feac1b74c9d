"""Optimisation as in V-JEPA: schedules, AdamW with the weight-decay exclusion, per-network
clipping after warmup. Pure functions of the 0-based step.

Step convention: value(step) is what the original uses at its iteration `step` (0-based).
Its lr/wd schedulers are stepped once BEFORE each iteration (so iteration s sees their
internal counter s + 1), its momentum generator yields i = s.

Schedules (ipe = iterations per epoch, T = int(ipe_scale * epochs * ipe); training stops
after epochs * ipe steps, i.e. at 1 / ipe_scale of every schedule):
  lr 'warmup_cosine' (V-JEPA 1, and V-JEPA 2 pretraining with final_lr == lr): linear
     start_lr -> lr over warmup * ipe steps, then cosine to final_lr over T - warmup.
  lr 'linear_decay' (V-JEPA 2 cooldown): linear lr -> final_lr over T.
  lr 'wsd': warmup, constant, then linear to final_lr over the last anneal * ipe steps of T.
  wd: cosine weight_decay -> final_weight_decay over T.
  ema momentum: linear ema[0] -> ema[1] over T.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax


class Schedules(NamedTuple):
    lr: Callable
    wd: Callable
    momentum: Callable
    clip_start: int  # first step with gradient clipping (original: epoch > warmup)
    total_steps: int  # epochs * ipe


LR_SCHEDULES = ('warmup_cosine', 'wsd', 'linear_decay')  # optim.lr_schedule

def make_schedules(opt) -> Schedules:
    """opt: the config's `optim` block (ml_collections or attribute namespace)."""
    ipe = opt.ipe
    t_max = int(opt.ipe_scale * opt.epochs * ipe)
    warmup = int(opt.warmup * ipe)

    def lr(step):
        s = jnp.asarray(step, jnp.float32) + 1.0
        if opt.lr_schedule == 'linear_decay':
            return opt.lr + jnp.minimum(s / max(1, t_max), 1.0) * (opt.final_lr - opt.lr)
        warm = opt.start_lr + s / max(1, warmup) * (opt.lr - opt.start_lr)
        if opt.lr_schedule == 'warmup_cosine':
            progress = (s - warmup) / max(1, t_max - warmup)
            after = opt.final_lr + (opt.lr - opt.final_lr) * 0.5 * (1.0 + jnp.cos(math.pi * progress))
            after = jnp.maximum(opt.final_lr, after)
        elif opt.lr_schedule == 'wsd':
            anneal = int(opt.anneal * ipe)
            progress = jnp.clip((s - (t_max - anneal)) / max(1, anneal), 0.0, 1.0)
            after = opt.lr + progress * (opt.final_lr - opt.lr)
        else:
            raise ValueError(f'optim.lr_schedule {opt.lr_schedule!r}: use one of {LR_SCHEDULES}')
        return jnp.where(s < warmup, warm, after)

    def wd(step):
        s = jnp.asarray(step, jnp.float32) + 1.0
        value = opt.final_weight_decay + (opt.weight_decay - opt.final_weight_decay) * 0.5 * (
            1.0 + jnp.cos(math.pi * s / t_max))
        lo = jnp.minimum(opt.weight_decay, opt.final_weight_decay)  # (traced values too: the probe grid's)
        return jnp.clip(value, lo, jnp.maximum(opt.weight_decay, opt.final_weight_decay))

    def momentum(step):
        s = jnp.asarray(step, jnp.float32)
        return jnp.minimum(opt.ema[0] + s * (opt.ema[1] - opt.ema[0]) / (ipe * opt.epochs * opt.ipe_scale),
                           max(opt.ema))

    clip_start = (int(opt.warmup) + 1) * ipe
    return Schedules(lr, wd, momentum, clip_start, int(opt.epochs * ipe))


def decay_mask(params: Any, decay_all: bool = False) -> Any:
    """True where AdamW decays: the original excludes any name containing 'bias' and every
    1-D tensor (LayerNorm scales). Mask tokens (1, 1, D) and kernels are decayed. Decided by
    name so scanned (stacked) layers get the same answer as unstacked ones. decay_all: decay
    everything (V-JEPA 2's probes)."""
    def rule(path, _):
        names = [str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path]
        return decay_all or not (any('bias' in n for n in names) or names[-1] == 'scale')
    return jax.tree_util.tree_map_with_path(rule, params)


class ClipState(NamedTuple):
    count: jax.Array


def clip_per_network(max_norm: float | None, start_step: int) -> optax.GradientTransformation:
    """torch.nn.utils.clip_grad_norm_ on each top-level subtree ('encoder', 'predictor')
    separately, only from start_step on: g * min(1, max_norm / (||g|| + 1e-6))."""
    def init(params):
        del params
        return ClipState(jnp.zeros([], jnp.int32))

    def update(grads, state, params=None):
        del params
        if max_norm is None:
            return grads, ClipState(state.count + 1)
        active = state.count >= start_step
        out = {}
        for name, g in grads.items():
            coef = jnp.minimum(1.0, max_norm / (optax.tree.norm(g) + 1e-6))
            coef = jnp.where(active, coef, 1.0)
            out[name] = jax.tree.map(lambda x: (x * coef).astype(x.dtype), g)
        return out, ClipState(state.count + 1)
    return optax.GradientTransformation(init, update)


def make_optimizer(opt, sched: Schedules) -> optax.GradientTransformation:
    """AdamW(betas, eps) with scheduled lr and wd, decay mask, per-network clipping."""
    return optax.chain(
        clip_per_network(opt.clip_grad or None, sched.clip_start),  # clip_grad 0: no clipping
        optax.scale_by_adam(b1=opt.betas[0], b2=opt.betas[1], eps=opt.eps),
        optax.add_decayed_weights(sched.wd, mask=decay_mask),
        optax.scale_by_learning_rate(sched.lr),
    )
