"""The AC predictor's train step on cached tokens: one step per compiled call against
`steps_per_call` steps in one call (lax.scan, train.steps_per_call), alternating blocks in one
process; medians and minima per step, and the ratio. The simulated worlds' setting by default
(configs/world_model/two_rooms.py: 0.16M-parameter predictor, batch 32 windows of 4 frames,
the read-out term), on random tokens of the same shapes.

  python benchmarks/ac_step.py                      # 1 against 10 steps per call
  python benchmarks/ac_step.py --per_call=5 --rounds=8
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from vjepa_jax.config import load_config  # noqa: E402
from vjepa_jax.world_model import trainer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--config', default='configs/world_model/two_rooms.py')
    ap.add_argument('--per_call', type=int, default=10, help='steps per call against one')
    ap.add_argument('--episodes', type=int, default=280, help='cached episodes (65 frames each)')
    ap.add_argument('--rounds', type=int, default=6, help='alternating blocks')
    ap.add_argument('--steps', type=int, default=20, help='steps per block')
    args = ap.parse_args()
    c = load_config(args.config)
    c.encoder.workdir = ''  # a random encoder of the recipe's shape: only the token grid matters here
    encoder, _ = trainer.load_frozen_encoder(c.encoder)
    predictor = trainer.build_predictor(c.predictor, encoder, c.seed)
    tokens = encoder.grid[-2] * encoder.grid[-1]
    rng = np.random.default_rng(0)
    a = c.predictor.action_dim
    arrays = {'tokens': jnp.asarray(rng.normal(size=(args.episodes, 65, tokens, encoder.embed_dim)), jnp.float32),
              'action_sums': jnp.asarray(np.cumsum(rng.uniform(-.3, .3, (args.episodes, 65, a)), 1), jnp.float32),
              'states': jnp.asarray(rng.uniform(0, 1, (args.episodes, 65, a)), jnp.float32)}
    readout = rng.normal(size=(tokens * encoder.embed_dim, a)).astype(np.float32) if c.loss.readout_weight else None
    t = trainer.make_trainer(c, encoder, predictor, readout)
    params = nnx.to_pure_dict(nnx.state(predictor))
    state = {'step': jnp.zeros([], jnp.int32), 'params': params, 'opt_state': t.optimizer.init({'predictor': params})}
    key = jax.random.key(0)
    k = args.per_call
    fns = {'1 per call': (jax.jit(t.cached_step), 1),
           f'{k} per call': (jax.jit(lambda s, x, y: t.cached_steps(s, x, y, k)), k)}
    for fn, _ in fns.values():  # compile, and one warm call each
        jax.block_until_ready(fn(state, arrays, key))
    times = {name: [] for name in fns}
    print(f'{args.config}: predictor {sum(x.size for x in jax.tree.leaves(params)) / 1e6:.2f}M, batch '
          f'{t.batch} windows of {t.num_frames} frames, {jax.device_count()} {jax.default_backend()} device(s)')
    for r in range(args.rounds):
        for name, (fn, n) in fns.items():
            t0 = time.perf_counter()
            s = state
            for _ in range(max(1, args.steps // n)):
                s, out = fn(s, arrays, key)
            jax.block_until_ready(out)
            times[name].append((time.perf_counter() - t0) / (max(1, args.steps // n) * n))
        print(f'round {r + 1}/{args.rounds}: ' + ', '.join(f'{n} {v[-1] * 1e3:.1f} ms' for n, v in times.items()),
              flush=True)
    base = np.median(times['1 per call'])
    for name, v in times.items():
        print(f'{name:>12}: median {np.median(v) * 1e3:.1f} ms per step, min {min(v) * 1e3:.1f} ms, '
              f'{np.median(v) / base:.2f}x one per call')


if __name__ == '__main__':
    main()
