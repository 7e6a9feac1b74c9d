"""Accelerator figures: the pretraining step of a released config on one device, per attention
and remat choice: the largest batch that fits, clips/s and MFU at it, and (with --original)
the original PyTorch step on the same device at the same batch, measured in the same run.
Prints each figure as it is measured (a short device lease keeps whatever finished).

  python benchmarks/accelerator.py                                   # ViT-L/16, 16 x 224, bf16
  python benchmarks/accelerator.py --models=vitl16,vith16 --impls=cudnn,xla --remat=none,full,dots
  python benchmarks/accelerator.py --original=/path/to/jepa          # and the original, same batch
  python benchmarks/accelerator.py --models=tiny --impls=xla --remat=none --batch=2 --steps=2   # CPU check

Largest batch: the compiled step's memory (XLA memory analysis: arguments + outputs + temporaries
- aliased) at two batches gives bytes per clip; the largest batch under 92 % of the device's
memory limit is compiled and run (on OOM, 10 % smaller). Without a memory limit (CPU), --batch.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402


def config(model: str, impl: str, remat: str, dtype: str):
    from vjepa_jax.config import load_config
    cfg = load_config(os.path.join(ROOT, 'configs', 'pretrain', f'{model}.py'))
    cfg.model.update(attention_impl=impl, remat_policy=remat, dtype=dtype)
    return cfg


def compile_at(cfg, batch: int):
    """-> (compiled step, bytes it needs on the device, inputs)."""
    import jax
    import jax.numpy as jnp
    from vs_original import sample_inputs
    from vjepa_jax import train_state
    from vjepa_jax.models import factory
    trainer = train_state.make_trainer(cfg)
    state = jax.eval_shape(lambda: trainer.init(0, cfg.model, factory.num_mask_tokens(cfg)))
    inputs = sample_inputs(cfg, batch, 2)
    clips, mask_list = inputs[0]
    compiled = jax.jit(trainer.train_step, donate_argnums=(0,)).lower(
        state, jax.ShapeDtypeStruct(clips.shape, jnp.float32),
        [tuple(jax.ShapeDtypeStruct(a.shape, jnp.int32) for a in p) for p in mask_list]).compile()
    mem = compiled.memory_analysis()
    need = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
            - mem.alias_size_in_bytes) if mem is not None else 0
    return compiled, need, inputs


def mask_counts(cfg) -> list:
    """[(context, target) tokens per mask generator] of the config's sampler."""
    from vjepa_jax import masks
    m = cfg.model
    return masks.make_sampler(cfg, (m.num_frames // m.tubelet_size, m.img_size // m.patch_size,
                                    m.img_size // m.patch_size)).counts


def largest_batch(cfg, limit: int, probe: int, cap: int) -> int:
    """Bytes at `probe` and 2 x `probe` clips -> the largest batch under 92 % of `limit`, <= cap."""
    t = time.time()
    a, b = compile_at(cfg, probe)[1], compile_at(cfg, 2 * probe)[1]
    per_clip = max((b - a) / probe, 1)
    fit = int((0.92 * limit - (a - per_clip * probe)) // per_clip)
    print(f'    memory: {a / 2**30:.1f} GiB at batch {probe}, {per_clip / 2**30:.2f} GiB per clip -> fits '
          f'{fit} (probe compiles {time.time() - t:.0f}s)', flush=True)
    return max(1, min(fit, cap))


def time_ours(cfg, batch: int, steps: int):
    """-> (step seconds (median), batch actually run)."""
    from vs_original import ours_stepper
    while True:
        try:
            compiled, _, inputs = compile_at(cfg, batch)
            run, _, _ = ours_stepper(cfg, inputs, compiled)
            run()
            times = []
            for _ in range(steps):
                t = time.perf_counter()
                run()
                times.append(time.perf_counter() - t)
            return float(np.median(times)), batch
        except Exception as e:  # an out-of-memory of the estimate: 10 % fewer clips
            if 'RESOURCE_EXHAUSTED' not in str(e) and 'out of memory' not in str(e).lower() or batch == 1:
                raise
            print(f'    batch {batch}: out of memory, trying {int(batch * 0.9)}', flush=True)
            batch = max(1, int(batch * 0.9))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--models', default='vitl16', help='configs/pretrain names, comma-separated')
    ap.add_argument('--impls', default='', help="attention_impl values (default: cudnn,xla on GPU, else xla)")
    ap.add_argument('--remat', default='none,full', help='remat_policy values')
    ap.add_argument('--dtype', default='bfloat16')
    ap.add_argument('--batch', type=int, default=0, help='fixed batch per device (default: the largest that fits)')
    ap.add_argument('--max_batch', type=int, default=128)
    ap.add_argument('--steps', type=int, default=8)
    ap.add_argument('--memory_gib', type=float, default=0, help="the device's memory for the batch search "
                    '(default: what the device reports)')
    ap.add_argument('--original', default='', help="a checkout of facebookresearch/jepa (its 'src' package)")
    args = ap.parse_args()
    import jax
    from vjepa_jax.flops import peak_flops, step_flops
    dev = jax.devices()[0]
    limit = int(args.memory_gib * 2**30) or (dev.memory_stats() or {}).get('bytes_limit', 0)
    peak = peak_flops(dev.device_kind)
    impls = args.impls.split(',') if args.impls else (['cudnn', 'xla'] if dev.platform == 'gpu' else ['xla'])
    print(f'device {dev.device_kind} ({dev.platform}), memory limit {limit / 2**30:.1f} GiB, bf16 peak '
          f'{(peak or 0) / 1e12:.0f} TFLOP/s', flush=True)
    for model in args.models.split(','):
        timed_batch = None
        for impl in impls:
            for remat in args.remat.split(','):
                cfg = config(model, impl, remat, args.dtype)
                print(f'{model} attention {impl} remat {remat} {args.dtype}:', flush=True)
                try:
                    batch = args.batch or (largest_batch(cfg, limit, 4, args.max_batch) if limit else 2)
                    dt, batch = time_ours(cfg, batch, args.steps)
                except Exception as e:  # one choice failing (e.g. cuDNN on a dtype) is a figure too
                    print(f'    failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}', flush=True)
                    continue
                timed_batch = timed_batch or batch
                flops = step_flops(cfg, mask_counts(cfg)) * batch
                mfu = f', MFU {flops / dt / peak * 100:.1f} %' if peak else ''
                print(f'    batch {batch}: step {dt * 1000:.0f} ms, {batch / dt:.1f} clips/s{mfu}', flush=True)
        if args.original and timed_batch:
            from vs_original import original_stepper, sample_inputs
            cfg = config(model, impls[0], 'none', args.dtype)
            try:
                run, _, _ = original_stepper(args.original, cfg, sample_inputs(cfg, timed_batch, 2),
                                             'cuda' if dev.platform == 'gpu' else 'cpu')
                run()
                times = []
                for _ in range(args.steps):
                    t = time.perf_counter()
                    run()
                    times.append(time.perf_counter() - t)
            except Exception as e:  # e.g. out of memory at our batch
                print(f'{model} original at batch {timed_batch}: failed: {type(e).__name__}: '
                      f'{str(e).splitlines()[0][:200]}', flush=True)
                continue
            dt = float(np.median(times))
            print(f'{model} original (torch, SDPA, {args.dtype} autocast) batch {timed_batch}: step {dt * 1000:.0f} ms, '
                  f'{timed_batch / dt:.1f} clips/s', flush=True)


if __name__ == '__main__':
    main()
