"""The world model (V-JEPA 2-AC): block-causal attention in time, the teacher-forcing and
rollout losses, the planning energy, planning with a converted V-JEPA 2-AC file, and the AC
trainer resuming bit for bit after a SIGKILL."""
import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from helpers import ROOT, compiled_call, config
from vjepa_jax import pretrained, torch_io
from vjepa_jax.config import UsageError, load_config
from vjepa_jax.jepa import layer_norm
from vjepa_jax.metrics import read_jsonl
from vjepa_jax.models import torch_names
from vjepa_jax.models.ac_predictor import ACPredictor, state_features
from vjepa_jax.models.vit import attention
from vjepa_jax.world_model import mpc, objective, planners
from vjepa_jax.world_model import readout as readout_lib

AC = os.path.join(ROOT, 'tests', 'fixtures', 'ac_micro')
# the converted V-JEPA 2-AC micro file's encoder (as tests/test_convert_heads.py builds it): 64 px, patch 16
AC_MICRO = {'model.variant': 'micro', 'model.img_size': 64, 'model.num_frames': 16, 'model.pred_depth': 2,
            'model.pred_embed_dim': 48, 'model.dtype': 'float32'}
STEPS = np.array([0, 0, 0, 1, 1, 2, 2, 2], np.int32)


def tiny_predictor(frame_causal=True, query_chunk=0, action_dim=3, seed=0):
    """2 x 2 tokens a frame, width 16, one block: an AC predictor that compiles in a moment."""
    return ACPredictor(grid=(2, 2), embed_dim=16, predictor_embed_dim=16, depth=1, num_heads=2, action_dim=action_dim,
                       frame_causal=frame_causal, attention_query_chunk=query_chunk, rngs=nnx.Rngs(seed))


# -- 1: no token attends to a later step ----------------------------------------------------------
@functools.partial(jax.jit, static_argnums=(0, 1))
def attention_and_jacobians(query_chunk, impl, q, k, v):
    """-> attention output (B, N, heads, hd) and |d out_i / d k_j|, |d out_i / d v_j| maxed over
    everything but the query token i and key token j: (N, N) each."""
    fn = lambda k, v: attention(q, k, v, query_chunk, jnp.asarray(STEPS), impl)  # noqa: E731
    jk, jv = jax.jacrev(fn, argnums=(0, 1))(k, v)  # (B, N, h, hd, B, N, h, hd)
    per_pair = lambda j: jnp.abs(j).max(axis=(0, 2, 3, 4, 6, 7))  # noqa: E731
    return fn(k, v), per_pair(jk), per_pair(jv)


