"""The pure train step: compiles once, EMA-only target, falling loss; the entry point."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import ROOT, config, run_tool
from vjepa_jax import jepa, masks, train_state
from vjepa_jax.config import UsageError
from vjepa_jax.data import synthetic


@pytest.fixture(scope='module')
def tiny():
    cfg = config('tiny')
    trainer = train_state.make_trainer(cfg)
    sampler = masks.MultiBlockMaskSampler(trainer.grid, masks.mask_specs(cfg.mask), seed=0)
    state = jax.jit(lambda: trainer.init(0, cfg.model, len(cfg.mask.generators)))()
    return cfg, trainer, sampler, state


def batch(cfg, sampler, step):
    clips = synthetic.synthetic_batch(0, step, cfg.data.global_batch_size, cfg.model.num_frames, cfg.model.img_size)
    return jnp.asarray(clips), sampler(step, cfg.data.global_batch_size)


def test_step_compiles_once_and_target_moves_only_by_ema(tiny):
    cfg, trainer, sampler, state = tiny
    step_fn = jax.jit(trainer.train_step, donate_argnums=(0,))
    state = jax.tree.map(jnp.copy, state)
    losses = []
    for step in range(20):
        before_target = jax.tree.map(np.asarray, state['target_encoder'])
        clips, mask_list = batch(cfg, sampler, step)
        state, out = step_fn(state, clips, mask_list)
        losses.append(float(out['loss']))
        m = float(trainer.schedules.momentum(step))
        assert float(out['momentum']) == np.float32(m)
        want = jax.tree.map(lambda k, q: m * k + (1 - m) * np.asarray(q), before_target, state['params']['encoder'])
        for got, exp in zip(jax.tree.leaves(state['target_encoder']), jax.tree.leaves(want)):
            np.testing.assert_allclose(got, exp, rtol=1e-6, atol=1e-7)
    assert step_fn._cache_size() == 1  # fresh masks every step, one compilation
    dim = jax.eval_shape(trainer.targets, state['target_encoder'], clips).shape[-1]
    assert 1.0 <= float(out['rank_target']) <= dim
    assert int(state['step']) == 20 and np.isfinite(losses).all()
    # the optimiser state covers only the online networks: no gradient path to the target
    opt_leaves = jax.tree.leaves(state['opt_state'])
    n_online = len(jax.tree.leaves(state['params']))
    assert sum(leaf.ndim > 0 for leaf in opt_leaves) == 2 * n_online  # Adam mu and nu


def test_a_uint8_batch_trains_as_the_same_clips_normalised_on_the_host(tiny):
    """data.uint8_clips: the step normalises uint8 clips itself; the same step as on the float
    clips that the host pipeline would make from them."""
    from vjepa_jax.data import transforms
    cfg, trainer, sampler, state = tiny
    rng = np.random.default_rng(0)
    b, m = cfg.data.global_batch_size, cfg.model
    raw = rng.integers(0, 256, (b, m.num_frames, m.img_size, m.img_size, 3), dtype=np.uint8)
    mask_list = sampler(0, b)
    step_fn = jax.jit(trainer.train_step)
    from_uint8, out_u = step_fn(state, jnp.asarray(raw), mask_list)
    from_float, out_f = step_fn(state, jnp.asarray(transforms.normalize(raw.astype(np.float32))), mask_list)
    np.testing.assert_allclose(float(out_u['loss']), float(out_f['loss']), rtol=1e-5)
    for a, c in zip(jax.tree.leaves(from_uint8['params']), jax.tree.leaves(from_float['params'])):
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-6)


def test_effective_rank_counts_directions():
    rng = np.random.default_rng(0)
    iso = rng.normal(size=(4096, 16))
    assert 15.0 < float(jepa.effective_rank(jnp.asarray(iso))) <= 16.0
    assert abs(float(jepa.effective_rank(jnp.asarray(100 * iso))) - float(jepa.effective_rank(jnp.asarray(iso)))) < 1e-2
    line = np.outer(rng.normal(size=4096), rng.normal(size=16))  # one direction
    assert float(jepa.effective_rank(jnp.asarray(line))) < 1.1
    three = rng.normal(size=(4096, 3)) @ rng.normal(size=(3, 16))  # three directions in 16 dims
    assert 2.0 < float(jepa.effective_rank(jnp.asarray(three.reshape(64, 64, 16)))) < 3.05


def test_variance_covariance_flags_collapse():
    rng = np.random.default_rng(0)
    iso = rng.normal(size=(4096, 16))
    var, cov = np.asarray(jepa.variance_covariance(jnp.asarray(iso)))
    assert var < 0.02 and cov < 0.1
    assert np.allclose(jepa.variance_covariance(jnp.asarray(5 * iso + 3)), [var, cov], atol=1e-4)  # per-token norm
    two = rng.normal(size=(4096, 2)) @ rng.normal(size=(2, 16))  # two directions in 16 dims
    var2, cov2 = np.asarray(jepa.variance_covariance(jnp.asarray(two.reshape(64, 64, 16))))
    assert var2 > 0.1 and cov2 > 1.0


@pytest.mark.slow  # two more compiled loss-and-gradient variants (~20 s of the fast tier's 2 minutes)
def test_variance_covariance_weights_reach_the_encoder_only(tiny):
    import dataclasses
    cfg, trainer, sampler, state = tiny
    clips, mask_list = batch(cfg, sampler, 0)
    regularised = dataclasses.replace(trainer, var_weight=1.0, cov_weight=0.1)
    (loss, per_mask), grads = jax.jit(trainer.loss_and_grads)(state['params'], state['target_encoder'], clips, mask_list)
    (loss_r, per_mask_r), grads_r = jax.jit(regularised.loss_and_grads)(state['params'], state['target_encoder'],
                                                                         clips, mask_list)
    np.testing.assert_allclose(per_mask_r, per_mask, rtol=1e-6)  # the prediction losses are unchanged
    assert float(loss_r) > float(loss) + 1e-4  # the penalty is added (the tiny init is not whitened)
    for a, b in zip(jax.tree.leaves(grads['predictor']), jax.tree.leaves(grads_r['predictor'])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)  # the terms read the context tokens only
    assert any(float(jnp.abs(a - b).max()) > 1e-6 for a, b in zip(jax.tree.leaves(grads['encoder']),
                                                                   jax.tree.leaves(grads_r['encoder'])))


def test_gradients_do_not_reach_target(tiny):
    cfg, trainer, sampler, state = tiny
    clips, mask_list = batch(cfg, sampler, 0)

    def loss_of_target(target):
        (loss, _), _ = trainer.loss_and_grads(state['params'], target, clips, mask_list)
        return loss
    g = jax.jit(jax.grad(loss_of_target))(state['target_encoder'])
    assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(g))


@pytest.mark.slow
def test_tiny_training_loss_goes_down(tiny_reference):
    """The session's 20-step reference run (conftest): measured 0.822 -> 0.651 (last three)."""
    workdir, _ = tiny_reference
    rows = [json.loads(line) for line in open(workdir / 'metrics.jsonl')]
    assert [r['step'] for r in rows] == list(range(20)) and {'loss', 'lr', 'momentum', 'rank_target'} <= set(rows[0])
    first, last = rows[0]['loss'], np.mean([r['loss'] for r in rows[-3:]])
    assert last < 0.85 * first, (first, last)


