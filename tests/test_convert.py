"""Checkpoint conversion: the torch reader/writer, parity of the converted state with the
original's outputs and training step, the round trip, the ViT-L/16 layout."""
import os
import pickle
import subprocess
import sys
import zipfile

import jax
import numpy as np
import pytest

from helpers import (MICRO, ROOT, assert_matches_fixture, cache_every_compilation, compiled_call, config, fixture_io,
                     jepa_outputs)
from vjepa_jax import masks, torch_io, train, train_state
from vjepa_jax.models import factory
from vjepa_jax.tools import convert_torch

CHECKPOINT = os.path.join(MICRO, 'checkpoint.pth.tar')
MICRO_OVERRIDES = {'model.variant': 'micro', 'model.img_size': 64, 'model.num_frames': 16, 'model.pred_depth': 2,
                   'model.pred_embed_dim': 48, 'model.dtype': 'float32'}
TOL = 1e-5


def micro_config(**overrides):
    """The fixture's model with the original ViT-L/16 recipe (its schedules, its step)."""
    return config('vitl16', **MICRO_OVERRIDES, **overrides)


@pytest.fixture(scope='module')
def converted():
    cfg = micro_config()
    return cfg, torch_io.load_pth(CHECKPOINT), convert_torch.state_from_torch(torch_io.load_pth(CHECKPOINT), cfg)


def test_reader_refuses_anything_but_tensors(tmp_path):
    marker = tmp_path / 'ran'

    class Evil:
        def __reduce__(self):
            return os.system, (f'touch {marker}',)
    path = tmp_path / 'evil.pth'
    with zipfile.ZipFile(path, 'w') as z:
        z.writestr('evil/data.pkl', pickle.dumps({'encoder': Evil()}, protocol=2))
    with pytest.raises(torch_io.UnsafeCheckpointError, match=r'global (posix|os)\.system'):
        torch_io.load_pth(str(path))
    assert not marker.exists()
    with pytest.raises(torch_io.UnsafeCheckpointError, match='reaches outside its storage'):
        torch_io._rebuild_tensor(np.zeros(4, np.float32), 2, (3,), (1,))  # a size/offset lying about the data
    (tmp_path / 'old.pth').write_bytes(pickle.dumps({'a': 1}))
    with pytest.raises(ValueError, match='not a zip-format torch checkpoint'):
        torch_io.load_pth(str(tmp_path / 'old.pth'))


def test_reader_matches_torch_where_installed():
    torch = pytest.importorskip('torch')
    ours = torch_io.load_pth(CHECKPOINT)
    theirs = torch.load(CHECKPOINT, map_location='cpu', weights_only=True)
    for net in ('encoder', 'predictor', 'target_encoder'):
        assert list(ours[net]) == list(theirs[net])
        for name, value in theirs[net].items():
            np.testing.assert_array_equal(ours[net][name], value.numpy())
    for index, entry in theirs['opt']['state'].items():
        for key, value in entry.items():
            np.testing.assert_array_equal(ours['opt']['state'][index][key], value.numpy())
    assert ours['opt']['param_groups'] == theirs['opt']['param_groups']
    assert ours['epoch'] == theirs['epoch'] and ours['lr'] == theirs['lr']


def test_written_files_load_in_torch_where_installed(tmp_path, converted):
    torch = pytest.importorskip('torch')
    cfg, _, state = converted
    path = str(tmp_path / 'out.pth.tar')
    torch_io.save_pth(convert_torch.state_to_torch(state, cfg), path)
    back = torch.load(path, map_location='cpu', weights_only=True)
    np.testing.assert_array_equal(back['encoder']['module.backbone.blocks.0.attn.qkv.weight'].numpy(),
                                  np.asarray(state['params']['encoder']['blocks'][0]['attn']['qkv']['kernel']).T)


def test_converted_networks_reproduce_the_original_outputs(converted):
    cfg, _, state = converted
    io, clips, masks = fixture_io()
    trainer = train_state.make_trainer(cfg)
    out = jepa_outputs(trainer.encoder_def, trainer.predictor_def, state['params'], state['target_encoder'], clips,
                       masks)
    assert_matches_fixture(out, io, len(masks), TOL)
    np.testing.assert_allclose(float(out['loss']), float(io['loss']), rtol=1e-6)


