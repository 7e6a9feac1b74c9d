"""Train V-JEPA 2-AC's action-conditioned predictor on trajectories; the video encoder stays frozen.

    python -m vjepa_jax.world_model.trainer --config=configs/world_model/two_rooms.py --workdir=DIR

The encoder (config.encoder): a pretraining workdir (`workdir`, its EMA target encoder, the model
read from the checkpoint's own config), or a random init of `encoder.model` when no workdir is
given. The predictor: models/ac_predictor.py on the encoder's token grid; objective.py's losses
(teacher forcing + `loss.auto_steps`-step rollout L1; with `loss.readout_weight` > 0, plus the error
along the action read-out, world_model/readout.py, fitted first and kept in WORKDIR/readout.npy; the
read-out also gives the rollout its states with `loss.rollout_states='readout'`).

Data (config.data): episodes of frames (L, H, W, 3), actions (L-1, A), states (L, S), from a
built `trajectories` TFDS dataset (data.tfds, data.data_dir) or a folder of .npz episodes
(data.episodes, world_model/collect.py). Windows: `num_frames` frames every `frame_step` steps,
actions combined over each stride (summed; DROID's rotations composed), proprioceptive states =
the first predictor.action_dim state dims. Two ways to feed them:
  data.cache_tokens=False   the grain window pipeline (data/trajectories.py); the frozen encoder
                            runs inside every step (DROID scale). Resume restores the grain
                            iterator's position from the checkpoint.
  data.cache_tokens=True    every frame is encoded ONCE (the encoder is frozen and V-JEPA 2-AC's
                            crop is fixed, so a cached token is what the step would compute) and
                            the windows are cut inside the jitted step, episode and start drawn
                            from (seed, step): a resumed run draws exactly the batches it would
                            have drawn, and only the arrays cross to the device. The last
                            `data.val_episodes` episodes are held out (`val_rollout`).
                            `train.steps_per_call` > 1 runs that many steps in one compiled
                            call (lax.scan) between metrics and checkpoints.

Sharded like pretraining: `config.mesh` (data, fsdp, tensor), batch split over data x fsdp,
parameters by name (sharding.py). Checkpoints: orbax, WORKDIR/checkpoints (state + meta);
metrics.jsonl, TensorBoard, loss.png, a progress line.
"""
from __future__ import annotations

import dataclasses
import functools
import glob
import io
import json
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from etils import epath
from flax import nnx

from vjepa_jax import checkpoint, metrics, optim, sharding, validate, workdir_lock
from vjepa_jax.config import UsageError
from vjepa_jax.models.ac_predictor import ACPredictor
from vjepa_jax.world_model import objective


# -- the frozen encoder and the predictor ----------------------------------------------------
def load_frozen_encoder(enc_cfg):
    """-> (encoder module, its model config block). From a pretraining workdir's newest
    checkpoint (the model as saved there) or a random init of enc_cfg.model (seed enc_cfg.seed)."""
    from vjepa_jax import pretrained
    if enc_cfg.workdir:
        ckpt = checkpoint.Checkpointer(os.path.join(enc_cfg.workdir, 'checkpoints'))
        step = ckpt.latest_step()
        if step is None:
            ckpt.close()
            raise UsageError(f'encoder.workdir {enc_cfg.workdir}: no checkpoint in it; pretrain first '
                             f'(python -m vjepa_jax.main --workdir={enc_cfg.workdir} ...)')
        model = ckpt.restore_meta(step)['config']['model']
        ckpt.close()
        config = pretrained.encoder_config(model)
        return pretrained.load_encoder(enc_cfg.workdir, config), config.model
    config = pretrained.encoder_config(enc_cfg.model.to_dict())
    return pretrained.build_encoder(config, enc_cfg.seed), config.model


# the predictor fields that decide its parameters' shapes, with their value in a config without them
PREDICTOR_LAYOUT = {'embed_dim': None, 'depth': None, 'num_heads': None, 'mlp_ratio': None, 'action_dim': None,
                    'state_fourier': 0}


