"""Input-pipeline speed: 16 x 224 pretraining clips/s from mp4, per grain worker count, next
to the raw decode speed of the same clips measured in the same run (PyAV, and OpenCV and
decord when installed), so the pipeline's overhead is a ratio. With --original (a checkout of
facebookresearch/jepa; torch, torchvision, decord, pandas, opencv installed), the original's
loader (its VideoDataset + pretraining transform + mask collator in a torch DataLoader) reads
the same files at the same worker count and batch, measured in turns with ours.

  python benchmarks/data.py [--videos 8 --frames 300 --size 256 --workers 0 1 2]
  python benchmarks/data.py --workers 2 --original=/path/to/jepa --rounds 2
  python benchmarks/data.py --workers 2 --uint8 ...   # ours also with uint8 clips (data.uint8_clips)
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


def make_videos(folder, n, frames, size):
    from vjepa_jax.data import decode, synthetic
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        path = os.path.join(folder, f'v{i}.mp4')
        clip = synthetic.render_clip(rng, frames, size)
        clip = np.concatenate([clip, clip[:, :, : size // 3 // 2 * 2]], axis=2)  # like Kinetics 340 x 256
        decode.encode_video(clip, path, fps=30)
        lines.append(f'{path} {i % 4}')
    with open(os.path.join(folder, 'list.csv'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return [line.split()[0] for line in lines]


def raw_decode_rates(paths, num_frames, clips_per_video=4):
    """clips/s of decoding the frames of the original's clip rule, per decoder, one process."""
    from vjepa_jax.data import clips, decode
    rng = np.random.default_rng(0)
    jobs = []
    for p in paths:
        data = open(p, 'rb').read()
        info = decode.probe(data)
        for _ in range(clips_per_video):
            jobs.append((p, data, clips.clip_indices(info.num_frames, num_frames, 4, 1, rng)[0]))
    rates = {}
    t = time.time()
    for _, data, idx in jobs:
        decode.decode_frames(data, idx)
    rates['pyav'] = len(jobs) / (time.time() - t)
    try:
        import cv2
        t = time.time()
        for p, _, idx in jobs:
            cap = cv2.VideoCapture(p)
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(idx[0]))
            frames, pos = [], int(idx[0])
            for want in idx:
                while pos <= want:
                    ok, frame = cap.read()
                    pos += 1
                frames.append(frame)
            cap.release()
        rates['opencv'] = len(jobs) / (time.time() - t)
    except ImportError:
        pass
    try:
        import decord
        t = time.time()
        for p, _, idx in jobs:
            decord.VideoReader(p, num_threads=1).get_batch(list(idx)).asnumpy()
        rates['decord'] = len(jobs) / (time.time() - t)
    except Exception as e:  # not installed, or no wheel for this platform
        print(f'decord: not measured ({type(e).__name__})')
    return rates


