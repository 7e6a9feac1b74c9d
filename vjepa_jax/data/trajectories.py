"""Trajectories for the action-conditioned world model (V-JEPA 2-AC): a TFDS builder for
episodes of (frames, actions, states) and the grain pipeline that cuts fixed-length windows.

    python -m vjepa_jax.world_model.collect --env=two_rooms --episodes=200 --steps=32 --workdir=W
    python -m vjepa_jax.data.build --builder=trajectories --manual_dir=W/episodes --data_dir=DATA
    python -m vjepa_jax.data.build --builder=trajectories/droid --manual_dir=DROID_RAW --data_dir=DATA \\
        [--camera=left]

    from vjepa_jax.data import trajectories
    it = iter(trajectories.trajectory_windows(DATA, num_frames=8, frame_step=2, batch_size=16, seed=0))
    batch = next(it)   # frames (16, 8, 64, 64, 3) uint8, actions (16, 7, 2), states (16, 8, 2) float32,
                       # episode, start (16,) int32, skipped () int32
    tfds.data_source('trajectories', data_dir=DATA, split='train')   # the records (after importing this module)

Configs (the source; the config is part of the dataset's name, `trajectories` = `trajectories/npz`):
  npz    manual_dir holds episodes as written by vjepa_jax.world_model.collect: NNNNN.npz with
         frames (T+1, H, W, 3) uint8, actions (T, A) float32, states (T+1, S) float32. The
         .npz files directly in manual_dir (or in manual_dir/episodes, collect's layout) go to
         'train'; with manual_dir/train/ and manual_dir/validation/ folders, those splits.
  droid  raw DROID trajectory directories (each holding trajectory.h5) anywhere below
         manual_dir, read by vjepa_jax.data.droid.read_trajectory(path, camera=...): frames of
         one camera at its sampled rate, states (N, 7), actions (N-1, 7). Builder kwargs:
         camera (default: droid.py's), read_kwargs (more read_trajectory arguments: fps,
         camera_frame, size). All go to 'train'.
Builder kwargs for both: codec (below), fps (the rate recorded for npz episodes; default 10,
the simulated worlds' render_fps; DROID records carry read_trajectory's sampled rate).

Each record holds video (the frames, ENCODED as an H.264 mp4 byte string), actions (T-1, A)
float32, states (T, S) float32, id, path, task (DROID's instruction, else ''), num_frames (T),
fps (the episode's real rate; the mp4's own rate is nominal), height, width. Every episode
in one dataset has the same A, S, H and W (the first good episode sets them; the build
checks the rest), so windows have static shapes. The per-split episode lengths, dims and
action rule are in the dataset's metadata (metadata.json); records are written in episode
order (no TFDS shuffling), so record i is length i there.

Encoding. `codec='lossless'` (default for npz): H.264 at qp 0 in RGB (libx264rgb), decoded
bit for bit. `codec='h264'` (default for droid): decode.encode_video's qp 18 yuv420p, as the
video datasets. Lossless is the default for the simulated 64-px worlds because the lossy
setting does hurt their small objects: 4:2:0 chroma subsampling smears the TwoRooms agent (a
red disc ~5 px across) by up to 106 grey levels on its pixels, while the lossless file is no
bigger (a 41-frame episode: 5.9 KB lossless vs 5.8 KB at qp 18; 504 KB raw). Camera footage
(DROID, already H.264 at the source) is big enough for the difference in size to matter.
An mp4 under decode.MIN_BYTES (tiny episodes) gets an ISO-BMFF 'free' box appended (ignored by
demuxers) so that the decoder's empty-file check passes.

Bad episodes (unreadable or corrupt npz, missing keys, wrong dtypes or ranks, inconsistent
lengths, non-finite numbers, dims unlike the dataset's, a DROID read error) are left out,
counted and listed in `<data_dir>/<name>/<config>/<version>/build_log.txt`
(`builder.write_build_log()`, which the build command calls); a build never dies on one bad
file, and a split whose every episode is bad ends with a one-line error naming the folder.

Windows (`trajectory_windows`): `num_frames` frames taken every `frame_step` steps of the
episode from a random start (drawn from the per-record grain rng: deterministic from the
seed), frames (T, H, W, 3) uint8, actions (T-1, A), states (T, S) float32. The action of
window step t must move the state from window frame t to t+1, so the `frame_step` env actions
between them are combined: summed (action rule 'sum', the npz worlds: their actions are
displacements per step, so the sum is the displacement over the stretch where nothing blocks
the agent). DROID's rule (droid.poses_to_actions) is the difference of consecutive states for
xyz and gripper, which sums exactly, but the relative rotation euler(R[t+1] R[t]^T) for the
angles, which does not add: rule 'droid' sums xyz and gripper and COMPOSES the rotations, and
so equals poses_to_actions on the window's states. Episodes shorter than a window span
((num_frames - 1) * frame_step + 1) are left out (counted, logged); a record that fails to
decode is replaced by another random episode and counted in the batch's `skipped`.
"""
from __future__ import annotations

