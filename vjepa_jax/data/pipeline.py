"""The grain input pipeline: TFDS records -> masked, augmented clip batches.

  per dataset: index range -> shuffle (reshuffled every epoch) -> repeat
  -> weighted mixture (exact proportions, deterministic) -> this host's shard
  -> decode + clip sampling + augmentation (random_map: rng from (seed, position))
  -> batch -> masks for the batch's step -> [multiprocess prefetch]
Deterministic given (seed, step); `iterator.get_state()` / `set_state()` resume exactly.

A record that fails to decode at read time, or whose stored bytes no longer read (a chunk
damaged on disk after the build) while the rest of its shard reads, is replaced by another
random record of the same dataset; the replacement count travels with the batch (`skipped`,
summed in the metrics), and only `max_retries` failures in a row stop the run. A shard that
does not read at all (missing, emptied, its index damaged) stops the run at once: DataError,
one line naming the file.
Image records (an 'image' field) are repeated into a clip of frames_per_clip frames.
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Sequence

import grain
import numpy as np

from vjepa_jax.data import clips as clip_rules
from vjepa_jax.data import decode, transforms


@dataclasses.dataclass(frozen=True)
class ClipConfig:
    frames_per_clip: int = 16
    frame_step: int = 4
    target_fps: float = 0.0  # V-JEPA 2: 4 fps; 0 = fixed frame_step
    crop_size: int = 224
    crop_scale: tuple = (0.3, 1.0)
    crop_ratio: tuple = (0.75, 1.35)
    flip: bool = True
    max_retries: int = 20
    decoded_cache_mb: int = 0  # > 0: keep each video's decoded frames up to this many MB (small datasets)
    uint8: bool = False        # clips as uint8 0-255 (normalised by the train step on the device)


class DataError(RuntimeError):
    """The data cannot be read on (a shard unreadable, too many bad records in a row): one line
    naming the file or records and the fix."""
    one_line = True  # config.run prints it as `error: ...`


class RecordUnreadable(Exception):
    """One record's stored bytes do not read (storage damage) while the rest of its shard does."""


def first_line(e: Exception) -> str:
    return f'{type(e).__name__}: ' + (str(e).strip().splitlines() or [''])[0][:200]


_OPEN_LOCK = threading.Lock()  # one thread imports tfds and opens (concurrent lazy imports can deadlock)


class TfdsSource:
    """A picklable random-access source over a built TFDS dataset (opened lazily per process)."""

    def __init__(self, name: str, data_dir: str, split: str = 'train'):
        self.name, self.data_dir, self.split = name, data_dir, split
        self._source = None
        self._len = len(self._open())
        self._readable_shards = set()  # shards seen to read (a failing record in them is skipped)

    def _open(self):
        if self._source is not None:
            return self._source
        with _OPEN_LOCK:
            return self._open_locked()

    def _open_locked(self):
        if self._source is None:
            import tensorflow_datasets as tfds

            import vjepa_jax.data.builders  # noqa: F401  (registers the builders)
            import vjepa_jax.data.trajectories  # noqa: F401  (episodes: their frames are videos too)
            import vjepa_jax.worlds.physics_tfds  # noqa: F401  (and the simulated worlds')
            try:
                self._source = tfds.data_source(self.name, data_dir=self.data_dir, split=self.split, download=False)
            except Exception as e:
                raise FileNotFoundError(f'dataset {self.name!r} ({self.split}) not found under {self.data_dir}: build it '
                                        f'with python -m vjepa_jax.data.build ({type(e).__name__})') from None
        return self._source

    def __len__(self):
        return self._len

    def __getitem__(self, i):
        return self._open()[int(i)]

    def shard_of(self, i: int) -> tuple:
        """(file, first record, end record) of the shard holding record i."""
        start = 0
        for part in self._open().dataset_info.splits[self.split].file_instructions:
            if i < start + part.take:
                return part.filename, start, start + part.take
            start += part.take
        raise IndexError(f'record {i} of {self.name} ({self.split}): only {start} records')

    def read(self, i: int) -> dict:
        """self[i]; raises RecordUnreadable when the record's bytes fail but its shard's first or
        last record reads, DataError (naming the file) when the shard does not read at all."""
        try:
            return self[i]
        except Exception as e:  # noqa: BLE001 - any reader failure is storage damage here
            reason = first_line(e)
        file, lo, hi = self.shard_of(int(i))
        if file not in self._readable_shards:
            for j in {lo, hi - 1} - {int(i)}:
                try:
                    self[j]
                    self._readable_shards.add(file)
                    break
                except Exception:  # noqa: BLE001
                    pass
        if file not in self._readable_shards:
            raise DataError(f'dataset shard {file} does not read ({reason}): restore the file or rebuild the '
                            f'dataset (python -m vjepa_jax.data.build)')
        raise RecordUnreadable(f'record {i} of {self.name} unreadable ({reason})')

    def __getstate__(self):
        return {**self.__dict__, '_source': None}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._open()  # in the worker's main thread, before its reader threads start


