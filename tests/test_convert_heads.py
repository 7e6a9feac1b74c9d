"""Conversion of the released attentive probes and the V-JEPA 2-AC predictor: parity with the
original's outputs (fixtures made by tests/fixtures/make_torch_fixtures.py with the original
code), file -> JAX -> file round trips, structure read from the files, errors."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from helpers import ROOT, compiled_call, config
from vjepa_jax import pretrained, torch_io
from vjepa_jax.models import torch_names
from vjepa_jax.models.ac_predictor import ACPredictor, ac_predictor_from_spec, step_layout
from vjepa_jax.models.probe import AttentiveProbe
from vjepa_jax.tools import convert_torch

PROBES = os.path.join(ROOT, 'tests', 'fixtures', 'probe_micro')
AC = os.path.join(ROOT, 'tests', 'fixtures', 'ac_micro')
TOL = 1e-5
ENV = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu', XLA_FLAGS='--xla_force_host_platform_device_count=1')
# the released probes: (file, heads in the micro fixture, expected structure, outputs in io.npz)
PROBE_CASES = {
    'vjepa1': ('vjepa1_probe.pth.tar', 3, dict(style='vjepa1', depth=1, heads=[['linear', 5]]),
               {'linear': 'vjepa1_logits'}),
    'vjepa2': ('vjepa2_probe.pt', 4, dict(style='vjepa2', depth=4, heads=[['linear', 5]]), {'linear': 'vjepa2_logits'}),
    'ek100': ('ek100_probe.pt', 4, dict(style='vjepa2', depth=2, heads=[['verb_classifier', 4], ['noun_classifier', 6],
                                                                          ['action_classifier', 7]]),
              {f'{k}_classifier': f'ek100_{k}' for k in ('verb', 'noun', 'action')}),
}
AC_MICRO = {'model.variant': 'micro', 'model.img_size': 64, 'model.num_frames': 16, 'model.pred_depth': 2,
            'model.pred_embed_dim': 48, 'model.dtype': 'float32'}


def cli(*args):
    r = subprocess.run([sys.executable, '-m', 'vjepa_jax.tools.convert_torch', *args], cwd=ROOT, env=ENV,
                       capture_output=True, text=True, timeout=600)
    return r.returncode, r.stdout + r.stderr


@pytest.mark.parametrize('case', sorted(PROBE_CASES))
def test_converted_probe_reproduces_the_original_and_exports_back(tmp_path, case):
    filename, heads, structure, outputs = PROBE_CASES[case]
    checkpoint = torch_io.load_pth(os.path.join(PROBES, filename))
    path = convert_torch.convert_probe(checkpoint, str(tmp_path / 'probe'), num_heads=heads)
    probe, meta = pretrained.load_probe(path)
    assert {k: meta['spec'][k] for k in structure} == structure
    io = np.load(os.path.join(PROBES, 'io.npz'))
    logits = probe(jnp.asarray(io['tokens']))
    assert sorted(logits) == sorted(outputs)
    for head, key in outputs.items():
        np.testing.assert_allclose(np.asarray(logits[head]), io[key], atol=TOL, rtol=0)
    # back to the original's file layout: same names, same order, same values
    exported = convert_torch.params_to_torch(path)
    original = convert_torch.probe_state_dict(checkpoint)
    back = exported['classifier'] if 'classifier' in exported else exported['classifiers'][0]
    assert list(back) == list(original)
    for name, value in original.items():
        np.testing.assert_array_equal(back[name], value)


@pytest.mark.slow
def test_probe_command_line_detects_the_file_kind(tmp_path):
    code, out = cli(f'--checkpoint={PROBES}/vjepa1_probe.pth.tar', f'--output={tmp_path}/p', '--num_heads=3')
    assert code == 0, out
    assert 'wrote attentive probe' in out
    assert pretrained.read_meta(str(tmp_path / 'p'))['spec']['style'] == 'vjepa1'
    code, out = cli(f'--checkpoint={PROBES}/vjepa1_probe.pth.tar', f'--output={tmp_path}/p', '--num_heads=3')
    assert code != 0 and 'is not empty' in out.strip().splitlines()[-1]
    code, out = cli(f'--checkpoint={PROBES}/vjepa1_probe.pth.tar', f'--output={tmp_path}/q', '--num_heads=5')
    assert code != 0 and 'not divisible by --num_heads=5' in out.strip().splitlines()[-1]


def test_probe_missing_and_renamed_tensors_are_listed():
    state_dict = convert_torch.probe_state_dict(torch_io.load_pth(os.path.join(PROBES, 'vjepa2_probe.pt')))
    state_dict['pooler.blocks.0.attn.qkv.w'] = state_dict.pop('pooler.blocks.0.attn.qkv.weight')
    spec = convert_torch.probe_spec(state_dict, 4)
    from vjepa_jax.models.probe import probe_from_spec
    with pytest.raises(ValueError, match=r"missing \['pooler.blocks.0.attn.qkv.weight'\], "
                                         r"unexpected \['pooler.blocks.0.attn.qkv.w'\]"):
        convert_torch.module_params(state_dict, lambda: probe_from_spec(spec, nnx.Rngs(0)))


def test_probe_init_follows_the_original():
    """Head: torch's default Linear init; pooler: trunc-normal 0.02 with the output layers
    divided by sqrt(2 * layer) (V-JEPA 1: proj and fc2 of the cross block by sqrt(2))."""
    probe = AttentiveProbe(embed_dim=96, num_heads=3, heads=[('linear', 400)], depth=1, style='vjepa1',
                           rngs=nnx.Rngs(0))
    bound = 1 / np.sqrt(96)
    head = np.asarray(probe.linear.kernel[...])
    assert np.abs(head).max() <= bound and np.abs(head).max() > 0.95 * bound
    fc1 = np.asarray(probe.pooler.cross_attention_block.mlp.fc1.kernel[...])
    fc2 = np.asarray(probe.pooler.cross_attention_block.mlp.fc2.kernel[...])
    np.testing.assert_allclose(fc1.std(), 0.02, rtol=0.03)
    np.testing.assert_allclose(fc2.std(), 0.02 / np.sqrt(2), rtol=0.03)


@pytest.fixture(scope='module')
def ac_fixture():
    return np.load(os.path.join(AC, 'io.npz'))


@pytest.mark.parametrize('tag', ['plain', 'extrinsics'])
def test_converted_ac_predictor_reproduces_the_original(ac_fixture, tag):
    io = ac_fixture
    state_dict = torch_io.load_pth(os.path.join(AC, f'ac_{tag}.pt'))['predictor']
    spec = convert_torch.ac_spec(state_dict, num_heads=4, grid=(4, 4), use_extrinsics=tag == 'extrinsics')
    assert (spec['embed_dim'], spec['predictor_embed_dim'], spec['depth'], spec['action_dim']) == (96, 64, 2, 7)
    predictor = ac_predictor_from_spec(spec, nnx.Rngs(0))
    nnx.update(predictor, convert_torch.module_params(state_dict, lambda: ac_predictor_from_spec(spec, nnx.Rngs(0))))
    out = compiled_call(predictor, jnp.asarray(io['tokens']), jnp.asarray(io['actions']), jnp.asarray(io['states']),
                        jnp.asarray(io['extrinsics']) if tag == 'extrinsics' else None)
    np.testing.assert_allclose(np.asarray(out), io[f'{tag}_prediction'], atol=TOL, rtol=0)


def test_ac_predictor_is_block_causal_in_time():
    """Step t's predictions depend on steps <= t only; the layout puts [action, state] first."""
    predictor = ACPredictor(grid=(2, 2), embed_dim=32, predictor_embed_dim=32, depth=2, num_heads=2, rngs=nnx.Rngs(0))
    keys = jax.random.split(jax.random.key(0), 3)
    tokens, actions = jax.random.normal(keys[0], (1, 3 * 4, 32)), jax.random.normal(keys[1], (1, 3, 7))
    states = jax.random.normal(keys[2], (1, 3, 7))
    base = compiled_call(predictor, tokens, actions, states)
    changed = compiled_call(predictor, tokens.at[:, 8:].add(1.0), actions.at[:, 2].add(1.0), states)  # step 2 only
    np.testing.assert_array_equal(np.asarray(base[:, :8]), np.asarray(changed[:, :8]))
    assert np.abs(np.asarray(base[:, 8:] - changed[:, 8:])).max() > 1e-3
    step, coords = step_layout(2, 4, 2, (2, 2))
    assert step.tolist() == [0] * 6 + [1] * 6
    assert coords[:2].tolist() == [[0, 0, 0], [0, 0, 0]] and coords[2:6].tolist() == [[0, 0, 0], [0, 0, 1],
                                                                                        [0, 1, 0], [0, 1, 1]]