import io
import os
import struct
import tempfile
import zipfile

import av
import grain
import numpy as np
import tensorflow_datasets as tfds

from vjepa_jax.data import decode, pipeline, transforms
from vjepa_jax.data.builders import VideoBuilder

CODECS = ('lossless', 'h264')
NOMINAL_FPS = 10  # the mp4's own rate (any works: frames are read by index); the record's fps is the real one

FEATURES = dict(
    video=tfds.features.Tensor(shape=(), dtype=np.object_),
    actions=tfds.features.Tensor(shape=(None, None), dtype=np.float32, encoding=tfds.features.Encoding.ZLIB),
    states=tfds.features.Tensor(shape=(None, None), dtype=np.float32, encoding=tfds.features.Encoding.ZLIB),
    id=tfds.features.Text(),
    path=tfds.features.Text(),
    task=tfds.features.Text(),
    num_frames=tfds.features.Scalar(dtype=np.int64),
    fps=tfds.features.Scalar(dtype=np.float32),
    height=tfds.features.Scalar(dtype=np.int32),
    width=tfds.features.Scalar(dtype=np.int32),
)


# -- encoding --------------------------------------------------------------------------------
def _pad(data: bytes) -> bytes:
    """Append an ISO-BMFF 'free' box (skipped by every mp4 demuxer) up to decode.MIN_BYTES."""
    if len(data) >= decode.MIN_BYTES:
        return data
    size = decode.MIN_BYTES - len(data) + 8
    return data + struct.pack('>I', size) + b'free' + bytes(size - 8)


def encode_frames(frames: np.ndarray, codec: str = 'lossless', fps: int = NOMINAL_FPS) -> bytes:
    """uint8 frames (T, H, W, 3) -> mp4 bytes. 'lossless': H.264 qp 0 in RGB (decodes exactly);
    'h264': decode.encode_video (qp 18, yuv420p; H and W must be even)."""
    if codec == 'h264':
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'episode.mp4')
            decode.encode_video(frames, path, fps=fps)
            with open(path, 'rb') as f:
                return _pad(f.read())
    if codec != 'lossless':
        raise ValueError(f'codec {codec!r}: choose one of {list(CODECS)}')
    buf = io.BytesIO()
    with av.open(buf, mode='w', format='mp4') as out:
        stream = out.add_stream('libx264rgb', rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = 'rgb24'
        stream.options = {'qp': '0', 'g': '16'}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format='rgb24')):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return _pad(buf.getvalue())


# -- episodes ---------------------------------------------------------------------------------
def check_episode(ep: dict, dims: dict | None = None) -> str | None:
    """Why `ep` (frames, actions, states) cannot be written, or None. dims: the dataset's
    {'action_dim', 'state_dim', 'height', 'width'} once known."""
    missing = [k for k in ('frames', 'actions', 'states') if k not in ep or ep[k] is None]
    if missing:
        return f'missing key(s) {", ".join(missing)}'
    frames, actions, states = (np.asarray(ep[k]) for k in ('frames', 'actions', 'states'))
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        return f'frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}'
    if actions.ndim != 2 or states.ndim != 2:
        return f'actions and states must be 2-D, got {actions.shape} and {states.shape}'
    if not (np.issubdtype(actions.dtype, np.number) and np.issubdtype(states.dtype, np.number)):
        return f'actions / states are {actions.dtype} / {states.dtype}, not numbers'
    if len(frames) < 2:
        return f'{len(frames)} frame(s): an episode needs at least 2'
    if not len(frames) == len(states) == len(actions) + 1:
        return f'inconsistent lengths: {len(frames)} frames, {len(states)} states, {len(actions)} actions ' \
               '(need T, T and T-1)'
    if not (np.isfinite(actions).all() and np.isfinite(states).all()):
        return 'non-finite actions or states'
    if dims:
        got = dict(action_dim=actions.shape[1], state_dim=states.shape[1], height=frames.shape[1],
                   width=frames.shape[2])
        wrong = [f'{k} {got[k]} (the dataset has {dims[k]})' for k in got if got[k] != dims[k]]
        if wrong:
            return ', '.join(wrong)
    return None


