"""Sharding over meshes, orbax checkpoints, resume on another mesh, faults, TensorBoard."""
import json
import os
import struct

import jax
import ml_collections
import numpy as np
import pytest

from helpers import config
from vjepa_jax import checkpoint, masks, sharding, train, train_state
from vjepa_jax.data.stream import DataStream
from vjepa_jax.config import UsageError


def mesh_cfg(data, fsdp, tensor):
    return ml_collections.ConfigDict(dict(data=data, fsdp=fsdp, tensor=tensor))


@pytest.fixture(scope='module')
def tiny():
    cfg = config('tiny')
    trainer = train_state.make_trainer(cfg)
    sampler = masks.make_sampler(cfg, trainer.grid)
    stream = DataStream(cfg, sampler)
    batches = [next(stream) for _ in range(2)]
    return cfg, trainer, sampler, batches


def run_steps(tiny, mesh):
    """Two train steps of the tiny config on `mesh` -> (losses, final state, compile stats)."""
    cfg, trainer, sampler, batches = tiny
    init, abstract = train_state.state_layout(trainer, cfg, mesh)
    state = jax.jit(init, out_shardings=train_state.shardings_of(abstract))()
    abstract_batch = train_state.batch_specs(cfg, sampler, mesh)
    step_fn, stats = train_state.compile_step(trainer, abstract, abstract_batch, mesh)
    losses = []
    for clips, mask_list in batches:
        clips = jax.device_put(clips, abstract_batch[0].sharding)
        mask_list = jax.device_put(mask_list, train_state.shardings_of(abstract_batch[1]))
        state, out = step_fn(state, clips, mask_list)
        losses.append(float(out['loss']))
    return losses, state, stats


@pytest.fixture(scope='module')
def one_device(tiny):
    return run_steps(tiny, sharding.make_mesh(mesh_cfg(1, 1, 1), jax.devices()[:1]))


@pytest.mark.slow
@pytest.mark.parametrize('name,shape', [('dp', (8, 1, 1)), ('fsdp', (1, 8, 1)), ('dp_x_tensor', (4, 1, 2))])
def test_mesh_gives_the_same_steps_as_one_device(tiny, one_device, name, shape):
    mesh = sharding.make_mesh(mesh_cfg(*shape))
    losses, state, stats = run_steps(tiny, mesh)
    np.testing.assert_allclose(losses, one_device[0], rtol=2e-5)
    for a, b in zip(jax.tree.leaves(state['params']), jax.tree.leaves(one_device[1]['params'])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=2e-6)
    qkv = state['params']['encoder']['blocks'][0]['attn']['qkv']['kernel']  # (96, 288)
    mu = state['opt_state'][1].mu['encoder']['blocks'][0]['attn']['qkv']['kernel']
    local = qkv.addressable_shards[0].data.shape
    if name == 'fsdp':  # params and Adam moments split along the model width
        assert local == (12, 288) and mu.addressable_shards[0].data.shape == (12, 288)
        assert stats['argument_bytes'] < one_device[2]['argument_bytes'] / 4
    elif name == 'dp_x_tensor':  # qkv columns split over 'tensor', replicated over 'data'
        assert local == (96, 144) and qkv.sharding.spec == jax.sharding.PartitionSpec(None, 'tensor')
    else:
        assert local == (96, 288)


@pytest.mark.slow
def test_bad_mesh_and_batch_stop_with_one_line_errors(tmp_path):
    for shape, text in [((3, 1, 1), 'needs 3 devices but 8 are available'),
                        ((-1, 3, 1), '8 devices do not divide by 3'),
                        ((-1, -1, 1), 'at most one -1'), ((0, 1, 1), 'at most one -1')]:
        with pytest.raises(ValueError, match=text):
            sharding.make_mesh(mesh_cfg(*shape))
    cfg = config('tiny', **{'mesh.data': 2, 'mesh.fsdp': 2, 'mesh.tensor': 3})
    with pytest.raises(UsageError, match='mesh.data=2 mesh.fsdp=2 mesh.tensor=3 needs 12 devices') as e:
        train.train(cfg, str(tmp_path), log=lambda *_: None)
    assert '\n' not in str(e.value)
    cfg = config('tiny', **{'data.global_batch_size': 12})
    with pytest.raises(UsageError, match='global_batch_size 12 does not divide over the 8 batch shards'):
        train.train(cfg, str(tmp_path), log=lambda *_: None)
    assert not os.path.exists(tmp_path / 'compile.json')  # stopped before compiling