@pytest.mark.parametrize('impl', ['flash', 'xla'])
@pytest.mark.parametrize('query_chunk', [0, 3])
def test_attention_never_reads_a_later_step(query_chunk, impl):
    q, k, v = jax.random.normal(jax.random.key(0), (3, 1, len(STEPS), 2, 4))
    out, dk, dv = attention_and_jacobians(query_chunk, impl, q, k, v)
    later = STEPS[None, :] > STEPS[:, None]  # [i, j]: key j is of a later step than query i
    for d in (dk, dv):
        d = np.asarray(d)
        assert (d[later] == 0).all()  # exactly: no path at all from a later step's key or value
        assert (d[~later] > 1e-4).all()  # every own-or-earlier-step token does contribute
    # every path equals jax.nn.dot_product_attention's XLA path on the whole sequence
    full, _, _ = attention_and_jacobians(0, 'xla', q, k, v)
    np.testing.assert_allclose(np.asarray(out), np.asarray(full), atol=1e-6, rtol=1e-6)
    if query_chunk:  # the padded query blocks (8 = 3 + 3 + 2, one block split inside step 1) change nothing
        # and without steps, the chunked attention is plain attention
        np.testing.assert_allclose(np.asarray(attention(q, k, v, query_chunk, impl=impl)),
                                   np.asarray(attention(q, k, v, impl='xla')), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize('query_chunk', [0, 5])
def test_ac_predictor_hides_the_last_step_from_earlier_ones(query_chunk):
    """Tokens, action or state of the last step changed: the earlier steps' predictions are bit
    for bit the same (5: query blocks that cut through steps, with padding). Without the
    block-causal mask the same change does reach them (the check can fail)."""
    keys = jax.random.split(jax.random.key(1), 3)
    tokens = jax.random.normal(keys[0], (2, 3 * 4, 16))
    actions, states = jax.random.normal(keys[1], (2, 3, 3)), jax.random.normal(keys[2], (2, 3, 3))
    changes = {'tokens': (tokens.at[:, 8:].add(0.5), actions, states),
               'action': (tokens, actions.at[:, 2].add(0.5), states),
               'state': (tokens, actions, states.at[:, 2].add(0.5))}
    for causal in (True, False):
        predictor = tiny_predictor(frame_causal=causal, query_chunk=query_chunk)
        base = np.asarray(compiled_call(predictor, tokens, actions, states))
        for name, args in changes.items():
            out = np.asarray(compiled_call(predictor, *args))
            assert np.abs(out[:, 8:] - base[:, 8:]).max() > 1e-4, name  # the last step itself sees it
            if causal:
                np.testing.assert_array_equal(out[:, :8], base[:, :8], err_msg=name)
            else:
                assert np.abs(out[:, :8] - base[:, :8]).max() > 1e-4, name


def test_state_fourier_features_are_the_state_then_its_sines_and_cosines():
    """state_fourier=2 on a (y, x) state: [y, x, sin(pi y), sin(2 pi y), sin(pi x), sin(2 pi x),
    then the cosines in the same order], computed by hand; 0 passes the state through (the
    original); the predictor's state encoder reads the A (1 + 2F) features."""
    y, x = 0.25, -0.5
    states = jnp.array([[[y, x]]])
    expected = [y, x, np.sin(np.pi * y), np.sin(2 * np.pi * y), np.sin(np.pi * x), np.sin(2 * np.pi * x),
                np.cos(np.pi * y), np.cos(2 * np.pi * y), np.cos(np.pi * x), np.cos(2 * np.pi * x)]
    np.testing.assert_allclose(np.asarray(state_features(states, 2))[0, 0], expected, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(state_features(states, 0)), np.asarray(states))
    predictor = ACPredictor(grid=(2, 2), embed_dim=16, predictor_embed_dim=16, depth=1, num_heads=2, action_dim=2,
                            state_fourier=2, rngs=nnx.Rngs(0))
    assert predictor.state_encoder.kernel.value.shape == (10, 16)
    tokens, actions = jnp.ones((1, 4, 16)), jnp.zeros((1, 1, 2))
    # states 2 apart have the same sines and cosines: only the state itself tells them apart
    out = [np.asarray(predictor(tokens, actions, states + shift)) for shift in (0.0, 2.0)]
    assert np.isfinite(out[0]).all() and np.abs(out[0] - out[1]).max() > 1e-5


# -- 2: rollout vs teacher forcing ----------------------------------------------------------------
@functools.partial(jax.jit, static_argnums=(0, 5))
def losses(graphdef, state, z, actions, states, auto_steps):
    return objective.ac_losses(nnx.merge(graphdef, state), z, actions, states, auto_steps)


@functools.partial(jax.jit, static_argnums=(0, 5))
def loss_grads(graphdef, state, z, actions, states, auto_steps):
    """The gradients of ac_losses' two terms w.r.t. the true tokens z."""
    predictor = nnx.merge(graphdef, state)
    return {k: jax.grad(lambda z, k=k: objective.ac_losses(predictor, z, actions, states, auto_steps)[k])(z)
            for k in ('teacher_forcing', 'rollout')}


@functools.partial(jax.jit, static_argnums=0)
def predict(graphdef, state, z, actions, states):
    return objective.predict_next(nnx.merge(graphdef, state), z, actions, states)


def windows(t, seed=0):
    """A batch of 2 windows of t frames: z (2, t, 4, 16) layer-normed, actions (2, t-1, 3), states (2, t, 3)."""
    keys = jax.random.split(jax.random.key(seed), 3)
    return (layer_norm(jax.random.normal(keys[0], (2, t, 4, 16))), jax.random.normal(keys[1], (2, t - 1, 3)),
            jax.random.normal(keys[2], (2, t, 3)))


def test_rollout_of_one_step_is_teacher_forcings_first_step():
    graphdef, state = nnx.split(tiny_predictor())
    # windows of 2 frames: one prediction, and the two losses are the same number
    z, actions, states = windows(2)
    out = losses(graphdef, state, z, actions, states, 1)
    assert float(out['rollout']) == float(out['teacher_forcing']) > 0
    assert float(out['loss']) == float(out['rollout'] + out['teacher_forcing'])
    # windows of 4 frames: the 1-step rollout is the mean L1 of the first prediction only,
    # which sees the first frame only (a separate one-step forward pass agrees)
    z, actions, states = windows(4, seed=1)
    out = losses(graphdef, state, z, actions, states, 1)
    first = predict(graphdef, state, z[:, :1], actions[:, :1], states[:, :1])[:, 0]
    np.testing.assert_allclose(float(out['rollout']), float(jnp.mean(jnp.abs(first - z[:, 1]))), rtol=1e-6)
    every = predict(graphdef, state, z[:, :3], actions, states[:, :3])
    np.testing.assert_allclose(float(out['teacher_forcing']), float(jnp.mean(jnp.abs(every - z[:, 1:]))), rtol=1e-6)
    assert abs(float(out['rollout'] - out['teacher_forcing'])) > 1e-4  # the other steps do count in teacher forcing


def test_rollout_feeds_back_its_own_layer_normed_predictions():
    """auto_steps=2 on windows of 4 frames: step 2 of the rollout is predicted from [frame 0,
    the layer-normed prediction of frame 1], never from the true frame 1. The true frames 1
    and 2 enter the rollout loss only as targets: its gradient w.r.t. them is exactly the L1
    target gradient -sign(pred - z) / n, while teacher forcing also reads frame 1 as input."""
    graphdef, state = nnx.split(tiny_predictor())
    z, actions, states = windows(4, seed=2)
    out = losses(graphdef, state, z, actions, states, 2)
    grads = loss_grads(graphdef, state, z, actions, states, 2)
    # by hand: two steps, each fed the previous layer-normed prediction
    p1 = predict(graphdef, state, z[:, :1], actions[:, :1], states[:, :1])[:, 0]
    p2 = predict(graphdef, state, jnp.stack([z[:, 0], p1], 1), actions[:, :2], states[:, :2])[:, 1]
    preds = jnp.stack([p1, p2], 1)
    np.testing.assert_allclose(float(out['rollout']), float(jnp.mean(jnp.abs(preds - z[:, 1:3]))), rtol=1e-6)
    # fed the true frame 1 instead, step 2 would predict something else
    teacher = predict(graphdef, state, z[:, :2], actions[:, :2], states[:, :2])[:, 1]
    assert float(jnp.abs(teacher - p2).max()) > 1e-3
    # gradients w.r.t. the true tokens
    g = np.asarray(grads['rollout'])
    target_only = -np.sign(np.asarray(preds - z[:, 1:3])) / preds.size
    np.testing.assert_allclose(g[:, 1:3], target_only, rtol=1e-5, atol=1e-12)
    assert (g[:, 3] == 0).all()  # frame 3 is beyond a 2-step rollout
    assert np.abs(g[:, 0]).max() > 0  # frame 0 is the rollout's input
    tf = np.asarray(grads['teacher_forcing'])  # teacher forcing: frame 1 is a target AND an input
    tf_target_only = -np.sign(np.asarray(predict(graphdef, state, z[:, :3], actions, states[:, :3])
                                         - z[:, 1:])) / z[:, 1:].size
    assert np.abs(tf[:, 1] - tf_target_only[:, 0]).max() > 1e-6
    # changing the true frame 1 moves the rollout loss only through its target, by exactly that
    z2 = z.at[:, 1].add(0.3)
    out2 = losses(graphdef, state, z2, actions, states, 2)
    np.testing.assert_allclose(float(out2['rollout']), float(jnp.mean(jnp.abs(preds - z2[:, 1:3]))), rtol=1e-6)
    assert float(out2['teacher_forcing']) != float(out['teacher_forcing'])


def test_integrated_rollout_states_are_the_planners_states():
    # the state when each action is taken: the first state plus the actions before it
    state0, acts = np.array([[1.0, -2.0]]), np.array([[[0.5, 0.0], [0.25, 1.0], [-1.0, 3.0]]])
    np.testing.assert_allclose(np.asarray(objective.integrate_states(state0, acts)),
                               [[[1.0, -2.0], [1.5, -2.0], [1.75, -1.0]]])
    predictor = tiny_predictor()
    z, actions, states = windows(4, seed=3)
    integrated = objective.integrate_states(states[:, 0], actions)
    # recorded states that ARE the integrated ones: the two choices give the same losses ...
    walk = jnp.concatenate([integrated, integrated[:, -1:] + actions[:, -1:]], axis=1)
    same = [objective.ac_losses(predictor, z, actions, walk, 3, rollout_states=r) for r in ('recorded', 'integrated')]
    assert float(same[0]['rollout']) == float(same[1]['rollout'])
    # ... and where a wall stopped the agent (recorded != integrated) only the rollout term differs
    out = {r: objective.ac_losses(predictor, z, actions, states, 3, rollout_states=r) for r in ('recorded', 'integrated')}
    assert float(out['recorded']['teacher_forcing']) == float(out['integrated']['teacher_forcing'])
    assert abs(float(out['recorded']['rollout']) - float(out['integrated']['rollout'])) > 1e-6
    with pytest.raises(ValueError, match='rollout_states'):
        objective.ac_losses(predictor, z, actions, states, 2, rollout_states='true')


def test_rollout_reads_each_later_state_off_the_frame_it_imagined():
    predictor = tiny_predictor()
    z, actions, states = windows(4, seed=5)
    w = jnp.asarray(np.random.default_rng(0).normal(size=(z.shape[2] * z.shape[3], 3)), jnp.float32)
    read = lambda z_n: states[:, 0] + readout_lib.project(z_n - z[:, 0], w)  # noqa: E731
    got = objective.rollout(predictor, z[:, 0], actions, states, read)
    # by hand: step n is fed the states read off frames 0 (the given state), 1, ..., n - 1
    fed, preds = states[:, :1], []
    for n in range(3):
        fed_z = jnp.concatenate([z[:, :1]] + [p[:, None] for p in preds], axis=1)
        preds.append(objective.predict_next(predictor, fed_z, actions[:, :n + 1], fed)[:, -1])
        fed = jnp.concatenate([fed, read(preds[-1])[:, None]], axis=1)
    np.testing.assert_allclose(np.asarray(got), np.asarray(jnp.stack(preds, 1)), rtol=1e-5, atol=1e-6)
    # the later states matter: the recorded states give another rollout
    assert float(jnp.abs(got - objective.rollout(predictor, z[:, 0], actions, states)).max()) > 1e-4


def test_readout_rollout_states_train_the_rollout_the_planner_reads():
    """loss.rollout_states='readout': the rollout term is the L1 of rollout(..., read_state) with
    each later state the first state plus the read-out's move from the true first frame."""
    predictor = tiny_predictor()
    z, actions, states = windows(4, seed=6)
    w = jnp.asarray(np.random.default_rng(1).normal(size=(z.shape[2] * z.shape[3], 3)), jnp.float32)
    got = objective.ac_losses(predictor, z, actions, states, 3, readout=w, rollout_states='readout')
    read = lambda z_n: states[:, 0] + readout_lib.project(z_n - z[:, 0], w)  # noqa: E731
    by_hand = objective.rollout(predictor, z[:, 0], actions, states, read)
    np.testing.assert_allclose(float(got['rollout']), float(jnp.mean(jnp.abs(by_hand - z[:, 1:]))), rtol=1e-5)
    recorded = objective.ac_losses(predictor, z, actions, states, 3, readout=w)
    assert float(got['teacher_forcing']) == float(recorded['teacher_forcing'])
    assert abs(float(got['rollout']) - float(recorded['rollout'])) > 1e-6
    with pytest.raises(ValueError, match='pass readout'):
        objective.ac_losses(predictor, z, actions, states, 3, rollout_states='readout')
    # the read state is an input: no gradient flows back through it into the imagined frames
    graphdef, params = nnx.split(predictor)

    def grads(loss):
        return jax.tree.leaves(jax.grad(lambda p: loss(nnx.merge(graphdef, p)))(params))

    def by_hand(stop):
        def loss(pred):
            def read_fn(z_n):
                s = states[:, 0] + readout_lib.project(z_n - z[:, 0], w)
                return jax.lax.stop_gradient(s) if stop else s
            return jnp.mean(jnp.abs(objective.rollout(pred, z[:, 0], actions, states, read_fn) - z[:, 1:]))
        return loss
    trained = grads(lambda pred: objective.ac_losses(pred, z, actions, states, 3, readout=w,
                                                     rollout_states='readout')['rollout'])
    for a, b in zip(trained, grads(by_hand(True)), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-7)
    assert max(float(jnp.abs(a - b).max()) for a, b in zip(trained, grads(by_hand(False)))) > 1e-6


def test_auto_steps_outside_the_window_is_an_error():
    z, actions, states = windows(3)
    for bad in (0, 3):
        with pytest.raises(ValueError, match=f'auto_steps={bad}'):
            objective.ac_losses(tiny_predictor(), z, actions, states, bad)


# -- 5: the planning energy -----------------------------------------------------------------------
def test_l1_energy_is_the_mean_absolute_difference():
    rng = np.random.default_rng(0)
    pred, goal = rng.normal(size=(5, 16, 8)).astype(np.float32), rng.normal(size=(16, 8)).astype(np.float32)
    want = np.abs(pred - goal).mean(axis=(1, 2))
    np.testing.assert_allclose(np.asarray(objective.energy(pred, goal, 'l1')), want, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(objective.energy(pred, np.broadcast_to(goal, pred.shape), 'l1')), want,
                               rtol=1e-6)
    with pytest.raises(ValueError, match='energy kind'):
        objective.energy(pred, goal, 'l2')


def test_pyramid_energy_is_zero_only_at_the_goal():
    rng = np.random.default_rng(1)
    goal = rng.normal(size=(16, 8)).astype(np.float32)
    same = objective.energy(goal[None], goal, 'l1_pyramid', (4, 4))
    assert float(same[0]) == 0.0
    # any difference: a random one, one value of one token, a change with zero mean over the frame
    one = goal.copy()
    one[5, 3] += 1e-2
    balanced = goal.copy()
    balanced[0] += 1.0
    balanced[15] -= 1.0
    others = np.stack([goal + rng.normal(size=goal.shape).astype(np.float32), one, balanced])
    assert (np.asarray(objective.energy(others, goal, 'l1_pyramid', (4, 4))) > 0).all()


def object_at(positions, grid=(4, 4), dim=8):
    """(S, P, D) frames of zeros with one 'object' token at each (h, w)."""
    obj = np.linspace(0.5, 2.0, dim, dtype=np.float32)
    out = np.zeros((len(positions), grid[0] * grid[1], dim), np.float32)
    for i, (h, w) in enumerate(positions):
        out[i, h * grid[1] + w] = obj
    return out


@pytest.mark.parametrize('path', [
    [(0, 0), (0, 1), (0, 2), (0, 3)],  # along the top row
    [(0, 0), (1, 1), (2, 2), (3, 3)],  # along the diagonal
])
def test_pyramid_energy_grows_with_the_objects_distance_while_l1_is_flat(path):
    goal = object_at([(0, 0)])[0]
    frames = object_at(path)
    l1 = np.asarray(objective.energy(frames, goal, 'l1'))
    pyramid = np.asarray(objective.energy(frames, goal, 'l1_pyramid', (4, 4)))
    assert l1[0] == pyramid[0] == 0
    np.testing.assert_allclose(l1[1:], l1[1], rtol=1e-6)  # l1: anywhere else is equally far
    assert l1[1] > 0
    assert (np.diff(pyramid) >= -1e-7).all()  # never closer when farther
    assert pyramid[0] < pyramid[1] < pyramid[2]  # inside the goal's 2 x 2 cell, then out of it
    # the levels by hand: 4x4 tokens, 2x2 cells, the whole frame (where the object cancels)
    s = np.abs(goal).sum() / (16 * 8)  # the 4x4 level's energy of one token's object
    np.testing.assert_allclose(pyramid[1], 2 * s / 3, rtol=1e-5)
    np.testing.assert_allclose(pyramid[2], (2 * s + 2 * s + 0) / 3, rtol=1e-5)  # the 2x2 cells: |o|/4 in 2 of 4


def test_pyramid_energy_on_a_larger_grid_keeps_falling_toward_the_goal():
    """8 x 8 tokens: one more level, so three distinct values along a row away from the goal."""
    goal = object_at([(0, 0)], grid=(8, 8))[0]
    frames = object_at([(0, w) for w in range(8)], grid=(8, 8))
    pyramid = np.asarray(objective.energy(frames, goal, 'l1_pyramid', (8, 8)))
    assert (np.diff(pyramid) >= -1e-7).all()
    assert pyramid[0] == 0 < pyramid[1] < pyramid[2] < pyramid[4]
    l1 = np.asarray(objective.energy(frames, goal, 'l1'))
    np.testing.assert_allclose(l1[1:], l1[1], rtol=1e-6)


def test_pyramid_energy_on_a_grid_that_does_not_halve_evenly():
    goal = object_at([(0, 0)], grid=(14, 14))[0]
    frames = object_at([(0, 0), (0, 1), (0, 13)], grid=(14, 14))
    pyramid = np.asarray(objective.energy(frames, goal, 'l1_pyramid', (14, 14)))
    assert pyramid[0] == 0 < pyramid[1] < pyramid[2]


# -- 4: planning with a converted V-JEPA 2-AC file ------------------------------------------------
@pytest.fixture(scope='module')
def converted_ac(tmp_path_factory):
    """The V-JEPA 2-AC micro fixture (ac_plain.pt: the original's predictor) with a random RoPE
    micro encoder, as one released-format file converted in process -> (encoder, predictor)."""
    from vjepa_jax.tools import convert_torch
    cfg = config('vjepa2_vitl16', **AC_MICRO)
    encoder = pretrained.build_encoder(cfg, seed=3)
    enc = {f'module.{k}': v for k, v in torch_names.to_torch(
        jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(encoder)))).items()}
    checkpoint = {**torch_io.load_pth(os.path.join(AC, 'ac_plain.pt')), 'encoder': enc, 'target_encoder': dict(enc)}
    out = convert_torch.convert_ac(checkpoint, cfg, str(tmp_path_factory.mktemp('ac') / 'ac'), num_heads=4)
    encoder, predictor, meta = pretrained.load_ac(out)
    assert meta['spec']['grid'] == [4, 4] and tuple(encoder.grid[-2:]) == (4, 4)
    return encoder, predictor


