"""The pretraining step side by side with the original PyTorch code (facebookresearch/jepa).

Both sides build the same model: encoder ViT embed 192, depth 6, 3 heads (2.96M at patch 16),
predictor embed 96, depth 6 (0.71M), float32, sin-cos positions, the two multi-block mask
generators. Both get the same clips and the same masks (sampled by ours, handed to the
original as index tensors), so the context / target token counts match exactly. The
original's step is its app/vjepa/train.py step: target forward (no grad) + layer norm,
context encoder and predictor per mask, L1 loss, backward, grad clipping, AdamW, EMA.
Each side runs in its own process (no thread pool of one spins beside the other); blocks
of steps alternate and the medians and minima are compared.

  python benchmarks/vs_original.py --original=/path/to/jepa           # 128 and 1568 tokens
  python benchmarks/vs_original.py --original=/path/to/jepa --shapes=1568 --rounds=6
  python benchmarks/vs_original.py                                      # ours alone

--original is a user's checkout of facebookresearch/jepa (torch installed beside it); it
is read, never copied here.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')  # as the entry points (vjepa_jax/main.py)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

# name -> (img_size, num_frames, batch): tokens = (frames / 2) * (img_size / 16)^2
SHAPES = {'128': (64, 16, 4), '1568': (224, 16, 2)}
ENCODER = dict(embed_dim=192, depth=6, num_heads=3, mlp_ratio=4.0)
PRED_EMBED, PRED_DEPTH = 96, 6


def our_config(img_size: int, num_frames: int, attention_impl: str):
    from vjepa_jax.models import vit
    from vjepa_jax.recipes import base_config
    vit.VIT_VARIANTS.setdefault('bench_tiny6', ENCODER)  # the shared architecture, registered for this run
    c = base_config()
    c.model.update(variant='bench_tiny6', img_size=img_size, num_frames=num_frames, patch_size=16, tubelet_size=2,
                   pred_depth=PRED_DEPTH, pred_embed_dim=PRED_EMBED, dtype='float32', attention_impl=attention_impl)
    c.optim.update(ipe=100, epochs=10, warmup=1)
    return c


def sample_inputs(cfg, batch: int, count: int):
    """count (clips (B, T, H, W, 3) float32, [(ctx (B, Kc), tgt (B, Kt)) per generator] int32) pairs."""
    from vjepa_jax import masks
    m = cfg.model
    grid = (m.num_frames // m.tubelet_size, m.img_size // m.patch_size, m.img_size // m.patch_size)
    sampler = masks.make_sampler(cfg, grid)
    rng = np.random.default_rng(0)
    return [(rng.standard_normal((batch, m.num_frames, m.img_size, m.img_size, 3), dtype=np.float32),
             [tuple(np.asarray(a, np.int32) for a in pair) for pair in sampler(i, batch)]) for i in range(count)]


def ours_stepper(cfg, inputs, compiled=None):
    """-> (run one step, encoder params, predictor params). compiled: an AOT-compiled train step."""
    import jax
    import jax.numpy as jnp
    from vjepa_jax import train_state
    from vjepa_jax.models import factory
    trainer = train_state.make_trainer(cfg)
    state = jax.jit(lambda: trainer.init(0, cfg.model, factory.num_mask_tokens(cfg)))()
    n_enc = sum(x.size for x in jax.tree.leaves(state['params']['encoder']))
    n_pred = sum(x.size for x in jax.tree.leaves(state['params']['predictor']))
    dev_inputs = [(jnp.asarray(c), [tuple(jnp.asarray(a) for a in p) for p in m]) for c, m in inputs]
    step = compiled or jax.jit(trainer.train_step, donate_argnums=(0,)).lower(state, *dev_inputs[0]).compile()
    box = {'state': state, 'i': 0}

    def run():
        clips, mask_list = dev_inputs[box['i'] % len(dev_inputs)]
        box['i'] += 1
        box['state'], out = step(box['state'], clips, mask_list)
        jax.block_until_ready(out)
    return run, n_enc, n_pred


def original_stepper(path, cfg, inputs, device: str = 'cpu'):
    """The original's train step (app/vjepa/train.py), built from its own modules with the
    architecture of our config `cfg` (bfloat16 autocast when cfg.model.dtype is bfloat16)."""
    import copy
    from functools import partial
    import warnings
    import torch
    import torch.nn.functional as F
    warnings.filterwarnings('ignore', category=FutureWarning)  # its torch.backends.cuda.sdp_kernel context
    sys.path.insert(0, path)
    from src.masks.utils import apply_masks
    from src.models.predictor import VisionTransformerPredictor
    from src.models.utils.multimask import MultiMaskWrapper, PredictorMultiMaskWrapper
    from src.models.vision_transformer import VisionTransformer
    from vjepa_jax.models.factory import num_mask_tokens
    from vjepa_jax.models.vit import VIT_VARIANTS
    if device == 'cpu':
        torch.set_num_threads(int(os.environ.get('BENCH_THREADS', os.cpu_count())))
    torch.manual_seed(0)
    m = cfg.model
    spec = VIT_VARIANTS[m.variant]
    common = dict(img_size=m.img_size, patch_size=m.patch_size, num_frames=m.num_frames, tubelet_size=m.tubelet_size,
                  uniform_power=m.uniform_power, use_sdpa=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))
    encoder = MultiMaskWrapper(VisionTransformer(**common, **spec, qkv_bias=True)).to(device)
    predictor = PredictorMultiMaskWrapper(VisionTransformerPredictor(
        **common, embed_dim=spec['embed_dim'], predictor_embed_dim=m.pred_embed_dim, depth=m.pred_depth,
        num_heads=m.pred_num_heads or spec['num_heads'], use_mask_tokens=True, num_mask_tokens=num_mask_tokens(cfg),
        zero_init_mask_tokens=True)).to(device)
    target_encoder = copy.deepcopy(encoder)
    for p in target_encoder.parameters():
        p.requires_grad = False
    n_enc = sum(p.numel() for p in encoder.parameters() if p.requires_grad)  # its fixed sin-cos table is a buffer here
    n_pred = sum(p.numel() for p in predictor.parameters() if p.requires_grad)
    groups = [{'params': [p for n, p in mod.named_parameters() if 'bias' not in n and len(p.shape) != 1]}
              for mod in (encoder, predictor)]
    groups += [{'params': [p for n, p in mod.named_parameters() if 'bias' in n or len(p.shape) == 1],
                'WD_exclude': True, 'weight_decay': 0} for mod in (encoder, predictor)]
    optimizer = torch.optim.AdamW(groups, lr=6.25e-4, weight_decay=0.04)
    scaler = torch.amp.GradScaler(device) if m.dtype == 'bfloat16' and device != 'cpu' else None
    torch_inputs = [(torch.from_numpy(c).permute(0, 4, 1, 2, 3).contiguous().to(device),
                     [torch.from_numpy(ctx).long().to(device) for ctx, _ in mm],
                     [torch.from_numpy(tgt).long().to(device) for _, tgt in mm]) for c, mm in inputs]
    box = {'i': 0}

    def run():
        clips, masks_enc, masks_pred = torch_inputs[box['i'] % len(torch_inputs)]
        box['i'] += 1
        with torch.autocast(device, dtype=torch.bfloat16, enabled=m.dtype == 'bfloat16'):
            with torch.no_grad():
                h = target_encoder(clips)
                h = F.layer_norm(h, (h.size(-1),))
                h = apply_masks(h, masks_pred, concat=False)
            z = predictor(encoder(clips, masks_enc), h, masks_enc, masks_pred)
            loss = sum(torch.mean(torch.abs(zi - hi)) for zi, hi in zip(z, h)) / len(masks_pred)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(encoder.parameters(), 10.0)
        torch.nn.utils.clip_grad_norm_(predictor.parameters(), 10.0)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad()
        with torch.no_grad():
            for q, k in zip(encoder.parameters(), target_encoder.parameters()):
                k.data.mul_(0.998).add_((1. - 0.998) * q.detach().data)
        loss.item()  # waits for the device
    return run, n_enc, n_pred


def worker(args):
    """Build one side, then answer each stdin line 'N' with the N step times (s) as JSON."""
    img_size, num_frames, batch = SHAPES[args.shape]
    cfg = our_config(img_size, num_frames, args.worker.partition(':')[2] or 'auto')
    inputs = sample_inputs(cfg, batch, 4)
    t0 = time.time()
    if args.worker == 'original':
        run, n_enc, n_pred = original_stepper(args.original, cfg, inputs)
    else:
        run, n_enc, n_pred = ours_stepper(cfg, inputs)
    run()  # warm-up (compile / allocator)
    print(json.dumps({'ready': True, 'build_s': time.time() - t0, 'encoder_params': n_enc,
                      'predictor_params': n_pred, 'context_tokens': [int(m[0].shape[1]) for m in inputs[0][1]],
                      'target_tokens': [int(m[1].shape[1]) for m in inputs[0][1]]}), flush=True)
    for line in sys.stdin:
        times = []
        for _ in range(int(line)):
            t = time.perf_counter()
            run()
            times.append(time.perf_counter() - t)
        print(json.dumps(times), flush=True)


def compare(args, shape):
    sides = [f'ours:{impl}' for impl in args.impls.split(',')] + (['original'] if args.original else [])
    procs = {}
    for side in sides:  # built one after another: no build competes with another's warm-up
        cmd = [sys.executable, os.path.abspath(__file__), f'--worker={side}', f'--shape={shape}',
               f'--original={args.original}']
        procs[side] = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        info = json.loads(procs[side].stdout.readline())
        print(f'[{shape} tokens] {side}: built + first step {info["build_s"]:.1f}s, encoder '
              f'{info["encoder_params"] / 1e6:.2f}M, predictor {info["predictor_params"] / 1e6:.2f}M params, context '
              f'tokens {info["context_tokens"]}, target tokens {info["target_tokens"]}', flush=True)
    times = {s: [] for s in sides}
    for r in range(args.rounds):
        for side in sides:
            time.sleep(args.pause)  # the previous side's idle threads stop spinning before this block starts
            procs[side].stdin.write(f'{args.steps}\n')
            times[side] += json.loads(procs[side].stdout.readline())
        print(f'[{shape} tokens] round {r + 1}/{args.rounds}: ' + ', '.join(
            f'{s} {np.median(times[s]) * 1000:.0f} ms' for s in sides), flush=True)
    for p in procs.values():
        p.stdin.close()
        p.wait()
    img_size, num_frames, batch = SHAPES[shape]
    base = sides[-1]
    print(f'== {shape} tokens ({num_frames} x {img_size} x {img_size}, batch {batch}), {args.rounds} rounds x '
          f'{args.steps} steps, alternating; ratio = median / median of {base}')
    for s in sides:
        med, lo = float(np.median(times[s])), float(np.min(times[s]))
        print(f'  {s:16s} median {med * 1000:7.1f} ms  min {lo * 1000:7.1f} ms  ratio '
              f'{med / float(np.median(times[base])):.2f}  ({batch / med:.2f} clips/s)', flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--original', default='', help="a checkout of facebookresearch/jepa (its 'src' package)")
    ap.add_argument('--shapes', default='128,1568', help=f'token counts among {sorted(SHAPES)}')
    ap.add_argument('--impls', default='auto', help='our attention_impl values to time, e.g. auto,xla')
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--steps', type=int, default=3, help='steps per block')
    ap.add_argument('--pause', type=float, default=0.5, help='seconds of quiet before each block')
    ap.add_argument('--worker', default='', help=argparse.SUPPRESS)
    ap.add_argument('--shape', default='', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if args.original and not os.path.isfile(os.path.join(args.original, 'src', 'models', 'vision_transformer.py')):
        sys.exit(f'--original={args.original}: no src/models/vision_transformer.py there; give the root of a '
                 'facebookresearch/jepa checkout')
    for shape in args.shapes.split(','):
        if shape not in SHAPES:
            sys.exit(f'--shapes: {shape!r} is not one of {sorted(SHAPES)}')
        compare(args, shape)


if __name__ == '__main__':
    main()