@pytest.mark.slow
def test_ac_checkpoint_command_line_round_trip(tmp_path, ac_fixture):
    """A whole V-JEPA 2-AC file (RoPE encoder + AC predictor) -> params checkpoint -> the modules
    -> the original's layout again, bit for bit."""
    from vjepa_jax.models import factory
    cfg = config('vjepa2_vitl16', **AC_MICRO)
    encoder = factory.build_models(cfg.model, factory.num_mask_tokens(cfg), nnx.Rngs(3))[0]
    enc = {f'module.{k}': v for k, v in torch_names.to_torch(
        jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(encoder)))).items()}
    original = {**torch_io.load_pth(os.path.join(AC, 'ac_plain.pt')), 'encoder': enc, 'target_encoder': dict(enc)}
    source = tmp_path / 'vjepa2-ac-micro.pt'
    torch_io.save_pth(original, str(source))
    overrides = [f'--config.{k}={v}' for k, v in AC_MICRO.items()]
    code, out = cli(f'--checkpoint={source}', '--config=configs/pretrain/vjepa2_vitl16.py', f'--output={tmp_path}/ac',
                    '--num_heads=4', *overrides)
    assert code == 0, out
    loaded_encoder, predictor, meta = pretrained.load_ac(str(tmp_path / 'ac'))
    assert meta['spec']['grid'] == [4, 4] and meta['encoder_from'] == 'encoder'
    io = ac_fixture
    out = compiled_call(predictor, jnp.asarray(io['tokens']), jnp.asarray(io['actions']), jnp.asarray(io['states']))
    np.testing.assert_allclose(np.asarray(out), io['plain_prediction'], atol=TOL, rtol=0)
    clip = jax.random.normal(jax.random.key(0), (1, 4, 64, 64, 3))
    np.testing.assert_array_equal(np.asarray(compiled_call(loaded_encoder, clip)),
                                  np.asarray(compiled_call(encoder, clip)))
    code, out = cli('--to_torch', f'--workdir={tmp_path}/ac', f'--output={tmp_path}/back.pt')
    assert code == 0, out
    back = torch_io.load_pth(str(tmp_path / 'back.pt'))
    for net in ('encoder', 'predictor'):
        assert list(back[net]) == list(original[net])
        for name, value in original[net].items():
            np.testing.assert_array_equal(back[net][name], value)


