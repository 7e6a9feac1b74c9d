"""The push environment: gymnasium API, determinism, rendering = state, pushing, success."""
import numpy as np
import pytest

gym = pytest.importorskip('gymnasium')

from vjepa_jax.worlds.push import BLOCK, PUSHER, Push, PushConfig  # noqa: E402


def centre(frame, colour):
    ys, xs = np.nonzero(np.all(frame == colour, axis=-1))
    return np.array([ys.mean() + 0.5, xs.mean() + 0.5]) / frame.shape[0]


def test_passes_gymnasiums_env_checker():
    from gymnasium.utils.env_checker import check_env
    check_env(Push(), skip_render_check=True)


def test_same_seed_same_episode():
    actions = np.random.default_rng(0).uniform(-0.06, 0.06, (40, 2))
    runs = []
    for _ in range(2):
        env = Push()
        obs, info = env.reset(seed=5)
        runs.append(np.stack([obs] + [env.step(a)[0] for a in actions]))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(Push().reset(seed=6)[0], runs[0][0])


def test_rendering_matches_the_state_and_pusher_never_overlaps():
    c = PushConfig()
    env = Push(c)
    env.reset(seed=2, options={'pusher': [0.5, 0.2], 'block': [0.5, 0.5], 'goal': [0.5, 0.75]})
    for a in [np.array([0.0, 0.06])] * 10 + list(np.random.default_rng(3).uniform(-0.06, 0.06, (30, 2))):
        obs, _, _, _, info = env.step(a)
        pusher, block = info['state'][:2], info['state'][2:]
        assert not env.contact(pusher, block).any()
        np.testing.assert_allclose(centre(obs, PUSHER), pusher, atol=1.5 / 64)  # the block may hide an edge
        visible = np.all(obs == BLOCK, axis=-1).sum()
        assert visible >= 0.7 * (2 * c.block_half * 64) ** 2


def test_pushing_moves_the_block_and_reaches_the_goal():
    c = PushConfig()
    env = Push(c)
    _, info = env.reset(seed=0, options={'pusher': [0.5, 0.2], 'block': [0.5, 0.5], 'goal': [0.5, 0.7]})
    np.testing.assert_allclose(centre(info['goal_image'], BLOCK), [0.5, 0.7], atol=1.0 / 64)
    for step in range(30):
        _, reward, terminated, truncated, info = env.step(np.array([0.0, 1.0]))  # clipped to max_speed
        if terminated:
            break
    assert terminated and info['success'] and reward == -info['distance']
    assert abs(info['state'][2] - 0.5) < 1e-9  # pushed straight along x
    # against the table's edge the block stops, and the pusher with it
    env.reset(seed=0, options={'pusher': [0.5, 0.6], 'block': [0.5, 0.85], 'goal': [0.5, 0.5]})
    for _ in range(20):
        _, _, _, _, info = env.step(np.array([0.0, 0.06]))
    assert info['state'][3] <= 1 - c.block_half + 1e-9 and not env.contact(info['state'][:2], info['state'][2:]).any()
