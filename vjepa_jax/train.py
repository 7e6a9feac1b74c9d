"""V-JEPA pretraining: models from config, the train state, the pure train step, the loop.

The train state is a plain dict of pytrees (pure dicts of arrays):
  {'step': int32, 'params': {'encoder', 'predictor'}, 'target_encoder', 'opt_state'}
The EMA target encoder is its own pytree: the optimiser never sees it and it has no
gradient; it moves only by jepa.ema_update after each optimiser step.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from vjepa_jax import jepa, masks, metrics, optim
from vjepa_jax.config import UsageError
from vjepa_jax.data import synthetic
from vjepa_jax.models.predictor import Predictor
from vjepa_jax.models.vit import VIT_VARIANTS, vit

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}


# ======================================================================================
# Models
# ======================================================================================
def build_models(model_cfg, num_mask_tokens: int, rngs: nnx.Rngs):
    """(encoder, predictor) NNX modules from the config's `model` block."""
    if model_cfg.dtype not in DTYPES:
        raise ValueError(f'model.dtype {model_cfg.dtype!r}: choose one of {sorted(DTYPES)}')
    dtype = DTYPES[model_cfg.dtype]
    shared = dict(pos_embed=model_cfg.pos_embed, rope_form=model_cfg.rope_form, uniform_power=model_cfg.uniform_power,
                  rescale_init=model_cfg.rescale_init, scan_layers=model_cfg.scan_layers,
                  remat_policy=model_cfg.remat_policy, dtype=dtype, rngs=rngs)
    encoder = vit(model_cfg.variant, img_size=model_cfg.img_size, num_frames=model_cfg.num_frames,
                  patch_size=model_cfg.patch_size, tubelet_size=model_cfg.tubelet_size, in_chans=model_cfg.in_chans,
                  **shared)
    spec = VIT_VARIANTS[model_cfg.variant]
    predictor = Predictor(grid=encoder.grid, embed_dim=spec['embed_dim'], predictor_embed_dim=model_cfg.pred_embed_dim,
                          depth=model_cfg.pred_depth, num_heads=model_cfg.pred_num_heads or spec['num_heads'],
                          num_mask_tokens=num_mask_tokens, zero_init_mask_tokens=model_cfg.zero_init_mask_tokens,
                          **shared)
    return encoder, predictor


def mask_specs(mask_cfg) -> list:
    """BlockSpecs in the config's generator order."""
    return [masks.BlockSpec(num_blocks=g.num_blocks, spatial_scale=tuple(g.spatial_scale),
                            temporal_scale=tuple(g.temporal_scale), aspect_ratio=tuple(g.aspect_ratio),
                            max_temporal_keep=g.max_temporal_keep, num_context=g.num_context or None,
                            num_target=g.num_target or None)
            for g in mask_cfg.generators.values()]


# ======================================================================================
# Train state and step
# ======================================================================================
@dataclasses.dataclass(frozen=True)
class Trainer:
    """Static pieces of training: module graphdefs, optimiser, schedules, loss exponent."""
    encoder_def: Any
    predictor_def: Any
    optimizer: optax.GradientTransformation
    schedules: optim.Schedules
    loss_exp: float
    grid: tuple

    def init(self, rng_seed: int, model_cfg, num_mask_tokens: int) -> dict:
        """Fresh state; the target encoder starts as a copy of the encoder."""
        encoder, predictor = build_models(model_cfg, num_mask_tokens, nnx.Rngs(rng_seed))
        params = {'encoder': nnx.to_pure_dict(nnx.state(encoder)), 'predictor': nnx.to_pure_dict(nnx.state(predictor))}
        return {'step': jnp.zeros([], jnp.int32), 'params': params,
                'target_encoder': jax.tree.map(jnp.copy, params['encoder']),
                'opt_state': self.optimizer.init(params)}

    def loss_and_grads(self, params, target_params, clips, mask_list):
        """-> ((loss, per-generator losses), grads wrt params)."""
        h = jepa.target_features(nnx.merge(self.encoder_def, target_params), clips)

        def loss_fn(p):
            return jepa.jepa_loss(nnx.merge(self.encoder_def, p['encoder']),
                                  nnx.merge(self.predictor_def, p['predictor']), h, clips, mask_list, self.loss_exp)
        return jax.value_and_grad(loss_fn, has_aux=True)(params)

    def train_step(self, state, clips, mask_list):
        """Pure: (state, clips (B, T, H, W, C), [(ctx (B, Kc), tgt (B, Kt))]) -> (state, metrics)."""
        step = state['step']
        (loss, per_mask), grads = self.loss_and_grads(state['params'], state['target_encoder'], clips, mask_list)
        updates, opt_state = self.optimizer.update(grads, state['opt_state'], state['params'])
        params = optax.apply_updates(state['params'], updates)
        momentum = self.schedules.momentum(step)
        target = jepa.ema_update(state['target_encoder'], params['encoder'], momentum)
        out = {'loss': loss, 'lr': self.schedules.lr(step), 'wd': self.schedules.wd(step), 'momentum': momentum,
               'grad_norm_encoder': optax.tree.norm(grads['encoder']),
               'grad_norm_predictor': optax.tree.norm(grads['predictor'])}
        out.update({f'loss_mask{m}': per_mask[m] for m in range(per_mask.shape[0])})
        return {'step': step + 1, 'params': params, 'target_encoder': target, 'opt_state': opt_state}, out