def build_predictor(pred_cfg, encoder, seed: int) -> ACPredictor:
    """The AC predictor on the encoder's per-frame token grid (H', W') and width."""
    grid = encoder.grid[-2:]
    return ACPredictor(grid=grid, embed_dim=encoder.embed_dim, predictor_embed_dim=pred_cfg.embed_dim,
                       depth=pred_cfg.depth, num_heads=pred_cfg.num_heads, mlp_ratio=pred_cfg.mlp_ratio,
                       action_dim=pred_cfg.action_dim, rope_form=pred_cfg.rope_form,
                       remat_policy=pred_cfg.remat_policy, attention_impl=pred_cfg.attention_impl,
                       action_scale=pred_cfg.action_scale, state_scale=pred_cfg.state_scale,
                       state_fourier=pred_cfg.state_fourier,
                       dtype=None if pred_cfg.dtype == 'float32'
                       else jnp.dtype(pred_cfg.dtype), rngs=nnx.Rngs(seed))


# -- episodes and token windows --------------------------------------------------------------
def read_episodes(data_cfg, log: Callable = print) -> list:
    """[{'frames' (L, H, W, 3) uint8, 'actions' (L-1, A), 'states' (L, S)}] from data.episodes (a
    folder of .npz) or data.tfds (a built trajectories dataset in data.data_dir)."""
    if data_cfg.episodes:
        paths = sorted(glob.glob(os.path.join(data_cfg.episodes, '*.npz')))
        if not paths:
            raise UsageError(f'data.episodes {data_cfg.episodes}: no .npz episodes; record some with '
                             f'python -m vjepa_jax.world_model.collect --workdir=...')
        out = []
        for p in paths:
            with np.load(p) as f:
                out.append({k: f[k] for k in ('frames', 'actions', 'states')})
        return out
    if data_cfg.tfds:
        from vjepa_jax.data import decode, trajectories
        source = trajectories.TrajectorySource(data_cfg.tfds, data_cfg.data_dir, data_cfg.split)
        out = []
        for i in range(len(source)):
            r = source[i]
            try:
                frames = decode.decode_frames(r['video'], np.arange(int(r['num_frames'])), name=str(r['path']))
            except decode.DecodeError as e:
                log(f'skipped episode {i} of {data_cfg.tfds}: {e}')
                continue
            out.append({'frames': frames, 'actions': np.asarray(r['actions']), 'states': np.asarray(r['states'])})
        return out
    raise UsageError('set data.episodes (a folder of .npz episodes) or data.tfds (a built trajectories dataset)')


def encode_episodes(encoder, episodes: list, proprio_dims: int, batch_frames: int = 256) -> dict:
    """Stack equal-length episodes and encode every frame once -> {'tokens' (E, L, P, D) float32,
    'action_sums' (E, L, A): cumulative actions (row 0 zeros), 'states' (E, L, proprio_dims)}."""
    lengths = {len(e['frames']) for e in episodes}
    if len(lengths) != 1:
        keep = min(lengths)
        episodes = [{k: v[:keep] if k != 'actions' else v[:keep - 1] for k, v in e.items()} for e in episodes]
    frames = np.stack([e['frames'] for e in episodes])
    e, length = frames.shape[:2]
    flat = frames.reshape(e * length, 1, *frames.shape[2:])
    encode = nnx.jit(lambda enc, x: objective.encode_frames(enc, x))
    pad = -len(flat) % batch_frames
    flat = np.concatenate([flat, np.zeros((pad, *flat.shape[1:]), flat.dtype)])
    tokens = np.concatenate([np.asarray(encode(encoder, flat[i:i + batch_frames]))[:, 0]
                             for i in range(0, len(flat), batch_frames)])[:e * length]
    actions = np.stack([e['actions'] for e in episodes]).astype(np.float32)
    sums = np.concatenate([np.zeros_like(actions[:, :1]), np.cumsum(actions, axis=1)], axis=1)
    states = np.stack([e['states'][:, :proprio_dims] for e in episodes]).astype(np.float32)
    return {'tokens': tokens.reshape(e, length, *tokens.shape[1:]), 'action_sums': sums, 'states': states}


