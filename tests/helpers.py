"""Shared test pieces: the parity fixture model and config loading."""
import contextlib
import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vjepa_jax import jepa
from vjepa_jax.config import load_config
from vjepa_jax.models import torch_names
from vjepa_jax.models.predictor import Predictor
from vjepa_jax.models.vit import vit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICRO = os.path.join(ROOT, 'tests', 'fixtures', 'vjepa1_micro')


def config(name, **overrides):
    return load_config(os.path.join(ROOT, 'configs', 'pretrain', f'{name}.py'), overrides)


def micro_models(seed=0):
    """The fixture's vit_micro: 16 x 64 px, tubelet 2, patch 16, predictor depth 2 / dim 48."""
    enc = vit('micro', img_size=64, num_frames=16, rngs=nnx.Rngs(seed))
    pred = Predictor(grid=enc.grid, embed_dim=96, predictor_embed_dim=48, depth=2, num_heads=3, rngs=nnx.Rngs(seed))
    return enc, pred


def fixture_params(npz_name, net):
    """Pure-dict params of `net` (encoder | target_encoder | predictor) from a fixture npz."""
    data = np.load(os.path.join(MICRO, npz_name))
    enc, pred = micro_models()
    template = nnx.to_pure_dict(nnx.state(pred if net == 'predictor' else enc))
    tensors = {k.split('/', 1)[1]: data[k] for k in data if k.startswith(net + '/')}
    return torch_names.from_torch(tensors, template)


def fixture_io():
    io = np.load(os.path.join(MICRO, 'io.npz'))
    clips = jnp.asarray(io['x']).transpose(0, 2, 3, 4, 1)  # (B, C, T, H, W) -> (B, T, H, W, C)
    masks = [(jnp.asarray(io[f'masks_enc_{m}'], jnp.int32), jnp.asarray(io[f'masks_pred_{m}'], jnp.int32))
             for m in range(2)]
    return io, clips, masks


@functools.partial(jax.jit, static_argnums=(0, 1))
def jepa_outputs(encoder_def, predictor_def, params, target, clips, masks):
    """The outputs the parity fixture records (io.npz), in one compiled function (op by op
    they cost ~10 s): encoder and target-encoder tokens, the layer-normed targets, per mask
    the context encoding and the predictor output, and the loss."""
    enc, pred = nnx.merge(encoder_def, params['encoder']), nnx.merge(predictor_def, params['predictor'])
    tgt = nnx.merge(encoder_def, target)
    h = jepa.target_features(tgt, clips)
    context = [enc(clips, ctx) for ctx, _ in masks]
    return {'encoder': enc(clips), 'target': tgt(clips), 'target_features': h, 'context': context,
            'predictor': [pred(z, ctx, tg, m) for m, (z, (ctx, tg)) in enumerate(zip(context, masks))],
            'loss': jepa.jepa_loss(enc, pred, h, clips, masks)[0]}


def assert_matches_fixture(out, io, num_masks, tol):
    """jepa_outputs(...) against the parity fixture's recorded outputs (io.npz)."""
    np.testing.assert_allclose(out['encoder'], io['encoder_out'], atol=tol)
    np.testing.assert_allclose(out['target'], io['target_encoder_out'], atol=tol)
    np.testing.assert_allclose(out['target_features'], io['target_encoder_out_layernorm'], atol=tol)
    for m in range(num_masks):
        np.testing.assert_allclose(out['context'][m], io[f'context_out_{m}'], atol=tol)
        np.testing.assert_allclose(out['predictor'][m], io[f'predictor_out_{m}'], atol=tol)


def compiled_call(module, *args):
    """module(*args) through one jit per module structure and argument shapes (op by op, a
    forward pass of even these small models costs seconds)."""
    graphdef, state = nnx.split(module)
    return _apply(graphdef, state, *args)


@functools.partial(jax.jit, static_argnums=0)
def _apply(graphdef, state, *args):
    return nnx.merge(graphdef, state)(*args)


@contextlib.contextmanager
def cache_every_compilation():
    """Write every compilation to the persistent cache, however short (conftest keeps only those
    over 0.5 s): orbax compiles a slice per array and replica on a process's first checkpoint
    write (~6 s for the tiny model on 8 devices), which later runs then load."""
    before = jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
    try:
        yield
    finally:
        jax.config.update('jax_persistent_cache_min_compile_time_secs', before)


def run_tool(module: str, *args, cwd: str = ROOT, devices: int = 1, timeout: int = 600):
    """`python -m module *args` in a fresh process (one CPU device, the tests' compilation cache)
    -> CompletedProcess with text stdout / stderr."""
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu',
               XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
               JAX_COMPILATION_CACHE_DIR=os.path.join(ROOT, '.jax_cache'))
    return subprocess.run([sys.executable, '-m', module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
