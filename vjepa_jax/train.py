"""V-JEPA pretraining: models from config, the train state, the pure train step, the loop.

The train state is a plain dict of pytrees (pure dicts of arrays):
  {'step': int32, 'params': {'encoder', 'predictor'}, 'target_encoder', 'opt_state'}
The EMA target encoder is its own pytree: the optimiser never sees it and it has no
gradient; it moves only by jepa.ema_update after each optimiser step.

The loop (train): mesh from config.mesh, state created already sharded, the step lowered
and compiled once before the first batch (memory analysis logged), async orbax
checkpoints with automatic resume, SIGTERM -> checkpoint and clean exit, a non-finite
loss -> stop keeping the last good checkpoint.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from vjepa_jax import checkpoint, jepa, masks, metrics, optim, sharding
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
                  remat_policy=model_cfg.remat_policy, attention_query_chunk=model_cfg.attention_query_chunk,
                  dtype=dtype, rngs=rngs)
    encoder = vit(model_cfg.variant, img_size=model_cfg.img_size, num_frames=model_cfg.num_frames,
                  patch_size=model_cfg.patch_size, tubelet_size=model_cfg.tubelet_size, in_chans=model_cfg.in_chans,
                  **shared)
    spec = VIT_VARIANTS[model_cfg.variant]
    predictor = Predictor(grid=encoder.grid, embed_dim=spec['embed_dim'], predictor_embed_dim=model_cfg.pred_embed_dim,
                          depth=model_cfg.pred_depth, num_heads=model_cfg.pred_num_heads or spec['num_heads'],
                          num_mask_tokens=num_mask_tokens, zero_init_mask_tokens=model_cfg.zero_init_mask_tokens,
                          **shared)
    return encoder, predictor


def num_mask_tokens(config) -> int:
    """Learned mask tokens: model.num_mask_tokens, or one per mask generator (0)."""
    return config.model.num_mask_tokens or len(config.mask.generators)


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
        """Pure: (state, clips (B, T, H, W, C), [(ctx (B, Kc), tgt (B, Kt))]) -> (state, metrics)."""
        step = state['step']
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


def make_sampler(config, grid) -> masks.MultiBlockMaskSampler:
    return masks.MultiBlockMaskSampler(grid, mask_specs(config.mask), seed=config.seed,
                                       keep_quantile=config.mask.keep_quantile)


# ======================================================================================
# Data
# ======================================================================================
class DataStream:
    """One shard's batches in step order: next() -> (clips (b, T, H, W, 3) float32, masks).
    b = global batch / shard_count; shard_index picks this host's rows. The position
    (step, grain iterator state, records skipped so far) survives get_state/set_state,
    which is what grain.checkpoint.CheckpointHandler saves per process."""

    def __init__(self, config, sampler, shard_index: int = 0, shard_count: int = 1):
        d, m, batch = config.data, config.model, config.data.global_batch_size
        if batch % shard_count:
            raise UsageError(f'data.global_batch_size {batch} does not divide over {shard_count} hosts')
        self.config, self.sampler = config, sampler
        self.shard_index, self.shard_count, self.local_batch = shard_index, shard_count, batch // shard_count
        self.step, self.skipped = 0, 0
        self._grain = None
        if d.datasets:
            from vjepa_jax.data import pipeline
            names = [n.strip() for n in d.datasets.split(',') if n.strip()]
            weights = [float(w) for w in d.weights.split(',')] if d.weights else None
            if weights is not None and len(weights) != len(names):
                raise UsageError(f'data.weights {d.weights!r} has {len(weights)} values for {len(names)} '
                                 f'datasets {names}')
            sources = [pipeline.TfdsSource(n, d.data_dir or None, d.split) for n in names]
            clip_cfg = pipeline.ClipConfig(frames_per_clip=m.num_frames, frame_step=d.frame_step,
                                           target_fps=d.target_fps, crop_size=m.img_size,
                                           crop_scale=tuple(d.crop_scale), crop_ratio=tuple(d.crop_ratio),
                                           flip=d.flip, decoded_cache_mb=d.decoded_cache_mb)

            def grain_iterator(start_step: int):
                return iter(pipeline.make_dataset(
                    sources, weights, clip_cfg, batch_size=self.local_batch, mask_sampler=sampler, seed=config.seed,
                    shard_index=shard_index, shard_count=shard_count, num_workers=d.num_workers,
                    start_step=start_step))
            self._grain_at = grain_iterator
            self._grain = grain_iterator(0)

    def __iter__(self):
        return self

    def __next__(self):
        if self._grain is None:
            m = self.config.model
            clips = synthetic.synthetic_batch(self.config.seed, self.step, self.local_batch, m.num_frames,
                                              m.img_size, self.shard_index)
            mask_list = self.sampler(self.step, self.local_batch, stream=self.shard_index)
        else:
            b = next(self._grain)
            clips, mask_list = b['clips'], b['masks']
            self.skipped += int(b['skipped'])
        self.step += 1
        return clips, mask_list

    def get_state(self) -> bytes:
        state = {'step': self.step, 'skipped': self.skipped, 'shard': [self.shard_index, self.shard_count]}
        if self._grain is not None:
            state['grain'] = self._grain.get_state()
        return json.dumps(state).encode()

    def set_state(self, state: bytes) -> None:
        state = json.loads(state)
        self.step, self.skipped = state['step'], state['skipped']
        same_shard = state.get('shard') == [self.shard_index, self.shard_count]
        if self._grain is not None:
            if 'grain' in state and same_shard:
                self._grain.set_state(state['grain'])
            else:  # no iterator state for this shard (converted, or another host layout): from `step` on
                self._grain = self._grain_at(self.step)

    @staticmethod
    def position(step: int):
        """A saveable position at `step` with no iterator state (for checkpoints made elsewhere)."""
        class Position:
            def get_state(self):
                return json.dumps({'step': step, 'skipped': 0}).encode()
        return Position()

    def start_prefetch(self) -> None:  # grain's checkpoint handler calls this after a restore
        pass


def count_params(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


# ======================================================================================
# Layout and compilation
# ======================================================================================
def batch_specs(config, sampler, mesh) -> tuple:
    """Abstract global (clips, masks) with their batch shardings."""
    m, b = config.model, config.data.global_batch_size
    clips = jax.ShapeDtypeStruct((b, m.num_frames, m.img_size, m.img_size, m.in_chans), jnp.float32,
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


# ======================================================================================
# Faults
# ======================================================================================
class PreemptionFlag:
    """SIGTERM is the notice TPU and GPU schedulers send before preempting. One process: a
    signal handler sets a flag, checked after every step. Several processes: JAX's
    preemption sync service (started by jax.distributed) catches the signal on any host and
    all hosts agree on the same step to save at; call `reached(step)` after every step."""

    def __init__(self):
        self.multi = jax.process_count() > 1
        self.requested = False
        if not self.multi:
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.requested = True

    def reached(self, step: int) -> bool:
        if self.multi:
            from jax.experimental import multihost_utils
            return multihost_utils.reached_preemption_sync_point(step)
        return self.requested

    def restore(self):
        if not self.multi:
            signal.signal(signal.SIGTERM, self._previous)


# model fields that change the parameter shapes or layout a checkpoint holds
LAYOUT_FIELDS = ('variant', 'patch_size', 'tubelet_size', 'in_chans', 'pred_depth', 'pred_embed_dim',
                 'num_mask_tokens', 'scan_layers')


def check_resumable(meta: dict, config, step: int) -> None:
    """One-line error when the workdir's checkpoint was made with another model layout."""
    saved = meta.get('config', {}).get('model', {})
    diff = [f'--config.model.{k}={saved[k]} (it has {saved[k]!r}, the config {config.model[k]!r})'
            for k in LAYOUT_FIELDS if k in saved and saved[k] != config.model[k]]
    if diff:
        raise UsageError(f'checkpoint {step} was made with another model layout: pass {"; ".join(diff)}, or use '
                         f'a new workdir')