def test_logical_axes_cover_the_big_matrices():
    cfg = config('tiny')
    trainer = train_state.make_trainer(cfg)
    mesh = sharding.make_mesh(mesh_cfg(1, 4, 2))
    _, abstract = train_state.state_layout(trainer, cfg, mesh)
    specs = {jax.tree_util.keystr(p): x.sharding.spec
             for p, x in jax.tree_util.tree_leaves_with_path(abstract['params'])}
    P = jax.sharding.PartitionSpec
    enc = "['encoder']['blocks'][0]"
    assert specs[f"{enc}['attn']['qkv']['kernel']"] == P('fsdp', 'tensor')
    assert specs[f"{enc}['attn']['proj']['kernel']"] == P('tensor', 'fsdp')
    assert specs[f"{enc}['mlp']['fc1']['kernel']"] == P('fsdp', 'tensor')
    assert specs[f"{enc}['mlp']['fc2']['kernel']"] == P('tensor', 'fsdp')
    assert specs["['encoder']['patch_embed']['kernel']"] == P(None, None, None, None, 'fsdp')
    assert specs["['encoder']['norm']['scale']"] == P(None)


def train_quiet(cfg, workdir):
    lines = []
    state = train.train(cfg, str(workdir), log=lines.append)
    return state, lines


def losses_of(workdir):
    from vjepa_jax.metrics import read_jsonl
    return {r['step']: r['loss'] for r in read_jsonl(os.path.join(workdir, 'metrics.jsonl'))}


def restore_on_data_mesh(workdir, step):
    cfg = config('tiny')
    _, abstract = train_state.state_layout(train_state.make_trainer(cfg), cfg, sharding.make_mesh(cfg.mesh))
    return checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints')).restore(step, abstract)[0]


@pytest.mark.slow
def test_checkpoints_resume_onto_another_mesh(tmp_path, tiny_reference):
    """Save on a data-parallel mesh, resume on an FSDP mesh: same numbers as one run."""
    over = {'train.log_every': 1, 'checkpoint.every_steps': 2, 'checkpoint.keep_last': 1,
            'checkpoint.keep_every': 4}
    # the straight run: the session's tiny reference (data mesh, checkpoints every 6 steps), at step 6
    reference_dir, _ = tiny_reference
    straight = restore_on_data_mesh(reference_dir, 6)
    assert int(straight['step']) == 6
    train_quiet(config('tiny', **over, **{'train.num_steps': 5}), tmp_path / 'split')
    ckpt = checkpoint.Checkpointer(str(tmp_path / 'split' / 'checkpoints'), every_steps=2)
    assert ckpt.all_steps() == [4, 5]  # keep_last 1 plus every 4th
    # a half-written checkpoint (orbax's temporary directory) is never taken as the latest
    os.makedirs(tmp_path / 'split' / 'checkpoints' / '9.orbax-checkpoint-tmp-1700000000')
    assert ckpt.latest_step() == 5
    meta = ckpt.restore_meta(5)
    assert meta['step'] == 5 and meta['mesh'] == {'data': 8, 'fsdp': 1, 'tensor': 1}
    resumed, lines = train_quiet(config('tiny', **over, **{'train.num_steps': 6, 'mesh.data': 1, 'mesh.fsdp': -1}),
                                 tmp_path / 'split')
    assert any('resumed from step 5' in ln for ln in lines)
    qkv = resumed['params']['encoder']['blocks'][0]['attn']['qkv']['kernel']
    assert qkv.sharding.spec == jax.sharding.PartitionSpec('fsdp', None)
    assert sorted(losses_of(tmp_path / 'split')) == list(range(6))
    np.testing.assert_allclose([losses_of(tmp_path / 'split')[s] for s in range(6)],
                               [losses_of(reference_dir)[s] for s in range(6)], rtol=2e-5)
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=2e-6)
    with pytest.raises(UsageError, match=r'another model layout: pass --config.model.pred_depth=2 '):
        train_quiet(config('tiny', **over, **{'train.num_steps': 8, 'model.pred_depth': 3}), tmp_path / 'split')


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = config('tiny', **{'train.num_steps': 40, 'train.log_every': 1, 'checkpoint.every_steps': 1,
                            'optim.start_lr': 100.0, 'optim.lr': 100.0, 'optim.clip_grad': 0.0})
    with pytest.raises(FloatingPointError, match='non-finite .* at step') as e:
        train_quiet(cfg, tmp_path)
    bad_step = int(str(e.value).split('at step ')[1].split(':')[0])
    ckpt = checkpoint.Checkpointer(str(tmp_path / 'checkpoints'))
    last = ckpt.latest_step()
    assert f'newest checkpoint that verifies is step {last}' in str(e.value)
    assert last is not None and 0 < last <= bad_step
    trainer = train_state.make_trainer(cfg)
    _, abstract = train_state.state_layout(trainer, cfg, sharding.make_mesh(cfg.mesh))
    state, _ = ckpt.restore(last, abstract)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state))


