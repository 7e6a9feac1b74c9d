"""DROID trajectories as the V-JEPA 2-AC recipe reads them: frames of one camera, end-effector
states, and the actions between consecutive sampled states.

The layout (raw DROID release, one directory per trajectory):

    <lab>/<success|failure>/<YYYY-MM-DD>/<Day_Mon_DD_HH:MM:SS_YYYY>/
        metadata_<uuid>.json      camera paths: left_mp4_path, right_mp4_path, wrist_mp4_path,
                                  ext1_mp4_path, ext2_mp4_path (".../recordings/MP4/<serial>.mp4")
        trajectory.h5             observation/robot_state/cartesian_position (T, 6): x y z + euler xyz
                                  observation/robot_state/gripper_position   (T,): 0 open .. 1 closed
                                  observation/camera_extrinsics/<serial>_left (T, 6), same convention
        recordings/MP4/<serial>.mp4

"left" and "right" name the two exterior cameras by their place relative to the robot base; the
released recipe trains on the left one. The metadata path is used only for its file name: the
video is read from <trajectory>/recordings/MP4/<serial>.mp4.

The rules (V-JEPA 2 app/vjepa_droid/droid.py):
  * state t = [cartesian_position[t] (6), gripper_position[t]] -> (T, 7). Video frame i goes with
    state i; the video may be shorter than the states (DROID MP4s often lack the last one), the
    extra states are unused.
  * frames are taken every ceil(video_fps / fps) frames (the released recipe: fps 4 on 15 fps
    DROID video -> every 4th frame, 3.75 Hz); states are taken at the same indices.
  * action t between sampled states t and t+1 (N states -> N-1 actions, 7 numbers each):
        xyz:     p[t+1] - p[t]
        angles:  euler_xyz(R[t+1] @ R[t].T), where R = matrix_xyz(euler); "xyz" is the extrinsic
                 x-then-y-then-z convention, R = Rz(c) Ry(b) Rx(a) (scipy's lowercase "xyz");
                 pitch b in [-pi/2, pi/2], a and c in (-pi, pi]; at gimbal lock c = 0 (as scipy)
        gripper: g[t+1] - g[t]
  * optional (camera_frame=True): poses are first moved into the camera's frame,
    T_cam = inv(E[t]) @ T_pose[t] with E from camera_extrinsics/<serial>_left.
"""
from __future__ import annotations

import glob
import json
import math
import os

import numpy as np

from vjepa_jax.data import decode

CAMERAS = ('left', 'right', 'wrist', 'ext1', 'ext2')  # metadata keys are '<name>_mp4_path'
DEFAULT_CAMERA = 'left'  # the released recipe's camera_views: [left_mp4_path]
DEFAULT_FPS = 4.0  # the released recipe's data.fps (configs/train/vitg16/droid-256px-8f.yaml)
H5_NAME = 'trajectory.h5'
MP4_DIR = os.path.join('recordings', 'MP4')
_GIMBAL_EPS = 1e-7  # scipy's threshold on the middle angle


def euler_to_matrix(euler) -> np.ndarray:
    """Extrinsic "xyz" euler angles (..., 3) [rad] -> rotation matrices (..., 3, 3) = Rz Ry Rx."""
    a, b, c = np.moveaxis(np.asarray(euler, np.float64), -1, 0)
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    m = np.stack([cb * cc, sa * sb * cc - ca * sc, ca * sb * cc + sa * sc,
                  cb * sc, sa * sb * sc + ca * cc, ca * sb * sc - sa * cc,
                  -sb, sa * cb, ca * cb], axis=-1)
    return m.reshape(m.shape[:-1] + (3, 3))