def cut_windows(arrays: dict, key: jax.Array, batch: int, num_frames: int, frame_step: int) -> dict:
    """Random windows (pure, jit-able): -> {'tokens' (B, T, P, D), 'actions' (B, T-1, A) summed
    over each stride of frame_step, 'states' (B, T, S)}."""
    e, length = arrays['tokens'].shape[:2]
    span = (num_frames - 1) * frame_step
    k1, k2 = jax.random.split(key)
    episode = jax.random.randint(k1, (batch, 1), 0, e)
    frame = jax.random.randint(k2, (batch, 1), 0, length - span) + jnp.arange(num_frames) * frame_step
    sums = arrays['action_sums'][episode, frame]
    return {'tokens': arrays['tokens'][episode, frame], 'actions': sums[:, 1:] - sums[:, :-1],
            'states': arrays['states'][episode, frame]}


# -- the train step --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ACTrainer:
    encoder_def: Any
    predictor_def: Any
    optimizer: optax.GradientTransformation
    schedules: optim.Schedules
    auto_steps: int
    loss_exp: float
    batch: int
    num_frames: int
    frame_step: int
    readout: Any = dataclasses.field(default=None, compare=False)  # (P * D, A): readout_weight, rollout_states
    readout_weight: float = 0.0
    rollout_states: str = 'recorded'

    def losses(self, params, windows):
        predictor = nnx.merge(self.predictor_def, params)
        return objective.ac_losses(predictor, windows['tokens'], windows['actions'], windows['states'],
                                   self.auto_steps, self.loss_exp, self.readout, self.readout_weight,
                                   self.rollout_states)

    def update(self, state, windows):
        """One optimiser step on windows {'tokens' (B, T, P, D), 'actions', 'states'} -> (state, metrics)."""
        windows = jax.tree.map(lambda x: sharding.constrain(x, ('batch',) + (None,) * (x.ndim - 1)), windows)

        def loss_fn(p):
            out = self.losses(p, windows)
            return out['loss'], out
        grads, out = jax.grad(loss_fn, has_aux=True)(state['params'])
        updates, opt_state = self.optimizer.update({'predictor': grads}, state['opt_state'],
                                                   {'predictor': state['params']})
        out.update(lr=self.schedules.lr(state['step']), grad_norm=optax.tree.norm(grads))
        params = optax.apply_updates(state['params'], updates['predictor'])
        return {'step': state['step'] + 1, 'params': params, 'opt_state': opt_state}, out

    def cached_step(self, state, arrays, seed_key):
        """Pure: (state, token arrays, key) -> (state, metrics); windows drawn from fold_in(key, step)."""
        key = jax.random.fold_in(seed_key, state['step'])
        return self.update(state, cut_windows(arrays, key, self.batch, self.num_frames, self.frame_step))

    def cached_steps(self, state, arrays, seed_key, count: int):
        """Pure: `count` cached_steps in one call (lax.scan) -> (state, the last step's metrics)."""
        state, outs = jax.lax.scan(lambda s, _: self.cached_step(s, arrays, seed_key), state, None, length=count)
        return state, jax.tree.map(lambda x: x[-1], outs)

    def held_out(self, params, arrays, seed_key, step):
        """Losses on windows of the held-out episodes -> {'val_rollout', 'val_teacher_forcing'}."""
        key = jax.random.fold_in(jax.random.fold_in(seed_key, step), 1)
        val = self.losses(params, cut_windows(arrays, key, self.batch, self.num_frames, self.frame_step))
        return {'val_rollout': val['rollout'], 'val_teacher_forcing': val['teacher_forcing']}

    def frames_step(self, state, encoder_state, batch):
        """Pure: (state, frozen encoder state, {'frames' (B, T, H, W, 3) uint8, 'actions', 'states'})
        -> (state, metrics): the encoder runs inside the step (no gradient)."""
        tokens = objective.encode_frames(nnx.merge(self.encoder_def, encoder_state), batch['frames'])
        return self.update(state, {'tokens': tokens, 'actions': batch['actions'], 'states': batch['states']})


def make_trainer(config, encoder, predictor, readout: np.ndarray | None = None) -> ACTrainer:
    schedules = optim.make_schedules(config.optim)
    return ACTrainer(encoder_def=nnx.graphdef(encoder), predictor_def=nnx.graphdef(predictor),
                     optimizer=optim.make_optimizer(config.optim, schedules), schedules=schedules,
                     auto_steps=config.loss.auto_steps, loss_exp=config.loss.loss_exp,
                     batch=config.data.global_batch_size, num_frames=config.data.num_frames,
                     frame_step=config.data.frame_step,
                     readout=None if readout is None else jnp.asarray(readout),
                     readout_weight=float(config.loss.get('readout_weight', 0.0)),
                     rollout_states=config.loss.get('rollout_states', 'recorded'))


