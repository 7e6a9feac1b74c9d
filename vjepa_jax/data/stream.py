"""The pretraining data stream: one host's batches in step order, from TFDS datasets through
the grain pipeline (data.datasets) or generated clips (data.datasets = ''), with a position
that checkpoints save and restore.

    stream = DataStream(config, sampler, shard_index, shard_count)
    clips, mask_list = next(stream)      # clips (b, T, H, W, 3) float32 (uint8: data.uint8_clips),
                                         # [(ctx (b, Kc), tgt (b, Kt))]
"""
from __future__ import annotations

import json

from vjepa_jax.config import UsageError
from vjepa_jax.data import synthetic


def uint8_clips(config) -> bool:
    """Whether the stream's clips are uint8 (data.uint8_clips, from datasets; generated clips are float32)."""
    return bool(config.data.get('uint8_clips', False) and config.data.datasets)


class DataStream:
    """One shard's batches in step order: next() -> (clips (b, T, H, W, 3) float32, masks).
    b = global batch / shard_count; shard_index picks this host's rows. The position
    (step, grain iterator state, records skipped so far) survives get_state/set_state,
    which is what grain.checkpoint.CheckpointHandler saves per process."""

    def __init__(self, config, sampler, shard_index: int = 0, shard_count: int = 1):
        d, m, batch = config.data, config.model, config.data.global_batch_size
        if batch % shard_count:
            raise UsageError(f'data.global_batch_size {batch} does not divide over {shard_count} hosts')
        self.config, self.sampler = config, sampler
        self.shard_index, self.shard_count, self.local_batch = shard_index, shard_count, batch // shard_count
        self.step, self.skipped = 0, 0
        self._grain = None
        if d.datasets:
            from vjepa_jax.data import pipeline
            names = [n.strip() for n in d.datasets.split(',') if n.strip()]
            weights = [float(w) for w in d.weights.split(',')] if d.weights else None
            if weights is not None and len(weights) != len(names):
                raise UsageError(f'data.weights {d.weights!r} has {len(weights)} values for {len(names)} '
                                 f'datasets {names}')
            sources = [pipeline.TfdsSource(n, d.data_dir or None, d.split) for n in names]
            clip_cfg = pipeline.ClipConfig(frames_per_clip=m.num_frames, frame_step=d.frame_step,
                                           target_fps=d.target_fps, crop_size=m.img_size,
                                           crop_scale=tuple(d.crop_scale), crop_ratio=tuple(d.crop_ratio),
                                           flip=d.flip, decoded_cache_mb=d.decoded_cache_mb,
                                           uint8=uint8_clips(config))

            def grain_iterator(start_step: int):
                return iter(pipeline.make_dataset(
                    sources, weights, clip_cfg, batch_size=self.local_batch, mask_sampler=sampler, seed=config.seed,
                    shard_index=shard_index, shard_count=shard_count, num_workers=d.num_workers,
                    start_step=start_step))
            self._grain_at = grain_iterator
            self._grain = grain_iterator(0)

    def __iter__(self):
        return self

    def __next__(self):
        if self._grain is None:
            m = self.config.model
            clips = synthetic.synthetic_batch(self.config.seed, self.step, self.local_batch, m.num_frames,
                                              m.img_size, self.shard_index)
            mask_list = self.sampler(self.step, self.local_batch, stream=self.shard_index)
        else:
            b = next(self._grain)
            clips, mask_list = b['clips'], b['masks']
            self.skipped += int(b['skipped'])
        self.step += 1
        return clips, mask_list

    def get_state(self) -> bytes:
        state = {'step': self.step, 'skipped': self.skipped, 'shard': [self.shard_index, self.shard_count]}
        if self._grain is not None:
            state['grain'] = self._grain.get_state()
        return json.dumps(state).encode()

    def set_state(self, state: bytes) -> None:
        state = json.loads(state)
        self.step, self.skipped = state['step'], state['skipped']
        same_shard = state.get('shard') == [self.shard_index, self.shard_count]
        if self._grain is not None:
            if 'grain' in state and same_shard:
                self._grain.set_state(state['grain'])
            else:  # no iterator state for this shard (converted, or another host layout): from `step` on
                self._grain = self._grain_at(self.step)

    @staticmethod
    def position(step: int):
        """A saveable position at `step` with no iterator state (for checkpoints made elsewhere)."""
        class Position:
            def get_state(self):
                return json.dumps({'step': step, 'skipped': 0}).encode()
        return Position()

    def start_prefetch(self) -> None:  # grain's checkpoint handler calls this after a restore
        pass
