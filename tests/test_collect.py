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