LOW = np.array([-1.0, -0.5, 0.0, -0.2, -0.2, -0.2, 0.0], np.float32)
HIGH = np.array([1.0, 0.5, 0.3, 0.2, 0.2, 0.2, 1.0], np.float32)


def episode_energy(predictor, z0, state, goal, actions):
    """The energy of candidate plans (S, H, A) of one episode as latent_policy should score them,
    written out again: the state when taking each action = the state + the earlier actions; the
    rollout from the current frame's tokens z0 (P, D); l1 of its final frame to goal (P, D) -> (S,)."""
    proprio = state + jnp.concatenate([jnp.zeros_like(actions[:, :1]), jnp.cumsum(actions, 1)[:, :-1]], 1)
    z = objective.rollout(predictor, jnp.broadcast_to(z0, (actions.shape[0], *z0.shape)), actions, proprio)
    return objective.energy(z[:, -1], goal)


@functools.partial(jax.jit, static_argnums=(0, 1))
def plan_energy(enc_def, pred_def, enc_state, pred_state, frames, states, goal, actions):
    """episode_energy of plans (E, S, H, A) of each episode, from its frame -> (E, S)."""
    encoder, predictor = nnx.merge(enc_def, enc_state), nnx.merge(pred_def, pred_state)
    z0 = objective.encode_frames(encoder, frames[:, None])[:, 0]
    return jax.vmap(functools.partial(episode_energy, predictor))(z0, states, goal, actions)


