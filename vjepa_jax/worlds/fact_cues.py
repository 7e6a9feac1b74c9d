"""How far a few numbers of the simulator's own trajectories go on each fact of the physics
world: a ridge classifier (closed form, one-hot targets) fit on the train split, scored on
validation. A reference for the probes: a probe scoring at a cue's level reads no more than
that cue.

  python -m vjepa_jax.worlds.fact_cues [--train=400 --validation=160 --seed=0]   # the demo's world

Cues per video (means over frames and objects; positions from the box centre):
  position      mean (y, x) and mean (|y|, |x|)                          4 numbers
  motion        mean velocity (y, x), median acceleration (y, x), mean |v|   5 numbers

It also prints how much knowing gravity helps to predict the demo's targets (extrapolation_error):
the distance from where the objects are at the target frames to where constant-velocity and
ballistic (the true gravity) extrapolation from the last context frame put them.
"""
from __future__ import annotations

import numpy as np
from absl import flags

from vjepa_jax import config as config_lib
from vjepa_jax.worlds import physics

FLAGS = flags.FLAGS

CUES = ('position', 'motion')


def cue_features(traj: dict, cfg: physics.WorldConfig) -> dict:
    """traj from physics.simulate -> {cue: (F,) float}."""
    pos, vel = traj['pos'] - cfg.size / 2, traj['vel']  # (T, K, 2)
    acc = np.diff(vel, axis=0)
    return {'position': np.concatenate([pos.mean((0, 1)), np.abs(pos).mean((0, 1))]),
            'motion': np.concatenate([vel.mean((0, 1)), np.median(acc, axis=(0, 1)),
                                      [np.linalg.norm(vel, axis=-1).mean()]])}


def simulate_split(cfg: physics.WorldConfig, seed: int, split_index: int, count: int) -> list:
    """[(scene, traj)] of a world's split, as write_world draws them."""
    scenes = [physics.sample_scene(physics.video_rng(seed, split_index, i), cfg) for i in range(count)]
    return [(scene, physics.simulate(scene, cfg)) for scene in scenes]


def split_table(cfg: physics.WorldConfig, videos: list) -> tuple:
    """videos from simulate_split -> ({cue: (count, F)}, {fact: (count,) class index})."""
    cues, facts = {c: [] for c in CUES}, {f: [] for f in physics.FACTS}
    for scene, traj in videos:
        for c, v in cue_features(traj, cfg).items():
            cues[c].append(v)
        for f, v in physics.facts(scene, traj, cfg).items():
            if f in facts:
                facts[f].append(v)
    return {c: np.stack(v) for c, v in cues.items()}, {f: np.array(v) for f, v in facts.items()}


def ridge_accuracy(x_train, y_train, x_val, y_val, classes: int, alpha: float = 1e-2) -> float:
    """Top-1 % of a ridge classifier on standardised features (+ bias)."""
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-9
    a = np.c_[(x_train - mu) / sd, np.ones(len(x_train))]
    b = np.c_[(x_val - mu) / sd, np.ones(len(x_val))]
    w = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ np.eye(classes)[y_train])
    return 100.0 * float(np.mean(np.argmax(b @ w, 1) == y_val))


def extrapolation_error(cfg: physics.WorldConfig, videos: list, last_context: int, targets) -> dict:
    """Mean distance (px, over objects, target frames and every clip start of the videos from
    simulate_split) from the objects' true positions at the target frames (real frame offsets)
    to {'constant_velocity', 'ballistic'} extrapolation from frame last_context, and the mean
    'displacement' from there. Bounces and collisions are what neither extrapolation foresees."""
    misses = {'displacement': [], 'constant_velocity': [], 'ballistic': []}
    for scene, traj in videos:
        for start in range(cfg.num_frames - max(targets)):
            p0, v0 = traj['pos'][start + last_context], traj['vel'][start + last_context]
            for t in targets:
                dt, actual = t - last_context, traj['pos'][start + t]
                drift = p0 + v0 * dt
                for name, guess in (('displacement', p0), ('constant_velocity', drift),
                                    ('ballistic', drift + 0.5 * cfg.gravity * scene.accel * dt ** 2)):
                    misses[name].append(np.linalg.norm(actual - guess, axis=-1).mean())
    return {k: float(np.mean(v)) for k, v in misses.items()}


def main(argv):
    cfg = physics.WorldConfig()
    splits = sorted({'train': FLAGS.train, 'validation': FLAGS.validation}.items())  # write_world's order
    train, validation = (simulate_split(cfg, FLAGS.seed, s, n) for s, (_, n) in enumerate(splits))
    (xt, yt), (xv, yv) = split_table(cfg, train), split_table(cfg, validation)
    print('| fact | chance | ' + ' | '.join(CUES) + ' |')
    print('| --- | --- | ' + ' | '.join('---' for _ in CUES) + ' |')
    for fact, classes in physics.FACTS.items():
        row = [f'{ridge_accuracy(xt[c], yt[fact], xv[c], yv[fact], classes):.1f}' for c in CUES]
        print(f'| {fact} | {100 / classes:.1f} | ' + ' | '.join(row) + ' |')
    demo = _CONFIG.value  # its clip: num_frames at frame_step, the first half the context
    frames = np.arange(demo.model.num_frames) * demo.data.frame_step
    context, targets = frames[:len(frames) // 2], frames[len(frames) // 2:]
    err = extrapolation_error(cfg, train, int(context[-1]), targets.tolist())
    print(f"demo targets (real frames {targets[0]}-{targets[-1]} from context {context[0]}-{context[-1]}): "
          f"objects move {err['displacement']:.2f} px; "
          f"constant-velocity extrapolation misses by {err['constant_velocity']:.2f} px, "
          f"ballistic (true gravity) by {err['ballistic']:.2f} px")
    return 0


if __name__ == '__main__':
    _CONFIG = config_lib.define_config_flag('configs/demo.py', 'the demo config (its clip geometry)')
    flags.DEFINE_integer('train', 400, 'train videos')
    flags.DEFINE_integer('validation', 160, 'validation videos')
    flags.DEFINE_integer('seed', 0, "the world's seed (demo.world.seed)")
    config_lib.run(main)
