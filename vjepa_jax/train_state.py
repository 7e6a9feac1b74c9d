"""The train state, the pure train step, its sharded layout and its ahead-of-time compile.

The train state is a plain dict of pytrees (pure dicts of arrays):
  {'step': int32, 'params': {'encoder', 'predictor'}, 'target_encoder', 'opt_state'}
The EMA target encoder is its own pytree: the optimiser never sees it and it has no
gradient; it moves only by jepa.ema_update after each optimiser step.

    trainer = train_state.make_trainer(config)
    state = trainer.init(seed, config.model, factory.num_mask_tokens(config))
    state, metrics = jax.jit(trainer.train_step)(state, clips, mask_list)
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from vjepa_jax import checkpoint, jepa, optim, sharding
from vjepa_jax.data import stream, transforms
from vjepa_jax.models.factory import build_models, num_mask_tokens


@dataclasses.dataclass(frozen=True)
class Trainer:
    """Static pieces of training: module graphdefs, optimiser, schedules, loss exponent."""
    encoder_def: Any
    predictor_def: Any
    optimizer: optax.GradientTransformation
    schedules: optim.Schedules
    loss_exp: float
    grid: tuple
    var_weight: float = 0.0  # VICReg terms on the context tokens (jepa.variance_covariance); 0 in V-JEPA
    cov_weight: float = 0.0

    def init(self, rng_seed: int, model_cfg, num_mask_tokens: int) -> dict:
        """Fresh state; the target encoder starts as a copy of the encoder."""
        encoder, predictor = build_models(model_cfg, num_mask_tokens, nnx.Rngs(rng_seed))
        params = {'encoder': nnx.to_pure_dict(nnx.state(encoder)), 'predictor': nnx.to_pure_dict(nnx.state(predictor))}
        return {'step': jnp.zeros([], jnp.int32), 'params': params,
                'target_encoder': jax.tree.map(jnp.copy, params['encoder']),
                'opt_state': self.optimizer.init(params)}

    def targets(self, target_params, clips):
        """Layer-normed target-encoder tokens (B, N, D), batch-sharded."""
        return sharding.constrain(jepa.target_features(nnx.merge(self.encoder_def, target_params), clips),
                                  ('batch', None, None))

    def loss_and_grads(self, params, target_params, clips, mask_list, h=None):
        """-> ((loss, per-generator losses), grads wrt params). h: the targets when already computed."""
        h = self.targets(target_params, clips) if h is None else h

        def loss_fn(p):
            return jepa.jepa_loss(nnx.merge(self.encoder_def, p['encoder']),
                                  nnx.merge(self.predictor_def, p['predictor']), h, clips, mask_list, self.loss_exp,
                                  self.var_weight, self.cov_weight)
        return jax.value_and_grad(loss_fn, has_aux=True)(params)

    def train_step(self, state, clips, mask_list):
        """Pure: (state, clips (B, T, H, W, C) normalised float32, or uint8 0-255 normalised here,
        [(ctx (B, Kc), tgt (B, Kt))]) -> (state, metrics)."""
        step = state['step']
        clips = transforms.normalize_on_device(clips)
        h = self.targets(state['target_encoder'], clips)
        (loss, per_mask), grads = self.loss_and_grads(state['params'], state['target_encoder'], clips, mask_list, h)
        updates, opt_state = self.optimizer.update(grads, state['opt_state'], state['params'])
        params = optax.apply_updates(state['params'], updates)
        momentum = self.schedules.momentum(step)
        target = jepa.ema_update(state['target_encoder'], params['encoder'], momentum)
        out = {'loss': loss, 'lr': self.schedules.lr(step), 'wd': self.schedules.wd(step), 'momentum': momentum,
               'grad_norm_encoder': optax.tree.norm(grads['encoder']),
               'grad_norm_predictor': optax.tree.norm(grads['predictor']),
               'rank_target': jepa.effective_rank(h)}  # collapse watch: tokens' effective rank, of D
        out.update({f'loss_mask{m}': per_mask[m] for m in range(per_mask.shape[0])})
        return {'step': step + 1, 'params': params, 'target_encoder': target, 'opt_state': opt_state}, out


def make_trainer(config) -> Trainer:
    num_masks = num_mask_tokens(config)
    encoder, predictor = nnx.eval_shape(lambda: build_models(config.model, num_masks, nnx.Rngs(0)))
    schedules = optim.make_schedules(config.optim)
    return Trainer(encoder_def=nnx.graphdef(encoder), predictor_def=nnx.graphdef(predictor),
                   optimizer=optim.make_optimizer(config.optim, schedules), schedules=schedules,
                   loss_exp=config.loss.loss_exp, grid=encoder.grid, var_weight=config.loss.var_weight,
                   cov_weight=config.loss.cov_weight)


def batch_specs(config, sampler, mesh) -> tuple:
    """Abstract global (clips, masks) with their batch shardings."""
    m, b = config.model, config.data.global_batch_size
    dtype = jnp.uint8 if stream.uint8_clips(config) else jnp.float32  # what DataStream yields
    clips = jax.ShapeDtypeStruct((b, m.num_frames, m.img_size, m.img_size, m.in_chans), dtype,
                                 sharding=sharding.batch_sharding(mesh, 5))
    mask_sh = sharding.batch_sharding(mesh, 2)
    mask_list = [(jax.ShapeDtypeStruct((b, kc), jnp.int32, sharding=mask_sh),
                  jax.ShapeDtypeStruct((b, kt), jnp.int32, sharding=mask_sh)) for kc, kt in sampler.counts]
    return clips, mask_list


def state_layout(trainer: Trainer, config, mesh) -> tuple:
    """(init fn, abstract state carrying its shardings): shapes first, nothing allocated."""
    def init():
        return trainer.init(config.seed, config.model, num_mask_tokens(config))
    shapes = jax.eval_shape(init)
    return init, checkpoint.abstract_like(shapes, sharding.state_shardings(shapes, mesh))


def shardings_of(abstract):
    return jax.tree.map(lambda x: x.sharding, abstract)


def compile_step(trainer: Trainer, abstract_state, abstract_batch, mesh) -> tuple:
    """Lower and compile train_step for these shardings (state donated).
    -> (compiled, {'compile_s', per-device memory bytes, 'flops'})."""
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    clips, mask_list = abstract_batch
    jitted = jax.jit(trainer.train_step, donate_argnums=(0,),
                     in_shardings=(shardings_of(abstract_state), clips.sharding, shardings_of(mask_list)),
                     out_shardings=(shardings_of(abstract_state), replicated))
    t0 = time.time()
    with jax.set_mesh(mesh):
        compiled = jitted.lower(abstract_state, clips, mask_list).compile()
    return compiled, compiled_stats(compiled, time.time() - t0)


def compiled_stats(compiled, compile_s: float) -> dict:
    """Per-device memory (bytes) and FLOPs of a compiled executable."""
    out = {'compile_s': round(compile_s, 2)}
    mem = compiled.memory_analysis()
    if mem is not None:
        for name in ('argument', 'output', 'temp', 'alias', 'generated_code'):
            out[f'{name}_bytes'] = int(getattr(mem, f'{name}_size_in_bytes', 0))
        out['peak_bytes'] = out['argument_bytes'] + out['output_bytes'] + out['temp_bytes'] - out['alias_bytes']
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    out['flops'] = float((cost or {}).get('flops', 0.0))
    return out


def describe_stats(stats: dict) -> str:
    gib = 2.0 ** 30
    text = f'compiled the train step in {stats["compile_s"]:.1f}s'
    if 'peak_bytes' in stats:
        text += (f'; per device: arguments {stats["argument_bytes"] / gib:.3f} GiB, temporaries '
                 f'{stats["temp_bytes"] / gib:.3f} GiB, peak ~{stats["peak_bytes"] / gib:.3f} GiB')
    return text + f', {stats["flops"] / 1e9:.2f} GFLOP per step'
