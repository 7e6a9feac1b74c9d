"""DROID trajectories: small episodes written here in the raw release's layout (trajectory.h5,
metadata_<uuid>.json, recordings/MP4/<serial>.mp4), read back with droid.read_trajectory; the
states and actions checked against a re-derivation of the original's rule, frames against the
written video, the camera choice, and the one-line errors."""
import itertools
import json
import os
import warnings

import h5py
import numpy as np
import pytest

from vjepa_jax.data import decode, droid

SERIALS = {'left': '24400334', 'right': '22008760', 'wrist': '16787047'}
CAMERA_CODE = {'left': 0, 'right': 100, 'wrist': 200}  # frame i of camera c shows id i + code
REL = 'success/2023-11-18/Sat_Nov_18_18:57:20_2023'
VIDEO_FPS = 15
H, W = 48, 64


def coded_frames(ids):
    """Frame k shows ids[k] in two flat halves: left (id // 16) * 16 + 8, right (id % 16) * 16 + 8."""
    f = np.zeros((len(ids), H, W, 3), np.uint8)
    for k, i in enumerate(ids):
        f[k, :, :W // 2] = (i // 16) * 16 + 8
        f[k, :, W // 2:] = (i % 16) * 16 + 8
    return f


def frame_ids(frames):
    hi = np.round((frames[:, 8:-8, 4:W // 2 - 4].mean((1, 2, 3)) - 8) / 16)
    lo = np.round((frames[:, 8:-8, W // 2 + 4:-4].mean((1, 2, 3)) - 8) / 16)
    return (hi * 16 + lo).astype(int)


def make_states(t, seed=0):
    """(t, 7): a wandering position, the gripper pointing down (roll near +-pi, so it wraps) with
    pitch and yaw turning by tenths of a radian per step, and a gripper closing."""
    rng = np.random.default_rng(seed)
    xyz = 0.4 + np.cumsum(rng.normal(0, 0.01, (t, 3)), axis=0)
    roll = np.angle(np.exp(1j * (np.pi + np.cumsum(rng.normal(0, 0.15, t)))))
    pitch = 0.3 * np.sin(np.arange(t) / 3.0)
    yaw = np.cumsum(rng.normal(0, 0.2, t))
    yaw = np.angle(np.exp(1j * yaw))
    grip = np.clip(np.linspace(-0.2, 1.2, t), 0, 1)
    return np.concatenate([xyz, np.stack([roll, pitch, yaw], 1), grip[:, None]], axis=1)


def write_episode(root, t=30, num_video_frames=None, states=None, cameras=('left', 'right', 'wrist')):
    """A raw-DROID trajectory directory with t states and (default t - 1, as in DROID) video
    frames per camera; -> (path, states (t, 7), extrinsics {camera: (t, 6)})."""
    path = root / REL
    mp4_dir = path / 'recordings' / 'MP4'
    mp4_dir.mkdir(parents=True)
    states = make_states(t) if states is None else states
    n = t - 1 if num_video_frames is None else num_video_frames
    rng = np.random.default_rng(1)
    extrinsics = {c: np.tile(np.r_[rng.uniform(-0.5, 0.5, 3), rng.uniform(-1, 1, 3)], (t, 1)) for c in SERIALS}
    with h5py.File(path / 'trajectory.h5', 'w') as h5:
        rs = h5.create_group('observation/robot_state')
        rs['cartesian_position'] = states[:, :6]
        rs['gripper_position'] = states[:, 6]
        rs['joint_positions'] = np.zeros((t, 7))
        for c, s in SERIALS.items():
            h5[f'observation/camera_extrinsics/{s}_left'] = extrinsics[c]
            h5[f'observation/camera_extrinsics/{s}_right'] = extrinsics[c] + 0.1
        h5['action/cartesian_position'] = np.zeros((t, 6))  # not read: actions come from the states
        h5.attrs['current_task'] = 'put the marker in the cup'
    meta = {'uuid': 'RAD+abcd1234+2023-11-18-18h-57m-20s', 'lab': 'RAD', 'current_task': 'put the marker in the cup',
            'trajectory_length': t, 'hdf5_path': f'{REL}/trajectory.h5'}
    for c, s in SERIALS.items():
        meta[f'{c}_mp4_path'] = f'{REL}/recordings/MP4/{s}.mp4'
        meta[f'{c}_svo_path'] = f'{REL}/recordings/SVO/{s}.svo'
    meta['ext1_mp4_path'], meta['ext2_mp4_path'] = meta['right_mp4_path'], meta['left_mp4_path']
    (path / f'metadata_{meta["uuid"]}.json').write_text(json.dumps(meta))
    for c in cameras:
        decode.encode_video(coded_frames(np.arange(n) + CAMERA_CODE[c]), str(mp4_dir / f'{SERIALS[c]}.mp4'),
                            fps=VIDEO_FPS)
    return str(path), states, extrinsics


@pytest.fixture(scope='module')
def episode(tmp_path_factory):
    return write_episode(tmp_path_factory.mktemp('droid'))


# -- the rule, re-derived: rotations about the axes by Rodrigues, composed x first, then y, then z
def axis_rotation(axis, angle):
    k = np.zeros(3)
    k[axis] = 1.0
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def rotation(euler):
    """Extrinsic x-y-z: rotate about fixed x by a, then fixed y by b, then fixed z by c."""
    a, b, c = euler
    return axis_rotation(2, c) @ axis_rotation(1, b) @ axis_rotation(0, a)


def expected_actions(states):
    """Per step: position and gripper differences, and the relative rotation R[t+1] R[t]^T as
    extrinsic xyz angles in scipy's ranges (pitch in [-pi/2, pi/2])."""
    out = []
    for s0, s1 in itertools.pairwise(states):
        rel = rotation(s1[3:6]) @ rotation(s0[3:6]).T
        pitch = -np.arcsin(np.clip(rel[2, 0], -1, 1))
        roll = np.arctan2(rel[2, 1] / np.cos(pitch), rel[2, 2] / np.cos(pitch))
        yaw = np.arctan2(rel[1, 0] / np.cos(pitch), rel[0, 0] / np.cos(pitch))
        out.append(np.r_[s1[:3] - s0[:3], roll, pitch, yaw, s1[6] - s0[6]])
    return np.array(out)


def test_actions_follow_the_rule():
    states = make_states(40, seed=3)
    actions = droid.poses_to_actions(states)
    assert actions.shape == (39, 7)
    np.testing.assert_allclose(actions, expected_actions(states), atol=1e-9)
    for s0, s1, a in zip(states[:-1], states[1:], actions):  # the angles rebuild the relative rotation
        np.testing.assert_allclose(rotation(a[3:6]), rotation(s1[3:6]) @ rotation(s0[3:6]).T, atol=1e-9)
    # not the naive difference of euler angles: roll wraps at +-pi, and the axes do not commute
    assert np.abs(actions[:, 3:6] - np.diff(states[:, 3:6], axis=0)).max() > 0.1
    # one turn about z only: exactly the yaw difference
    pure = np.zeros((2, 7))
    pure[:, 5] = [0.1, 0.3]
    np.testing.assert_allclose(droid.poses_to_actions(pure), [[0, 0, 0, 0, 0, 0.2, 0]], atol=1e-12)


def test_rotation_matches_scipy_as_the_original_calls_it():
    """The original: Rotation.from_euler('xyz', ...).as_matrix(), R1 @ R0.T, as_euler('xyz');
    also the gimbal-lock convention (third angle 0)."""
    Rotation = pytest.importorskip('scipy.spatial.transform').Rotation
    states = make_states(40, seed=4)
    mats = Rotation.from_euler('xyz', states[:, 3:6]).as_matrix()
    angles = Rotation.from_matrix(mats[1:] @ np.swapaxes(mats[:-1], 1, 2)).as_euler('xyz')
    np.testing.assert_allclose(droid.poses_to_actions(states)[:, 3:6], angles, atol=1e-9)
    locked = np.array([[0.3, np.pi / 2, 0.5], [0.3, -np.pi / 2, 0.5], [2.0, np.pi / 2, -2.0]])
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # scipy warns about the gimbal lock
        want = Rotation.from_euler('xyz', locked).as_euler('xyz')
    np.testing.assert_allclose(droid.matrix_to_euler(droid.euler_to_matrix(locked)), want, atol=1e-9)


def test_camera_frame():
    states, ext = make_states(5, seed=5), make_states(5, seed=6)[:, :6]
    got = droid.to_camera_frame(states, ext)
    for s, e, g in zip(states, ext, got):
        te, tp = np.eye(4), np.eye(4)
        te[:3, :3], te[:3, 3] = rotation(e[3:6]), e[:3]
        tp[:3, :3], tp[:3, 3] = rotation(s[3:6]), s[:3]
        want = np.linalg.inv(te) @ tp
        np.testing.assert_allclose(g[:3], want[:3, 3], atol=1e-9)
        np.testing.assert_allclose(rotation(g[3:6]), want[:3, :3], atol=1e-9)
        assert g[6] == s[6]


def test_read_trajectory(episode):
    path, states, extrinsics = episode
    out = droid.read_trajectory(path)  # left camera, 4 fps: every ceil(15 / 4) = 4th of 29 frames
    idx = np.arange(0, 29, 4)
    assert out['frames'].shape == (len(idx), H, W, 3) and out['frames'].dtype == np.uint8
    assert out['states'].shape == (len(idx), 7) and out['states'].dtype == np.float32
    assert out['actions'].shape == (len(idx) - 1, 7) and out['actions'].dtype == np.float32
    np.testing.assert_array_equal(out['indices'], idx)
    np.testing.assert_array_equal(out['states'], states[idx].astype(np.float32))
    np.testing.assert_allclose(out['actions'], expected_actions(states[idx]), atol=1e-6)
    np.testing.assert_array_equal(frame_ids(out['frames']), idx)  # the left camera's frames
    written = coded_frames(idx)
    assert np.abs(out['frames'].astype(int) - written).mean() < 2.0  # codec tolerance
    np.testing.assert_array_equal(out['extrinsics'], extrinsics['left'][idx].astype(np.float32))
    assert (out['camera'], out['serial'], out['frame_step']) == ('left_mp4_path', SERIALS['left'], 4)
    assert out['video_fps'] == VIDEO_FPS
    assert out['fps'] == pytest.approx(3.75) and out['num_video_frames'] == 29 and out['num_states'] == 30
    assert out['task'] == 'put the marker in the cup' and out['video'].endswith(f'MP4/{SERIALS["left"]}.mp4')


@pytest.mark.parametrize('camera', ['right', 'wrist_mp4_path'])
def test_camera_choice(episode, camera):
    path, states, _ = episode
    out = droid.read_trajectory(path, camera=camera, fps=None, offset=1)  # every frame from 1
    name = camera.split('_')[0]
    assert out['serial'] == SERIALS[name] and len(out['frames']) == 28
    np.testing.assert_array_equal(frame_ids(out['frames']), np.arange(1, 29) + CAMERA_CODE[name])
    np.testing.assert_allclose(out['actions'], expected_actions(states[1:29]), atol=1e-6)


def test_resize_and_camera_frame(episode):
    path, states, extrinsics = episode
    out = droid.read_trajectory(path, size=(24, 32), camera_frame=True)
    assert out['frames'].shape == (8, 24, 32, 3)
    want = droid.to_camera_frame(states[::4][:8], extrinsics['left'][::4][:8])
    np.testing.assert_allclose(out['states'], want, atol=1e-6)
    np.testing.assert_allclose(out['actions'], droid.poses_to_actions(want), atol=1e-6)


def one_line_error(kind, fn, *match):
    with pytest.raises(kind) as e:
        fn()
    msg = str(e.value)
    assert '\n' not in msg and all(m in msg for m in match), msg


def test_errors(episode, tmp_path):
    path, _, _ = episode
    one_line_error(ValueError, lambda: droid.read_trajectory(path, camera='top'), "'top'", 'left, right, wrist')
    # a camera the metadata names but whose mp4 is missing
    other, _, _ = write_episode(tmp_path / 'a', cameras=('left',))
    one_line_error(FileNotFoundError, lambda: droid.read_trajectory(other, camera='right'),
                   f'{SERIALS["right"]}.mp4', 'missing', 'recordings/MP4')
    os.remove(os.path.join(other, 'trajectory.h5'))
    one_line_error(FileNotFoundError, lambda: droid.read_trajectory(other), 'trajectory.h5', 'missing')
    # a video longer than the states
    longer, _, _ = write_episode(tmp_path / 'b', t=10, num_video_frames=12, cameras=('left',))
    one_line_error(ValueError, lambda: droid.read_trajectory(longer), '12 frames', '10 states')
    one_line_error(ValueError, lambda: droid.poses_to_actions(np.zeros((3, 6))), '(N, 7)')
