"""The two_rooms environment: gymnasium API, determinism, rendering = state, walls and door."""
import numpy as np
import pytest

gym = pytest.importorskip('gymnasium')

from vjepa_jax.worlds.two_rooms import AGENT, TwoRooms, TwoRoomsConfig  # noqa: E402


def agent_centre(frame):
    """(y, x) in world units: the mean of the agent-coloured pixel centres."""
    ys, xs = np.nonzero(np.all(frame == AGENT, axis=-1))
    return np.array([ys.mean() + 0.5, xs.mean() + 0.5]) / frame.shape[0]


def test_passes_gymnasiums_env_checker():
    from gymnasium.utils.env_checker import check_env
    check_env(TwoRooms(), skip_render_check=True)


def test_same_seed_same_episode_and_rooms_differ():
    rng = np.random.default_rng(0)
    actions = rng.uniform(-0.06, 0.06, (30, 2))
    runs = []
    for _ in range(2):
        env = TwoRooms()
        obs, info = env.reset(seed=7)
        frames = [obs] + [env.step(a)[0] for a in actions]
        runs.append((np.stack(frames), info['goal'], env.state))
        assert env.room(info['state']) != env.room(info['goal'])  # start and goal in different rooms
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][2], runs[1][2])
    other = TwoRooms().reset(seed=8)[1]
    assert not np.allclose(other['goal'], runs[0][1])


def test_rendering_matches_the_state():
    env = TwoRooms()
    obs, info = env.reset(seed=3)
    for a in np.random.default_rng(1).uniform(-0.06, 0.06, (20, 2)):
        obs, _, _, _, info = env.step(a)
        np.testing.assert_allclose(agent_centre(obs), info['state'], atol=1.0 / 64)
    np.testing.assert_allclose(agent_centre(env.reset(seed=3)[1]['goal_image']), env.goal, atol=1.0 / 64)


def test_the_wall_blocks_and_the_door_lets_through():
    c = TwoRoomsConfig()
    env = TwoRooms(c)
    env.reset(seed=0, options={'start': [0.15, 0.3], 'goal': [0.5, 0.8]})  # left room, far above the door
    for _ in range(20):
        _, _, _, _, info = env.step(np.array([0.0, c.max_speed]))
    assert env.room(info['state']) == 0 and info['state'][1] < 0.5 - c.wall_width / 2 - c.agent_radius + 1e-9
    env.reset(seed=0, options={'start': [c.door_y, 0.3], 'goal': [0.5, 0.8]})  # level with the door
    for _ in range(10):
        _, _, _, _, info = env.step(np.array([0.0, c.max_speed]))
    assert env.room(info['state']) == 1


def test_success_terminates_and_actions_are_bounded():
    c = TwoRoomsConfig()
    env = TwoRooms(c)
    env.reset(seed=0, options={'start': [0.5, 0.3], 'goal': [0.5, 0.36]})
    _, reward, terminated, truncated, info = env.step(np.array([0.0, 10.0]))  # clipped to max_speed
    np.testing.assert_allclose(info['state'], [0.5, 0.3 + c.max_speed])
    assert terminated and info['success'] and not truncated and reward == -info['distance']
    with pytest.raises(ValueError, match='inside a wall'):
        env.reset(seed=0, options={'start': [0.1, 0.5], 'goal': [0.5, 0.8]})