READOUT_FILE = 'readout.npy'


def fit_readout(config, workdir: str, train_arrays: dict, log: Callable = print) -> np.ndarray:
    """The action read-out (world_model/readout.py) of the training episodes' cached tokens, written
    to WORKDIR/readout.npy once (a resumed run reads it back) -> W (P * D, A) float32."""
    from vjepa_jax.world_model import readout as readout_lib
    saved = load_readout(workdir)
    if saved is not None:
        return saved
    path, t0 = os.path.join(workdir, READOUT_FILE), time.time()
    w = readout_lib.fit(train_arrays['tokens'], train_arrays['action_sums'], config.readout.gaps,
                        config.readout.ridge)
    if jax.process_index() == 0:
        buffer = io.BytesIO()
        np.save(buffer, w)
        write_file(path, buffer.getvalue())
    log(f'action read-out {w.shape} fitted on {train_arrays["tokens"].shape[0]} episodes in {time.time() - t0:.1f}s '
        f'({path})')
    return w


def load_readout(workdir: str) -> np.ndarray | None:
    """WORKDIR/readout.npy of an AC workdir, or None when that run fitted none."""
    path = epath.Path(workdir, READOUT_FILE)
    return np.load(io.BytesIO(path.read_bytes())) if path.exists() else None


def write_file(path: str, data: bytes) -> None:
    """Write `data` to a local or remote (gs://) path; a local file goes through a temporary name
    (never seen half-written), a remote object appears whole."""
    if '://' in path:
        epath.Path(path).parent.mkdir(parents=True, exist_ok=True)
        epath.Path(path).write_bytes(data)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + '.tmp', 'wb') as f:
        f.write(data)
    os.replace(path + '.tmp', path)


class StepPosition:
    """In cached mode the data position is the step itself (windows are drawn from (seed, step));
    this is what the checkpoint's data item holds, for the grain checkpoint handler."""

    def __init__(self, step: int = 0):
        self.step = step

    def get_state(self) -> bytes:
        return json.dumps({'step': self.step}).encode()

    def set_state(self, state: bytes) -> None:
        self.step = json.loads(state)['step']


# -- the loop --------------------------------------------------------------------------------
def prepare(config, log: Callable = print) -> tuple:
    """-> (encoder, predictor (initialised), train arrays, held-out arrays); the arrays (host
    memory) only with data.cache_tokens, else None."""
    encoder, _ = load_frozen_encoder(config.encoder)
    predictor = build_predictor(config.predictor, encoder, config.seed)
    if not config.data.cache_tokens:
        return encoder, predictor, None, None
    t0 = time.time()
    episodes = read_episodes(config.data, log)
    n_val = config.data.val_episodes
    if len(episodes) <= n_val:
        raise UsageError(f'{len(episodes)} episodes: need more than data.val_episodes={n_val}')
    arrays = encode_episodes(encoder, episodes, config.predictor.action_dim)
    train_arrays = jax.tree.map(lambda x: x[:-n_val] if n_val else x, arrays)
    val_arrays = jax.tree.map(lambda x: x[-n_val:] if n_val else x, arrays)
    log(f'encoded {arrays["tokens"].shape[0]} episodes x {arrays["tokens"].shape[1]} frames -> tokens '
        f'{arrays["tokens"].shape[2:]} in {time.time() - t0:.1f}s ({n_val} held out)')
    return encoder, predictor, train_arrays, val_arrays


def window_stream(config, encoder, shard_index: int, shard_count: int):
    """data.cache_tokens off: the grain window pipeline over the built trajectories dataset."""
    from vjepa_jax.data import trajectories
    d = config.data
    if not d.tfds:
        raise UsageError('data.cache_tokens=False streams a built trajectories dataset: set data.tfds and '
                         'data.data_dir')
    return iter(trajectories.trajectory_windows(
        d.data_dir, name=d.tfds, split=d.split, num_frames=d.num_frames, frame_step=d.frame_step,
        batch_size=d.global_batch_size // shard_count, seed=config.seed, image_size=encoder.input_shape[-1],
        shard_index=shard_index, shard_count=shard_count, num_workers=d.num_workers))


