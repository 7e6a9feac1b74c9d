"""The physics world as a TFDS dataset: the builder and the one call that writes and builds it.

    pairs_csv, data_dir = physics_tfds.build_world('workdir/world', physics.WorldConfig(),
                                                   {'train': 400, 'validation': 160}, pairs_per_kind=16)
    tfds.data_source('physics_world', data_dir=data_dir, split='train')   # after importing this module

Records are the video builders' (data/builders.FEATURES) plus the probe facts
(physics.FACTS: num_objects, gravity, speed, collision) as int64 fields; label is -1.
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import tensorflow_datasets as tfds

from vjepa_jax.data.builders import FEATURES, VideoBuilder
from vjepa_jax.worlds import physics


class PhysicsWorld(VideoBuilder):
    """The synthetic physics world (worlds/physics.write_world): manual_dir holds {split}.jsonl
    ({"path", "facts"} per video) and the videos."""
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

    def _info(self):
        extra = {name: tfds.features.Scalar(dtype=np.int64) for name in physics.FACTS}
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({**FEATURES, **extra}),
                                     description=self.__doc__)

    def _items(self, manual_dir):
        out = {}
        for split in ('train', 'validation'):
            path = os.path.join(manual_dir or '', f'{split}.jsonl')
            if os.path.exists(path):
                rows = [json.loads(line) for line in open(path) if line.strip()]
                out[split] = [(f'{split}-{n:06d}', os.path.join(manual_dir, row['path']), -1,
                               {name: int(row['facts'][name]) for name in physics.FACTS}) for n, row in enumerate(rows)]
        if not out:
            raise FileNotFoundError(f'physics_world: no train.jsonl / validation.jsonl in {manual_dir}: pass '
                                    '--manual_dir=DIR written by vjepa_jax.worlds.physics.write_world')
        return out


def build_world(folder: str, cfg: physics.WorldConfig, counts: dict, pairs_per_kind: int, seed: int = 0,
                log=print) -> tuple:
    """Write the world's videos and violation pairs into `folder` (reused when the same world is
    there) and build its TFDS dataset in folder/tfds (rebuilt when the world changed).
    -> (the violation pairs list, the TFDS data_dir)."""
    physics.write_world(folder, cfg, counts, pairs_per_kind, seed=seed, log=log)
    data_dir = os.path.join(folder, 'tfds')
    stamp = os.path.join(data_dir, 'world.json')
    current = open(os.path.join(folder, 'world.json')).read()
    if not (os.path.exists(stamp) and open(stamp).read() == current):
        shutil.rmtree(data_dir, ignore_errors=True)
        builder = PhysicsWorld(data_dir=data_dir)
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=folder))
        if builder.skipped:
            raise RuntimeError(f'physics world: {len(builder.skipped)} videos unreadable: {builder.skipped[:3]}')
        with open(stamp, 'w') as f:
            f.write(current)
        log(f'physics world: TFDS dataset physics_world in {data_dir} ({builder.written})')
    return os.path.join(folder, 'voe', 'pairs.csv'), data_dir
