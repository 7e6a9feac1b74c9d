"""Train V-JEPA 2-AC's action-conditioned predictor on trajectories; the video encoder stays frozen.

    python -m vjepa_jax.world_model.trainer --config=configs/world_model/two_rooms.py --workdir=DIR

The encoder (config.encoder): a pretraining workdir (`workdir`, its EMA target encoder, the model
read from the checkpoint's own config), or a random init of `encoder.model` when no workdir is
given. The predictor: models/ac_predictor.py on the encoder's token grid; objective.py's losses
(teacher forcing + `loss.auto_steps`-step rollout L1).

Data (config.data): episodes of frames (L, H, W, 3), actions (L-1, A), states (L, S) from a
folder of .npz episodes (world_model/collect.py) or a built `trajectories` TFDS dataset. Every
frame is encoded ONCE by the frozen encoder (the encoder is frozen and V-JEPA 2-AC's crop is
fixed, so a cached token is what the step would compute); each step then cuts its windows
inside the jitted step: `num_frames` frames every `frame_step` steps, actions summed over each
stride, episode and start drawn from (seed, step). So a resumed run draws exactly the batches
it would have drawn (bit-exact resume), and nothing but the arrays crosses to the device.
The last `data.val_episodes` episodes are held out: `val_rollout` is their rollout loss.

Sharded like pretraining: `config.mesh` (data, fsdp, tensor), batch split over data x fsdp,
parameters by name (sharding.py). Checkpoints: orbax, WORKDIR/checkpoints (state + meta);
metrics.jsonl, TensorBoard, loss.png, a progress line.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from vjepa_jax import checkpoint, metrics, optim, sharding
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


def build_predictor(pred_cfg, encoder, seed: int) -> ACPredictor:
    """The AC predictor on the encoder's per-frame token grid (H', W') and width."""
    grid = encoder.grid[-2:]
    return ACPredictor(grid=grid, embed_dim=encoder.embed_dim, predictor_embed_dim=pred_cfg.embed_dim,
                       depth=pred_cfg.depth, num_heads=pred_cfg.num_heads, mlp_ratio=pred_cfg.mlp_ratio,
                       action_dim=pred_cfg.action_dim, rope_form=pred_cfg.rope_form,
                       remat_policy=pred_cfg.remat_policy, dtype=None if pred_cfg.dtype == 'float32'
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
        from vjepa_jax.data import trajectories
        return trajectories.read_episodes(data_cfg.tfds, data_cfg.data_dir, data_cfg.split, log=log)
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
    predictor_def: Any
    optimizer: optax.GradientTransformation
    schedules: optim.Schedules
    auto_steps: int
    loss_exp: float
    batch: int
    num_frames: int
    frame_step: int

    def losses(self, params, windows):
        predictor = nnx.merge(self.predictor_def, params)
        return objective.ac_losses(predictor, windows['tokens'], windows['actions'], windows['states'],
                                   self.auto_steps, self.loss_exp)

    def train_step(self, state, arrays, val_arrays, seed_key):
        """Pure: (state, train token arrays, held-out arrays, key) -> (state, metrics)."""
        step = state['step']
        key = jax.random.fold_in(seed_key, step)
        windows = cut_windows(arrays, key, self.batch, self.num_frames, self.frame_step)
        windows = jax.tree.map(lambda x: sharding.constrain(x, ('batch',) + (None,) * (x.ndim - 1)), windows)

        def loss_fn(p):
            out = self.losses(p, windows)
            return out['loss'], out
        grads, out = jax.grad(loss_fn, has_aux=True)(state['params'])
        updates, opt_state = self.optimizer.update({'predictor': grads}, state['opt_state'],
                                                   {'predictor': state['params']})
        params = optax.apply_updates(state['params'], updates['predictor'])
        val = self.losses(params, cut_windows(val_arrays, jax.random.fold_in(key, 1), self.batch, self.num_frames,
                                              self.frame_step))
        out.update(lr=self.schedules.lr(step), grad_norm=optax.tree.norm(grads), val_rollout=val['rollout'],
                   val_teacher_forcing=val['teacher_forcing'])
        return {'step': step + 1, 'params': params, 'opt_state': opt_state}, out


def make_trainer(config, predictor) -> ACTrainer:
    schedules = optim.make_schedules(config.optim)
    base = optim.make_optimizer(config.optim, schedules)
    return ACTrainer(predictor_def=nnx.graphdef(predictor), optimizer=base, schedules=schedules,
                     auto_steps=config.loss.auto_steps, loss_exp=config.loss.loss_exp,
                     batch=config.data.global_batch_size, num_frames=config.data.num_frames,
                     frame_step=config.data.frame_step)


class StepPosition:
    """The data position is the step itself (windows are drawn from (seed, step)); this is what
    the checkpoint's data item holds, for the grain checkpoint handler."""

    def __init__(self, step: int = 0):
        self.step = step

    def get_state(self) -> bytes:
        return json.dumps({'step': self.step}).encode()

    def set_state(self, state: bytes) -> None:
        self.step = json.loads(state)['step']


# -- the loop --------------------------------------------------------------------------------
def prepare(config, log: Callable = print) -> tuple:
    """-> (encoder, predictor (initialised), train arrays, held-out arrays) in host memory."""
    encoder, _ = load_frozen_encoder(config.encoder)
    predictor = build_predictor(config.predictor, encoder, config.seed)
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


def train(config, workdir: str, log: Callable = print, prepared: tuple | None = None) -> tuple:
    """Train in workdir, resuming from its newest checkpoint -> (predictor module, final metrics)."""
    encoder, predictor, train_arrays, val_arrays = prepared or prepare(config, log)
    try:
        mesh = sharding.make_mesh(config.mesh)
        sharding.check_batch(config.data.global_batch_size, mesh)
    except ValueError as e:
        raise UsageError(str(e)) from None
    trainer = make_trainer(config, predictor)
    total = config.train.num_steps or trainer.schedules.total_steps
    params = nnx.to_pure_dict(nnx.state(predictor))

    def init():
        return {'step': jnp.zeros([], jnp.int32), 'params': params,
                'opt_state': trainer.optimizer.init({'predictor': params})}
    shapes = jax.eval_shape(init)
    abstract = checkpoint.abstract_like(shapes, sharding.state_shardings(shapes, mesh))
    state_sh = jax.tree.map(lambda x: x.sharding, abstract)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    c = config.checkpoint
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'), every_steps=c.every_steps,
                                   keep_last=c.keep_last, async_save=c.async_save)
    start = ckpt.latest_step()
    if start is None:
        start, state = 0, jax.jit(init, out_shardings=state_sh)()
    else:
        state, _ = ckpt.restore(start, abstract)
        log(f'resumed from step {start} ({ckpt.directory})')
    step_fn = jax.jit(trainer.train_step, donate_argnums=(0,),
                      in_shardings=(state_sh, replicated, replicated, replicated),
                      out_shardings=(state_sh, replicated))
    put = lambda tree: jax.device_put(tree, replicated)  # noqa: E731
    train_arrays, val_arrays = put(train_arrays), put(val_arrays)
    seed_key = put(jax.random.key_data(jax.random.key(config.seed)))
    writer = metrics.MetricsWriter(workdir, start, config.train.tensorboard)
    meta = {'seed': config.seed, 'mesh': dict(mesh.shape), 'config': json.loads(config.to_json_best_effort())}
    progress = metrics.Progress(total, config.data.global_batch_size, first_step=start)
    done, out = start, {}
    log(f'AC predictor {sum(x.size for x in jax.tree.leaves(params)) / 1e6:.2f}M params; windows of '
        f'{config.data.num_frames} frames every {config.data.frame_step} steps, batch {trainer.batch}, '
        f'{total} steps')
    try:
        with jax.set_mesh(mesh):
            for step in range(start, total):
                state, out = step_fn(state, train_arrays, val_arrays, jax.random.wrap_key_data(seed_key))
                done = step + 1
                save = ckpt.should_save(done) or done == total
                if step % config.train.log_every == 0 or save:
                    out = jax.device_get(out)
                    if not np.isfinite(out['loss']):
                        raise FloatingPointError(f'AC loss is {out["loss"]} at step {step}: lower optim.lr')
                    writer.write(step, out)
                    progress.update(done, out)
                if save:
                    ckpt.save(done, state, StepPosition(done), {**meta, 'step': done}, force=True)
    finally:
        ckpt.close()
        if done > start:
            metrics.plot_loss_curve(writer.path, os.path.join(writer.dir, 'loss.png'),
                                    keys=('teacher_forcing', 'rollout', 'val_rollout'))
        writer.close()
    nnx.update(predictor, jax.device_get(state['params']))
    return predictor, {k: float(v) for k, v in jax.device_get(out).items()}


def load_predictor(config, workdir: str, encoder, step: int | None = None) -> ACPredictor:
    """The trained predictor of an AC workdir's newest (or given) checkpoint."""
    predictor = build_predictor(config.predictor, encoder, config.seed)
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'))
    step = ckpt.latest_step() if step is None else step
    if step is None:
        raise UsageError(f'{workdir}/checkpoints holds no AC checkpoint: train one first')
    params = nnx.to_pure_dict(nnx.state(predictor))
    trainer = make_trainer(config, predictor)
    shapes = jax.eval_shape(lambda: {'step': jnp.zeros([], jnp.int32), 'params': params,
                                     'opt_state': trainer.optimizer.init({'predictor': params})})
    one = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), jax.devices()[:1])
    state, _ = ckpt.restore(step, checkpoint.abstract_like(shapes, sharding.state_shardings(shapes, one)))
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