def make_trainer(config) -> Trainer:
    num_masks = len(config.mask.generators)
    encoder, predictor = nnx.eval_shape(lambda: build_models(config.model, num_masks, nnx.Rngs(0)))
    schedules = optim.make_schedules(config.optim)
    return Trainer(encoder_def=nnx.graphdef(encoder), predictor_def=nnx.graphdef(predictor),
                   optimizer=optim.make_optimizer(config.optim, schedules), schedules=schedules,
                   loss_exp=config.loss.loss_exp, grid=encoder.grid)


def data_iterator(config, sampler, start_step: int = 0):
    """Yields (clips (B, T, H, W, 3) float32, masks, skipped records) per step, this host's share."""
    d, m, batch = config.data, config.model, config.data.global_batch_size
    if batch % jax.process_count():
        raise UsageError(f'data.global_batch_size {batch} does not divide over {jax.process_count()} hosts')
    local = batch // jax.process_count()
    if not d.datasets:
        for step in range(start_step, 1 << 62):
            clips = synthetic.synthetic_batch(config.seed, step, local, m.num_frames, m.img_size, jax.process_index())
            yield clips, sampler(step, local, stream=jax.process_index()), 0
        return
    from vjepa_jax.data import pipeline
    names = [n.strip() for n in d.datasets.split(',') if n.strip()]
    weights = [float(w) for w in d.weights.split(',')] if d.weights else None
    if weights is not None and len(weights) != len(names):
        raise UsageError(f'data.weights {d.weights!r} has {len(weights)} values for {len(names)} datasets {names}')
    sources = [pipeline.TfdsSource(n, d.data_dir or None, d.split) for n in names]
    clip_cfg = pipeline.ClipConfig(frames_per_clip=m.num_frames, frame_step=d.frame_step, target_fps=d.target_fps,
                                   crop_size=m.img_size, crop_scale=tuple(d.crop_scale), crop_ratio=tuple(d.crop_ratio),
                                   flip=d.flip)
    ds = pipeline.make_dataset(sources, weights, clip_cfg, batch_size=local, mask_sampler=sampler, seed=config.seed,
                               shard_index=jax.process_index(), shard_count=jax.process_count(),
                               num_workers=d.num_workers, start_step=start_step)
    for b in ds:
        yield b['clips'], b['masks'], int(b['skipped'])


def count_params(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


# ======================================================================================
# The loop
# ======================================================================================
def train(config, workdir: str, log: Callable = print) -> dict:
    """Pretrain with `config`, writing workdir/metrics.jsonl. Returns the final state."""
    os.makedirs(workdir, exist_ok=True)
    trainer = make_trainer(config)
    sampler = masks.MultiBlockMaskSampler(trainer.grid, mask_specs(config.mask), seed=config.seed,
                                          keep_quantile=config.mask.keep_quantile)
    num_masks = len(config.mask.generators)
    total = config.train.num_steps or trainer.schedules.total_steps
    batch = config.data.global_batch_size
    m = config.model
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ('data',))
    if batch % mesh.size:
        raise UsageError(f'data.global_batch_size {batch} does not divide over {mesh.size} devices: '
                         f'use a multiple of {mesh.size}')
    batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    def to_global(x):
        return jax.make_array_from_process_local_data(batch_sharding, np.asarray(x))

    state = jax.jit(lambda: trainer.init(config.seed, m, num_masks), out_shardings=replicated)()

    log(f'encoder {count_params(state["params"]["encoder"]) / 1e6:.2f}M params, predictor '
        f'{count_params(state["params"]["predictor"]) / 1e6:.2f}M, grid {trainer.grid}, '
        f'mask counts (context, target) {sampler.counts}')
    step_fn = jax.jit(trainer.train_step, donate_argnums=(0,), out_shardings=(replicated, replicated))
    writer = metrics.JsonlWriter(workdir)
    progress = metrics.Progress(total, batch)
    t_start = time.time()
    skipped = 0
    data = data_iterator(config, sampler)
    for step in range(total):
        clips, mask_list, n_skipped = next(data)
        skipped += n_skipped
        state, out = step_fn(state, to_global(clips), jax.tree.map(to_global, mask_list))
        if step % config.train.log_every == 0 or step == total - 1:
            out = jax.device_get(out)
            out['skipped_records'] = skipped
            if not np.isfinite(out['loss']):
                raise FloatingPointError(f'loss is {out["loss"]} at step {step}: stopping (lower optim.lr?)')
            writer.write(step, out)
            progress.update(step + 1, out)
    writer.close()
    png = metrics.plot_loss_curve(writer.path, os.path.join(workdir, 'loss.png'))
    log(f'finished {total} steps in {time.time() - t_start:.1f}s; metrics in {writer.path}, curve in {png}')
    return state