def read_npz(path: str) -> dict:
    """An episode .npz -> dict of its arrays; raises ValueError naming what is wrong."""
    if not zipfile.is_zipfile(path):
        raise ValueError('not an npz file (no zip archive; empty or truncated?)')
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # zipfile, zlib, OSError, EOFError, ValueError ...
        raise ValueError(f'unreadable npz ({type(e).__name__}: {e})') from None


def _npz_files(folder: str) -> list:
    return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                  if n.endswith('.npz') and not n.endswith('.tmp.npz') and os.path.isfile(os.path.join(folder, n)))


class Trajectories(VideoBuilder):
    """Episodes of (frames, actions, states) for world models: simulated npz episodes
    (vjepa_jax.world_model.collect) or raw DROID trajectories; frames stored encoded."""
    VERSION = tfds.core.Version('1.0.0')
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name='npz', description='npz episodes (world_model.collect)'),
                       tfds.core.BuilderConfig(name='droid', description='raw DROID trajectory directories')]
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

    def __init__(self, *, codec: str | None = None, camera: str | None = None, read_kwargs: dict | None = None,
                 fps: float = NOMINAL_FPS, **kwargs):
        super().__init__(**kwargs)
        self.codec = codec or ('h264' if self.builder_config.name == 'droid' else 'lossless')
        if self.codec not in CODECS:
            raise ValueError(f'codec {self.codec!r}: choose one of {list(CODECS)}')
        self.camera, self.read_kwargs, self.fps = camera, dict(read_kwargs or {}), float(fps)
        self.dims: dict | None = None
        self.folders: dict = {}  # split -> the folder its episodes come from

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(FEATURES),
                                     description=self.__doc__, disable_shuffling=True,
                                     metadata=tfds.core.MetadataDict())

    def _items(self, manual_dir):
        root = str(manual_dir or '')
        if not os.path.isdir(root):
            raise FileNotFoundError(f'trajectories: {root or "(no folder)"} is not a folder: pass --manual_dir=DIR')
        if self.builder_config.name == 'droid':
            try:
                from vjepa_jax.data import droid  # noqa: F401  (written separately; needed only for this source)
            except ImportError as e:
                raise ValueError(f'trajectories/droid needs vjepa_jax.data.droid ({type(e).__name__}: {e})') from None
            dirs = sorted(folder for folder, _, files in os.walk(root) if 'trajectory.h5' in files)
            if not dirs:
                raise FileNotFoundError(f'trajectories/droid: no trajectory directory (holding trajectory.h5) '
                                        f'below {root}')
            self.folders = {'train': root}
            return {'train': [(os.path.relpath(d, root), d) for d in dirs]}
        splits = {s: os.path.join(root, f) for s, f in (('train', 'train'), ('validation', 'validation'))
                  if os.path.isdir(os.path.join(root, f)) and _npz_files(os.path.join(root, f))}
        if not splits:
            flat = root if _npz_files(root) else os.path.join(root, 'episodes')
            splits = {'train': flat} if os.path.isdir(flat) and _npz_files(flat) else {}
        if not splits:
            raise FileNotFoundError(f'trajectories: no .npz episodes in {root} (nor in its episodes/, train/ or '
                                    'validation/ folders): write them with python -m vjepa_jax.world_model.collect')
        self.folders = splits
        return {s: [(os.path.splitext(os.path.basename(p))[0], p) for p in _npz_files(f)] for s, f in splits.items()}

    def _split_generators(self, dl_manager):
        self.info.metadata.update(source=self.builder_config.name, codec=self.codec,
                                  action_rule='droid' if self.builder_config.name == 'droid' else 'sum',
                                  num_frames={})
        return super()._split_generators(dl_manager)

    def _read(self, path: str) -> dict:
        if self.builder_config.name == 'droid':
            from vjepa_jax.data import droid
            kwargs = dict(self.read_kwargs, **({'camera': self.camera} if self.camera else {}))
            try:
                return droid.read_trajectory(path, **kwargs)
            except Exception as e:  # any read failure skips this trajectory (h5py, FFmpeg, ValueError ...)
                raise ValueError(str(e).removeprefix(f'{path}: ') or type(e).__name__) from None
        return read_npz(path)

    def _generate_examples(self, split, items):
        self.written[split] = 0
        lengths = self.info.metadata['num_frames'][split] = []
        for key, path in items:
            try:
                ep = self._read(path)
            except ValueError as e:
                self.skipped.append((split, path, str(e)))
                continue
            reason = check_episode(ep, self.dims)
            frames = np.asarray(ep.get('frames'))
            if reason is None:
                try:
                    video = encode_frames(frames, self.codec, fps=max(round(ep.get('fps') or self.fps), 1))
                    got = decode.probe(video, path).num_frames
                    reason = None if got == len(frames) else f'the encoder wrote {got} of {len(frames)} frames'
                except Exception as e:  # FFmpeg's many error types, odd sizes for yuv420p ...: skip, never die
                    reason = f'encoding failed ({type(e).__name__}: {e})'
            if reason is not None:
                self.skipped.append((split, path, reason))
                continue
            if self.dims is None:
                self.dims = dict(action_dim=int(ep['actions'].shape[1]), state_dim=int(ep['states'].shape[1]),
                                 height=int(frames.shape[1]), width=int(frames.shape[2]))
                self.info.metadata.update(self.dims)
            yield self.written[split], dict(
                video=video, actions=np.asarray(ep['actions'], np.float32), states=np.asarray(ep['states'], np.float32),
                id=str(ep.get('uuid') or key), path=path, task=str(ep.get('task') or ''), num_frames=len(frames),
                fps=float(ep.get('fps') or self.fps), height=frames.shape[1], width=frames.shape[2])
            lengths.append(len(frames))
            self.written[split] += 1
        if not self.written[split]:
            folder = self.folders.get(split, '?')
            first = next((f'{os.path.basename(p)}: {r}' for s, p, r in self.skipped if s == split), '')
            raise ValueError(f'trajectories: all {len(items)} episodes of {split} in {folder} are unreadable '
                             f'(e.g. {first})')


