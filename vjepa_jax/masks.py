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


def sample_context_masks(rng: np.random.Generator, spec: BlockSpec, grid: Sequence[int], size,
                         count: int) -> np.ndarray:
    """Boolean (count, T'*H'*W') context masks: True outside the union of spec.num_blocks blocks
    placed uniformly at random per row. size: one block size (t, h, w) for all rows or (count, 3)."""
    tt, hh, ww = _grid3(grid)
    t, h, w = (np.asarray(size).reshape(-1, 3)[:, i:i + 1] for i in range(3))  # (1 or count, 1) each
    shape = (count, spec.num_blocks)
    inside = []  # per axis (count, blocks, extent): the blocks' cover along it
    for extent, length in ((tt, t), (hh, h), (ww, w)):
        first = rng.integers(0, extent - length + 1, shape)
        pos = np.arange(extent)
        inside.append((pos >= first[..., None]) & (pos < (first + length)[..., None]))
    in_t, in_h, in_w = inside
    in_hw = (in_h[..., :, None] & in_w[..., None, :]).reshape(count, spec.num_blocks, hh * ww)
    # covered[n, t, hw]: some block covers step t and cell hw (a sum over blocks, as one matmul)
    covered = np.matmul(in_t.transpose(0, 2, 1).astype(np.float32), in_hw.astype(np.float32)) > 0
    keep = ~covered.reshape(count, tt, hh, ww)
    keep[:, max(1, int(tt * spec.max_temporal_keep)):] = False
    return keep.reshape(count, -1)


def sample_context_mask(rng: np.random.Generator, spec: BlockSpec, grid: Sequence[int], size: tuple) -> np.ndarray:
    """Boolean (T'*H'*W',) context mask: one row of sample_context_masks."""
    return sample_context_masks(rng, spec, grid, size, 1)[0]


@functools.lru_cache(maxsize=64)
def fixed_counts(spec: BlockSpec, grid: tuple, keep_quantile: float = 0.05, draws: int = 4096) -> tuple:
    """(num_context, num_target) for a generator: given values, else the keep_quantile
    quantiles of the per-sample counts over `draws` samples, each with its own block size, empty
    contexts drawn again (fixed seed: a pure function of the spec and grid)."""
    rng = np.random.default_rng(0)
    ctx = np.zeros(0, int)
    while len(ctx) < draws:
        sizes = [sample_block_size(rng, spec, grid) for _ in range(1024)]
        n = sample_context_masks(rng, spec, grid, sizes, len(sizes)).sum(1)
        ctx = np.concatenate([ctx, n[n > 0]])
    ctx = ctx[:draws]
    total = int(np.prod(grid))
    kc = spec.num_context or max(1, int(np.floor(np.quantile(ctx, keep_quantile))))
    kt = spec.num_target or max(1, int(np.floor(np.quantile(total - ctx, keep_quantile))))
    if kc + kt > total:
        raise ValueError(f'mask spec {spec}: num_context {kc} + num_target {kt} exceed the {total} tokens')
    return kc, kt


KEY_LIMIT = 2.0  # random selection keys are float32 in [0, 1); non-members weigh KEY_LIMIT


def _uniform_subsets(keys: np.ndarray, member: np.ndarray, k: int) -> np.ndarray:
    """Per row, k of the member positions chosen uniformly without replacement (those with the k
    smallest keys, below KEY_LIMIT), in increasing order: (B, k). Rows need k members."""
    weights = np.where(member, keys, KEY_LIMIT)
    chosen = weights <= np.partition(weights, k - 1, axis=1)[:, k - 1:k]
    if chosen.sum() != chosen.shape[0] * k:  # a tie at the k-th key (float32: p ~ N / 2^24 per row)
        return np.sort(np.argpartition(weights, k - 1, axis=1)[:, :k], axis=1)
    rows, n = chosen.shape
    return np.flatnonzero(chosen).reshape(rows, k) - (np.arange(rows) * n)[:, None]


class MultiBlockMaskSampler:
    """Deterministic from (seed, step, stream); cheap enough for data workers (NumPy over the
    whole batch: no per-sample loop unless a sample needs padding).

    grid: token grid (T', H', W') or (H', W'); specs: one BlockSpec per generator.
    `stream` separates independent sample streams (e.g. one per host)."""

    def __init__(self, grid: Sequence[int], specs: Sequence[BlockSpec] = (SHORT_RANGE, LONG_RANGE), *,
                 seed: int = 0, keep_quantile: float = 0.05, max_tries: int = 100):
        self.grid, self.specs, self.seed = tuple(grid), tuple(specs), seed
        self.max_tries = max_tries
        self.counts = [fixed_counts(s, self.grid, keep_quantile) for s in self.specs]
        self.padded_samples = 0  # samples that exhausted max_tries and were padded (counted)

    def _sample(self, rng, spec, size, kc, kt, batch_size):
        total = int(np.prod(self.grid))
        keep = sample_context_masks(rng, spec, self.grid, size, batch_size)
        for _ in range(self.max_tries - 1):  # rows below the fixed counts are drawn again
            n_ctx = keep.sum(1)
            short = (n_ctx < kc) | (total - n_ctx < kt)
            if not short.any():
                break
            keep[short] = sample_context_masks(rng, spec, self.grid, size, int(short.sum()))
        n_ctx = keep.sum(1)
        short = (n_ctx < kc) | (total - n_ctx < kt)
        keys = rng.random(keep.shape, dtype=np.float32)
        ctx = _uniform_subsets(keys, keep | short[:, None], kc)  # short rows are replaced below
        tgt = _uniform_subsets(keys, ~keep | short[:, None], kt)
        for row in np.flatnonzero(short):  # never within bounds: pad by repeating indices, and count it
            self.padded_samples += 1
            c, t = np.flatnonzero(keep[row]), np.flatnonzero(~keep[row])
            ctx[row] = np.sort(rng.choice(c, kc) if len(c) else rng.choice(t, kc))
            tgt[row] = np.sort(rng.choice(t, kt, replace=len(t) < kt))
        return ctx.astype(np.int32), tgt.astype(np.int32)

    def __call__(self, step: int, batch_size: int, stream: int = 0) -> list:
        """-> [(context (B, Kc) int32, target (B, Kt) int32) for each generator]."""
        rng = np.random.default_rng([self.seed, step, stream])
        return [self._sample(rng, spec, sample_block_size(rng, spec, self.grid), kc, kt, batch_size)
                for spec, (kc, kt) in zip(self.specs, self.counts)]


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
