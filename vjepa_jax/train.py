"""V-JEPA pretraining: the loop. One readable function (train) around the pure step of
train_state.py.

Mesh from config.mesh, state created already sharded, the step lowered and compiled once
before the first batch (memory analysis logged), async orbax checkpoints with automatic
resume, SIGTERM -> checkpoint and clean exit, a non-finite loss -> stop keeping the last
good checkpoint. Metrics: metrics.jsonl, TensorBoard, a progress line, loss.png.
"""
from __future__ import annotations

import json
import os
import signal
import time
from typing import Callable

import jax
import numpy as np

from vjepa_jax import checkpoint, masks, metrics, sharding, train_state, validate, workdir_lock
from vjepa_jax.config import UsageError
from vjepa_jax.data.stream import DataStream
from vjepa_jax.flops import peak_flops, step_flops
from vjepa_jax.models.factory import count_params


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
    validate.checkpoint_layout(meta, config, step, 'model', dict.fromkeys(LAYOUT_FIELDS))


def check_mask_order(meta: dict, config, step: int) -> None:
    """One-line error when the workdir was trained before generators carried an `index`: it ran
    them in sorted-name order (mask token i for the i-th name), which may not be this config's."""
    saved = meta.get('config', {}).get('mask', {}).get('generators', {})
    if len(saved) < 2 or meta.get('converted_from') or any('index' in g for g in saved.values()):
        return
    ran, now = sorted(saved), masks.generator_names(config.mask)
    if ran != now:
        flags = ' '.join(f'--config.mask.generators.{name}.index={i}' for i, name in enumerate(ran))
        raise UsageError(f'checkpoint {step} ran its mask generators in the order {ran} (mask token i for the '
                         f'i-th), this config in {now}: pass {flags} to resume with its pairing, or use a new workdir')


def check_finite(out: dict, step: int, ckpt: checkpoint.Checkpointer) -> None:
    names = ('loss', 'grad_norm_encoder', 'grad_norm_predictor')
    bad = {k: float(out[k]) for k in names if not np.isfinite(out[k])}
    if bad:
        ckpt.wait()
        last = ckpt.latest_verified_step()
        keep = (f'the newest checkpoint that verifies is step {last} in {ckpt.directory}' if last is not None
                else 'no checkpoint verifies')
        raise FloatingPointError(f'non-finite {bad} at step {step}: stopped; {keep} '
                                 f'(lower optim.lr or set optim.clip_grad, then rerun to resume)')


# ======================================================================================
# The loop
# ======================================================================================
def train(config, workdir: str, log: Callable = print) -> dict:
    """Pretrain with `config` in `workdir` (metrics, TensorBoard, checkpoints), resuming
    from the newest checkpoint there that verifies. Returns the final (or preempted) state.
    The workdir is locked for the run (workdir_lock: a second run stops with WorkdirBusy); the
    config is checked before anything is written (validate: a bad value is one UsageError line)."""
    validate.pretrain_config(config, workdir)
    if jax.process_index() != 0:
        return _train(config, workdir, log)
    with workdir_lock.hold(workdir, log):
        return _train(config, workdir, log)


def _train(config, workdir: str, log: Callable) -> dict:
    main_process = jax.process_index() == 0
    log = log if main_process else (lambda *_: None)
    try:
        mesh = sharding.make_mesh(config.mesh)
        sharding.check_batch(config.data.global_batch_size, mesh)
    except ValueError as e:
        raise UsageError(str(e)) from None
    trainer = train_state.make_trainer(config)
    sampler = masks.make_sampler(config, trainer.grid)
    total = config.train.num_steps or trainer.schedules.total_steps
    abstract_batch = train_state.batch_specs(config, sampler, mesh)
    shard_index, shard_count = sharding.host_batch_slice(abstract_batch[0].sharding, abstract_batch[0].shape)
    data = DataStream(config, sampler, shard_index, shard_count)
    init, abstract_state = train_state.state_layout(trainer, config, mesh)
    c = config.checkpoint
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'), every_steps=c.every_steps,
                                   keep_last=c.keep_last, keep_every=c.keep_every, async_save=c.async_save)
    def check_meta(meta, step):
        check_resumable(meta, config, step)
        check_mask_order(meta, config, step)
    start, state, restored = ckpt.restore_newest(abstract_state, data, check_meta, log)  # damaged: said, skipped
    if start is None:
        start = 0
        state = jax.jit(init, out_shardings=train_state.shardings_of(abstract_state))()
    else:
        if not restored['data_restored']:
            data.set_state(DataStream.position(start).get_state())
        log(f'resumed from step {start} ({ckpt.directory}) on mesh {dict(mesh.shape)}')
    log(f'mesh {dict(mesh.shape)} over {jax.device_count()} devices, {jax.process_count()} process(es); encoder '
        f'{count_params(state["params"]["encoder"]) / 1e6:.2f}M params, predictor '
        f'{count_params(state["params"]["predictor"]) / 1e6:.2f}M, grid {trainer.grid}, '
        f'mask counts (context, target) {sampler.counts}')
    step_fn, stats = train_state.compile_step(trainer, abstract_state, abstract_batch, mesh)
    log(train_state.describe_stats(stats))
    writer = metrics.MetricsWriter(workdir, start, config.train.tensorboard, active=main_process)
    if main_process:
        with open(os.path.join(writer.dir, 'compile.json'), 'w') as f:
            json.dump({**stats, 'mesh': dict(mesh.shape)}, f, indent=1)
    meta = {'seed': config.seed, 'mesh': dict(mesh.shape), 'config': json.loads(config.to_json_best_effort())}

    def to_global(x, spec):
        return jax.make_array_from_process_local_data(spec.sharding, np.asarray(x), spec.shape)

    progress = metrics.Progress(total, config.data.global_batch_size, first_step=start)
    speed = metrics.StepSpeed(step_flops(config, sampler.counts) * config.data.global_batch_size,
                      peak_flops(jax.devices()[0].device_kind), jax.device_count())
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
                out.update(speed.update(done))
                writer.write(step, out)
                if main_process:
                    progress.update(done, out)
            if save:
                writer.sync()  # a remote workdir's metrics reach this checkpoint (no gap after a hard kill)
                ckpt.save(done, state, data, {**meta, 'step': done}, force=True)
            if preempted:
                log(f'SIGTERM: saved checkpoint {done} in {ckpt.directory}; exiting (rerun the same command to resume)')
                break
        ckpt.close()  # the last asynchronous save lands here (its errors too)
    except Exception as e:
        plot = [lambda: metrics.plot_loss_curve(writer.path, os.path.join(writer.dir, 'loss.png'))]
        failure = checkpoint.stopped(e, ckpt, done, [ckpt.close, *(plot if main_process and done > start else []),
                                                     writer.close], log)
        if failure is e:
            raise
        raise failure from None
    else:
        if main_process and done > start:
            metrics.plot_loss_curve(writer.path, os.path.join(writer.dir, 'loss.png'))
        writer.close()
    finally:
        preemption.restore()  # only now: a second SIGTERM while the last save lands changes nothing
    if main_process and done > start:
        log(f'ran steps {start}..{done} of {total} in {time.time() - t_start:.1f}s; metrics.jsonl, loss.png and '
            f'tensorboard/ in {workdir}')
    return state