class DecodedVideos:
    """Whole decoded videos kept in memory by key (the record's id or path) until max_bytes are
    used (then decoding as usual): each video of a small dataset is decoded once, not per clip."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.used, self.videos = max_bytes, 0, {}

    def frames(self, data: bytes, idx: np.ndarray, num_frames: int, name: str, key) -> np.ndarray:
        """= decode.decode_frames(data, idx, name=name)."""
        video = self.videos.get(key)
        if video is None and key is not None and self.used < self.max_bytes:
            video = decode.decode_frames(data, np.arange(num_frames), name=name)
            self.videos[key] = video
            self.used += video.nbytes
        if video is None or np.max(idx) >= len(video):  # past the record's count: the decoder's own padding
            return decode.decode_frames(data, idx, name=name)
        return video[idx]


def load_clip(record: dict, rng: np.random.Generator, cfg: ClipConfig, decoded: DecodedVideos | None = None
              ) -> np.ndarray:
    """One training clip (T, S, S, 3) float32 (uint8 with cfg.uint8) from a record; raises decode.DecodeError."""
    if 'image' in record:
        frames = np.repeat(np.asarray(record['image'])[None], cfg.frames_per_clip, axis=0)
    else:
        name = record['path'].decode() if isinstance(record.get('path'), bytes) else str(record.get('path', 'video'))
        step = clip_rules.frame_step(float(record['fps']), cfg.frames_per_clip, cfg.frame_step, cfg.target_fps)
        idx = clip_rules.clip_indices(int(record['num_frames']), cfg.frames_per_clip, step, 1, rng)[0]
        if decoded is None:
            frames = decode.decode_frames(record['video'], idx, name=name)
        else:
            key = record.get('id', record.get('path'))
            frames = decoded.frames(record['video'], idx, int(record['num_frames']), name, key)
    return transforms.train_transform(frames, rng, cfg.crop_size, cfg.crop_scale, cfg.crop_ratio, cfg.flip,
                                      uint8=cfg.uint8)


class LoadClip(grain.transforms.RandomMap):
    """(dataset id, record index) -> {'clips', 'label', 'skipped'}; corrupt records replaced."""

    def __init__(self, sources: Sequence[TfdsSource], cfg: ClipConfig):
        self.sources, self.cfg = list(sources), cfg
        self.decoded = ([DecodedVideos(cfg.decoded_cache_mb << 20) for _ in self.sources]
                        if cfg.decoded_cache_mb else None)

    def random_map(self, element, rng: np.random.Generator):
        ds_id, index = element
        source, errors = self.sources[ds_id], []
        for _ in range(self.cfg.max_retries):
            try:
                record = source.read(index)
            except RecordUnreadable as e:  # storage damage in one record (a chunk's hash): skipped, counted
                errors.append(str(e))
                index = int(rng.integers(len(source)))
                continue
            try:
                clip = load_clip(record, rng, self.cfg, self.decoded[ds_id] if self.decoded else None)
                return {'clips': clip, 'label': np.int32(record.get('label', -1)),
                        'skipped': np.int32(len(errors))}
            except decode.DecodeError as e:
                errors.append(str(e))
                index = int(rng.integers(len(source)))
        raise DataError(f'{self.cfg.max_retries} unreadable records in a row in {source.name} (the last: '
                        f'{errors[-1]}): rebuild the dataset (python -m vjepa_jax.data.build)')


class AddMasks:
    """Batch (at position `step`) -> batch with 'masks' [(ctx, tgt) per generator]."""

    def __init__(self, sampler, stream: int = 0):
        self.sampler, self.stream = sampler, stream

    def __call__(self, step, batch):
        batch['masks'] = self.sampler(step, batch['clips'].shape[0], stream=self.stream)
        batch['skipped'] = np.int32(batch['skipped'].sum())
        return batch


def make_dataset(sources: Sequence[TfdsSource], weights: Sequence[float] | None, cfg: ClipConfig, *,
                 batch_size: int, mask_sampler, seed: int, shard_index: int = 0, shard_count: int = 1,
                 num_workers: int = 0, start_step: int = 0) -> grain.IterDataset:
    """The per-host pipeline; batch_size is this host's share of the global batch."""
    parts = []
    for k, src in enumerate(sources):
        parts.append(grain.MapDataset.range(len(src)).shuffle(seed=seed + 1000 * k).repeat()
                     .map(lambda i, k=k: (k, i)))
    ds = parts[0] if len(parts) == 1 and not weights else grain.MapDataset.mix(parts, weights)
    ds = ds[shard_index::shard_count]
    ds = ds.random_map(LoadClip(sources, cfg), seed=seed)
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map_with_index(AddMasks(mask_sampler, stream=shard_index))
    ds = ds[start_step:]
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=2))
    if num_workers > 0:
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
    return it
