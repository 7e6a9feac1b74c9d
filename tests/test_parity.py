"""Numerical parity with the original implementation (tests/fixtures/vjepa1_micro, made by
facebookresearch/jepa at commit 51c59d5): forward outputs, loss, gradients, schedules, EMA."""
import jax
import numpy as np
import pytest
from flax import nnx

from helpers import assert_matches_fixture, fixture_io, fixture_params, jepa_outputs, micro_models
from vjepa_jax import jepa, optim, train_state
from vjepa_jax.recipes import base_config
from vjepa_jax.models import torch_names

TOL = 1e-5


def micro_config():
    c = base_config()
    c.model.update(variant='micro', img_size=64, num_frames=16, pred_depth=2, pred_embed_dim=48, dtype='float32')
    return c


@pytest.fixture(scope='module')
def loaded():
    enc, pred = micro_models()
    enc_def, pred_def = nnx.graphdef(enc), nnx.graphdef(pred)
    params = {'encoder': fixture_params('params_before_step.npz', 'encoder'),
              'predictor': fixture_params('params_before_step.npz', 'predictor')}
    target = fixture_params('params_before_step.npz', 'target_encoder')
    return enc_def, pred_def, params, target


def test_forward_outputs_match(loaded):
    enc_def, pred_def, params, target = loaded
    io, clips, masks = fixture_io()
    out = jepa_outputs(enc_def, pred_def, params, target, clips, masks)
    assert_matches_fixture(out, io, len(masks), TOL)
    # the first generator's pair on its own (the predictor input is that pair's context encoding)
    np.testing.assert_allclose(out['predictor'][0], io['single_pair_pred_out'], atol=TOL)


def test_loss_and_gradients_match(loaded):
    _, _, params, target = loaded
    io, clips, masks = fixture_io()
    trainer = train_state.make_trainer(micro_config())
    (loss, per_mask), grads = jax.jit(trainer.loss_and_grads)(params, target, clips, masks)
    np.testing.assert_allclose(loss, io['loss'], atol=TOL)
    assert per_mask.shape == (2,)
    ref = np.load('tests/fixtures/vjepa1_micro/step_grads.npz')
    ours = {f'{net}/module.backbone.{k}': v for net in ('encoder', 'predictor')
            for k, v in torch_names.to_torch(grads[net]).items()}
    assert set(ours) == set(ref.keys())
    for name in ref:
        scale = max(1.0, float(np.abs(ref[name]).max()))
        np.testing.assert_allclose(ours[name], ref[name], atol=TOL * scale, err_msg=name)


def test_schedules_match_fixture_step():
    """The fixture's next step is the original's second iteration (0-based step 1)."""
    io = np.load('tests/fixtures/vjepa1_micro/io.npz')
    sched = optim.make_schedules(base_config().optim)
    np.testing.assert_allclose(float(sched.lr(1)), io['step_lr'], rtol=1e-6)
    np.testing.assert_allclose(float(sched.wd(1)), io['step_wd'], rtol=1e-6)
    np.testing.assert_allclose(float(sched.momentum(1)), io['step_momentum'], rtol=1e-7)


def test_ema_rule_matches_fixture():
    """target_after = m * target_before + (1 - m) * encoder_after, with the step's momentum."""
    io = np.load('tests/fixtures/vjepa1_micro/io.npz')
    before = fixture_params('params_before_step.npz', 'target_encoder')
    enc_after = fixture_params('params_after_step.npz', 'encoder')
    want = fixture_params('params_after_step.npz', 'target_encoder')
    got = jepa.ema_update(before, enc_after, float(io['step_momentum']))
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(g, w, atol=1e-7)


def test_fixed_position_tables_match_fixture():
    data = np.load('tests/fixtures/vjepa1_micro/params_before_step.npz')
    enc, pred = micro_models()
    np.testing.assert_allclose(enc.pos_table(enc.grid), data['encoder/module.backbone.pos_embed'][0], atol=1e-7)
    from vjepa_jax.models.vit import sincos_table
    np.testing.assert_allclose(sincos_table(48, enc.grid), data['predictor/module.backbone.predictor_pos_embed'][0],
                               atol=1e-7)
    del pred