# -- windows ------------------------------------------------------------------------------------
def window_indices(start: int, num_frames: int, frame_step: int) -> np.ndarray:
    return start + frame_step * np.arange(num_frames)


def combine_actions(actions: np.ndarray, start: int, num_frames: int, frame_step: int, rule: str = 'sum'
                    ) -> np.ndarray:
    """The (num_frames - 1, A) window actions from the episode's per-step actions: window
    action t combines actions[start + t * frame_step : start + (t + 1) * frame_step].
    rule 'sum': summed. 'droid': xyz (0:3) and gripper (6) summed, the rotations (3:6, extrinsic
    xyz euler of R[t+1] R[t]^T) composed, = droid.poses_to_actions on the window's states."""
    span = actions[start:start + (num_frames - 1) * frame_step].astype(np.float64)
    span = span.reshape(num_frames - 1, frame_step, actions.shape[1])
    out = span.sum(1)
    if rule == 'droid':
        from vjepa_jax.data import droid
        rot = droid.euler_to_matrix(span[:, :, 3:6])  # (T-1, k, 3, 3), step k applied after step k-1
        total = rot[:, 0]
        for k in range(1, frame_step):
            total = rot[:, k] @ total
        out[:, 3:6] = droid.matrix_to_euler(total)
    elif rule != 'sum':
        raise ValueError(f"action rule {rule!r}: 'sum' or 'droid'")
    return out.astype(np.float32)


def read_window(record: dict, start: int, num_frames: int, frame_step: int, rule: str = 'sum',
                image_size: tuple | None = None) -> dict:
    """One window of a record; raises decode.DecodeError when its frames cannot be decoded."""
    idx = window_indices(start, num_frames, frame_step)
    path = record.get('path', b'episode')
    frames = decode.decode_frames(record['video'], idx, name=path.decode() if isinstance(path, bytes) else str(path),
                                  require_all=True)
    if image_size is not None and tuple(frames.shape[1:3]) != tuple(image_size):
        frames = np.clip(np.rint(transforms.resize(frames, *image_size)), 0, 255).astype(np.uint8)
    return dict(frames=frames, actions=combine_actions(np.asarray(record['actions']), start, num_frames, frame_step,
                                                       rule),
                states=np.asarray(record['states'], np.float32)[idx])


class TrajectorySource(pipeline.TfdsSource):
    """pipeline.TfdsSource defined here, so that unpickling it (grain workers) imports this module
    and so registers the builder."""


