"""Train-step speed: the tiny config on CPU; on an accelerator also ViT-L/16 16x224 clips/s
per device and MFU.

FLOPs are counted as the original computes: the context encoder once per mask on its
context tokens, the target encoder once on the full clip (forward only), the predictor
once per mask; training = 3x forward for the online networks (forward + backward).

  python benchmarks/train_step.py                 # tiny on whatever backend is present
  python benchmarks/train_step.py --config=vitl16 --batch=24 --steps=20
  python benchmarks/train_step.py --config=configs/demo.py      # the demo's step alone, no data loading
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

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--config', default='tiny')
    ap.add_argument('--batch', type=int, default=0, help='per-device batch (default: the config global batch)')
    ap.add_argument('--steps', type=int, default=20)
    ap.add_argument('--set', nargs='*', default=[], help='model overrides k=v, e.g. remat_policy=full')
    args = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = args.config if args.config.endswith('.py') else os.path.join(root, 'configs', 'pretrain', f'{args.config}.py')
    cfg = load_config(path)  # a name under configs/pretrain/ or any config file (configs/demo.py)
    for kv in args.set:
        k, v = kv.split('=')
        cfg.model[k] = type(cfg.model[k])(v) if not isinstance(cfg.model[k], bool) else v == 'true'
    batch = args.batch or cfg.data.global_batch_size
    trainer = train_state.make_trainer(cfg)
    sampler = masks.make_sampler(cfg, trainer.grid)
    state = jax.jit(lambda: trainer.init(0, cfg.model, factory.num_mask_tokens(cfg)))()
    m = cfg.model
    clips = jax.random.normal(jax.random.key(0), (batch, m.num_frames, m.img_size, m.img_size, 3),
                              jnp.float32)
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
    times = []
    for _ in range(args.steps):
        t = time.time()
        state, out = compiled(state, clips, mask_list)
        jax.block_until_ready(out)
        times.append(time.time() - t)
    dt = float(np.median(times))
    flops = step_flops(cfg, sampler.counts) * batch
    dev = jax.devices()[0]
    print(f'device: {dev.device_kind} ({jax.device_count()} x {dev.platform}), config {args.config}, '
          f'batch {batch}, dtype {m.dtype}, remat {m.remat_policy}, scan {m.scan_layers}')
    print(f'compile {compile_s:.1f}s | step {dt * 1000:.1f} ms (median of {args.steps}) | '
          f'{batch / dt:.1f} clips/s | loss {float(out["loss"]):.4f}')
    print(f'FLOPs/step (original counting) {flops / 1e9:.2f} GFLOP; XLA cost analysis {xla_flops / 1e9:.2f} GFLOP '
          f'(ratio {flops / xla_flops:.3f})')
    peak = peak_flops(dev.device_kind)
    if peak:
        print(f'MFU {flops / dt / peak * 100:.1f}% of {peak / 1e12:.0f} TFLOP/s bf16 peak')


if __name__ == '__main__':
    main()
