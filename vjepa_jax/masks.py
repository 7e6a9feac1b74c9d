"""Multi-block 3-D masking (V-JEPA), NumPy only, with FIXED-size index arrays.

A generator places `num_blocks` blocks (spatial scale, aspect ratio, temporal scale) on the
(T', H', W') token grid; their union is the prediction target, the complement the context.
Like the original, the block size is drawn once per batch and generator and the positions
per block and sample; a sample with an empty context is drawn again.

Fixed sizes. The original cuts every sample's index lists to the batch minimum by dropping
the highest indices, so the context it keeps sits in early frames and top rows, and the
sizes change every step (a recompile under jit). Here each generator has fixed counts
(num_context, num_target), by default the `keep_quantile` quantiles (5 %) of the
per-sample context and target counts, measured once by Monte Carlo from the spec alone.
A sample whose counts fall below them is redrawn (like the original's empty-context
redraw); larger sets are cut to the fixed size by a uniform random subset, so no frame,
row or column is favoured. At batch 24 the original's batch minimum sits near the 4 %
quantile, so the kept counts are close to the original's (docs/masking.md: table of means).

Shapes: a call returns, per generator, (context (B, Kc) int32, target (B, Kt) int32),
each row sorted, disjoint, indices into the flattened (t, h, w) grid.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One mask generator. Defaults: the short-range generator of V-JEPA."""
    num_blocks: int = 8
    spatial_scale: tuple = (0.15, 0.15)
    temporal_scale: tuple = (1.0, 1.0)
    aspect_ratio: tuple = (0.75, 1.5)
    max_temporal_keep: float = 1.0  # context only in this leading fraction of time steps
    num_context: int | None = None  # fixed counts; None = the keep_quantile quantile
    num_target: int | None = None


SHORT_RANGE = BlockSpec(num_blocks=8, spatial_scale=(0.15, 0.15))
LONG_RANGE = BlockSpec(num_blocks=2, spatial_scale=(0.7, 0.7))


def _grid3(grid: Sequence[int]) -> tuple:
    return tuple(grid) if len(grid) == 3 else (1, *grid)


def sample_block_size(rng: np.random.Generator, spec: BlockSpec, grid: Sequence[int]) -> tuple:
    """(t, h, w) of one block, the original's rule: t = max(1, int(T * ts)),
    keep = int(H * W * ss), h = round(sqrt(keep * ar)), w = round(sqrt(keep / ar)), clipped."""
    tt, hh, ww = _grid3(grid)
    u_t, u_s, u_a = rng.random(3)
    t = max(1, int(tt * (spec.temporal_scale[0] + u_t * (spec.temporal_scale[1] - spec.temporal_scale[0]))))
    keep = int(hh * ww * (spec.spatial_scale[0] + u_s * (spec.spatial_scale[1] - spec.spatial_scale[0])))
    ar = spec.aspect_ratio[0] + u_a * (spec.aspect_ratio[1] - spec.aspect_ratio[0])
    h = min(int(round(np.sqrt(keep * ar))), hh)
    w = min(int(round(np.sqrt(keep / ar))), ww)
    return t, h, w


def sample_context_mask(rng: np.random.Generator, spec: BlockSpec, grid: Sequence[int], size: tuple) -> np.ndarray:
    """Boolean (T'*H'*W',) context mask: True outside the union of spec.num_blocks blocks."""
    tt, hh, ww = _grid3(grid)
    t, h, w = size
    keep = np.ones((tt, hh, ww), bool)
    for _ in range(spec.num_blocks):
        top, left, start = rng.integers(0, hh - h + 1), rng.integers(0, ww - w + 1), rng.integers(0, tt - t + 1)
        keep[start:start + t, top:top + h, left:left + w] = False
    max_t = max(1, int(tt * spec.max_temporal_keep))
    keep[max_t:] = False
    return keep.reshape(-1)