@functools.partial(jax.jit, static_argnums=(0, 1))
def cem_by_hand(pred_def, cem_cfg, pred_state, z0, states, goal, keys):
    """planners.cem on episode_energy, one episode and key each: z0 (E, P, D) -> (E, H, A)."""
    predictor = nnx.merge(pred_def, pred_state)

    def one(z0, state, goal, key):
        return planners.cem(functools.partial(episode_energy, predictor, z0, state, goal), key, cem_cfg, LOW, HIGH)[0]
    return jax.vmap(one)(z0, states, goal, keys)


@functools.partial(jax.jit, static_argnums=0)
def imagine(pred_def, pred_state, z0, actions, states):
    """The predicted final tokens of one plan per episode: z0 (E, P, D), actions (E, H, A), states (E, A)."""
    predictor = nnx.merge(pred_def, pred_state)
    proprio = states[:, None] + jnp.cumsum(actions, 1) - actions
    return objective.rollout(predictor, z0, actions, proprio)[:, -1]


@pytest.fixture(scope='module')
def planning_problem(converted_ac):
    """Two episodes of 64 px frames and 7-d states; each episode's goal is what the model predicts
    for a known action at a corner of the box (energy 0 there), a different corner per episode.
    -> frames (E, 64, 64, 3) uint8, states (E, 7), their tokens z0, goal tokens, target actions
    (E, 1, 7), energy(plans (E, S, H, A)) -> (E, S)."""
    encoder, predictor = converted_ac
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    states = rng.normal(size=(2, 7)).astype(np.float32)
    target = np.stack([np.where(np.arange(7) % 2, LOW, HIGH), np.where(np.arange(7) % 2, HIGH, LOW)])[:, None]
    enc_def, enc_state = nnx.split(encoder)
    pred_def, pred_state = nnx.split(predictor)
    z0 = mpc.goal_tokens(encoder, frames)  # the current frames' tokens, as goal images' would be
    goal = imagine(pred_def, pred_state, z0, jnp.asarray(target), jnp.asarray(states))
    energy = functools.partial(plan_energy, enc_def, pred_def, enc_state, pred_state, jnp.asarray(frames),
                               jnp.asarray(states), goal)
    return frames, states, z0, goal, target, energy