def flat(tree, prefix=''):
    out = {}
    for k, v in tree.items():
        out.update(flat(v, f'{prefix}{k}.') if isinstance(v, dict) else {f'{prefix}{k}': np.asarray(v)})
    return out


def test_one_train_step_from_the_converted_state_matches_the_original(converted):
    """Gradients = step_grads.npz; params and EMA target after the step = params_after_step.npz."""
    from vjepa_jax.models import torch_names
    cfg, _, state = converted
    assert int(state['step']) == 1  # the fixture checkpoint was saved after one warm-up step
    _, clips, masks = fixture_io()
    trainer = train_state.make_trainer(cfg)

    @jax.jit  # the gradients and the step in one compilation (op by op, the gradients took ~30 s)
    def grads_and_step(state, clips, masks):
        (_, _), grads = trainer.loss_and_grads(state['params'], state['target_encoder'], clips, masks)
        return grads, trainer.train_step(state, clips, masks)[0]
    grads, after = grads_and_step(state, clips, masks)
    ref_grads = np.load(os.path.join(MICRO, 'step_grads.npz'))
    ref_after = np.load(os.path.join(MICRO, 'params_after_step.npz'))
    for net, tree in (('encoder', after['params']['encoder']), ('predictor', after['params']['predictor']),
                      ('target_encoder', after['target_encoder'])):
        ours = torch_names.to_torch(jax.tree.map(np.asarray, tree))
        for name, value in ours.items():
            np.testing.assert_allclose(value, ref_after[f'{net}/module.backbone.{name}'], atol=TOL, err_msg=name)
    for net in ('encoder', 'predictor'):
        ours = torch_names.to_torch(jax.tree.map(np.asarray, grads[net]))
        for name, value in ours.items():
            ref = ref_grads[f'{net}/module.backbone.{name}']
            scale = max(1.0, float(np.abs(ref).max()))
            np.testing.assert_allclose(value, ref, atol=TOL * scale, err_msg=name)


def test_round_trip_jax_torch_jax_is_exact(tmp_path, converted):
    cfg, original, state = converted
    path = str(tmp_path / 'export.pth.tar')
    torch_io.save_pth(convert_torch.state_to_torch(state, cfg), path)
    exported = torch_io.load_pth(path)
    # the export has the original's names, order, fixed tables and optimiser indexing
    for net in ('encoder', 'predictor', 'target_encoder'):
        assert list(exported[net]) == list(original[net])
        for name in original[net]:
            np.testing.assert_allclose(exported[net][name], original[net][name], atol=1e-7, err_msg=name)
    assert sorted(exported['opt']['state']) == sorted(original['opt']['state'])
    assert [g['params'] for g in exported['opt']['param_groups']] == \
        [g['params'] for g in original['opt']['param_groups']]
    back = convert_torch.state_from_torch(exported, cfg)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_scanned_layout_converts_too(converted):
    cfg, original, state = converted
    scanned = convert_torch.state_from_torch(original, micro_config(**{'model.scan_layers': True}))
    qkv = scanned['params']['encoder']['blocks']['attn']['qkv']['kernel']
    assert qkv.shape == (2, 96, 288)
    np.testing.assert_array_equal(qkv[1], state['params']['encoder']['blocks'][1]['attn']['qkv']['kernel'])


def test_vitl16_checkpoint_layout_maps_name_for_name():
    """A weightless skeleton of the released vitl16.pth.tar (keys_vitl16_checkpoint.txt)."""
    skeleton = {}
    for line in open(os.path.join(ROOT, 'tests', 'fixtures', 'keys_vitl16_checkpoint.txt')):
        if line.startswith('module.'):
            name, shape, _ = line.rstrip('\n').split('\t')
            shape = tuple(int(n) for n in shape.strip('()').split(',') if n.strip())
            net = 'predictor' if 'predictor' in name or 'mask_tokens' in name else 'encoder'
            skeleton.setdefault(net, {})[name] = np.broadcast_to(np.float32(0), shape)
    skeleton['target_encoder'] = skeleton['encoder']
    params = convert_torch.params_from_torch(skeleton, config('vitl16'))
    assert factory.count_params(params['encoder']) == 303_885_312
    assert factory.count_params(params['predictor']) == 22_082_944
    broken = dict(skeleton['encoder'])
    broken['module.backbone.blocks.99.attn.qkv.weight'] = broken.pop('module.backbone.norm.weight')
    with pytest.raises(ValueError, match=r"missing \['norm.weight'\], unexpected \['blocks.99.attn.qkv.weight'\]"):
        convert_torch.params_from_torch({**skeleton, 'encoder': broken}, config('vitl16'), nets=('encoder',))