def skeleton(name: str) -> dict:
    """{torch name: zero-stride array of the listed shape} from a keys_*.txt layout file."""
    out = {}
    for line in open(os.path.join(ROOT, 'tests', 'fixtures', name)):
        if not line.startswith('#'):
            key, shape = line.rstrip('\n').split('\t')
            out[key] = np.broadcast_to(np.float32(0), tuple(int(n) for n in shape.strip('()').split(',') if n))
    return out


@pytest.mark.parametrize('name, kind, expected', [
    ('keys_probe_vitl16_k400.txt', 'probe', dict(style='vjepa1', depth=1, heads=[['linear', 400]], elements=13007248)),
    ('keys_probe_vjepa2_vitl_ssv2.txt', 'probe', dict(style='vjepa2', depth=4, heads=[['linear', 174]],
                                                       elements=49514670)),
    ('keys_ac_vitg.txt', 'ac', dict(depth=24, predictor_embed_dim=1024, embed_dim=1408, elements=305220992)),
])
def test_released_layouts_map_name_for_name(name, kind, expected):
    """The full-size released probe and AC predictor layouts: the structure read from the
    shapes builds a module whose every parameter has a tensor, with none left over."""
    from vjepa_jax.models.probe import probe_from_spec
    tensors = skeleton(name)
    if kind == 'probe':
        spec = convert_torch.probe_spec(tensors, 16)
        build = lambda: probe_from_spec(spec, nnx.Rngs(0))  # noqa: E731
    else:
        spec = convert_torch.ac_spec(tensors, 16, (16, 16), False)
        build = lambda: ac_predictor_from_spec(spec, nnx.Rngs(0))  # noqa: E731
    params = convert_torch.module_params(tensors, build)  # raises on any missing / unexpected name
    assert sum(np.size(x) for x in jax.tree.leaves(params)) == expected.pop('elements')
    assert {k: spec[k] for k in expected} == expected
    assert list(torch_names.to_torch(params)) == [torch_names.strip_wrappers(k) for k in tensors]