def _state_layout(trainer: ACTrainer, params: dict, mesh) -> tuple:
    def init():
        return {'step': jnp.zeros([], jnp.int32), 'params': params,
                'opt_state': trainer.optimizer.init({'predictor': params})}
    shapes = jax.eval_shape(init)
    return init, checkpoint.abstract_like(shapes, sharding.state_shardings(shapes, mesh))


def train(config, workdir: str, log: Callable = print, prepared: tuple | None = None) -> tuple:
    """Train in workdir, resuming from its newest checkpoint that verifies -> (predictor module,
    final metrics). The workdir is locked for the run (workdir_lock); the config is checked first
    (validate: a bad value is one UsageError line)."""
    validate.world_model_config(config, workdir)
    if jax.process_index() != 0:
        return _train(config, workdir, log, prepared)
    with workdir_lock.hold(workdir, log):
        return _train(config, workdir, log, prepared)


def _train(config, workdir: str, log: Callable, prepared: tuple | None) -> tuple:
    encoder, predictor, train_arrays, val_arrays = prepared or prepare(config, log)
    try:
        mesh = sharding.make_mesh(config.mesh)
        sharding.check_batch(config.data.global_batch_size, mesh)
    except ValueError as e:
        raise UsageError(str(e)) from None
    readout = fit_readout(config, workdir, train_arrays, log) if validate.wants_readout(config) else None
    trainer = make_trainer(config, encoder, predictor, readout)
    total = config.train.num_steps or trainer.schedules.total_steps
    params = nnx.to_pure_dict(nnx.state(predictor))
    init, abstract = _state_layout(trainer, params, mesh)
    state_sh = jax.tree.map(lambda x: x.sharding, abstract)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    cached = bool(config.data.cache_tokens)
    per_call = int(config.train.get('steps_per_call', 1)) if cached else 1  # streamed windows: one per call
    if cached:
        step_fn = jax.jit(trainer.cached_step, donate_argnums=(0,), in_shardings=(state_sh, replicated, replicated),
                          out_shardings=(state_sh, replicated))
        held_out = jax.jit(trainer.held_out)
        multi_fn = jax.jit(functools.partial(trainer.cached_steps, count=per_call), donate_argnums=(0,),
                           in_shardings=(state_sh, replicated, replicated), out_shardings=(state_sh, replicated))
        fixed = jax.device_put((train_arrays, val_arrays, jax.random.key_data(jax.random.key(config.seed))),
                               replicated)
        data = StepPosition()
    else:
        batch_sh = sharding.batch_sharding(mesh, 5)
        shard_index, shard_count = sharding.host_batch_slice(batch_sh, (config.data.global_batch_size,))
        data = window_stream(config, encoder, shard_index, shard_count)
        enc_state = jax.device_put(nnx.to_pure_dict(nnx.state(encoder)), replicated)
        step_fn = jax.jit(trainer.frames_step, donate_argnums=(0,), in_shardings=(state_sh, replicated, None),
                          out_shardings=(state_sh, replicated))
    c = config.checkpoint
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'), every_steps=c.every_steps,
                                   keep_last=c.keep_last, async_save=c.async_save)
    check_meta = lambda meta, step: validate.checkpoint_layout(meta, config, step, 'predictor',  # noqa: E731
                                                               PREDICTOR_LAYOUT)
    start, state, restored = ckpt.restore_newest(abstract, None if cached else data, check_meta,
                                                 log=log)  # damaged: skipped
    if start is None:
        start, state = 0, jax.jit(init, out_shardings=state_sh)()
    else:
        if not cached and not restored['data_restored']:
            raise UsageError(f'checkpoint {start} in {ckpt.directory} has no data position for this process: '
                             f'resume with the same number of processes')
        log(f'resumed from step {start} ({ckpt.directory})')

    def next_batch():
        b = next(data)
        shape = lambda x: (config.data.global_batch_size, *np.shape(x)[1:])  # noqa: E731
        return {k: jax.make_array_from_process_local_data(sharding.batch_sharding(mesh, np.ndim(b[k])),
                                                          np.asarray(b[k]), shape(b[k]))
                for k in ('frames', 'actions', 'states')}
    writer = metrics.MetricsWriter(workdir, start, config.train.tensorboard, active=jax.process_index() == 0)
    meta = {'seed': config.seed, 'mesh': dict(mesh.shape), 'config': json.loads(config.to_json_best_effort())}
    progress = metrics.Progress(total, config.data.global_batch_size, first_step=start)
    done, out = start, {}
    if start >= total and os.path.exists(writer.path):  # finished before: report its last logged metrics
        out = {k: v for k, v in (metrics.read_jsonl(writer.path) or [{}])[-1].items() if k != 'step'}
    log(f'AC predictor {sum(x.size for x in jax.tree.leaves(params)) / 1e6:.2f}M params; windows of '
        f'{config.data.num_frames} frames every {config.data.frame_step} steps, batch {trainer.batch}, '
        f'{total} steps, {"cached tokens" if cached else "encoder in the step"}')

    def saves(done):  # a checkpoint after `done` steps
        return ckpt.should_save(done) or done == total

    def reports(step):  # after this step: metrics, and maybe a checkpoint
        return step % config.train.log_every == 0 or saves(step + 1)

    def plot():  # the loss curve, once this run has done a step
        keys = ('teacher_forcing', 'rollout') + (('val_rollout',) if cached else ())
        return [lambda: metrics.plot_loss_curve(writer.path, os.path.join(writer.dir, 'loss.png'), keys=keys)] \
            if done > start and jax.process_index() == 0 else []

    def steps_from(step):  # a pure function of the step, so a resumed run repeats the same calls
        fits = step + per_call <= total and not any(reports(s) for s in range(step, step + per_call - 1))
        return per_call if per_call > 1 and fits else 1
    try:
        with jax.set_mesh(mesh):
            while done < total:
                count = steps_from(done)
                if cached:
                    state, out = (multi_fn if count > 1 else step_fn)(state, fixed[0],
                                                                     jax.random.wrap_key_data(fixed[2]))
                    data.step = done + count
                else:
                    state, out = step_fn(state, enc_state, next_batch())
                done += count
                last = done - 1  # the last step run
                if reports(last):
                    if cached:
                        out.update(held_out(state['params'], fixed[1], jax.random.wrap_key_data(fixed[2]), last))
                    out = jax.device_get(out)
                    if not np.isfinite(out['loss']):
                        raise FloatingPointError(f'AC loss is {out["loss"]} at step {last}: lower optim.lr')
                    writer.write(last, out)
                    if jax.process_index() == 0:
                        progress.update(done, out)
                if saves(done):
                    writer.sync()  # a remote workdir's metrics reach this checkpoint
                    ckpt.save(done, state, data, {**meta, 'step': done}, force=True)
        ckpt.close()  # the last asynchronous save lands here (its errors too)
    except BaseException as e:  # Ctrl-C too: the save in flight lands and the metrics close, as before
        failure = checkpoint.stopped(e, ckpt, done, [ckpt.close, *plot(), writer.close], log)
        if failure is e:
            raise
        raise failure from None
    for close in (*plot(), writer.close):
        close()
    nnx.update(predictor, jax.device_get(state['params']))
    return predictor, {k: float(v) for k, v in jax.device_get(out).items()}


def load_predictor(config, workdir: str, encoder, step: int | None = None) -> ACPredictor:
    """The trained predictor of an AC workdir's newest (or given) checkpoint."""
    predictor = build_predictor(config.predictor, encoder, config.seed)
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'))
    step = ckpt.latest_step() if step is None else step
    if step is None:
        raise UsageError(f'{workdir}/checkpoints holds no AC checkpoint: train one first')
    one = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), jax.devices()[:1])
    _, abstract = _state_layout(make_trainer(config, encoder, predictor), nnx.to_pure_dict(nnx.state(predictor)), one)
    state, _ = ckpt.restore(step, abstract)
    ckpt.close()
    nnx.update(predictor, state['params'])
    return predictor


def main(argv):
    from absl import flags
    config, workdir = flags.FLAGS.config, flags.FLAGS.workdir
    if not workdir:
        raise UsageError('pass --workdir=DIR')
    _, out = train(config, workdir, log=lambda *a: print(*a, flush=True))
    print(json.dumps(out))
    return 0


if __name__ == '__main__':
    from vjepa_jax import config as config_lib
    config_lib.define_config_flag('configs/world_model/two_rooms.py')
    config_lib.define_workdir_flag()
    config_lib.run(main)