def matrix_to_euler(m) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> extrinsic "xyz" euler angles (..., 3), scipy's choice of
    solution: pitch in [-pi/2, pi/2], roll and yaw in (-pi, pi]; at gimbal lock yaw = 0."""
    m = np.asarray(m, np.float64)
    cos_pitch = np.hypot(m[..., 0, 0], m[..., 1, 0])
    pitch = np.arctan2(-m[..., 2, 0], cos_pitch)
    roll = np.arctan2(m[..., 2, 1], m[..., 2, 2])
    yaw = np.arctan2(m[..., 1, 0], m[..., 0, 0])
    # gimbal lock: only roll -/+ yaw is defined; scipy puts it all in roll
    sign = np.where(m[..., 2, 0] < 0, 1.0, -1.0)
    locked_roll = np.arctan2(sign * m[..., 0, 1], m[..., 1, 1])
    locked = cos_pitch <= math.sin(_GIMBAL_EPS)
    return np.stack([np.where(locked, locked_roll, roll), pitch, np.where(locked, 0.0, yaw)], axis=-1)


def poses_to_actions(states) -> np.ndarray:
    """States (N, 7) = [x, y, z, euler xyz (3), gripper] -> actions (N-1, 7) float64:
    [position difference (3), euler_xyz(R[t+1] R[t]^T) (3), gripper difference (1)]."""
    states = np.asarray(states, np.float64)
    if states.ndim != 2 or states.shape[1] != 7:
        raise ValueError(f'poses_to_actions: states must be (N, 7), got {states.shape}')
    rot = euler_to_matrix(states[:, 3:6])
    relative = rot[1:] @ np.swapaxes(rot[:-1], -1, -2)
    return np.concatenate([np.diff(states[:, :3], axis=0), matrix_to_euler(relative),
                           np.diff(states[:, 6:], axis=0)], axis=1)


def to_camera_frame(states, extrinsics) -> np.ndarray:
    """States (N, 7) in the robot base frame and camera poses (N, 6) [xyz, euler xyz] -> states
    (N, 7) in the camera frame: pose <- inv(E) @ pose; the gripper value is kept."""
    states, extrinsics = np.asarray(states, np.float64), np.asarray(extrinsics, np.float64)
    rot_e, rot_p = euler_to_matrix(extrinsics[:, 3:6]), euler_to_matrix(states[:, 3:6])
    inv_e = np.swapaxes(rot_e, -1, -2)
    xyz = np.einsum('nij,nj->ni', inv_e, states[:, :3] - extrinsics[:, :3])
    return np.concatenate([xyz, matrix_to_euler(inv_e @ rot_p), states[:, 6:]], axis=1)


def metadata_key(camera: str) -> str:
    """'left' or 'left_mp4_path' -> 'left_mp4_path'; any other name is a ValueError."""
    name = camera.removesuffix('_mp4_path')
    if name not in CAMERAS:
        raise ValueError(f'unknown DROID camera {camera!r}: use one of {", ".join(CAMERAS)} '
                         f'(or the metadata key, e.g. left_mp4_path)')
    return f'{name}_mp4_path'


def read_metadata(path: str) -> tuple[str, dict]:
    """The trajectory's metadata_<uuid>.json (else its only other .json) -> (file, parsed dict)."""
    files = sorted(glob.glob(os.path.join(glob.escape(path), 'metadata_*.json'))) or \
        sorted(glob.glob(os.path.join(glob.escape(path), '*.json')))
    if not files:
        raise FileNotFoundError(f'{path}: no metadata_<uuid>.json; is this a raw DROID trajectory directory?')
    try:
        with open(files[0]) as f:
            return files[0], json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f'{files[0]}: not valid JSON ({e}); re-download the trajectory') from None


def _h5_array(h5, key: str, h5_path: str) -> np.ndarray:
    if key not in h5:
        raise ValueError(f'{h5_path}: no dataset {key!r} (not a DROID trajectory.h5?)')
    return np.asarray(h5[key][()], np.float64)


