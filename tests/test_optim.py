"""Schedules, weight-decay exclusion and per-network clipping, against the original's rules."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from helpers import config
from vjepa_jax import optim


def test_vjepa1_schedule_values():
    s = optim.make_schedules(config('vitl16').optim)
    assert s.total_steps == 90_000 and s.clip_start == 41 * 300
    np.testing.assert_allclose(float(s.lr(0)), 2e-4 + (6.25e-4 - 2e-4) / 12_000, rtol=1e-6)
    np.testing.assert_allclose(float(s.lr(11_999)), 6.25e-4, rtol=1e-6)  # end of warmup (counter 12,000)
    np.testing.assert_allclose(float(s.lr(89_999)), 7.5e-5, rtol=0.02)
    np.testing.assert_allclose(float(s.wd(0)), 0.04, rtol=1e-6)
    np.testing.assert_allclose(float(s.wd(89_999)), 0.366, rtol=0.002)
    np.testing.assert_allclose(float(s.momentum(0)), 0.998, rtol=1e-7)
    np.testing.assert_allclose(float(s.momentum(90_000)), 0.9996, rtol=1e-7)
    lrs = np.array([float(s.lr(i)) for i in range(0, 90_000, 1000)])
    assert (np.diff(lrs[:12]) > 0).all() and (np.diff(lrs[12:]) < 0).all()


def test_vjepa2_schedules():
    pre = optim.make_schedules(config('vjepa2_vitl16').optim)
    np.testing.assert_allclose(float(pre.lr(0)), 1e-4 + 4.25e-4 / 12_000, rtol=1e-5)
    np.testing.assert_allclose([float(pre.lr(i)) for i in (11_999, 14_000, 30_000)],
                               [5.25e-4] * 3, rtol=1e-6)  # constant after warmup
    assert float(pre.momentum(0)) == float(pre.momentum(2999)) == np.float32(0.99925)
    assert float(pre.wd(0)) == float(pre.wd(2999)) == np.float32(0.04)
    cool = optim.make_schedules(config('vjepa2_vitl16_cooldown').optim)
    assert cool.total_steps == 12_000
    np.testing.assert_allclose(float(cool.lr(14_999)), 1e-6, atol=1e-9)  # at the end of T = 15,000
    np.testing.assert_allclose(float(cool.lr(11_999)), 5.25e-4 + 0.8 * (1e-6 - 5.25e-4), rtol=1e-5)


def test_decay_mask_follows_original_rule():
    params = {'encoder': {'blocks': {0: {'attn': {'qkv': {'kernel': jnp.ones((2, 6)), 'bias': jnp.ones(6)}},
                                         'norm1': {'scale': jnp.ones(2), 'bias': jnp.ones(2)}}},
                          'patch_embed': {'kernel': jnp.ones((1, 2, 2, 3, 2)), 'bias': jnp.ones(2)}},
              'predictor': {'mask_tokens': {0: jnp.ones((1, 1, 4))}}}
    mask = optim.decay_mask(params)
    assert mask['encoder']['blocks'][0]['attn']['qkv'] == {'kernel': True, 'bias': False}
    assert mask['encoder']['blocks'][0]['norm1'] == {'scale': False, 'bias': False}
    assert mask['encoder']['patch_embed'] == {'kernel': True, 'bias': False}
    assert mask['predictor']['mask_tokens'][0] is True  # (1, 1, D) mask tokens ARE decayed


def test_clip_per_network_only_after_start():
    clip = optim.clip_per_network(1.0, start_step=2)
    grads = {'encoder': {'w': jnp.full((4,), 3.0)}, 'predictor': {'w': jnp.full((4,), 0.1)}}
    state = clip.init(grads)
    out, state = clip.update(grads, state)  # step 0: not clipped
    np.testing.assert_allclose(out['encoder']['w'], 3.0)
    out, state = clip.update(grads, state)
    out, state = clip.update(grads, state)  # step 2: encoder norm 6 -> 1 (torch: 1 / (6 + 1e-6))
    np.testing.assert_allclose(out['encoder']['w'], 3.0 / (6.0 + 1e-6), rtol=1e-6)
    np.testing.assert_allclose(out['predictor']['w'], 0.1)  # norm 0.2 < 1: untouched


def test_adamw_update_matches_torch_formula():
    """One AdamW step: p - lr * (m_hat / (sqrt(v_hat) + eps) + wd * p) for decayed tensors."""
    cfg = config('vitl16').optim
    cfg.clip_grad = 0.0
    s = optim.make_schedules(cfg)
    tx = optim.make_optimizer(cfg, s)
    params = {'encoder': {'k': {'kernel': jnp.array([[1.0, -2.0]]), 'bias': jnp.array([0.5])}}}
    grads = jax.tree.map(lambda p: 0.1 * jnp.ones_like(p), params)
    upd, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, upd)
    lr, wd = float(s.lr(0)), float(s.wd(0))
    adam = 0.1 / (0.1 + 1e-8)  # bias-corrected first step
    np.testing.assert_allclose(new['encoder']['k']['kernel'], np.array([[1.0, -2.0]]) * (1 - lr * wd) - lr * adam,
                               rtol=1e-6)
    np.testing.assert_allclose(new['encoder']['k']['bias'], 0.5 - lr * adam, rtol=1e-6)
