"""Generated clips of moving, bouncing shapes: NumPy, deterministic from (seed, index).

Used by the entry point until real datasets are configured, and by tests. Each clip has
1-3 coloured discs or squares on a dark textured background, moving with constant velocity
and bouncing elastically off the frame edges, so future frames are predictable from past
ones (something for the predictor to learn).
"""
from __future__ import annotations

import numpy as np

from vjepa_jax.data.transforms import normalize


def render_clip(rng: np.random.Generator, num_frames: int, size: int) -> np.ndarray:
    """One clip (T, H, W, 3) uint8."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    background = (rng.uniform(10, 60, 3) + rng.normal(0, 4, (size, size, 1))).clip(0, 255)
    frames = np.broadcast_to(background, (num_frames, size, size, 3)).copy()
    for _ in range(rng.integers(1, 4)):
        radius = rng.uniform(0.08, 0.2) * size
        pos = rng.uniform(radius, size - radius, 2)
        vel = rng.uniform(-0.06, 0.06, 2) * size
        color = rng.uniform(120, 255, 3)
        square = rng.random() < 0.5
        for t in range(num_frames):
            if square:
                inside = (np.abs(yy - pos[0]) <= radius) & (np.abs(xx - pos[1]) <= radius)
            else:
                inside = (yy - pos[0]) ** 2 + (xx - pos[1]) ** 2 <= radius ** 2
            frames[t][inside] = color
            pos = pos + vel
            for axis in range(2):  # elastic bounce off the edges
                if pos[axis] < radius or pos[axis] > size - radius:
                    vel[axis] = -vel[axis]
                    pos[axis] = np.clip(pos[axis], radius, size - radius)
    return frames.astype(np.uint8)


def synthetic_batch(seed: int, step: int, batch_size: int, num_frames: int, size: int, stream: int = 0) -> np.ndarray:
    """Normalised clips (B, T, H, W, 3) float32 for a training step."""
    rng = np.random.default_rng([seed, step, stream, 7])
    return normalize(np.stack([render_clip(rng, num_frames, size) for _ in range(batch_size)]))


MOTION_CLASSES = ('right', 'left', 'down', 'up')
_DIRECTIONS = np.array([[0, 1], [0, -1], [1, 0], [-1, 0]], np.float32)  # (dy, dx) per class


def motion_clip(rng: np.random.Generator, label: int, num_frames: int, size: int) -> np.ndarray:
    """(T, H, W, 3) uint8: a square of random colour moving in direction MOTION_CLASSES[label]
    (wrapping at the edges) over a textured background, plus a distractor disc at rest."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    background = (rng.uniform(10, 60, 3) + rng.normal(0, 4, (size, size, 1))).clip(0, 255)
    frames = np.broadcast_to(background, (num_frames, size, size, 3)).copy()
    half = rng.uniform(0.1, 0.16) * size
    pos = rng.uniform(0, size, 2)
    speed = rng.uniform(0.04, 0.07) * size
    color = rng.uniform(120, 255, 3)
    disc_at, disc_r, disc_color = rng.uniform(0, size, 2), rng.uniform(0.06, 0.1) * size, rng.uniform(80, 200, 3)
    for t in range(num_frames):
        disc = (yy - disc_at[0]) ** 2 + (xx - disc_at[1]) ** 2 <= disc_r ** 2
        frames[t][disc] = disc_color
        dy = np.abs((yy - pos[0] + size / 2) % size - size / 2)  # distances on the torus
        dx = np.abs((xx - pos[1] + size / 2) % size - size / 2)
        frames[t][(dy <= half) & (dx <= half)] = color
        pos = (pos + speed * _DIRECTIONS[label]) % size
    return frames.astype(np.uint8)


def write_motion_dataset(folder: str, per_class: dict, num_frames: int = 32, size: int = 64, seed: int = 0) -> dict:
    """Labelled videos (class = motion direction) as mp4 files and 'path label' lists:
    per_class {'train': n, 'validation': m} -> {split: list path}."""
    import os

    from vjepa_jax.data.decode import encode_video
    os.makedirs(folder, exist_ok=True)
    lists = {}
    for s, (split, count) in enumerate(sorted(per_class.items())):
        rows = []
        for label in range(len(MOTION_CLASSES)):
            for i in range(count):
                rng = np.random.default_rng([seed, s, label, i])
                name = f'{split}_{MOTION_CLASSES[label]}_{i:03d}.mp4'
                encode_video(motion_clip(rng, label, num_frames, size), os.path.join(folder, name), fps=8)
                rows.append(f'{name} {label}')
        lists[split] = os.path.join(folder, f'{split}.csv')
        with open(lists[split], 'w') as f:
            f.write('\n'.join(rows) + '\n')
    return lists