@pytest.mark.parametrize('planner', ['cem', 'gradient'])
def test_converted_ac_model_plans_within_bounds_toward_the_goal(converted_ac, planning_problem, planner):
    encoder, predictor = converted_ac
    frames, states, _, goal, target, energy = planning_problem
    # goal_tokens encodes as the policy does: the target actions score (about) 0
    np.testing.assert_allclose(np.asarray(energy(jnp.asarray(target[:, None]))), 0, atol=1e-5)
    cfg = mpc.PlanConfig(planner=planner, horizon=1, proprio_dims=7,
                         cem=planners.CEMConfig(samples=8, elites=2, iterations=2),
                         gradient=planners.GradientConfig(restarts=2, steps=4, learning_rate=0.1))
    policy = mpc.latent_policy(encoder, predictor, cfg, LOW, HIGH)
    key = jax.random.key(0)
    actions = np.asarray(policy(jnp.asarray(frames), jnp.asarray(states), goal, key))
    assert actions.shape == (2, 1, 7) and np.isfinite(actions).all()
    assert (actions >= LOW).all() and (actions <= HIGH).all()
    chosen = np.asarray(energy(jnp.asarray(actions[:, None])))[:, 0]
    if planner == 'cem':  # better than where the search starts: the middle of the box
        start = np.broadcast_to((LOW + HIGH) / 2, (2, 1, 1, 7))
    else:  # better than every restart's (uniform) starting point, drawn as gradient_plan draws them
        start = jnp.stack([jax.random.uniform(k, (2, 1, 7), minval=LOW, maxval=HIGH)
                           for k in jax.random.split(key, 2)])
    before = np.asarray(energy(jnp.asarray(start))).min(axis=1)
    assert (chosen < before).all(), (chosen, before)
    # and the plan has moved toward each episode's own target action
    assert (np.abs(actions - target).sum(-1) < np.abs(np.asarray(start) - target[:, None]).sum(-1).min(1)).all()