@pytest.mark.slow
def test_bf16_scan_remat_step_runs():
    cfg = config('tiny')
    cfg.model.update(dtype='bfloat16', scan_layers=True, remat_policy='full', pos_embed='rope')
    trainer = train_state.make_trainer(cfg)
    state = trainer.init(0, cfg.model, 2)
    assert state['params']['encoder']['blocks']['attn']['qkv']['kernel'].shape == (2, 96, 288)
    assert state['params']['encoder']['blocks']['attn']['qkv']['kernel'].dtype == jnp.float32
    sampler = masks.MultiBlockMaskSampler(trainer.grid, masks.mask_specs(cfg.mask), seed=0)
    clips, mask_list = batch(cfg, sampler, 0)
    state, out = jax.jit(trainer.train_step)(state, clips, mask_list)
    assert np.isfinite(float(out['loss']))
    assert state['params']['encoder']['blocks']['attn']['qkv']['kernel'].dtype == jnp.float32


def run_main(*args):
    return run_tool('vjepa_jax.main', *args)


@pytest.mark.slow
def test_main_runs_and_writes_metrics(tmp_path):
    r = run_main('--config=configs/pretrain/tiny.py', f'--workdir={tmp_path}', '--config.train.num_steps=12',
                 '--config.train.log_every=5', '--config.optim.lr=0.002')
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
    assert [row['step'] for row in rows] == [0, 5, 10, 11]
    assert 'steps/s' in r.stdout and 'ETA' in r.stdout
    assert 'steps_per_s' not in rows[0]  # the first row's time is compilation
    assert all(row['steps_per_s'] > 0 and row['model_tflops_per_device'] > 0 for row in rows[1:])
    assert not any('mfu' in row for row in rows)  # no known peak for a CPU


