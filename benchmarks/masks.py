"""Mask sampling speed: ours (masks.MultiBlockMaskSampler) against the original's collator
(facebookresearch/jepa src/masks/multiblock3d.py) on the same grid, batch and generators,
alternating blocks in one process; medians per batch (both generators).

  python benchmarks/masks.py                               # ours alone, 16 x 224 (8 x 14 x 14 tokens), batch 24
  python benchmarks/masks.py --original=/path/to/jepa      # and the original, ratio
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from vjepa_jax import masks  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--original', default='', help="a checkout of facebookresearch/jepa (its 'src' package)")
    ap.add_argument('--batch', type=int, default=24)
    ap.add_argument('--grid', default='8,14,14', help="token grid T',H',W'")
    ap.add_argument('--rounds', type=int, default=10)
    ap.add_argument('--calls', type=int, default=10, help='batches per block')
    args = ap.parse_args()
    grid = tuple(int(x) for x in args.grid.split(','))
    specs = (masks.SHORT_RANGE, masks.LONG_RANGE)
    sampler = masks.MultiBlockMaskSampler(grid, specs, seed=0)
    step = iter(range(10 ** 9))
    sides = {'ours': lambda: sampler(next(step), args.batch)}
    if args.original:
        sys.path.insert(0, args.original)
        import torch
        from src.masks.multiblock3d import MaskCollator
        torch.set_num_threads(1)  # as in a data worker
        cfgs = [dict(spatial_scale=s.spatial_scale, temporal_scale=s.temporal_scale, aspect_ratio=s.aspect_ratio,
                     num_blocks=s.num_blocks, max_temporal_keep=s.max_temporal_keep) for s in specs]
        collator = MaskCollator(cfgs, crop_size=(grid[1] * 16,) * 2, num_frames=grid[0] * 2, patch_size=16,
                                tubelet_size=2)
        sides['original'] = lambda: [g(args.batch) for g in collator.mask_generators]  # its masks, not the clip collate
    for fn in sides.values():
        fn()  # warm-up
    times = {k: [] for k in sides}
    for _ in range(args.rounds):
        for name, fn in sides.items():
            for _ in range(args.calls):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
    base = float(np.median(times['original' if args.original else 'ours']))
    print(f'grid {grid}, batch {args.batch}, generators short + long range, {args.rounds} rounds x {args.calls} '
          f'batches alternating; ratio = median / median of {"original" if args.original else "ours"}')
    for name, t in times.items():
        print(f'  {name:9s} median {np.median(t) * 1000:6.2f} ms  min {np.min(t) * 1000:6.2f} ms per batch  '
              f'ratio {np.median(t) / base:.2f}')
    if args.original:
        print(f'  ours is {base / np.median(times["ours"]):.1f}x faster')


if __name__ == '__main__':
    main()