@functools.lru_cache(maxsize=64)
def fixed_counts(spec: BlockSpec, grid: tuple, keep_quantile: float = 0.05, draws: int = 4096) -> tuple:
    """(num_context, num_target) for a generator: given values, else the keep_quantile
    quantiles of the per-sample counts over `draws` samples (fixed seed: a pure function of
    the spec and grid)."""
    rng = np.random.default_rng(0)
    ctx = []
    while len(ctx) < draws:
        n = int(sample_context_mask(rng, spec, grid, sample_block_size(rng, spec, grid)).sum())
        if n > 0:
            ctx.append(n)
    ctx = np.asarray(ctx)
    total = int(np.prod(grid))
    kc = spec.num_context or max(1, int(np.floor(np.quantile(ctx, keep_quantile))))
    kt = spec.num_target or max(1, int(np.floor(np.quantile(total - ctx, keep_quantile))))
    if kc + kt > total:
        raise ValueError(f'mask spec {spec}: num_context {kc} + num_target {kt} exceed the {total} tokens')
    return kc, kt


class MultiBlockMaskSampler:
    """Deterministic from (seed, step, stream); cheap enough for data workers.

    grid: token grid (T', H', W') or (H', W'); specs: one BlockSpec per generator.
    `stream` separates independent sample streams (e.g. one per host)."""

    def __init__(self, grid: Sequence[int], specs: Sequence[BlockSpec] = (SHORT_RANGE, LONG_RANGE), *,
                 seed: int = 0, keep_quantile: float = 0.05, max_tries: int = 100):
        self.grid, self.specs, self.seed = tuple(grid), tuple(specs), seed
        self.max_tries = max_tries
        self.counts = [fixed_counts(s, self.grid, keep_quantile) for s in self.specs]
        self.padded_samples = 0  # samples that exhausted max_tries and were padded (counted)

    def _sample_one(self, rng, spec, size, kc, kt):
        total = int(np.prod(self.grid))
        for _ in range(self.max_tries):
            keep = sample_context_mask(rng, spec, self.grid, size)
            n_ctx = int(keep.sum())
            if n_ctx >= kc and total - n_ctx >= kt:
                break
        else:  # never within bounds: pad by repeating indices, and count it
            self.padded_samples += 1
        ctx, tgt = np.flatnonzero(keep), np.flatnonzero(~keep)
        ctx = rng.choice(ctx, kc, replace=len(ctx) < kc) if len(ctx) else rng.choice(tgt, kc)
        tgt = rng.choice(tgt, kt, replace=len(tgt) < kt)
        return np.sort(ctx), np.sort(tgt)

    def __call__(self, step: int, batch_size: int, stream: int = 0) -> list:
        """-> [(context (B, Kc) int32, target (B, Kt) int32) for each generator]."""
        rng = np.random.default_rng([self.seed, step, stream])
        out = []
        for spec, (kc, kt) in zip(self.specs, self.counts):
            size = sample_block_size(rng, spec, self.grid)
            pairs = [self._sample_one(rng, spec, size, kc, kt) for _ in range(batch_size)]
            out.append((np.stack([p[0] for p in pairs]).astype(np.int32),
                        np.stack([p[1] for p in pairs]).astype(np.int32)))
        return out


# ----------------------------------------------------------------------------------------
# From a config's `mask` block (generators by name, each with its `index`)
# ----------------------------------------------------------------------------------------
def generator_names(mask_cfg) -> list:
    """The generators' names in index order: the original's list order, which is also the
    predictor's mask token each one uses (a ConfigDict iterates its keys sorted by name)."""
    from vjepa_jax.config import UsageError
    names = sorted(mask_cfg.generators, key=lambda n: mask_cfg.generators[n].index)
    indices = [mask_cfg.generators[n].index for n in names]
    if indices != list(range(len(names))):
        raise UsageError(f'mask.generators: the indices {dict(zip(names, indices))} must be 0..{len(names) - 1}, '
                         f'each once (the original\'s order: short-range 0, long-range 1)')
    return names


def mask_specs(mask_cfg) -> list:
    """BlockSpecs in generator index order."""
    return [BlockSpec(num_blocks=g.num_blocks, spatial_scale=tuple(g.spatial_scale),
                      temporal_scale=tuple(g.temporal_scale), aspect_ratio=tuple(g.aspect_ratio),
                      max_temporal_keep=g.max_temporal_keep, num_context=g.num_context or None,
                      num_target=g.num_target or None)
            for g in (mask_cfg.generators[n] for n in generator_names(mask_cfg))]


def make_sampler(config, grid) -> MultiBlockMaskSampler:
    """The config's sampler (mask block, seed) for a (T', H', W') token grid."""
    return MultiBlockMaskSampler(grid, mask_specs(config.mask), seed=config.seed,
                                 keep_quantile=config.mask.keep_quantile)