def test_latent_policy_is_cem_on_the_imagined_final_frames_energy(converted_ac, planning_problem):
    """2-step plans: the policy's actions are exactly planners.cem on the energy written out here
    (the state at each step integrated from the earlier actions, the rollout fed back, l1 to the
    goal tokens), with the policy's per-episode keys."""
    encoder, predictor = converted_ac
    frames, states, z0, goal, _, _ = planning_problem
    cfg = mpc.PlanConfig(planner='cem', horizon=2, proprio_dims=7,
                         cem=planners.CEMConfig(samples=8, elites=2, iterations=2))
    key = jax.random.key(1)
    actions = np.asarray(mpc.latent_policy(encoder, predictor, cfg, LOW, HIGH)(
        jnp.asarray(frames), jnp.asarray(states), goal, key))
    assert actions.shape == (2, 2, 7) and (actions >= LOW).all() and (actions <= HIGH).all()
    want = cem_by_hand(nnx.graphdef(predictor), dataclasses.replace(cfg.cem, horizon=2, action_dim=7),
                       nnx.state(predictor), z0, jnp.asarray(states), goal, jax.random.split(key, 2))
    np.testing.assert_allclose(actions, np.asarray(want), atol=1e-5)


def test_an_ensemble_plans_on_the_members_mean_energy_plus_spread_times_their_std(converted_ac, planning_problem):
    """latent_policy with two predictors: exactly planners.cem on mean + spread x std of the two
    members' energies written out here; two copies of one predictor plan as that one alone."""
    encoder, predictor = converted_ac
    frames, states, z0, goal, _, _ = planning_problem
    other = nnx.clone(predictor)
    noise = jax.random.split(jax.random.key(5), len(jax.tree.leaves(nnx.state(other, nnx.Param))))
    nnx.update(other, jax.tree.map(lambda x, k: x + 0.05 * jax.random.normal(k, x.shape, x.dtype),
                                   nnx.state(other, nnx.Param),
                                   jax.tree.unflatten(jax.tree.structure(nnx.state(other, nnx.Param)), list(noise))))
    cfg = mpc.PlanConfig(planner='cem', horizon=2, proprio_dims=7, ensemble_spread=0.5,
                         cem=planners.CEMConfig(samples=8, elites=2, iterations=2))
    key = jax.random.key(1)
    actions = np.asarray(mpc.latent_policy(encoder, [predictor, other], cfg, LOW, HIGH)(
        jnp.asarray(frames), jnp.asarray(states), goal, key))

    def one(z0, state, goal, key):
        def energy(plans):
            each = jnp.stack([episode_energy(p, z0, state, goal, plans) for p in (predictor, other)])
            return each.mean(0) + 0.5 * jnp.sqrt(((each - each.mean(0)) ** 2).mean(0))
        return planners.cem(energy, key, dataclasses.replace(cfg.cem, horizon=2, action_dim=7), LOW, HIGH)[0]
    want = jax.vmap(one)(z0, jnp.asarray(states), goal, jax.random.split(key, 2))
    np.testing.assert_allclose(actions, np.asarray(want), atol=1e-5)
    alone = mpc.latent_policy(encoder, predictor, cfg, LOW, HIGH)(jnp.asarray(frames), jnp.asarray(states), goal, key)
    twice = mpc.latent_policy(encoder, [predictor, predictor], cfg, LOW, HIGH)(
        jnp.asarray(frames), jnp.asarray(states), goal, key)
    np.testing.assert_allclose(np.asarray(twice), np.asarray(alone), atol=1e-5)
    assert not np.allclose(actions, np.asarray(alone), atol=1e-3)  # the second member changes the plan


