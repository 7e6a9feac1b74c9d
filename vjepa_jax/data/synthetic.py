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
