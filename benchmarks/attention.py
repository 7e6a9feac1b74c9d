"""One attention call, every implementation that runs on this backend, timed alternately.

Prints, per implementation, the median and minimum of forward and forward + backward times and
the ratio to 'xla' (jax.nn.dot_product_attention's XLA path) measured in the same run, plus the
largest difference from 'xla' in outputs and gradients.

  python benchmarks/attention.py                          # 1568 tokens (16 x 224 x 224), batch 2, 3 heads of 64
  python benchmarks/attention.py --tokens=128 --batch=4
  python benchmarks/attention.py --impls=xla,chunked:256,chunked:512
  python benchmarks/attention.py --impls=xla,flash --torch   # and torch's scaled_dot_product_attention
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from vjepa_jax.models import vit  # noqa: E402


def default_impls() -> list:
    impls = ['xla', 'flash', 'chunked:256']
    if jax.default_backend() == 'gpu':
        impls.append('cudnn')
    if jax.default_backend() == 'tpu':
        impls.append('pallas')
    return impls


def make_fns(impl: str):
    """'xla', 'cudnn', 'pallas' or 'chunked:N' (the XLA path over query blocks of N) -> jitted
    (forward, gradient of a scalar loss)."""
    name, _, chunk = impl.partition(':')
    kw = dict(query_chunk=int(chunk or 0), impl='xla' if name == 'chunked' else name)
    fwd = jax.jit(lambda q, k, v: vit.attention(q, k, v, **kw))
    grad = jax.jit(jax.grad(lambda q, k, v: jnp.sum(vit.attention(q, k, v, **kw).astype(jnp.float32) ** 2),
                            argnums=(0, 1, 2)))
    return fwd, grad


def torch_fns(q, k, v):
    """torch.nn.functional.scaled_dot_product_attention on the same inputs: (forward, gradient)."""
    import torch
    torch.set_num_threads(os.cpu_count())
    tq, tk, tv = (torch.from_numpy(np.asarray(x, np.float32)).permute(0, 2, 1, 3).contiguous().requires_grad_()
                  for x in (q, k, v))

    def fwd(*_):
        with torch.no_grad():
            return torch.nn.functional.scaled_dot_product_attention(tq, tk, tv)

    def grad(*_):
        (torch.nn.functional.scaled_dot_product_attention(tq, tk, tv) ** 2).sum().backward()
        return tq.grad
    return fwd, grad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--tokens', type=int, default=1568)
    ap.add_argument('--batch', type=int, default=2)
    ap.add_argument('--heads', type=int, default=3)
    ap.add_argument('--head_dim', type=int, default=64)
    ap.add_argument('--dtype', default='float32')
    ap.add_argument('--rounds', type=int, default=7)
    ap.add_argument('--impls', default='', help='comma list (default: all that run here), e.g. xla,chunked:256')
    ap.add_argument('--torch', action='store_true', help="also time torch's fused attention (float32, CPU)")
    args = ap.parse_args()
    impls = args.impls.split(',') if args.impls else default_impls()
    shape = (args.batch, args.tokens, args.heads, args.head_dim)
    q, k, v = (jax.random.normal(key, shape, args.dtype) for key in jax.random.split(jax.random.key(0), 3))
    fns = {i: make_fns(i) for i in impls}
    extra = {'torch': torch_fns(q, k, v)} if args.torch else {}
    ref_out = ref_grad = None
    print(f'{jax.default_backend()}: q k v {shape} {args.dtype}, {args.rounds} alternating rounds', flush=True)
    for i, (fwd, grad) in fns.items():  # compile and check against the first (xla)
        out, g = jax.block_until_ready((fwd(q, k, v), grad(q, k, v)))
        if ref_out is None:
            ref_out, ref_grad = out, g
        err = max(float(jnp.max(jnp.abs(a.astype(jnp.float32) - b.astype(jnp.float32))))
                  for a, b in zip((out, *g), (ref_out, *ref_grad)))
        print(f'  {i}: compiled; max |difference| from {impls[0]} (output and gradients) {err:.2e}', flush=True)
    times = {i: {'fwd': [], 'fwd+bwd': []} for i in [*impls, *extra]}
    for _ in range(args.rounds):
        for i, (fwd, grad) in {**fns, **extra}.items():
            for kind, fn in (('fwd', fwd), ('fwd+bwd', grad)):
                t0 = time.perf_counter()
                jax.block_until_ready(fn(q, k, v))
                times[i][kind].append(time.perf_counter() - t0)
    base = {kind: np.median(times[impls[0]][kind]) for kind in ('fwd', 'fwd+bwd')}
    print('| implementation | fwd median / min ms | ratio | fwd+bwd median / min ms | ratio |')
    print('|---|---|---|---|---|')
    for i in times:
        cells = []
        for kind in ('fwd', 'fwd+bwd'):
            t = np.asarray(times[i][kind]) * 1e3
            cells.append(f'{np.median(t):.1f} / {t.min():.1f} | {np.median(t) / 1e3 / base[kind]:.2f}')
        print(f'| {i} | ' + ' | '.join(cells) + ' |', flush=True)


if __name__ == '__main__':
    main()
