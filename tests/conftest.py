"""Test setup: 8 simulated CPU devices, a persistent compilation cache, absl flags parsed,
and the session-wide tiny reference run several test files compare against."""
import os
import sys

# as the entry points (vjepa_jax/main.py, demo.py): one OpenBLAS thread, set before numpy loads it,
# so that LAPACK calls (eigvalsh in the effective rank) round the same in-process and in the
# command-line runs the tests compare against
os.environ['OPENBLAS_NUM_THREADS'] = '1'
os.environ['XLA_FLAGS'] = os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import pytest  # noqa: E402
from absl import flags  # noqa: E402

jax.config.update('jax_compilation_cache_dir', os.path.join(ROOT, '.jax_cache'))
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
flags.FLAGS.mark_as_parsed()

FIXTURES = os.path.join(ROOT, 'tests', 'fixtures')


def _cheap_tracer_sharding_error():
    """Speed only, no behaviour change: flax.nnx probes `getattr(x, 'sharding', None)` on every
    RNG-counter update, and on a tracer jax answers with an AttributeError whose message walks
    the whole trace so far (find_progenitors + pretty-printing). Building a big model under
    nnx.eval_shape is then quadratic in its size (ViT-g: ~9 s, ~0.5 s without). Same
    exception type, so hasattr/getattr behave exactly as before; only the text is shorter."""
    from jax._src import core
    prop = getattr(core.Tracer, 'sharding', None)
    if not isinstance(prop, property):
        return

    def sharding(self):
        raise AttributeError(f"The 'sharding' attribute is not available on {type(self).__name__} "
                             f"(abstract value {self.aval}).")
    core.Tracer.sharding = property(sharding)


_cheap_tracer_sharding_error()


REFERENCE_OVERRIDES = {'train.num_steps': 20, 'train.log_every': 1, 'checkpoint.every_steps': 6,
                       'checkpoint.keep_last': 0}


@pytest.fixture(scope='session')
def tiny_reference(tmp_path_factory):
    """One straight in-process run of configs/pretrain/tiny.py (8-device data mesh): 20 steps,
    the loss logged every step, checkpoints kept at steps 6, 12, 18 and 20. -> (workdir, final state).
    Checkpointing does not touch the numbers, so this is the uninterrupted run the resume
    tests (SIGTERM/SIGKILL, another mesh) must reproduce, and the TensorBoard test reads its
    event files. Compilations are written to the persistent cache however short (orbax's
    per-replica slices for the checkpoint writes), so the `python -m vjepa_jax.main`
    processes of the same configuration load them instead of compiling them again."""
    from helpers import cache_every_compilation, config
    from vjepa_jax import train
    workdir = tmp_path_factory.mktemp('tiny_reference')
    with cache_every_compilation():
        state = train.train(config('tiny', **REFERENCE_OVERRIDES), str(workdir), log=lambda *_: None)
    return workdir, state
