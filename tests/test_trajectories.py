"""Trajectory datasets for the action-conditioned world model: TwoRooms episodes (collect) built
into TFDS and read back exactly, bad episodes skipped and logged, fixed-shape windows whose
actions combine the right steps, determinism, epochs, resizing, read-time decode errors, and
the DROID source on a small fake raw trajectory."""
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

pytest.importorskip('gymnasium')

from vjepa_jax.data import build, decode, trajectories  # noqa: E402
from vjepa_jax.world_model import collect  # noqa: E402

QUIET = dict(log=lambda *a, **k: None)


@pytest.fixture(scope='module')
def episodes(tmp_path_factory):
    """3 TwoRooms episodes of 12 steps (13 frames) plus a corrupt, a truncated-keys and an
    inconsistent episode."""
    folder = collect.collect('two_rooms', str(tmp_path_factory.mktemp('world')), episodes=3, steps=12, seed=0, **QUIET)
    with open(os.path.join(folder, 'bad_corrupt.npz'), 'wb') as f:
        f.write(open(os.path.join(folder, '00000.npz'), 'rb').read()[:500])
    ep = dict(np.load(os.path.join(folder, '00001.npz')))
    np.savez(os.path.join(folder, 'bad_keys.npz'), frames=ep['frames'], states=ep['states'])
    np.savez(os.path.join(folder, 'bad_lengths.npz'), frames=ep['frames'], actions=ep['actions'][:-2],
             states=ep['states'])
    return folder


@pytest.fixture(scope='module')
def built(episodes, tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp('tfds'))
    b = build.build('trajectories', data_dir, manual_dir=episodes)
    b.write_build_log()
    return data_dir, b


def source_episode(episodes, record):
    return np.load(os.path.join(episodes, record['id'].decode() + '.npz'))


def test_build_round_trip_and_skip_log(built, episodes):
    data_dir, b = built
    assert b.written == {'train': 3}
    reasons = {os.path.basename(p): r for _, p, r in b.skipped}
    assert set(reasons) == {'bad_corrupt.npz', 'bad_keys.npz', 'bad_lengths.npz'}
    assert 'not an npz' in reasons['bad_corrupt.npz'] and reasons['bad_keys.npz'] == 'missing key(s) actions'
    assert 'inconsistent lengths' in reasons['bad_lengths.npz']
    log = open(os.path.join(b.data_dir, 'build_log.txt')).read()
    assert '# train: 3 records written' in log and 'bad_lengths.npz' in log
    src = tfds.data_source('trajectories', data_dir=data_dir, split='train')
    meta = src.dataset_info.metadata
    assert (meta['codec'], meta['action_rule'], meta['action_dim'], meta['state_dim']) == ('lossless', 'sum', 2, 2)
    assert meta['num_frames'] == {'train': [13, 13, 13]}
    assert sorted(src[i]['id'].decode() for i in range(3)) == ['00000', '00001', '00002']
    for i in range(3):
        r = src[i]
        ep = source_episode(episodes, r)
        frames = decode.decode_frames(r['video'], np.arange(r['num_frames']), require_all=True)
        np.testing.assert_array_equal(frames, ep['frames'])  # lossless: bit for bit
        np.testing.assert_array_equal(r['actions'], ep['actions'])
        np.testing.assert_array_equal(r['states'], ep['states'])
        assert (r['num_frames'], r['height'], r['width']) == (13, 64, 64)


def test_encodings_lossless_exact_lossy_hurts_the_agent_and_tiny_episodes_decode():
    env = collect.make_env('two_rooms')
    frames = collect.episode(env, 0, 12)['frames']
    exact = decode.decode_frames(trajectories.encode_frames(frames, 'lossless'), np.arange(13), require_all=True)
    np.testing.assert_array_equal(exact, frames)
    lossy = decode.decode_frames(trajectories.encode_frames(frames, 'h264'), np.arange(13), require_all=True)
    err = np.abs(lossy.astype(int) - frames)
    assert err.mean() < 3 and err.max() > 40  # small on average, large on the agent's few pixels
    tiny = trajectories.encode_frames(np.zeros((2, 16, 16, 3), np.uint8))  # padded past decode.MIN_BYTES
    assert len(tiny) >= decode.MIN_BYTES and decode.probe(tiny).num_frames == 2
    np.testing.assert_array_equal(decode.decode_frames(tiny, [0, 1], require_all=True), 0)


