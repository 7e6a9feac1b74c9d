"""How far a few numbers of the simulator's own trajectories go on each fact of the physics
world: a ridge classifier (closed form, one-hot targets) fit on the train split, scored on
validation. A reference for the probes: a probe scoring at a cue's level reads no more than
that cue.

  python -m vjepa_jax.tools.fact_cues [--train=400 --validation=160 --seed=0]   # the demo's world

Cues per video (means over frames and objects; positions from the box centre):
  position      mean (y, x) and mean (|y|, |x|)                          4 numbers
  motion        mean velocity (y, x), median acceleration (y, x), mean |v|   5 numbers
"""
from __future__ import annotations

import argparse

import numpy as np

from vjepa_jax.data import physics

CUES = ('position', 'motion')


def cue_features(traj: dict, cfg: physics.WorldConfig) -> dict:
    """traj from physics.simulate -> {cue: (F,) float}."""
    pos, vel = traj['pos'] - cfg.size / 2, traj['vel']  # (T, K, 2)
    acc = np.diff(vel, axis=0)
    return {'position': np.concatenate([pos.mean((0, 1)), np.abs(pos).mean((0, 1))]),
            'motion': np.concatenate([vel.mean((0, 1)), np.median(acc, axis=(0, 1)),
                                      [np.linalg.norm(vel, axis=-1).mean()]])}


def split_table(cfg: physics.WorldConfig, seed: int, split_index: int, count: int) -> tuple:
    """-> ({cue: (count, F)}, {fact: (count,) class index}) of a world's split."""
    cues, facts = {c: [] for c in CUES}, {f: [] for f in physics.FACTS}
    for i in range(count):
        scene = physics.sample_scene(physics.video_rng(seed, split_index, i), cfg)
        traj = physics.simulate(scene, cfg)
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--train', type=int, default=400)
    ap.add_argument('--validation', type=int, default=160)
    ap.add_argument('--seed', type=int, default=0, help="the world's seed (demo.world.seed)")
    args = ap.parse_args()
    cfg = physics.WorldConfig()
    splits = sorted({'train': args.train, 'validation': args.validation}.items())  # write_world's order
    (xt, yt), (xv, yv) = (split_table(cfg, args.seed, s, n) for s, (_, n) in enumerate(splits))
    print('| fact | chance | ' + ' | '.join(CUES) + ' |')
    print('| --- | --- | ' + ' | '.join('---' for _ in CUES) + ' |')
    for fact, classes in physics.FACTS.items():
        row = [f'{ridge_accuracy(xt[c], yt[fact], xv[c], yv[fact], classes):.1f}' for c in CUES]
        print(f'| {fact} | {100 / classes:.1f} | ' + ' | '.join(row) + ' |')


if __name__ == '__main__':
    main()
