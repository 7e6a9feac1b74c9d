"""Build a video (or image) dataset (TFDS, ArrayRecord) and print what was written and skipped.

  python -m vjepa_jax.data.build --builder=video_csv --csv=LIST [--val_csv=LIST] --data_dir=DIR
  python -m vjepa_jax.data.build --builder=kinetics/k400 --manual_dir=K400 --data_dir=DIR
  python -m vjepa_jax.data.build --builder=ssv2 --manual_dir=SSV2 --data_dir=DIR
  python -m vjepa_jax.data.build --builder=image_folder/imagenet1k --manual_dir=IMAGENET --data_dir=DIR
  python -m vjepa_jax.data.build --builder=physics_world --manual_dir=WORLD --data_dir=DIR
  python -m vjepa_jax.data.build --builder=trajectories --manual_dir=EPISODES --data_dir=DIR
  python -m vjepa_jax.data.build --builder=trajectories/droid --manual_dir=DROID --data_dir=DIR [--camera=left]
--builder is NAME or NAME/CONFIG as TFDS writes it (kinetics: k400 | k600 | k700; image_folder:
imagenet1k | places205 | inat21 | custom; trajectories: npz (world_model.collect episodes, the
default) | droid; --codec=lossless | h264 overrides its frame encoding). Read back with
tfds.data_source('video_csv', data_dir=DIR, split='train') after `import vjepa_jax.data.builders`.
"""
from __future__ import annotations

import os

import tensorflow_datasets as tfds
from absl import flags

from vjepa_jax import config as config_lib
from vjepa_jax.data.builders import BUILDERS as VIDEO_BUILDERS
from vjepa_jax.data.trajectories import Trajectories
from vjepa_jax.worlds.physics_tfds import PhysicsWorld

BUILDERS = {**VIDEO_BUILDERS, 'physics_world': PhysicsWorld, 'trajectories': Trajectories}
FLAGS = flags.FLAGS


def build(builder: str, data_dir: str, csv: str = '', val_csv: str = '', manual_dir: str = '', camera: str = '',
          codec: str = '') -> tfds.core.DatasetBuilder:
    """builder: NAME or NAME/CONFIG (kinetics/k400). camera, codec: trajectories only."""
    name, _, config = builder.partition('/')
    if name not in BUILDERS:
        raise config_lib.UsageError(f'--builder={builder}: choose one of {sorted(BUILDERS)} (NAME or NAME/CONFIG)')
    kwargs = dict(data_dir=data_dir)
    if name == 'video_csv':
        kwargs.update(csv=csv or None, val_csv=val_csv or None)
    if name == 'trajectories':
        kwargs.update(camera=camera or None, codec=codec or None)
    elif camera or codec:
        raise config_lib.UsageError(f'--camera and --codec are for --builder=trajectories, not {builder}')
    if config:
        kwargs['config'] = config
    b = BUILDERS[name](**kwargs)
    try:
        b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir or None))
    except AssertionError as e:  # TFDS: 'No examples were yielded.' (every file of a split skipped)
        if 'No examples' not in str(e):
            raise
        skipped = getattr(b, 'skipped', [])
        log = os.path.join(data_dir, f'{name}_build_log.txt')
        os.makedirs(data_dir, exist_ok=True)
        with open(log, 'w') as f:
            f.writelines('\t'.join(row) + '\n' for row in skipped)
        first = f' (the first: {skipped[0][1]}: {skipped[0][2]})' if skipped else ''
        raise config_lib.UsageError(f'{builder}: no usable file in a split; {len(skipped)} skipped{first}, all listed '
                                    f'in {log}: fix or replace them, or point --csv / --manual_dir elsewhere') from None
    return b


def main(argv):
    if not FLAGS.builder or not FLAGS.data_dir:
        raise config_lib.UsageError('pass --builder=NAME[/CONFIG] and --data_dir=DIR')
    try:
        b = build(FLAGS.builder, FLAGS.data_dir, FLAGS.csv, FLAGS.val_csv, FLAGS.manual_dir, FLAGS.camera, FLAGS.codec)
    except ValueError as e:
        raise config_lib.UsageError(str(e)) from None
    if not b.written:
        print(f'{b.name}: already built in {b.data_dir} (delete that folder to build again)')
        return 0
    log = b.write_build_log()
    for split, n in b.written.items():
        print(f'{b.name} {split}: {n} records written')
    print(f'{len(b.skipped)} files skipped (listed in {log})')
    for split, path, reason in b.skipped[:20]:
        print(f'  skipped [{split}] {path}: {reason}')
    return 0


def define_flags():
    flags.DEFINE_string('builder', None, ' | '.join(BUILDERS) + ' (NAME or NAME/CONFIG: kinetics/k400)')
    flags.DEFINE_string('data_dir', None, 'where the TFDS dataset is written')
    flags.DEFINE_string('csv', '', 'video_csv: the train list ("path label" per line)')
    flags.DEFINE_string('val_csv', '', 'video_csv: the validation list')
    flags.DEFINE_string('manual_dir', '', 'the folder holding the videos / annotations')
    flags.DEFINE_string('camera', '', 'trajectories/droid: the camera (left | right | wrist | ext1 | ext2)')
    flags.DEFINE_string('codec', '', 'trajectories: lossless (npz default) | h264 (droid default)')


if __name__ == '__main__':
    define_flags()
    config_lib.run(main)