def windows(data_dir, n, **kwargs):
    it = iter(trajectories.trajectory_windows(data_dir, **{**dict(num_frames=4, frame_step=3, batch_size=2, seed=1,
                                                                  log=QUIET['log']), **kwargs}))
    return [next(it) for _ in range(n)]


def test_windows_static_shapes_and_summed_actions(built, episodes):
    data_dir, _ = built
    src = tfds.data_source('trajectories', data_dir=data_dir, split='train')
    unobstructed_checked = 0
    for batch in windows(data_dir, 4):
        assert batch['frames'].shape == (2, 4, 64, 64, 3) and batch['frames'].dtype == np.uint8
        assert batch['actions'].shape == (2, 3, 2) and batch['states'].shape == (2, 4, 2)
        assert batch['actions'].dtype == batch['states'].dtype == np.float32 and int(batch['skipped']) == 0
        for b in range(2):
            ep = source_episode(episodes, src[int(batch['episode'][b])])
            s = int(batch['start'][b])
            assert 0 <= s <= 13 - 10
            idx = [s, s + 3, s + 6, s + 9]
            np.testing.assert_array_equal(batch['frames'][b], ep['frames'][idx])
            np.testing.assert_array_equal(batch['states'][b], ep['states'][idx])
            for t in range(3):
                want = ep['actions'][idx[t]:idx[t + 1]].astype(np.float64).sum(0)
                np.testing.assert_allclose(batch['actions'][b, t], want, atol=1e-6)
                steps = range(idx[t], idx[t + 1])  # where no wall stopped the agent: = the displacement
                if all(np.allclose(ep['states'][i + 1] - ep['states'][i], ep['actions'][i], atol=1e-6) for i in steps):
                    np.testing.assert_allclose(batch['actions'][b, t], ep['states'][idx[t + 1]] - ep['states'][idx[t]],
                                               atol=1e-5)
                    unobstructed_checked += 1
    assert unobstructed_checked > 0


def test_windows_deterministic_epochs_and_resize(built):
    data_dir, _ = built
    a, b, c = windows(data_dir, 3), windows(data_dir, 3), windows(data_dir, 3, seed=2)
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert any(not np.array_equal(x['start'], z['start']) or not np.array_equal(x['episode'], z['episode'])
               for x, z in zip(a, c))
    it = trajectories.trajectory_windows(data_dir, num_frames=2, frame_step=5, batch_size=1, seed=0, num_epochs=2,
                                         image_size=32, **QUIET)
    got = list(it)
    assert sorted(int(x['episode'][0]) for x in got) == [0, 0, 1, 1, 2, 2]  # each episode once per epoch
    assert got[0]['frames'].shape == (1, 2, 32, 32, 3) and got[0]['frames'].dtype == np.uint8
    with pytest.raises(ValueError, match='no episode has the 14 frames'):
        trajectories.trajectory_windows(data_dir, num_frames=14, batch_size=1, **QUIET)


class BrokenTrajectories(trajectories.Trajectories):
    """Record 1's video truncated after the build's checks: undecodable at read time."""

    def _generate_examples(self, split, items):
        for key, example in super()._generate_examples(split, items):
            if key == 1:
                example['video'] = example['video'][:1500]
            yield key, example


def test_undecodable_records_are_replaced_and_counted(episodes, tmp_path):
    b = BrokenTrajectories(data_dir=str(tmp_path))
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=episodes))
    batches = windows(str(tmp_path), 6, name='broken_trajectories', batch_size=1)
    assert sum(int(x['skipped']) for x in batches) > 0
    assert all(int(x['episode'][0]) != 1 for x in batches)


def test_a_build_of_only_bad_episodes_is_a_one_line_error(tmp_path):
    folder = tmp_path / 'eps'
    folder.mkdir()
    (folder / 'a.npz').write_bytes(b'')
    np.savez(folder / 'b.npz', frames=np.zeros((3, 8, 8, 3), np.uint8), actions=np.zeros((2, 2)),
             states=np.full((3, 2), np.nan))
    with pytest.raises(ValueError) as e:
        build.build('trajectories', str(tmp_path / 'data'), manual_dir=str(folder))
    assert str(folder) in str(e.value) and 'all 2 episodes' in str(e.value) and '\n' not in str(e.value)
    with pytest.raises(FileNotFoundError, match='no .npz episodes'):
        build.build('trajectories', str(tmp_path / 'data2'), manual_dir=str(tmp_path))