# -- 3: the AC trainer resumes bit for bit after SIGKILL ------------------------------------------
TRAIN_STEPS = 8


def trainer_process(workdir, episodes, devices=1):
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu',
               XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
               JAX_COMPILATION_CACHE_DIR=os.path.join(ROOT, '.jax_cache'))
    args = [f'--workdir={workdir}', f'--config.data.episodes={episodes}', f'--config.train.num_steps={TRAIN_STEPS}',
            '--config.optim.ipe=4', '--config.train.log_every=1', '--config.checkpoint.every_steps=2',
            '--config.checkpoint.keep_last=0', '--config.data.cache_tokens=True']
    return subprocess.Popen([sys.executable, '-m', 'vjepa_jax.world_model.trainer',
                             '--config=configs/world_model/two_rooms.py:test', *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def checkpoint_steps(workdir):
    folder = os.path.join(workdir, 'checkpoints')
    return sorted(int(d) for d in os.listdir(folder) if d.isdigit()) if os.path.isdir(folder) else []


@pytest.mark.slow
def test_ac_trainer_resumes_bit_exactly_after_sigkill(tmp_path):
    from vjepa_jax.world_model import collect, trainer
    episodes = collect.collect('two_rooms', str(tmp_path / 'data'), episodes=6, steps=20, log=lambda *a, **k: None)
    straight, killed = tmp_path / 'straight', tmp_path / 'killed'
    # the uninterrupted run first (alone: two at once on two cores are slower than one after the other)
    proc = trainer_process(straight, episodes)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0 and checkpoint_steps(straight) == [2, 4, 6, 8], out[-3000:]
    proc = trainer_process(killed, episodes)
    deadline = time.time() + 300
    while not checkpoint_steps(killed):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.time() < deadline, 'no checkpoint'
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # no chance to save or to close anything
    proc.communicate()
    saved = checkpoint_steps(killed)
    assert saved and max(saved) < TRAIN_STEPS, f'the run ended before the kill: {saved}'
    proc = trainer_process(killed, episodes)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out[-3000:]
    assert f'resumed from step {max(saved)}' in out, out[-3000:]
    got, want = (read_jsonl(os.path.join(d, 'metrics.jsonl')) for d in (killed, straight))
    assert [r['step'] for r in want] == list(range(TRAIN_STEPS))
    assert got == want  # every metric of every step, bit for bit
    assert json.loads(out.strip().splitlines()[-1]) == {k: v for k, v in want[-1].items() if k != 'step'}
    cfg = load_config('configs/world_model/two_rooms.py:test', {'data.episodes': episodes, 'optim.ipe': 4})
    encoder, _ = trainer.load_frozen_encoder(cfg.encoder)
    a, b = (nnx.to_pure_dict(nnx.state(trainer.load_predictor(cfg, str(d), encoder))) for d in (killed, straight))
    assert checkpoint_steps(killed)[-1] == checkpoint_steps(straight)[-1] == TRAIN_STEPS
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    fresh = nnx.to_pure_dict(nnx.state(trainer.build_predictor(cfg.predictor, encoder, cfg.seed)))
    assert any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(fresh)))
    # the same run sharded over 2 devices (mesh data=-1: the batch of 4 split in two) = one device
    proc = trainer_process(tmp_path / 'two_devices', episodes, devices=2)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out[-3000:]
    sharded = read_jsonl(os.path.join(tmp_path / 'two_devices', 'metrics.jsonl'))
    for r, w in zip(sharded, want, strict=True):
        np.testing.assert_allclose([r[k] for k in ('loss', 'teacher_forcing', 'rollout')],
                                   [w[k] for k in ('loss', 'teacher_forcing', 'rollout')], rtol=1e-4)


