"""Attentive-probe classification on a frozen encoder (the originals' video_classification_frozen
and image_classification_frozen): train a grid of probes and evaluate, or evaluate a saved probe.

    python -m vjepa_jax.evals.classification --config=configs/eval/k400.py --workdir=runs/k400 \\
        --config.encoder.workdir=ckpt/vitl16 --config.data.data_dir=data
    python -m vjepa_jax.evals.classification --config=configs/eval/k400.py --workdir=runs/k400 \\
        --config.encoder.workdir=ckpt/vitl16 --eval_probe=ckpt/probes/vitl16-k400

The trainer is probe_trainer.py, the evaluator probe_eval.py.
"""
from __future__ import annotations

import json

from absl import flags

from vjepa_jax import config as config_lib

FLAGS = flags.FLAGS


def main(argv):
    from vjepa_jax.evals import probe_eval
    if _CONFIG.value is None or not FLAGS.workdir:
        raise config_lib.UsageError('pass --config=configs/eval/<name>.py and --workdir=DIR')
    try:
        if FLAGS.eval_probe:
            print(json.dumps(probe_eval.evaluate_checkpoint(_CONFIG.value, FLAGS.eval_probe)))
        else:
            probe_eval.run(_CONFIG.value, FLAGS.workdir)
    except (ValueError, KeyError) as e:
        raise SystemExit(f'error: {e}')
    return 0


if __name__ == '__main__':
    _CONFIG = config_lib.define_config_flag(help_string='evaluation config (configs/eval/<name>.py[:encoder])')
    config_lib.define_workdir_flag(help_string='where metrics, results, curves and the probe go')
    flags.DEFINE_string('eval_probe', None, 'evaluate this saved probe directory only (no training)')
    config_lib.run(main)