def test_step_speed_is_flops_over_time_over_peak(monkeypatch):
    from vjepa_jax import metrics
    clock = iter([100.0, 102.0, 103.0])
    monkeypatch.setattr(metrics.time, 'time', lambda: next(clock))
    speed = metrics.StepSpeed(flops_per_step=6e12, peak=1e12, devices=2)
    assert speed.update(10) == {}
    got = speed.update(14)  # 4 steps in 2 s: 2 steps/s x 6e12 / 2 devices = 6e12 per device
    assert got == {'steps_per_s': 2.0, 'model_tflops_per_device': 6.0, 'mfu': 6.0}
    assert speed.update(15)['steps_per_s'] == 1.0


@pytest.mark.slow
def test_main_rejects_unknown_key_in_one_line(tmp_path):
    r = run_main('--config=configs/pretrain/tiny.py', f'--workdir={tmp_path}', '--config.optim.lrr=0.1')
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and "'optim.lrr'" in lines[0], r.stderr
    r = run_main('--config=configs/pretrain/nope.py', f'--workdir={tmp_path}')
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and 'nope.py' in r.stderr


@pytest.mark.parametrize('name', sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, 'configs', 'pretrain'))))
def test_every_config_builds(name):
    cfg = config(name)
    trainer = train_state.make_trainer(cfg)
    assert len(trainer.grid) == 3
    assert cfg.optim.lr > 0 and cfg.model.variant


def test_config_overrides_and_unknown_keys():
    cfg = config('tiny', **{'optim.lr': 5e-4, 'mask.generators.short.num_blocks': 4})
    assert cfg.optim.lr == 5e-4 and cfg.mask.generators.short.num_blocks == 4
    with pytest.raises(UsageError, match=r"unknown config key 'mask.generators.shrt'"):
        config('tiny', **{'mask.generators.shrt.num_blocks': 4})
    with pytest.raises(UsageError, match=r"unknown config key 'model.depthh'"):
        config('tiny', **{'model.depthh': 4})


def test_workdirs_from_before_the_generator_index_resume_only_with_their_order():
    """Before generators carried `index`, two generators ran in sorted-name order (long, short):
    resuming such a workdir with the original's order would swap its mask tokens."""
    from vjepa_jax import train
    cfg = config('tiny')
    old = json.loads(cfg.to_json_best_effort())
    for g in old['mask']['generators'].values():
        del g['index']
    with pytest.raises(UsageError, match=r'--config.mask.generators.long.index=0 --config.mask.generators.short.index=1'):
        train.check_mask_order({'config': old}, cfg, 6)
    swapped = config('tiny', **{'mask.generators.long.index': 0, 'mask.generators.short.index': 1})
    train.check_mask_order({'config': old}, swapped, 6)  # resumes with its own pairing
    train.check_mask_order({'config': old, 'converted_from': 'vitl16.pth.tar'}, cfg, 6)  # the original's order
    train.check_mask_order({'config': json.loads(cfg.to_json_best_effort())}, cfg, 6)  # written with indices
    with pytest.raises(UsageError, match='indices'):
        masks.generator_names(config('tiny', **{'mask.generators.long.index': 0}).mask)