def read_trajectory(path: str, camera: str = DEFAULT_CAMERA, fps: float | None = DEFAULT_FPS,
                    offset: int = 0, camera_frame: bool = False, size: tuple[int, int] | None = None,
                    threads: int = 1) -> dict:
    """One DROID trajectory directory -> dict:

      frames      (N, H, W, 3) uint8   RGB, every `frame_step`-th video frame from `offset`
      states      (N, 7) float32       [x, y, z, roll, pitch, yaw, gripper] at those frames
      actions     (N-1, 7) float32     poses_to_actions(states), computed in float64
      extrinsics  (N, 6) float32 or None   the camera's <serial>_left pose, where the h5 has it
      indices     (N,) int64           the frames' positions in the video (= rows of the h5)
      fps (sampled rate), video_fps, frame_step, camera (metadata key), serial, video (path),
      num_video_frames, num_states, task (metadata current_task, '' if absent), uuid

    camera: left / right / wrist / ext1 / ext2 (or '<name>_mp4_path'). fps: the sampling rate
    (frame_step = ceil(video_fps / fps)); None keeps every frame. camera_frame: states in the
    camera's frame. size: (H, W) to resize the frames to (cv2 INTER_AREA); None keeps them."""
    key = metadata_key(camera)
    if not os.path.isdir(path):
        raise FileNotFoundError(f'{path}: no such trajectory directory')
    h5_path = os.path.join(path, H5_NAME)
    if not os.path.isfile(h5_path):
        raise FileNotFoundError(f'{h5_path}: missing; a DROID trajectory directory holds trajectory.h5 '
                                f'(download the raw release, not the RLDS one)')
    meta_file, meta = read_metadata(path)
    if not meta.get(key):
        raise ValueError(f'{meta_file}: no {key!r}; cameras here: '
                         f'{", ".join(k[:-9] for k in meta if k.endswith("_mp4_path") and meta[k])}')
    mp4_name = os.path.basename(meta[key].split('recordings/MP4/')[-1])
    serial = mp4_name.split('.')[0]
    video = os.path.join(path, MP4_DIR, mp4_name)
    if not os.path.isfile(video):
        raise FileNotFoundError(f'{video}: missing ({key} of {os.path.basename(meta_file)}); '
                                f'download the trajectory with its recordings/MP4 folder')

    import h5py
    with h5py.File(h5_path, 'r') as h5:
        cartesian = _h5_array(h5, 'observation/robot_state/cartesian_position', h5_path)
        gripper = _h5_array(h5, 'observation/robot_state/gripper_position', h5_path)
        ext_key = f'observation/camera_extrinsics/{serial}_left'
        extrinsics = _h5_array(h5, ext_key, h5_path) if ext_key in h5 else None
    if cartesian.ndim != 2 or cartesian.shape[1] != 6 or gripper.ndim != 1:
        raise ValueError(f'{h5_path}: cartesian_position {cartesian.shape} / gripper_position {gripper.shape}, '
                         f'expected (T, 6) / (T,)')
    if len(cartesian) != len(gripper):
        raise ValueError(f'{h5_path}: {len(cartesian)} cartesian positions but {len(gripper)} gripper positions')
    states = np.concatenate([cartesian, gripper.reshape(-1, 1)], axis=1)
    if extrinsics is not None and extrinsics.shape != cartesian.shape:
        raise ValueError(f'{h5_path}: {ext_key} is {extrinsics.shape}, the states are {cartesian.shape}')
    if camera_frame and extrinsics is None:
        raise ValueError(f'{h5_path}: no {ext_key}, which camera_frame=True needs; use camera_frame=False')

    with open(video, 'rb') as f:
        data = f.read()
    info = decode.probe(data, name=video)
    if info.num_frames > len(states):
        raise ValueError(f'{video}: {info.num_frames} frames but {h5_path} has {len(states)} states; '
                         f'the video and trajectory.h5 do not belong together')
    if not 0 <= offset < info.num_frames:
        raise ValueError(f'offset {offset} outside the video\'s {info.num_frames} frames ({video})')
    step = 1 if fps is None else max(1, math.ceil(info.fps / fps))
    indices = np.arange(offset, info.num_frames, step, dtype=np.int64)
    frames = decode.decode_frames(data, indices, name=video, threads=threads, require_all=True)
    if size is not None and tuple(frames.shape[1:3]) != tuple(size):
        import cv2
        frames = np.stack([cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA) for f in frames])

    states, extrinsics = states[indices], None if extrinsics is None else extrinsics[indices]
    if camera_frame:
        states = to_camera_frame(states, extrinsics)
    return dict(
        frames=frames, states=states.astype(np.float32), actions=poses_to_actions(states).astype(np.float32),
        extrinsics=None if extrinsics is None else extrinsics.astype(np.float32), indices=indices,
        fps=info.fps / step, video_fps=info.fps, frame_step=step, camera=key, serial=serial, video=video,
        num_video_frames=info.num_frames, num_states=len(cartesian),
        task=str(meta.get('current_task') or ''), uuid=str(meta.get('uuid') or ''))