def read_tensorboard_scalars(logdir):
    """{tag: {step: value}} from event files, parsed with tensorboardX's protobufs."""
    from tensorboardX.proto import event_pb2
    out = {}
    for name in sorted(os.listdir(logdir)):
        data = open(os.path.join(logdir, name), 'rb').read()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack('<Q', data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for v in event.summary.value:
                out.setdefault(v.tag, {})[event.step] = v.simple_value
    return out


@pytest.mark.slow
def test_tensorboard_events_match_jsonl(tiny_reference):
    workdir, _ = tiny_reference  # 20 steps, the loss logged every step
    scalars = read_tensorboard_scalars(workdir / 'tensorboard')
    jsonl = losses_of(workdir)
    assert sorted(scalars['loss']) == sorted(jsonl) == list(range(20))
    np.testing.assert_allclose([scalars['loss'][s] for s in range(20)], [jsonl[s] for s in range(20)], rtol=1e-6)
    assert {'lr', 'momentum', 'grad_norm_encoder', 'skipped_records'} <= set(scalars)
    compiled = json.load(open(workdir / 'compile.json'))
    assert compiled['peak_bytes'] > compiled['argument_bytes'] > 0 and compiled['flops'] > 0
    assert os.path.getsize(workdir / 'loss.png') > 0


@pytest.mark.slow
def test_aot_compile_reports_per_device_memory():
    """The AOT tool's path on the 8 CPU devices (a TPU topology needs libtpu, README "Will it fit?")."""
    from vjepa_jax.tools import aot_compile
    cfg = config('tiny', **{'mesh.data': 1, 'mesh.fsdp': -1})
    assert cfg.data.global_batch_size == 8
    row = aot_compile.aot_one(cfg, jax.devices(), batch_per_chip=3, topology='cpu:8')
    assert row['chips'] == 8 and row['mesh'] == {'data': 1, 'fsdp': 8, 'tensor': 1}
    assert cfg.data.global_batch_size == 24 and row['batch_per_chip'] == 3  # 3 clips on each of 8 chips
    assert row['fits'] is None and 0 < row['argument_gib'] < row['peak_gib']  # no HBM figure for a CPU
    assert 'compiled (HBM of this chip unknown): peak' in aot_compile.describe(row)
    assert '| micro | 8x64 | cpu:8 | 8 | 3 | none | - |' in aot_compile.markdown_table([row])
