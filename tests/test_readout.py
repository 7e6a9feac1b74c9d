"""The action read-out (world_model/readout.py): fitted to actions alone it finds the position that
the actions move; its energy and its loss term are what their docstrings say."""
import jax.numpy as jnp
import numpy as np
import pytest

from vjepa_jax.world_model import objective, readout


def walk(episodes=40, length=30, p=4, d=8, seed=0, noise=0.0):
    """Tokens that hold a 2-D position through a fixed random linear map plus a constant, moved by
    actions: (tokens (E, L, P, D), action sums (E, L, 2), positions (E, L, 2), the map (2, P * D))."""
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1, 1, (episodes, length - 1, 2))
    sums = np.concatenate([np.zeros((episodes, 1, 2)), np.cumsum(actions, 1)], 1)
    start = rng.uniform(-3, 3, (episodes, 1, 2))
    pos = start + sums
    mix = rng.normal(size=(2, p * d))
    tokens = pos @ mix + rng.normal(size=p * d) + noise * rng.normal(size=(episodes, length, p * d))
    return tokens.reshape(episodes, length, p, d).astype(np.float32), sums, pos, mix


def test_fit_recovers_the_position_the_actions_move_up_to_a_constant():
    tokens, sums, pos, _ = walk(noise=0.01)
    w = readout.fit(tokens, sums, gaps=(1, 3), ridge=1e-6)
    assert w.shape == (32, 2) and w.dtype == np.float32
    got = readout.project(tokens, w)               # (E, L, 2)
    offset = (got - pos).reshape(-1, 2).mean(0)
    np.testing.assert_allclose(got - offset, pos, atol=0.05)
    # no position label went in: the same fit from actions of a shifted start gives the same map
    w2 = readout.fit(tokens, sums + 5.0, gaps=(1, 3), ridge=1e-6)
    np.testing.assert_allclose(w2, w, atol=1e-5)


def test_ridge_keeps_the_map_off_directions_that_never_vary():
    tokens, sums, _, _ = walk()
    wide = np.concatenate([tokens, np.zeros_like(tokens)], axis=-1)  # channels that never change
    w = readout.fit(wide, sums, gaps=(1,), ridge=1e-3)
    np.testing.assert_array_equal(w.reshape(4, 16, 2)[:, 8:], 0.0)


def test_gaps_longer_than_the_episodes_are_an_error():
    tokens, sums, _, _ = walk(length=5)
    with pytest.raises(ValueError, match='readout gaps'):
        readout.fit(tokens, sums, gaps=(5, 9))


def test_readout_energy_is_the_distance_between_the_read_outs():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(12, 2)).astype(np.float32)
    pred, goal = rng.normal(size=(5, 3, 4)).astype(np.float32), rng.normal(size=(3, 4)).astype(np.float32)
    want = np.linalg.norm(pred.reshape(5, -1) @ w - goal.reshape(-1) @ w, axis=-1)
    got = objective.energy(jnp.asarray(pred), jnp.asarray(goal), 'readout', readout=jnp.asarray(w))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
    with pytest.raises(ValueError, match='read-out matrix'):
        objective.energy(jnp.asarray(pred), jnp.asarray(goal), 'readout')


class Shift:
    """A stand-in predictor for the loss arithmetic: every next frame = the current one + 0.1 (the
    real predictor's losses are tested in test_world_model.py)."""

    def __call__(self, z, actions, states):
        return z + 0.1


def test_readout_term_is_the_mean_error_along_the_read_out_and_zero_weight_is_v_jepa_2_ac():
    rng = np.random.default_rng(2)
    z = jnp.asarray(rng.normal(size=(2, 4, 3, 8)), jnp.float32)
    actions, states = jnp.zeros((2, 3, 2)), jnp.zeros((2, 4, 2))
    w = jnp.asarray(rng.normal(size=(24, 2)), jnp.float32)
    plain = objective.ac_losses(Shift(), z, actions, states, auto_steps=2)
    zero = objective.ac_losses(Shift(), z, actions, states, auto_steps=2, readout=w, readout_weight=0.0)
    assert set(zero) == set(plain) == {'teacher_forcing', 'rollout', 'loss'}
    out = objective.ac_losses(Shift(), z, actions, states, auto_steps=2, readout=w, readout_weight=0.5)
    tf = objective.predict_next(Shift(), z[:, :-1], actions, states[:, :-1])
    ar = objective.rollout(Shift(), z[:, 0], actions[:, :2], states[:, :2])
    along = lambda p, t: np.mean(np.abs(np.asarray(p - t).reshape(*p.shape[:2], -1) @ np.asarray(w)))  # noqa: E731
    want = along(tf, z[:, 1:]) + along(ar, z[:, 1:3])
    np.testing.assert_allclose(float(out['readout']), want, rtol=1e-5)
    np.testing.assert_allclose(float(out['loss']), float(plain['loss']) + 0.5 * want, rtol=1e-5)
    assert float(out['teacher_forcing']) == float(plain['teacher_forcing'])
