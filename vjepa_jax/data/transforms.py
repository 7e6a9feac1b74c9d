"""Clip transforms in NumPy, the original's rules (app/vjepa/transforms.py).

Training: one random resized crop for all frames (area scale (0.3, 1.0), log-uniform aspect
(0.75, 1.35), 10 tries then a centre crop), bilinear resize (align_corners=False, no
antialias), horizontal flip with p 0.5, ImageNet normalisation on 0-255 values.
Evaluation: resize the short side to the crop size, then 3 crops along the long side.
Shapes: clips (T, H, W, 3) uint8 in, (T, S, S, 3) float32 out (train_transform(uint8=True):
uint8 out, unnormalised, for batches that the train step normalises on the device).
"""
from __future__ import annotations

import math

import numpy as np

try:  # OpenCV's bilinear resize equals the NumPy one below (to 1e-4 on 0-255) and is ~10x faster
    import cv2
except ImportError:  # pragma: no cover
    cv2 = None

MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255.0
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255.0


def crop_box(rng: np.random.Generator, height: int, width: int, scale=(0.3, 1.0), ratio=(0.75, 1.35),
             tries: int = 10) -> tuple:
    """(top, left, h, w) of an Inception-style random crop, as the original draws it."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(tries):
        target = rng.uniform(*scale) * area
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of torch's bilinear resize with align_corners=False."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = (src - i0).astype(np.float32)
    m = np.zeros((n_out, n_in), np.float32)
    np.add.at(m, (np.arange(n_out), i0), 1.0 - lam)
    np.add.at(m, (np.arange(n_out), i1), lam)
    return m


def resize(clip: np.ndarray, height: int, width: int, dtype=np.float32) -> np.ndarray:
    """(T, H, W, C) -> (T, height, width, C) dtype, bilinear (align_corners=False, no antialias).
    dtype uint8: OpenCV's fixed-point resize of the uint8 frames, within one level of float32's."""
    if cv2 is not None:
        out = np.empty((clip.shape[0], height, width, clip.shape[3]), dtype)
        for frame, dst in zip(clip, out):
            dst[...] = cv2.resize(np.ascontiguousarray(frame.astype(dtype, copy=False)), (width, height),
                                  interpolation=cv2.INTER_LINEAR).reshape(dst.shape)
        return out
    out = resize_reference(clip, height, width)
    return out if out.dtype == dtype else np.clip(np.rint(out), 0, 255).astype(dtype)


def resize_reference(clip: np.ndarray, height: int, width: int) -> np.ndarray:
    """NumPy bilinear resize with torch's weights (the reference for `resize`)."""
    rows = _bilinear_matrix(clip.shape[1], height)
    cols = _bilinear_matrix(clip.shape[2], width)
    out = np.einsum('oh,thwc->towc', rows, clip.astype(np.float32), optimize=True)
    return np.einsum('pw,towc->topc', cols, out, optimize=True)


def normalize(clip: np.ndarray) -> np.ndarray:
    """(..., W, 3) -> (clip - MEAN) / STD, float32: one multiply-add over rows of W * 3 values
    (a broadcast over the last axis of 3 runs ~20x slower in NumPy)."""
    width = clip.shape[-2]
    rows = clip.reshape(-1, width * 3)  # a copy only for a strided (flipped) view
    out = np.multiply(rows, np.tile(1.0 / STD, width), dtype=np.float32)
    out += np.tile(-MEAN / STD, width)
    return out.reshape(clip.shape)


def train_transform(clip: np.ndarray, rng: np.random.Generator, size: int = 224, scale=(0.3, 1.0),
                    ratio=(0.75, 1.35), flip: bool = True, uint8: bool = False) -> np.ndarray:
    """uint8: return the resized clip as uint8 0-255, unnormalised (the same crop and flip; the
    resize rounds to whole levels, within 1 of the float resize), for normalize_on_device."""
    top, left, h, w = crop_box(rng, clip.shape[1], clip.shape[2], scale, ratio)
    crop = clip[:, top:top + h, left:left + w]
    out = resize(crop, size, size, np.uint8 if uint8 else np.float32)
    if flip and rng.uniform() < 0.5:
        out = hflip(out)
    return out if uint8 else normalize(out)


def normalize_on_device(clips):
    """Clips of any dtype -> float32 (clip - MEAN) / STD as a jax array; float32 clips are taken as
    already normalised (the host pipeline's default) and returned as they are. For uint8 batches."""
    import jax.numpy as jnp
    if clips.dtype != jnp.uint8:
        return clips
    return clips.astype(jnp.float32) * jnp.asarray(1.0 / STD) + jnp.asarray(-MEAN / STD)


def hflip(clip: np.ndarray) -> np.ndarray:
    """(T, H, W, C) mirrored left-right, contiguous (OpenCV per frame: a NumPy copy of the
    reversed view is ~10x slower)."""
    if cv2 is None or clip.shape[-1] > 4:
        return np.ascontiguousarray(clip[:, :, ::-1])
    out = np.empty_like(clip)
    for frame, dst in zip(clip, out):
        dst[...] = cv2.flip(frame, 1).reshape(dst.shape)
    return out


def eval_views(clip: np.ndarray, size: int = 224, num_views: int = 3) -> np.ndarray:
    """(T, H, W, 3) -> (num_views, T, size, size, 3): short side to `size`, then crops spread
    along the long side (left/centre/right, or top/centre/bottom)."""
    t, h, w, _ = clip.shape
    if h <= w:
        nh, nw = size, int(math.floor(w * size / h))
    else:
        nh, nw = int(math.floor(h * size / w)), size
    scaled = resize(clip, nh, nw)
    views = []
    for v in range(num_views):
        frac = 0.5 if num_views == 1 else v / (num_views - 1)
        top = int(round((nh - size) * frac)) if h > w else (nh - size) // 2
        left = int(round((nw - size) * frac)) if w >= h else (nw - size) // 2
        views.append(scaled[:, top:top + size, left:left + size])
    return normalize(np.stack(views))
