"""Train-step speed: the tiny config on CPU; on an accelerator also ViT-L/16 16x224 clips/s
per device and MFU.

FLOPs are counted as the original computes: the context encoder once per mask on its
context tokens, the target encoder once on the full clip (forward only), the predictor
once per mask; training = 3x forward for the online networks (forward + backward).

  python benchmarks/train_step.py                 # tiny on whatever backend is present
  python benchmarks/train_step.py --config=vitl16 --batch=24 --steps=20
  python benchmarks/train_step.py --config=configs/demo.py      # the demo's step alone, no data loading
  python benchmarks/train_step.py --alternate=attention_impl=xla,flash   # two attention paths, alternated
  python benchmarks/train_step.py --set img_size=224 num_frames=16 patch_size=16 variant=tiny --batch=2 \
      --steps=5 --alternate=attention_impl=xla,flash                     # 1568 tokens
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')  # as the entry points (vjepa_jax/main.py)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from vjepa_jax import masks, train_state  # noqa: E402
from vjepa_jax.models import factory  # noqa: E402
from vjepa_jax.config import load_config  # noqa: E402
from vjepa_jax.flops import peak_flops, step_flops  # noqa: E402

def build(cfg, batch: int) -> dict:
    """-> {cfg, batch, compiled (the step), state, clips, masks, compile_s, xla_flops, counts}."""
    trainer = train_state.make_trainer(cfg)
    sampler = masks.make_sampler(cfg, trainer.grid)
    state = jax.jit(lambda: trainer.init(0, cfg.model, factory.num_mask_tokens(cfg)))()
    m = cfg.model
    clips = jax.random.normal(jax.random.key(0), (batch, m.num_frames, m.img_size, m.img_size, 3), jnp.float32)
    mask_list = [tuple(jnp.asarray(a) for a in p) for p in sampler(0, batch)]
    step_fn = jax.jit(trainer.train_step, donate_argnums=(0,))
    t0 = time.time()
    compiled = step_fn.lower(state, clips, mask_list).compile()
    xla_flops = train_state.compiled_stats(compiled, 0.0)['flops'] or float('nan')
    compile_s = time.time() - t0
    mem = getattr(compiled, 'memory_analysis', lambda: None)()
    print(f'compiled in {compile_s:.1f}s' + (f'; temp {mem.temp_size_in_bytes / 2**30:.2f} GiB, args '
          f'{mem.argument_size_in_bytes / 2**30:.2f} GiB' if mem is not None else ''), flush=True)  # before any step
    state, out = compiled(state, clips, mask_list)
    jax.block_until_ready(out)
    return dict(cfg=cfg, batch=batch, compiled=compiled, state=state, clips=clips, masks=mask_list,
                compile_s=compile_s, xla_flops=xla_flops, counts=sampler.counts)


def override(cfg, kv: str):
    k, v = kv.split('=')
    cfg.model[k] = type(cfg.model[k])(v) if not isinstance(cfg.model[k], bool) else v == 'true'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--config', default='tiny')
    ap.add_argument('--batch', type=int, default=0, help='per-device batch (default: the config global batch)')
    ap.add_argument('--steps', type=int, default=20)
    ap.add_argument('--set', nargs='*', default=[], help='model overrides k=v, e.g. remat_policy=full')
    ap.add_argument('--alternate', default='', help='KEY=V1,V2,...: one step per model.KEY value, timed in '
                    'alternation (e.g. attention_impl=xla,flash); ratios to the first value')
    args = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = args.config if args.config.endswith('.py') else os.path.join(root, 'configs', 'pretrain', f'{args.config}.py')
    key, _, values = args.alternate.partition('=')
    runs = {}
    for value in (values.split(',') if values else ['']):
        cfg = load_config(path)  # a name under configs/pretrain/ or any config file (configs/demo.py)
        for kv in args.set + ([f'{key}={value}'] if value else []):
            override(cfg, kv)
        runs[value] = build(cfg, args.batch or cfg.data.global_batch_size)
    times = {v: [] for v in runs}
    for _ in range(args.steps):
        for value, r in runs.items():
            t = time.time()
            r['state'], out = r['compiled'](r['state'], r['clips'], r['masks'])
            jax.block_until_ready(out)
            times[value].append(time.time() - t)
    dev = jax.devices()[0]
    base = None
    for value, r in runs.items():
        cfg, batch, xla_flops = r['cfg'], r['batch'], r['xla_flops']
        m, dt = cfg.model, float(np.median(times[value]))
        base = base or dt
        flops = step_flops(cfg, r['counts']) * batch
        label = f'{key}={value}: ' if value else ''
        print(f'{label}device: {dev.device_kind} ({jax.device_count()} x {dev.platform}), config {args.config}, '
              f'batch {batch}, dtype {m.dtype}, remat {m.remat_policy}, scan {m.scan_layers}, '
              f'attention {m.attention_impl}')
        print(f'{label}compile {r["compile_s"]:.1f}s | step {dt * 1000:.1f} ms (median of {args.steps}; min '
              f'{min(times[value]) * 1000:.1f}) | ratio to the first {dt / base:.2f} | {batch / dt:.1f} clips/s')
        print(f'{label}FLOPs/step (original counting) {flops / 1e9:.2f} GFLOP; XLA cost analysis '
              f'{xla_flops / 1e9:.2f} GFLOP (ratio {flops / xla_flops:.3f})')
        peak = peak_flops(dev.device_kind)
        if peak:
            print(f'{label}MFU {flops / dt / peak * 100:.1f}% of {peak / 1e12:.0f} TFLOP/s bf16 peak')


if __name__ == '__main__':
    main()
