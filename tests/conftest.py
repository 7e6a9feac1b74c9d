"""Test setup: 8 simulated CPU devices, a persistent compilation cache, absl flags parsed."""
import os
import sys

os.environ['XLA_FLAGS'] = os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
from absl import flags  # noqa: E402

jax.config.update('jax_compilation_cache_dir', os.path.join(ROOT, '.jax_cache'))
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
flags.FLAGS.mark_as_parsed()

FIXTURES = os.path.join(ROOT, 'tests', 'fixtures')
