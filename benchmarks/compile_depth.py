"""Compile time of the train step against encoder depth, unrolled vs lax.scan over stacked
blocks (model.scan_layers). Prints seconds per depth and the ratio deepest / shallowest.

  python benchmarks/compile_depth.py --depths 2 4 8
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from vjepa_jax import masks, train_state  # noqa: E402
from vjepa_jax.config import load_config  # noqa: E402
from vjepa_jax.models import vit  # noqa: E402


def compile_seconds(depth: int, scan: bool) -> float:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cfg = load_config(os.path.join(root, 'configs', 'pretrain', 'tiny.py'))
    vit.VIT_VARIANTS['bench'] = dict(vit.VIT_VARIANTS['micro'], depth=depth)
    cfg.model.update(variant='bench', scan_layers=scan)
    trainer = train_state.make_trainer(cfg)
    sampler = masks.MultiBlockMaskSampler(trainer.grid, masks.mask_specs(cfg.mask), seed=0)
    state = jax.eval_shape(lambda: trainer.init(0, cfg.model, 2))
    m, b = cfg.model, cfg.data.global_batch_size
    clips = jax.ShapeDtypeStruct((b, m.num_frames, m.img_size, m.img_size, 3), jnp.float32)
    t = time.time()
    jax.jit(trainer.train_step).lower(state, clips, sampler(0, b)).compile()
    return time.time() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--depths', type=int, nargs='+', default=[2, 4, 8])
    args = ap.parse_args()
    for scan in (False, True):
        secs = [compile_seconds(d, scan) for d in args.depths]
        row = ', '.join(f'depth {d}: {s:.1f}s' for d, s in zip(args.depths, secs))
        print(f'{"scan    " if scan else "unrolled"} {row} | ratio {secs[-1] / secs[0]:.2f}')


if __name__ == '__main__':
    main()
