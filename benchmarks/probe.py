"""Frozen-evaluation speed: the same probe grid trained with the encoder run every epoch
(decode + encode + probe step), from the ArrayRecord feature cache (one encoder pass, then
probe steps only) and from that cache loaded into memory (features.in_memory: one jitted scan
per epoch), in one run, so each gain is a ratio. Also the cost of one head against a grid of
H heads trained together.

  python benchmarks/probe.py [--epochs 10 --heads 1 4 16 --per_class 12]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--epochs', type=int, default=10)
    ap.add_argument('--per_class', type=int, default=12)
    ap.add_argument('--heads', type=int, nargs='+', default=[1, 4, 16])
    args = ap.parse_args()
    from vjepa_jax.config import load_config
    from vjepa_jax.data import build, synthetic
    from vjepa_jax.evals import probe_eval
    tmp = tempfile.mkdtemp()
    lists = synthetic.write_motion_dataset(os.path.join(tmp, 'videos'), {'train': args.per_class, 'validation': 4})
    build.build('video_csv', os.path.join(tmp, 'data'), csv=lists['train'], val_csv=lists['validation'])

    def run(cache: bool, heads: int, in_memory: bool = False) -> float:
        lrs = [1e-2 / (2 ** i) for i in range(heads)]
        cfg = load_config(os.path.join(ROOT, 'configs/eval/tiny.py'), {
            'data.data_dir': os.path.join(tmp, 'data'), 'encoder.random_init': True,
            'encoder.config': os.path.join(ROOT, 'configs/pretrain/tiny.py'), 'features.cache': cache,
            'features.in_memory': in_memory,
            'optim.epochs': args.epochs, 'optim.lr': lrs, 'optim.weight_decay': [0.01], 'log_every': 10 ** 6})
        workdir = os.path.join(tmp, f'run_{cache}_{heads}_{in_memory}')
        t0 = time.time()
        probe_eval.run(cfg, workdir, log=lambda *_: None)
        shutil.rmtree(workdir)
        return time.time() - t0

    print(f'{4 * args.per_class} training videos, {args.epochs} epochs, tiny encoder (8 x 64 px, 2 segments), CPU')
    base = run(False, args.heads[0])
    print(f'encoder every epoch, {args.heads[0]} head(s): {base:.1f} s')
    for heads in args.heads:
        t = run(True, heads)
        print(f'feature cache, {heads} head(s): {t:.1f} s ({base / t:.2f}x faster than the encoder every epoch)')
        m = run(True, heads, in_memory=True)
        print(f'feature cache in memory, {heads} head(s): {m:.1f} s ({t / m:.2f}x faster than from disk)')
    shutil.rmtree(tmp)


if __name__ == '__main__':
    main()
