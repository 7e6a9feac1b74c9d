"""Build a video (or image) dataset (TFDS, ArrayRecord) and print what was written and skipped.

  python -m vjepa_jax.data.build --builder=video_csv --csv=LIST [--val_csv=LIST] --data_dir=DIR
  python -m vjepa_jax.data.build --builder=kinetics --config=k400 --manual_dir=K400 --data_dir=DIR
  python -m vjepa_jax.data.build --builder=ssv2 --manual_dir=SSV2 --data_dir=DIR
  python -m vjepa_jax.data.build --builder=image_folder --config=imagenet1k --manual_dir=IMAGENET --data_dir=DIR
  python -m vjepa_jax.data.build --builder=physics_world --manual_dir=WORLD --data_dir=DIR
Read back with tfds.data_source('video_csv', data_dir=DIR, split='train') after
`import vjepa_jax.data.builders`.
"""
from __future__ import annotations

import argparse
import sys

import tensorflow_datasets as tfds

from vjepa_jax.data.builders import BUILDERS


def build(builder: str, data_dir: str, csv: str = '', val_csv: str = '', manual_dir: str = '',
          config: str = '') -> tfds.core.DatasetBuilder:
    if builder not in BUILDERS:
        raise SystemExit(f'error: --builder={builder}: choose one of {sorted(BUILDERS)}')
    kwargs = dict(data_dir=data_dir)
    if builder == 'video_csv':
        kwargs.update(csv=csv or None, val_csv=val_csv or None)
    if config:
        kwargs['config'] = config
    b = BUILDERS[builder](**kwargs)
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir or None))
    return b


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--builder', required=True, help=' | '.join(BUILDERS))
    ap.add_argument('--data_dir', required=True)
    ap.add_argument('--csv', default='')
    ap.add_argument('--val_csv', default='')
    ap.add_argument('--manual_dir', default='')
    ap.add_argument('--config', default='', help='kinetics: k400 | k600 | k700; image_folder: imagenet1k | places205 | inat21 | custom')
    args = ap.parse_args(argv)
    try:
        b = build(args.builder, args.data_dir, args.csv, args.val_csv, args.manual_dir, args.config)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f'error: {e}')
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


if __name__ == '__main__':
    sys.exit(main())