class LoadWindow(grain.transforms.RandomMap):
    """record index -> one window (random start from the rng); undecodable or unreadable records replaced
    and counted (a shard that does not read: pipeline.DataError)."""

    def __init__(self, source: TrajectorySource, eligible: np.ndarray, lengths: list, num_frames: int,
                 frame_step: int, rule: str, image_size: tuple | None, max_retries: int):
        self.source, self.eligible, self.lengths = source, eligible, lengths
        self.num_frames, self.frame_step, self.rule = num_frames, frame_step, rule
        self.image_size, self.max_retries = image_size, max_retries

    def random_map(self, index, rng: np.random.Generator):
        errors, span = [], (self.num_frames - 1) * self.frame_step + 1
        for _ in range(self.max_retries):
            try:
                record = self.source.read(index)
            except pipeline.RecordUnreadable as e:  # storage damage in one record: skipped, counted
                errors.append(str(e))
                index = int(self.eligible[rng.integers(len(self.eligible))])
                continue
            n = int(record['num_frames'])
            if n != self.lengths[index]:
                raise RuntimeError(f'{self.source.name}: record {index} has {n} frames, the metadata says '
                                   f'{self.lengths[index]}: rebuild the dataset (python -m vjepa_jax.data.build)')
            start = int(rng.integers(n - span + 1))
            try:
                window = read_window(record, start, self.num_frames, self.frame_step, self.rule, self.image_size)
                return {**window, 'episode': np.int32(index), 'start': np.int32(start),
                        'skipped': np.int32(len(errors))}
            except decode.DecodeError as e:
                errors.append(str(e))
                index = int(self.eligible[rng.integers(len(self.eligible))])
        raise pipeline.DataError(f'{self.max_retries} unreadable episodes in a row in {self.source.name} (the last: '
                                 f'{errors[-1]}): rebuild the dataset (python -m vjepa_jax.data.build)')


def _sum_skipped(batch):
    batch['skipped'] = np.int32(batch['skipped'].sum())
    return batch


def dataset_metadata(data_dir: str, name: str = 'trajectories') -> dict:
    """The built dataset's metadata: source, codec, action_rule, action_dim, state_dim, height,
    width, num_frames {split: [length of record i]}."""
    return dict(TrajectorySource(name, data_dir, 'train')._open().dataset_info.metadata)


def trajectory_windows(data_dir: str, *, name: str = 'trajectories', split: str = 'train', num_frames: int = 8,
                       frame_step: int = 1, batch_size: int = 8, seed: int = 0, num_epochs: int | None = None,
                       image_size: int | tuple | None = None, action_rule: str | None = None, shard_index: int = 0,
                       shard_count: int = 1, num_workers: int = 0, max_retries: int = 20,
                       log=print) -> grain.IterDataset:
    """Batches of fixed-length windows from a built `trajectories` dataset:
    frames (B, num_frames, H, W, 3) uint8, actions (B, num_frames - 1, A) float32 (combined over
    each frame_step, see the module doc), states (B, num_frames, S) float32, episode and start
    (B,) int32 (the record index and the window's first step), skipped () int32 (records
    replaced because they did not decode).

    Episodes are shuffled (reshuffled every epoch) and repeated num_epochs times (None: forever),
    this host's shard taken, one window per episode per epoch from a random start, batches
    drop the remainder. Deterministic from the seed. image_size: S or (H, W) to resize frames
    to (bilinear); action_rule: 'sum' | 'droid' (default: the dataset's)."""
    if num_frames < 2 or frame_step < 1 or batch_size < 1:
        raise ValueError(f'num_frames >= 2, frame_step >= 1, batch_size >= 1 needed, got {num_frames}, '
                         f'{frame_step}, {batch_size}')
    source = TrajectorySource(name, data_dir, split)
    meta = source._open().dataset_info.metadata
    lengths = list(meta['num_frames'][split])
    if len(lengths) != len(source):
        raise RuntimeError(f'{name} {split}: {len(source)} records but {len(lengths)} lengths in its metadata: '
                           'rebuild the dataset')
    span = (num_frames - 1) * frame_step + 1
    eligible = np.flatnonzero(np.asarray(lengths) >= span)
    if not len(eligible):
        raise ValueError(f'{name} {split}: no episode has the {span} frames a window of {num_frames} frames '
                         f'every {frame_step} steps needs (longest: {max(lengths)})')
    if len(eligible) < len(lengths):
        log(f'{name} {split}: {len(lengths) - len(eligible)} of {len(lengths)} episodes are shorter than a window '
            f'({span} frames) and left out')
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    load = LoadWindow(source, eligible, lengths, num_frames, frame_step, action_rule or meta.get('action_rule', 'sum'),
                      tuple(image_size) if image_size else None, max_retries)
    ds = grain.MapDataset.range(len(eligible)).shuffle(seed=seed).repeat(num_epochs)
    ds = ds.map(lambda i: int(eligible[i]))
    ds = ds[shard_index::shard_count]
    ds = ds.random_map(load, seed=seed)
    ds = ds.batch(batch_size, drop_remainder=True).map(_sum_skipped)
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=2))
    if num_workers > 0:
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
    return it
