"""Pretraining: python -m vjepa_jax.main --config=configs/pretrain/tiny.py --workdir=DIR
[--config.optim.lr=3e-4 ...]. Any config field can be overridden; an unknown key stops
with a one-line error naming it. Joins multi-process runs (TPU pods, SLURM, MPI, explicit)."""
from __future__ import annotations

import os

os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')  # before numpy/scipy load OpenBLAS: its idle threads
# keep spinning after the in-step eigvalsh (effective rank) and take the cores from XLA (~15 % of the
# demo's step on 2 cores); XLA's own threads do the work

from absl import flags

from vjepa_jax import config as config_lib

FLAGS = flags.FLAGS
_CONFIG = None  # the --config flag, when run as the entry point


def define_flags():
    """The command line (defined only when run as the entry point, so tools import together)."""
    global _CONFIG
    _CONFIG = config_lib.define_config_flag(help_string='pretraining config, e.g. configs/pretrain/vitl16.py[:arg]')
    config_lib.define_workdir_flag(help_string='where metrics, TensorBoard files and checkpoints go (local or gs://)')
    flags.DEFINE_enum('distributed', 'auto', ['auto', 'on', 'off'],
                      'jax.distributed.initialize: auto = when a cluster is detected (TPU pod, SLURM, MPI) or '
                      '--coordinator_address is given')
    flags.DEFINE_string('coordinator_address', None, 'HOST:PORT of process 0, for clusters JAX does not detect')
    flags.DEFINE_integer('num_processes', None, 'number of processes (with --coordinator_address)')
    flags.DEFINE_integer('process_id', None, 'this process (with --coordinator_address)')


def cluster_detected(env=None) -> bool:
    """A multi-process launch JAX can configure itself from (its cluster auto-detection)."""
    import os
    env = os.environ if env is None else env
    return (int(env.get('SLURM_NTASKS', '1')) > 1 or int(env.get('OMPI_COMM_WORLD_SIZE', '1')) > 1
            or ',' in env.get('TPU_WORKER_HOSTNAMES', '') or 'MEGASCALE_COORDINATOR_ADDRESS' in env)


def init_distributed() -> None:
    """Join the other processes (once, before any other JAX call)."""
    import jax
    explicit = FLAGS.coordinator_address is not None
    if FLAGS.distributed == 'off' or (FLAGS.distributed == 'auto' and not explicit and not cluster_detected()):
        return
    if explicit:
        if FLAGS.num_processes is None or FLAGS.process_id is None:
            raise SystemExit('error: --coordinator_address needs --num_processes and --process_id')
        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                                   cluster_detection_method='deactivate')  # no SLURM/TPU guessing on top
    else:
        jax.distributed.initialize()
    print(f'process {jax.process_index()}/{jax.process_count()}: {jax.local_device_count()} local of '
          f'{jax.device_count()} devices', flush=True)


def main(argv):
    if _CONFIG.value is None or not FLAGS.workdir:
        raise config_lib.UsageError('pass --config=configs/pretrain/<name>.py and --workdir=DIR')
    init_distributed()
    from vjepa_jax import train
    try:
        train.train(_CONFIG.value, FLAGS.workdir)
    except FloatingPointError as e:
        raise SystemExit(f'error: {e}')


if __name__ == '__main__':
    define_flags()
    config_lib.run(main)