@pytest.mark.slow
def test_command_line_conversion_resumes_in_training(tmp_path):
    args = [f'--config.{k}={v}' for k, v in MICRO_OVERRIDES.items()]
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu', XLA_FLAGS='--xla_force_host_platform_device_count=1')
    r = subprocess.run([sys.executable, '-m', 'vjepa_jax.tools.convert_torch', f'--checkpoint={CHECKPOINT}',
                        '--config=configs/pretrain/vitl16.py', f'--output={tmp_path}', '--optimizer', *args],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'step 1' in r.stdout
    # what the evaluation and feature tools load: the EMA target encoder of the workdir
    from vjepa_jax import pretrained
    io, clips, _ = fixture_io()
    target = pretrained.load_encoder(str(tmp_path), micro_config())
    np.testing.assert_allclose(compiled_call(target, clips), io['target_encoder_out'], atol=TOL)
    cfg = micro_config(**{'train.num_steps': 3, 'data.global_batch_size': 8, 'train.log_every': 1})
    lines = []
    with cache_every_compilation():  # orbax's slices for the first checkpoint write
        train.train(cfg, str(tmp_path), log=lines.append)
    assert any('resumed from step 1' in ln for ln in lines)
    out = tmp_path / 'back.pth.tar'
    r = subprocess.run([sys.executable, '-m', 'vjepa_jax.tools.convert_torch', '--to_torch', f'--workdir={tmp_path}',
                        '--config=configs/pretrain/vitl16.py', f'--output={out}', *args, '--config.mesh.data=1'],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert torch_io.load_pth(str(out))['opt']['state'][1]['step'] == 3.0


def test_vjepa2_layout_round_trip():
    """RoPE models (V-JEPA 2) store no position tables; predictors may carry extra mask tokens."""
    cfg = micro_config(**{'model.pos_embed': 'rope', 'model.num_mask_tokens': 3})
    trainer = train_state.make_trainer(cfg)
    state = trainer.init(1, cfg.model, factory.num_mask_tokens(cfg))
    exported = convert_torch.state_to_torch(state, cfg)
    assert not any('pos_embed' in k for net in ('encoder', 'predictor') for k in exported[net])
    assert [k for k in exported['predictor'] if 'mask_tokens' in k][-1] == 'module.backbone.mask_tokens.2'
    back = convert_torch.state_from_torch(exported, cfg)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_converted_mask_tokens_meet_the_generators_they_were_trained_with(converted):
    """The original runs its generators in list order, short-range first, and generator m uses
    mask token m. Here generator m of the config (by its explicit index, not ConfigDict's sorted
    names) must draw the original's generator-m masks and get the converted mask_tokens.m."""
    cfg, torch_ckpt, state = converted
    assert masks.generator_names(cfg.mask) == ['short', 'long']
    io = np.load(os.path.join(MICRO, 'io.npz'))  # masks drawn by the original's collator
    sampler = masks.make_sampler(cfg, train_state.make_trainer(cfg).grid)
    ours = [num_target for _, num_target in sampler.counts]
    theirs = [io[f'masks_pred_{m}'].shape[1] for m in range(2)]  # short-range 48 targets, long-range 96
    assert np.argsort(ours).tolist() == np.argsort(theirs).tolist(), (ours, theirs)
    for m in range(2):
        np.testing.assert_array_equal(np.asarray(state['params']['predictor']['mask_tokens'][m]),
                                      torch_ckpt['predictor'][f'module.backbone.mask_tokens.{m}'])