def check_finite(out: dict, step: int, ckpt: checkpoint.Checkpointer) -> None:
    names = ('loss', 'grad_norm_encoder', 'grad_norm_predictor')
    bad = {k: float(out[k]) for k in names if not np.isfinite(out[k])}
    if bad:
        ckpt.wait()
        last = ckpt.latest_step()
        keep = f'the last good checkpoint is step {last} in {ckpt.directory}' if last is not None else 'no checkpoint'
        raise FloatingPointError(f'non-finite {bad} at step {step}: stopped; {keep} '
                                 f'(lower optim.lr or set optim.clip_grad, then rerun to resume)')


# ======================================================================================
# The loop
# ======================================================================================
def train(config, workdir: str, log: Callable = print) -> dict:
    """Pretrain with `config` in `workdir` (metrics, TensorBoard, checkpoints), resuming
    from the latest checkpoint there. Returns the final (or preempted) state."""
    main_process = jax.process_index() == 0
    log = log if main_process else (lambda *_: None)
    try:
        mesh = sharding.make_mesh(config.mesh)
        sharding.check_batch(config.data.global_batch_size, mesh)
    except ValueError as e:
        raise UsageError(str(e)) from None
    trainer = make_trainer(config)
    sampler = make_sampler(config, trainer.grid)
    total = config.train.num_steps or trainer.schedules.total_steps
    abstract_batch = batch_specs(config, sampler, mesh)
    shard_index, shard_count = sharding.host_batch_slice(abstract_batch[0].sharding, abstract_batch[0].shape)
    data = DataStream(config, sampler, shard_index, shard_count)
    init, abstract_state = state_layout(trainer, config, mesh)
    c = config.checkpoint
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'), every_steps=c.every_steps,
                                   keep_last=c.keep_last, keep_every=c.keep_every, async_save=c.async_save)
    start = ckpt.latest_step()
    if start is None:
        start = 0
        state = jax.jit(init, out_shardings=shardings_of(abstract_state))()
    else:
        check_resumable(ckpt.restore_meta(start), config, start)
        state, _ = ckpt.restore(start, abstract_state)
        if not ckpt.restore_data(start, data):
            data.set_state(DataStream.position(start).get_state())
        log(f'resumed from step {start} ({ckpt.directory}) on mesh {dict(mesh.shape)}')
    log(f'mesh {dict(mesh.shape)} over {jax.device_count()} devices, {jax.process_count()} process(es); encoder '
        f'{count_params(state["params"]["encoder"]) / 1e6:.2f}M params, predictor '
        f'{count_params(state["params"]["predictor"]) / 1e6:.2f}M, grid {trainer.grid}, '
        f'mask counts (context, target) {sampler.counts}')
    step_fn, stats = compile_step(trainer, abstract_state, abstract_batch, mesh)
    log(describe_stats(stats))
    writer = metrics.MetricsWriter(workdir, start, config.train.tensorboard, active=main_process)
    if main_process:
        with open(os.path.join(writer.dir, 'compile.json'), 'w') as f:
            json.dump({**stats, 'mesh': dict(mesh.shape)}, f, indent=1)
    meta = {'seed': config.seed, 'mesh': dict(mesh.shape), 'config': json.loads(config.to_json_best_effort())}

    def to_global(x, spec):
        return jax.make_array_from_process_local_data(spec.sharding, np.asarray(x), spec.shape)

    progress = metrics.Progress(total, config.data.global_batch_size, first_step=start)
    preemption = PreemptionFlag()
    t_start, done = time.time(), start
    try:
        for step in range(start, total):
            clips, mask_list = next(data)
            state, out = step_fn(state, to_global(clips, abstract_batch[0]),
                                 jax.tree.map(to_global, mask_list, abstract_batch[1]))
            done = step + 1
            checking = step % config.train.log_every == 0 or done == total
            preempted = preemption.reached(step)
            save = ckpt.should_save(done) or done == total or preempted
            if checking or save:
                out = jax.device_get(out)
                check_finite(out, step, ckpt)
                out['skipped_records'] = data.skipped
                writer.write(step, out)
                if main_process:
                    progress.update(done, out)
            if save:
                ckpt.save(done, state, data, {**meta, 'step': done}, force=True)
            if preempted:
                log(f'SIGTERM: saved checkpoint {done} in {ckpt.directory}; exiting (rerun the same command to resume)')
                break
    finally:
        preemption.restore()
        ckpt.close()
        if main_process and done > start:
            metrics.plot_loss_curve(writer.path, os.path.join(writer.dir, 'loss.png'))
        writer.close()
    if main_process and done > start:
        log(f'ran steps {start}..{done} of {total} in {time.time() - t_start:.1f}s; metrics.jsonl, loss.png and '
            f'tensorboard/ in {workdir}')
    return state
