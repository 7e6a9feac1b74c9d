"""What a frozen-feature probe sees of one record: segments x views of clips, as in the
originals' evaluation loaders (NumPy, host side).

  video, training: S segments (random end point in each of S equal parts), one random
      resized crop + flip per segment (scale (0.3, 1.0), ratio (3/4, 4/3)).
  video, evaluation: S segments (fixed, overlapping when the video is short), each read in
      V spatial views (short side to the crop size, crops along the long side).
  image: repeated into a clip of frames_per_clip frames; training: random resized crop +
      flip; evaluation: short side to size * 256 / 224, centre crop.
Output clips: (V, S, T, size, size, 3) float32, normalised.
"""
from __future__ import annotations

import dataclasses
import math
import grain
import numpy as np

from vjepa_jax.data import clips as clip_rules
from vjepa_jax.data import decode, transforms


@dataclasses.dataclass(frozen=True)
class ViewConfig:
    frames_per_clip: int = 16
    frame_step: int = 4
    num_segments: int = 1
    num_views: int = 3       # evaluation views per segment (training: 1)
    size: int = 224
    crop_scale: tuple = (0.3, 1.0)
    crop_ratio: tuple = (3 / 4, 4 / 3)
    flip: bool = True        # training views: horizontal flip with p 0.5 (off where left/right is the label)
    max_retries: int = 20

    def shape(self, training: bool) -> tuple:
        """(V, S, T, size, size, 3) of one record's clips."""
        views = 1 if training else self.num_views
        return (views, self.num_segments, self.frames_per_clip, self.size, self.size, 3)


def _name(record: dict) -> str:
    path = record.get('path', b'record')
    return path.decode() if isinstance(path, bytes) else str(path)


def image_views(image: np.ndarray, cfg: ViewConfig, training: bool, rng: np.random.Generator | None) -> np.ndarray:
    """(H, W, 3) uint8 -> (V, S, T, size, size, 3); every view and segment the same clip."""
    frame = image[None]
    if training:
        top, left, h, w = transforms.crop_box(rng, image.shape[0], image.shape[1], cfg.crop_scale, cfg.crop_ratio)
        out = transforms.resize(frame[:, top:top + h, left:left + w], cfg.size, cfg.size)
        if cfg.flip and rng.uniform() < 0.5:
            out = out[:, :, ::-1]
        out = transforms.normalize(out)
    else:
        short = int(math.floor(cfg.size * 256 / 224))
        out = transforms.eval_views(frame, short, 1)[0]  # short side to `short`, centre crop
        cut = (short - cfg.size) // 2
        out = out[:, cut:cut + cfg.size, cut:cut + cfg.size]
    views, segments = cfg.shape(training)[:2]
    return np.broadcast_to(out, (views, segments, cfg.frames_per_clip, *out.shape[1:])).copy()


def video_views(record: dict, cfg: ViewConfig, training: bool, rng: np.random.Generator | None) -> np.ndarray:
    """A video record (builders.FEATURES) -> (V, S, T, size, size, 3); raises decode.DecodeError."""
    idx = clip_rules.clip_indices(int(record['num_frames']), cfg.frames_per_clip, cfg.frame_step, cfg.num_segments,
                                  rng, random=training, overlap=not training)
    frames = decode.decode_frames(record['video'], idx.reshape(-1), name=_name(record))
    frames = frames.reshape(cfg.num_segments, cfg.frames_per_clip, *frames.shape[1:])
    if training:
        segs = [transforms.train_transform(f, rng, cfg.size, cfg.crop_scale, cfg.crop_ratio, cfg.flip)
                for f in frames]
        return np.stack(segs)[None]
    return np.stack([transforms.eval_views(f, cfg.size, cfg.num_views) for f in frames], axis=1)


def record_views(record: dict, cfg: ViewConfig, training: bool, rng: np.random.Generator | None = None) -> np.ndarray:
    if 'image' in record:
        return image_views(decode.decode_image(record['image'], _name(record)), cfg, training, rng)
    return video_views(record, cfg, training, rng)


class LoadViews(grain.transforms.RandomMap):
    """record index -> {'clips' (V, S, T, H, W, 3), 'label' (record[label_key]), 'index', 'skipped'}.
    augment: training views (random crops, V = 1) or evaluation views. With training views an
    unreadable record is replaced by another (counted in 'skipped'); evaluation never
    substitutes: it raises, naming the record."""

    def __init__(self, source, cfg: ViewConfig, training: bool, augment: bool | None = None, label_key: str = 'label'):
        self.source, self.cfg, self.training, self.label_key = source, cfg, training, label_key
        self.augment = training if augment is None else augment

    def random_map(self, index, rng: np.random.Generator):
        errors = []
        for _ in range(self.cfg.max_retries if self.augment else 1):
            record = self.source[index]
            try:
                clips = record_views(record, self.cfg, self.augment, rng)
                return {'clips': clips.astype(np.float32), 'label': np.int32(record[self.label_key]),
                        'index': np.int32(index), 'skipped': np.int32(len(errors))}
            except decode.DecodeError as e:
                if not self.augment:
                    raise decode.DecodeError(f'evaluation record {index}: {e}: rebuild the dataset') from None
                errors.append(str(e))
                index = int(rng.integers(len(self.source)))
        raise RuntimeError(f'{len(errors)} unreadable records in a row: {errors[:3]}: rebuild the dataset')


def probe_dataset(source, cfg: ViewConfig, *, training: bool, batch_size: int, seed: int, epochs: int = 1,
                  augment: bool | None = None, shard_index: int = 0, shard_count: int = 1,
                  num_workers: int = 0, label_key: str = 'label') -> grain.IterDataset:
    """Batches of LoadViews outputs. Training: reshuffled every epoch, `epochs` passes, full
    batches only. Otherwise: every record once in order; the last batch is padded by
    repeating its final record with 'valid' = 0 (static shapes under jit). augment: the
    views' kind (default: training's). label_key: the record field probed (default 'label')."""
    n = len(source)
    if training:
        ds = grain.MapDataset.range(n).shuffle(seed=seed).repeat(epochs)
    else:
        pad = -n % (batch_size * shard_count)
        ds = grain.MapDataset.range(n + pad).map(lambda i: min(i, n - 1))
    ds = ds[shard_index::shard_count].random_map(LoadViews(source, cfg, training, augment, label_key), seed=seed)
    if not training:
        ds = ds.map_with_index(lambda i, x: {**x, 'valid': np.int32(i * shard_count + shard_index < n)})
    ds = ds.batch(batch_size, drop_remainder=training)
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=2))
    if num_workers > 0:
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
    return it


def steps_per_epoch(num_records: int, batch_size: int) -> int:
    """Full training batches per epoch (the last partial batch is left to the next epoch's shuffle)."""
    return max(1, num_records // batch_size)
