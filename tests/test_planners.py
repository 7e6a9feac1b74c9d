"""Planners find the minimum of known energies and respect the action bounds."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vjepa_jax.world_model import planners

TARGET = np.array([[0.3, -0.2], [-0.5, 0.1]], np.float32)  # (H, A)


def quadratic(actions, target=TARGET, weights=(1.0, 4.0)):
    """(S, H, A) -> (S,): a weighted squared distance to target."""
    return jnp.sum((actions - target) ** 2 * jnp.asarray(weights), axis=(-2, -1))


@pytest.mark.parametrize('plan, cfg', [
    (planners.cem, planners.CEMConfig(samples=256, elites=16, iterations=12)),
    (planners.gradient_plan, planners.GradientConfig(restarts=4, steps=200)),
])
def test_planners_find_the_minimum_of_a_quadratic(plan, cfg):
    run = jax.jit(functools.partial(plan, quadratic, cfg=cfg, low=-1.0, high=1.0))
    actions, energy = run(jax.random.key(0))
    np.testing.assert_allclose(actions, TARGET, atol=0.03)
    assert float(energy) < 2e-3
    # a minimum outside the bounds: the plan sits on the nearest bound
    outside = jax.jit(functools.partial(plan, functools.partial(quadratic, target=TARGET * 3), cfg=cfg,
                                        low=-1.0, high=1.0))
    actions, _ = outside(jax.random.key(1))
    assert float(jnp.abs(actions).max()) <= 1.0
    np.testing.assert_allclose(actions, np.clip(TARGET * 3, -1, 1), atol=0.03)


@pytest.mark.parametrize('replan_every', [0, 1, 5])
def test_mpc_replans_every_few_env_steps_within_the_same_budget(replan_every):
    # a policy that always plans the same model action: the agent walks the same way whatever
    # replan_every, and the policy is asked once per `replan_every` env steps
    from vjepa_jax.world_model import mpc
    from vjepa_jax.worlds.two_rooms import TwoRooms
    cfg = mpc.PlanConfig(horizon=2, frame_step=5, model_steps=3, replan_every=replan_every)
    calls = []

    def policy(frames, states, goal, key):
        calls.append(np.asarray(states))
        return jnp.tile(jnp.asarray([0.0, -0.05]), (len(frames), cfg.horizon, 1))  # left, 0.01 per env step

    env = TwoRooms()
    start = env.reset(seed=3)[1]['state']
    out = mpc.run_episodes([TwoRooms()], [3], policy, cfg, jax.random.key(0))
    per_plan = replan_every or 5
    assert len(calls) == 1 + 15 // per_plan  # one compile call, then one per plan
    np.testing.assert_allclose(calls[2][0] - calls[1][0], [0.0, -0.01 * per_plan], atol=1e-6)
    walked = start.copy()
    for _ in range(15):
        walked = env.move(walked, np.array([0.0, -0.01]))
    assert out['actions'][0].shape == (15 // per_plan, 2)
    np.testing.assert_allclose(walked - start, [0.0, -0.15], atol=1e-9)  # no wall on this walk
    np.testing.assert_allclose(out['distances'][0], np.linalg.norm(walked - env.goal), atol=1e-5)
    with pytest.raises(ValueError, match='replan_every=6'):
        mpc.run_episodes([TwoRooms()], [3], policy, mpc.PlanConfig(frame_step=5, replan_every=6), jax.random.key(0))


def test_recorded_frames_are_each_model_steps_observation():
    """record=1 keeps the episode's frames as they were: the first is the reset's, each later one
    the observation after that model action (not the batch's frame buffer, which moves on)."""
    from vjepa_jax.world_model import mpc
    from vjepa_jax.worlds.two_rooms import TwoRooms
    cfg = mpc.PlanConfig(horizon=1, frame_step=5, model_steps=3)

    def policy(frames, states, goal, key):
        return jnp.tile(jnp.asarray([0.0, -0.25]), (len(frames), cfg.horizon, 1))  # left, 0.05 per env step

    out = mpc.run_episodes([TwoRooms(), TwoRooms()], [3, 4], policy, cfg, jax.random.key(0), record=1)
    env = TwoRooms()
    want = [env.reset(seed=3)[0]]
    for _ in range(3):
        for _ in range(5):
            obs = env.step(np.array([0.0, -0.05]))[0]
        want.append(obs)
    assert len(out['frames'][0]) == 4
    np.testing.assert_array_equal(out['frames'][0], np.stack(want))
    assert not np.array_equal(want[0], want[-1])
