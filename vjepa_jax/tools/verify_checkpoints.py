"""Check every checkpoint of a workdir: it restores, and each state array matches the content
checksum saved with it. Moves nothing (a training run moves a damaged newest checkpoint aside
itself when it resumes).

  python -m vjepa_jax.tools.verify_checkpoints --workdir=DIR

Prints one line per checkpoint (ok / what is wrong) and the newest that verifies; exit status 1
when any checkpoint is damaged.
"""
from __future__ import annotations

import os

from absl import flags

from vjepa_jax import config as config_lib

FLAGS = flags.FLAGS


def verify_workdir(workdir: str) -> dict:
    """{step: None (verifies) or what is wrong} for WORKDIR/checkpoints, oldest first."""
    from vjepa_jax import checkpoint
    from vjepa_jax.config import UsageError
    directory = os.path.join(workdir, 'checkpoints')
    if '://' not in workdir and not os.path.isdir(directory):
        raise UsageError(f'--workdir={workdir}: no checkpoints/ folder there (give a training workdir)')
    ckpt = checkpoint.Checkpointer(directory)
    try:
        return {step: ckpt.verify(step) for step in sorted(ckpt.all_steps())}
    finally:
        ckpt.close()


def main(argv):
    from vjepa_jax.config import UsageError
    if not FLAGS.workdir:
        raise UsageError('pass --workdir=DIR (a training workdir)')
    results = verify_workdir(FLAGS.workdir)
    for step, problem in results.items():
        print(f'checkpoint {step}: ' + ('ok' if problem is None else f'DAMAGED: {problem}'))
    good = [s for s, p in results.items() if p is None]
    print(f'{len(results)} checkpoint(s); newest that verifies: {good[-1] if good else "none"}')
    return 1 if len(good) < len(results) else 0


if __name__ == '__main__':
    config_lib.define_workdir_flag(help_string='a training workdir (its checkpoints/)')
    config_lib.run(main)
