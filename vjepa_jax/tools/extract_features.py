"""Frozen-encoder features of video (or image) files.

  python -m vjepa_jax.tools.extract_features --config=configs/pretrain/vitl16.py --workdir=ckpt/vitl16 \\
      --input=clips/ --output=features.npy [--pooled] [--num_segments=1 --num_views=1 --frame_step=4]

--input: one file or a folder (searched recursively). --output: .npy (one array
(files, V, S * N, D), or (files, V, D) with --pooled, plus FILE.paths.txt listing the inputs in
order) or .array_record (one record per file: npz bytes of 'tokens' and 'path').
Without --workdir the encoder is randomly initialised (--random_init, a baseline).
"""
from __future__ import annotations

import os

import numpy as np
from absl import flags

from vjepa_jax import config as config_lib

FLAGS = flags.FLAGS
_CONFIG = None


def define_flags():
    global _CONFIG
    _CONFIG = config_lib.define_config_flag(help_string='the encoder\'s pretraining config (configs/pretrain/...)')
    config_lib.define_workdir_flag(help_string='a training or converted workdir (its latest checkpoint)')
    flags.DEFINE_bool('random_init', False, 'no workdir: a randomly initialised encoder')
    flags.DEFINE_enum('which', 'target_encoder', ['target_encoder', 'encoder'], 'which encoder of the checkpoint')
    flags.DEFINE_string('input', None, 'a video / image file, or a folder of them')
    flags.DEFINE_string('output', None, '.npy or .array_record')
    flags.DEFINE_bool('pooled', False, 'mean over tokens: (V, D) per file instead of (V, S * N, D)')
    flags.DEFINE_integer('num_segments', 1, 'clips per video, tokens concatenated')
    flags.DEFINE_integer('num_views', 1, 'spatial views per clip (crops along the long side)')
    flags.DEFINE_integer('frame_step', 4, 'frames between sampled frames')


def main(argv):
    from vjepa_jax import pretrained
    from vjepa_jax.config import UsageError
    from vjepa_jax.data import decode
    from vjepa_jax.evals import features, views
    try:
        if not (_CONFIG.value is not None and FLAGS.input and FLAGS.output):
            raise UsageError('pass --config=configs/pretrain/<name>.py --input=FILE_OR_FOLDER --output=FILE.npy')
        if not FLAGS.output.endswith(('.npy', '.array_record')):
            raise UsageError(f'--output={FLAGS.output}: use a .npy or .array_record file name')
        if not (FLAGS.workdir or FLAGS.random_init):
            raise UsageError('pass --workdir=DIR (trained or converted weights) or --random_init')
        config = _CONFIG.value
        encoder = pretrained.encoder_for_evaluation(config, FLAGS.workdir, FLAGS.which, FLAGS.random_init, config.seed)
        m = config.model
        cfg = views.ViewConfig(frames_per_clip=m.num_frames, frame_step=FLAGS.frame_step,
                               num_segments=FLAGS.num_segments, num_views=FLAGS.num_views, size=m.img_size)
        frozen = features.FrozenEncoder(encoder)
        paths = features.list_inputs(FLAGS.input)
        out, failed = [], []
        for i, path in enumerate(paths):
            try:
                out.append((path, features.extract_features(frozen, path, cfg, pooled=FLAGS.pooled)))
            except decode.DecodeError as e:
                failed.append(f'{path}: {e}')
            print(f'\r{i + 1}/{len(paths)} files', end='', flush=True)
        print()
        if not out:
            raise ValueError(f'no readable input among {len(paths)} files: {failed[:3]}')
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
        if FLAGS.output.endswith('.npy'):
            np.save(FLAGS.output, np.stack([f for _, f in out]))
            with open(FLAGS.output + '.paths.txt', 'w') as f:
                f.write('\n'.join(p for p, _ in out) + '\n')
        else:
            from array_record.python.array_record_module import ArrayRecordWriter
            writer = ArrayRecordWriter(FLAGS.output, 'group_size:1')
            for path, feats in out:
                writer.write(features.pack({'tokens': feats, 'path': np.asarray(path)}))
            writer.close()
        print(f'wrote {FLAGS.output}: {len(out)} files, features {out[0][1].shape} each'
              + (f'; {len(failed)} unreadable files skipped: {failed[:3]}' if failed else ''))
    except (UsageError, ValueError, FileNotFoundError) as e:
        raise SystemExit(f'error: {e}')


if __name__ == '__main__':
    define_flags()
    config_lib.run(main)