@pytest.mark.slow
def test_streamed_windows_train_with_the_encoder_in_the_step_and_resume(tmp_path):
    """data.cache_tokens=False: grain windows from the built trajectories dataset, the frozen
    encoder inside the step; a second run resumes from the checkpoint's grain position and
    continues with the batches an uninterrupted run draws."""
    from vjepa_jax.data import build as build_lib
    from vjepa_jax.world_model import collect, trainer
    episodes = collect.collect('two_rooms', str(tmp_path), episodes=4, steps=20, log=lambda *a, **k: None)
    build_lib.build('trajectories', str(tmp_path / 'data'), manual_dir=episodes)

    def run(workdir, steps):
        cfg = load_config('configs/world_model/two_rooms.py:test', {
            'data.cache_tokens': False, 'data.tfds': 'trajectories', 'data.data_dir': str(tmp_path / 'data'),
            'train.num_steps': steps, 'optim.ipe': 4, 'train.log_every': 1, 'checkpoint.every_steps': 2,
            'data.global_batch_size': 8,  # the tests' 8 CPU devices split the batch
            'loss.readout_weight': 0.0, 'plan.energy': 'l1', 'loss.rollout_states': 'recorded',
            'plan.imagined_states': 'integrated'})  # the read-out is fitted on cached tokens only
        return trainer.train(cfg, str(workdir), log=lambda *a, **k: None)[1]
    straight = run(tmp_path / 'straight', 4)
    run(tmp_path / 'split', 2)
    resumed = run(tmp_path / 'split', 4)
    assert np.isfinite(straight['loss']) and resumed == straight  # the same windows after the resume
    rows = read_jsonl(os.path.join(tmp_path / 'split', 'metrics.jsonl'))
    assert [r['step'] for r in rows] == [0, 1, 2, 3]
    # a rerun of the finished run trains nothing and reports its last logged metrics
    assert run(tmp_path / 'split', 4) == {k: v for k, v in rows[-1].items() if k != 'step'}
    assert len(read_jsonl(os.path.join(tmp_path / 'split', 'metrics.jsonl'))) == 4


@pytest.mark.slow
def test_several_steps_per_call_train_as_one_per_call_and_resume(tmp_path):
    """train.steps_per_call=3 (lax.scan) logs and saves at the same steps as one step per call,
    reaches the same parameters, and a run resumed from a checkpoint ends where it did."""
    import shutil
    from vjepa_jax.world_model import collect, trainer
    episodes = collect.collect('two_rooms', str(tmp_path / 'data'), episodes=6, steps=20, log=lambda *a, **k: None)

    def run(workdir, per_call, **changes):
        cfg = load_config('configs/world_model/two_rooms.py:test', {
            'data.episodes': episodes, 'train.num_steps': 8, 'optim.ipe': 4, 'train.log_every': 4,
            'checkpoint.every_steps': 4, 'checkpoint.keep_last': 0, 'train.steps_per_call': per_call,
            'data.global_batch_size': 8, **changes})  # the tests' 8 CPU devices split the batch
        predictor, _ = trainer.train(cfg, str(workdir), log=lambda *a, **k: None)
        return (jax.tree.leaves(nnx.to_pure_dict(nnx.state(predictor))),
                read_jsonl(os.path.join(workdir, 'metrics.jsonl')))
    one, one_rows = run(tmp_path / 'one', 1)
    three, three_rows = run(tmp_path / 'three', 3)
    # logged after steps 0 and 4 (log_every) and 3 and 7 (checkpoints): calls of 1, 3, 1, 3 steps
    assert [r['step'] for r in three_rows] == [r['step'] for r in one_rows] == [0, 3, 4, 7]
    for a, b in zip(one, three, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    assert checkpoint_steps(tmp_path / 'three') == [4, 8]
    shutil.rmtree(tmp_path / 'three' / 'checkpoints' / '8')  # as if killed before the last save
    again, again_rows = run(tmp_path / 'three', 3)
    assert again_rows == three_rows
    for a, b in zip(again, three, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # a predictor of another layout on the same workdir: one line naming the field, nothing moved
    with pytest.raises(UsageError, match=r'--config.predictor.state_fourier=4 \(it has 4, the config 0\)'):
        run(tmp_path / 'three', 3, **{'predictor.state_fourier': 0})
    assert checkpoint_steps(tmp_path / 'three') == [4, 8]
