"""The gymnasium adapter: PushT (gym-pusht) and a user env through the planner's interface."""
import numpy as np
import pytest

pytest.importorskip('gymnasium')

from vjepa_jax.world_model import collect  # noqa: E402
from vjepa_jax.worlds import gym_adapter  # noqa: E402


@pytest.fixture(scope='module')
def pusht():
    pytest.importorskip('gym_pusht')
    return gym_adapter.make_pusht(size=64)


def test_pusht_reset_is_deterministic_and_frames_rerender(pusht):
    obs, info = pusht.reset(seed=7)
    again, info2 = pusht.reset(seed=7)
    other, _ = pusht.reset(seed=8)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and pusht.observation_space.contains(obs)
    np.testing.assert_array_equal(obs, again)
    np.testing.assert_array_equal(info['state'], info2['state'])
    assert not np.array_equal(obs, other)
    assert info['state'].shape == (5,) and set(info) >= {'goal', 'goal_image', 'distance', 'success'}
    np.testing.assert_array_equal(pusht.task.render(info['state']), obs)
    assert not info['success'] and info['distance'] > 0
    assert (info['goal_image'] != obs).any(-1).sum() > 20  # the goal image is another picture
    np.testing.assert_array_equal(info['goal_image'], pusht.task.render(info['goal']))
    ax, ay = info['state'][:2] * 64 / 512  # x right, y down: the agent (blue) is where the state says
    r, g, b = obs[int(ay), int(ax)].astype(int)
    assert b > r + 60 and b > g + 60
    pusht.reset(seed=7)
    for a in ([30.0, -20.0], [-40.0, 40.0], [10.0, 0.0]):
        obs, _, _, _, info = pusht.step(np.array(a))
        assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
        np.testing.assert_array_equal(pusht.task.render(info['state']), obs)
        assert info['goal_image'].shape == (64, 64, 3)  # in every step's info too
        assert abs(pusht.task.coverage(info['state'], info['goal']) - info['coverage']) < 1e-9  # the env's own measure


def test_pusht_start_goal_distance_and_success(pusht):
    goal = pusht.task.goal_pose
    start = np.array([100.0, 120.0, 300.0, 280.0, 1.0])
    _, info = pusht.reset(seed=0, options={'start_state': start})
    np.testing.assert_allclose(info['state'], start, atol=1e-9)  # exact, unlike the env's own option
    obs, info = pusht.reset(seed=0, options={'start_state': [256.0, 400.0, *goal]})  # at the goal
    assert info['distance'] < 1e-9 and info['success']
    np.testing.assert_array_equal(obs, info['goal_image'])
    state = info['state']
    assert pusht.task.distance(state + [0, 0, 10, 0, 0], state) == pytest.approx(10)  # px
    assert pusht.task.distance(state + [0, 0, 0, 0, np.pi], state) > 100   # the T turned round
    assert pusht.task.covered(state + [0, 0, 1, 0, 0], state)              # 97% > 95% coverage
    assert not pusht.task.covered(state + [0, 0, 3, 0, 0], state)          # 92%: the rule is strict
    assert pusht.task.dino_wm_success(state + [10, 0, 0, 10, 0.3], state)  # 14 px, 0.3 rad
    assert not pusht.task.dino_wm_success(state + [0, 0, 0, 0, 0.4], state)  # > pi / 9
    custom = np.array([200.0, 150.0, 300.0, 300.0, 2.0])  # a goal state of one's own (DINO-WM style)
    _, info = pusht.reset(seed=0, options={'start_state': custom, 'goal_state': custom})
    assert info['distance'] < 1e-9 and info['success']
    np.testing.assert_array_equal(info['goal'], custom)
    _, _, terminated, _, info = pusht.step(np.zeros(2))
    assert terminated and info['success']


def test_pusht_collect_episodes(pusht):
    first = [collect.episode(pusht, seed, steps=6) for seed in (0, 1)]
    again = collect.episode(pusht, 0, steps=6)
    for key in ('frames', 'actions', 'states', 'goal_image'):
        np.testing.assert_array_equal(first[0][key], again[key])
    for ep in first:
        assert ep['frames'].shape == (7, 64, 64, 3) and ep['frames'].dtype == np.uint8
        assert ep['actions'].shape == (6, 2) and ep['states'].shape == (7, 5)
        assert np.abs(ep['actions']).max() <= pusht.action_space.high.max()
        assert np.linalg.norm(ep['states'][-1][:2] - ep['states'][0][:2]) > 5  # px: the agent moved
    assert not np.array_equal(first[0]['frames'], first[1]['frames'])


def test_pusht_absolute_actions():
    pytest.importorskip('gym_pusht')
    env = gym_adapter.make_pusht(size=32, actions='absolute', success='dino_wm', max_steps=2)
    assert env.action_space.low.tolist() == [0, 0] and env.action_space.high.tolist() == [512, 512]
    obs, info = env.reset(seed=0, options={'start_state': [100.0, 100.0, 300.0, 300.0, 0.0]})
    assert obs.shape == (32, 32, 3) and info['goal_image'].shape == (32, 32, 3)
    for _ in range(2):
        _, _, _, truncated, info = env.step(np.array([150.0, 100.0]))  # the agent's target position
    assert truncated and 130 < info['state'][0] < 160 and abs(info['state'][1] - 100) < 1


def test_wraps_a_user_env():
    """Any gymnasium env, given functions: here our own TwoRooms, frames resized to 32."""
    from vjepa_jax.worlds.two_rooms import TwoRooms
    env = gym_adapter.PlannerAdapter(
        TwoRooms(), size=32, success_distance=0.05,
        state_fn=lambda env, obs, info: env.unwrapped.state,
        goal_fn=lambda env, options: (env.unwrapped.goal, env.unwrapped.render_state(env.unwrapped.goal)),
        distance_fn=lambda s, g: np.linalg.norm(s - g))
    obs, info = env.reset(seed=0)
    assert obs.shape == info['goal_image'].shape == (32, 32, 3) and obs.dtype == np.uint8
    assert info['distance'] == pytest.approx(np.linalg.norm(info['state'] - info['goal']))
    ep = collect.episode(env, 0, steps=3)
    assert ep['frames'].shape == (4, 32, 32, 3) and ep['states'].shape == (4, 2)