def pipeline_rate(data_dir, workers, batch, num_frames, size, batches, uint8=False):
    from vjepa_jax import masks
    from vjepa_jax.data import pipeline
    src = pipeline.TfdsSource('video_csv', data_dir)
    cfg = pipeline.ClipConfig(frames_per_clip=num_frames, frame_step=4, crop_size=size, uint8=uint8)
    sampler = masks.MultiBlockMaskSampler((num_frames // 2, size // 16, size // 16), seed=0)
    it = iter(pipeline.make_dataset([src], None, cfg, batch_size=batch, mask_sampler=sampler, seed=0,
                                    num_workers=workers))
    next(it)  # start-up (worker spawn) not counted
    t = time.time()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.time() - t)


def original_rate(path, list_csv, workers, batch, num_frames, size, batches):
    """clips/s of the original's pretraining loader (app/vjepa/train.py's data settings)."""
    sys.path.insert(0, path)
    import torch
    from app.vjepa.transforms import make_transforms
    from src.datasets.video_dataset import make_videodataset
    from src.masks.multiblock3d import MaskCollator
    from vjepa_jax import masks
    torch.set_num_threads(1)
    lines = open(list_csv).read().split()
    lines = [' '.join(lines[i:i + 2]) for i in range(0, len(lines), 2)]
    repeated = list_csv[:-4] + '_repeated.csv'  # its sampler reads a list once per epoch: enough lines for one pass
    with open(repeated, 'w') as f:
        f.write('\n'.join(lines * (-(-(batches + 2) * batch // len(lines)))) + '\n')
    cfgs = [dict(spatial_scale=m.spatial_scale, temporal_scale=m.temporal_scale, aspect_ratio=m.aspect_ratio,
                 num_blocks=m.num_blocks, max_temporal_keep=m.max_temporal_keep)
            for m in (masks.SHORT_RANGE, masks.LONG_RANGE)]
    transform = make_transforms(random_horizontal_flip=True, random_resize_aspect_ratio=(3 / 4, 4 / 3),
                                random_resize_scale=(0.3, 1.0), reprob=0.0, auto_augment=False, motion_shift=False,
                                crop_size=size)
    _, loader, _ = make_videodataset(
        data_paths=[repeated], batch_size=batch, frames_per_clip=num_frames, frame_step=4, num_clips=1,
        random_clip_sampling=True, allow_clip_overlap=False, transform=transform,
        collator=MaskCollator(cfgs, crop_size=(size, size), num_frames=num_frames, patch_size=16, tubelet_size=2),
        num_workers=workers, pin_mem=False, world_size=1, rank=0)
    it = iter(loader)
    next(it)  # start-up (worker spawn) not counted
    t = time.time()
    for _ in range(batches):
        next(it)
    rate = batches * batch / (time.time() - t)
    del it, loader
    return rate


def main():
    from absl import flags
    flags.FLAGS.mark_as_parsed()
    ap = argparse.ArgumentParser()
    ap.add_argument('--videos', type=int, default=8)
    ap.add_argument('--frames', type=int, default=300)
    ap.add_argument('--size', type=int, default=256)
    ap.add_argument('--workers', type=int, nargs='+', default=[0, 1, 2])
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--batches', type=int, default=6)
    ap.add_argument('--original', default='', help="a checkout of facebookresearch/jepa (its 'src' and 'app')")
    ap.add_argument('--rounds', type=int, default=1, help='turns of ours and the original (with --original)')
    ap.add_argument('--uint8', action='store_true', help='also time ours with uint8 clips (data.uint8_clips)')
    args = ap.parse_args()
    from vjepa_jax.data import build
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_videos(tmp, args.videos, args.frames, args.size)
        b = build.build('video_csv', os.path.join(tmp, 'tfds'), csv=os.path.join(tmp, 'list.csv'))
        print(f'{b.written["train"]} mp4 videos, {args.frames} frames at 30 fps, {args.size + args.size // 3 // 2 * 2}x'
              f'{args.size}; clips of 16 frames, step 4, cropped to 224')
        rates = raw_decode_rates(paths, 16)
        for name, r in rates.items():
            print(f'raw decode, {name:7s}: {r:7.1f} clips/s (1 process)')
        base = rates['pyav']
        for w in args.workers:
            ours, ours_uint8, original = [], [], []
            for _ in range(args.rounds):
                ours.append(pipeline_rate(os.path.join(tmp, 'tfds'), w, args.batch, 16, 224, args.batches))
                print(f'pipeline, {w} worker(s): {ours[-1]:7.1f} clips/s = {ours[-1] / base:.2f} x raw PyAV decode '
                      f'(decode + crop + resize + flip + normalise + masks + batch)', flush=True)
                if args.uint8:
                    ours_uint8.append(pipeline_rate(os.path.join(tmp, 'tfds'), w, args.batch, 16, 224, args.batches,
                                                    uint8=True))
                    print(f'pipeline, uint8 clips, {w} worker(s): {ours_uint8[-1]:7.1f} clips/s = '
                          f'{ours_uint8[-1] / base:.2f} x raw PyAV decode', flush=True)
                if args.original:
                    original.append(original_rate(args.original, os.path.join(tmp, 'list.csv'), w, args.batch, 16,
                                                  224, args.batches))
                    print(f'original loader, {w} worker(s): {original[-1]:7.1f} clips/s', flush=True)
            if original:
                print(f'{w} worker(s), median of {args.rounds}: ours {np.median(ours):.2f} clips/s, original '
                      f'{np.median(original):.2f}: ours {np.median(ours) / np.median(original):.2f}x', flush=True)
                if ours_uint8:
                    print(f'{w} worker(s), median of {args.rounds}: ours with uint8 clips {np.median(ours_uint8):.2f} '
                          f'clips/s: {np.median(ours_uint8) / np.median(original):.2f}x the original', flush=True)


if __name__ == '__main__':
    main()