# -- DROID ---------------------------------------------------------------------------------------
def fake_droid_trajectory(path, n=24, serial='12345'):
    """A raw-layout DROID trajectory: metadata json, trajectory.h5 (n + 1 states), a 15 fps mp4 of n frames."""
    import h5py
    os.makedirs(os.path.join(path, 'recordings', 'MP4'))
    t = np.arange(n + 1, dtype=np.float64)
    cartesian = np.stack([0.4 + 0.01 * t, 0.02 * np.sin(t), 0.3 - 0.005 * t, 0.1 * t - 1.0, 0.05 * t - 0.4,
                          np.cos(0.3 * t)], 1)
    with h5py.File(os.path.join(path, 'trajectory.h5'), 'w') as h5:
        h5['observation/robot_state/cartesian_position'] = cartesian
        h5['observation/robot_state/gripper_position'] = np.clip(0.05 * t - 0.3, 0, 1)
    yy, xx = np.mgrid[0:48, 0:64]
    frames = np.stack([np.stack([(xx * 3 + 4 * i) % 256, yy * 4, np.full_like(xx, 128)], -1) for i in range(n)])
    decode.encode_video(frames.astype(np.uint8), os.path.join(path, 'recordings', 'MP4', f'{serial}.mp4'), fps=15)
    with open(os.path.join(path, f'metadata_{os.path.basename(path)}.json'), 'w') as f:
        json.dump({'uuid': os.path.basename(path), 'current_task': 'put the cup away',
                   'left_mp4_path': f'x/recordings/MP4/{serial}.mp4'}, f)


@pytest.mark.skipif(not os.path.exists(os.path.join(os.path.dirname(trajectories.__file__), 'droid.py')),
                    reason='vjepa_jax/data/droid.py not written yet')
def test_droid_trajectories_build_and_compose_rotations(tmp_path):
    pytest.importorskip('h5py')
    from vjepa_jax.data import droid
    root = tmp_path / 'droid'
    for name in ('lab/success/a', 'lab/failure/b'):
        fake_droid_trajectory(str(root / name))
    os.makedirs(root / 'lab/success/c')
    (root / 'lab/success/c/trajectory.h5').write_bytes(b'not hdf5')
    b = build.build('trajectories/droid', str(tmp_path / 'data'), manual_dir=str(root))
    assert b.written == {'train': 2} and [os.path.basename(p) for _, p, _ in b.skipped] == ['c']
    src = tfds.data_source('trajectories/droid', data_dir=str(tmp_path / 'data'), split='train')
    assert src.dataset_info.metadata['action_rule'] == 'droid' and src.dataset_info.metadata['codec'] == 'h264'
    for i in range(2):
        r = src[i]
        ep = droid.read_trajectory(r['path'].decode())
        assert r['task'].decode() == 'put the cup away' and r['num_frames'] == len(ep['frames']) == 6
        np.testing.assert_array_equal(r['actions'], ep['actions'])
        np.testing.assert_array_equal(r['states'], ep['states'])
        frames = decode.decode_frames(r['video'], np.arange(6), require_all=True)
        assert np.abs(frames.astype(int) - ep['frames']).mean() < 3  # qp 18 on camera footage
    for batch in windows(str(tmp_path / 'data'), 2, name='trajectories/droid', num_frames=3, frame_step=2):
        for k in range(2):
            want = droid.poses_to_actions(batch['states'][k].astype(np.float64))
            np.testing.assert_allclose(batch['actions'][k], want, atol=2e-5)


@pytest.mark.slow
def test_build_cli(episodes, tmp_path):
    from helpers import run_tool
    r = run_tool('vjepa_jax.data.build', '--builder=trajectories', f'--manual_dir={episodes}',
                 f'--data_dir={tmp_path}/a')
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'train: 3 records written' in r.stdout and '3 files skipped' in r.stdout
    (tmp_path / 'bad').mkdir()
    (tmp_path / 'bad' / 'x.npz').write_bytes(b'junk')
    r = run_tool('vjepa_jax.data.build', '--builder=trajectories', f'--manual_dir={tmp_path}/bad',
                 f'--data_dir={tmp_path}/b')
    last = r.stderr.strip().splitlines()[-1]  # after TFDS's progress bars: one line, no traceback
    assert r.returncode != 0 and 'Traceback' not in r.stderr and last.startswith('error: '), r.stderr
    assert last.endswith(f'in {tmp_path}/bad are unreadable (e.g. x.npz: not an npz file (no zip archive; empty or '
                         'truncated?))'), last
