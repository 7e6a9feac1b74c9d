"""Random-exploration episodes: shapes, determinism, and frames / states the environment replays."""
import numpy as np
import pytest

pytest.importorskip('gymnasium')

from vjepa_jax.world_model import collect  # noqa: E402


@pytest.mark.parametrize('name', collect.ENVS)
def test_episodes_are_deterministic_and_replay_in_the_environment(tmp_path, name):
    folder = collect.collect(name, str(tmp_path / 'a'), episodes=2, steps=12, seed=3, log=lambda *a, **k: None)
    again = collect.collect(name, str(tmp_path / 'b'), episodes=2, steps=12, seed=3, log=lambda *a, **k: None)
    for i in range(2):
        ep = np.load(f'{folder}/{i:05d}.npz')
        other = np.load(f'{again}/{i:05d}.npz')
        for key in ('frames', 'actions', 'states', 'goal_image'):
            np.testing.assert_array_equal(ep[key], other[key])
        assert ep['frames'].shape == (13, 64, 64, 3) and ep['actions'].shape == (12, 2)
        assert len(ep['states']) == 13
        env = collect.make_env(name)  # replaying the actions gives the recorded frames and states
        obs, _ = env.reset(seed=3 + i)
        np.testing.assert_array_equal(obs, ep['frames'][0])
        for t, a in enumerate(ep['actions']):
            obs, _, _, _, info = env.step(a)
            np.testing.assert_array_equal(obs, ep['frames'][t + 1])
            np.testing.assert_array_equal(np.float32(info['state']), ep['states'][t + 1])
        assert np.abs(ep['actions']).max() <= env.action_space.high.max() + 1e-7
        travelled = np.linalg.norm(ep['states'][-1][:2] - ep['states'][0][:2])
        assert travelled > 0.02  # the smoothed walk moves the agent


def test_attraction_draws_the_pusher_to_the_block_and_needs_a_direction():
    from vjepa_jax.config import UsageError
    env = collect.make_env('push')

    def block_moved(attraction):  # episodes (of 16) whose block moved
        moved = 0
        for seed in range(16):
            states = collect.episode(env, seed, 32, attraction=attraction)['states']
            moved += np.linalg.norm(states[-1][2:] - states[0][2:]) > 0.01
        return moved
    plain, drawn = block_moved(0.0), block_moved(0.6)
    assert drawn > plain and drawn >= 12, (plain, drawn)
    # attraction 0 is the plain random walk, action for action
    np.testing.assert_array_equal(collect.episode(env, 5, 12)['actions'],
                                  collect.episode(env, 5, 12, attraction=0.0)['actions'])
    import gymnasium
    with pytest.raises(UsageError, match='exploration_direction'):  # an env without one
        collect.episode(gymnasium.make('CartPole-v1'), 0, 4, attraction=0.5)


def test_attraction_takes_two_rooms_walks_through_the_door():
    env = collect.make_env('two_rooms')

    def crossed(attraction):  # episodes (of 16) that visit both rooms
        n = 0
        for seed in range(16):
            x = collect.episode(env, seed, 64, attraction=attraction)['states'][:, 1]
            n += bool((x > 0.5).any() and (x < 0.5).any())
        return n
    plain, drawn = crossed(0.0), crossed(0.3)
    assert drawn > plain and drawn >= 14, (plain, drawn)
