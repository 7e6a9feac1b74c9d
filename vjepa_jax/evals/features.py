"""Frozen-encoder features: one jit-compiled pass per clip and view, an optional on-disk
cache (ArrayRecord) so many probes train from one pass, and feature extraction.

Segments of one view attend together (the originals' attend_across_segments): the token
sequences of the S segments are concatenated, (S * N, D) per view.

    from vjepa_jax.evals import features
    encoder = pretrained.load_encoder('ckpt/vitl16', config)           # or any vit.VisionTransformer
    frozen = features.FrozenEncoder(encoder)
    tokens = features.extract_features(frozen, 'video.mp4', views.ViewConfig(num_segments=2, num_views=3))
    # (V, S * N, D); pooled=True -> (V, D)
"""
from __future__ import annotations

import json
import os
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vjepa_jax.data import decode
from vjepa_jax.evals import views


class FrozenEncoder:
    """encoder(clips) under jit with the weights as constants of one compiled function per shape."""

    def __init__(self, encoder: nnx.Module, dtype=None):
        graphdef, state = nnx.split(encoder)
        self.embed_dim = encoder.embed_dim
        self.state = state

        @jax.jit
        def encode(state, clips):
            """clips (B, V, S, T, H, W, 3) -> tokens (B, V, S * N, D)."""
            b, v, s = clips.shape[:3]
            model = nnx.merge(graphdef, state)
            flat = clips.reshape(b * v * s, *clips.shape[3:])
            tokens = model(flat.astype(dtype) if dtype else flat)
            return tokens.reshape(b, v, s * tokens.shape[1], tokens.shape[2]).astype(jnp.float32)
        self._encode = encode

    def __call__(self, clips) -> jax.Array:
        return self._encode(self.state, jnp.asarray(clips))


def pool(tokens: jax.Array) -> jax.Array:
    """(..., N, D) token features -> (..., D) mean over tokens."""
    return jnp.mean(tokens, axis=-2)


def video_record(path: str) -> dict:
    """A record like the dataset's (builders.FEATURES) for one video or image file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f'{path}: no such file')
    data = open(path, 'rb').read()
    if path.lower().endswith(('.jpg', '.jpeg', '.png', '.bmp', '.webp')):
        return {'image': data, 'label': -1, 'path': path}
    info = decode.probe(data, path)
    return {'video': data, 'label': -1, 'path': path, 'num_frames': info.num_frames, 'fps': info.fps}


def extract_features(frozen: FrozenEncoder, path_or_record, cfg: views.ViewConfig, pooled: bool = False) -> np.ndarray:
    """One video (path or record): the evaluation views of cfg -> (V, S * N, D), or (V, D) pooled."""
    record = video_record(path_or_record) if isinstance(path_or_record, str) else path_or_record
    tokens = frozen(views.record_views(record, cfg, training=False)[None])[0]
    return np.asarray(pool(tokens) if pooled else tokens)


def list_inputs(path: str) -> list:
    """A file, or every video / image file below a folder (sorted)."""
    suffixes = ('.mp4', '.webm', '.mkv', '.avi', '.mov', '.jpg', '.jpeg', '.png')
    if os.path.isdir(path):
        found = sorted(os.path.join(d, f) for d, _, files in os.walk(path) for f in files
                       if f.lower().endswith(suffixes))
        if not found:
            raise FileNotFoundError(f'{path}: no video or image files ({", ".join(suffixes)})')
        return found
    if not os.path.exists(path):
        raise FileNotFoundError(f'{path}: no such file or folder')
    return [path]


# ----------------------------------------------------------------------------------------
# On-disk cache: one ArrayRecord per split, one record per (example, view)
# ----------------------------------------------------------------------------------------
def pack(arrays: dict) -> bytes:
    """{name: array} -> bytes: a JSON header (names, dtypes, shapes) and the raw buffers. Not
    np.savez: its header goes through ast.literal_eval, which CPython 3.11 cannot run in several
    threads at once (SystemError: AST constructor recursion depth mismatch), as grain does."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    header = json.dumps([[k, v.dtype.str, list(v.shape)] for k, v in arrays.items()]).encode()
    return b''.join([len(header).to_bytes(4, 'little'), header] + [v.tobytes() for v in arrays.values()])


def unpack(data: bytes) -> dict:
    size = int.from_bytes(data[:4], 'little')
    offset, out = 4 + size, {}
    for name, dtype, shape in json.loads(data[4:offset]):
        count = int(np.prod(shape))
        out[name] = np.frombuffer(data, np.dtype(dtype), count, offset).reshape(tuple(shape))
        offset += count * np.dtype(dtype).itemsize
    return out


def write_cache(path: str, batches: Iterator[dict]) -> tuple:
    """Write {'tokens' (B, V, L, D), 'label' (B,), 'valid' (B,), 'skipped' (B,), 'index' (B,)}
    batches, one record per valid example; -> (records written, unreadable records replaced on the way)."""
    from array_record.python.array_record_module import ArrayRecordWriter
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    writer = ArrayRecordWriter(path, 'group_size:1')
    count = skipped = 0
    for batch in batches:
        valid = np.asarray(batch.get('valid', np.ones(len(batch['label']), np.int32)))
        skipped += int(np.sum(np.asarray(batch.get('skipped', 0)) * valid))
        for i in np.flatnonzero(valid):
            record = {'tokens': np.asarray(batch['tokens'][i], np.float32), 'label': np.asarray(batch['label'][i])}
            if 'index' in batch:  # the dataset record: other labels of it can be looked up later
                record['index'] = np.asarray(batch['index'][i])
            writer.write(pack(record))
            count += 1
    writer.close()
    return count, skipped


class CacheSource:
    """Random access over a written cache: record i -> {'tokens' (V, L, D), 'label', 'index'}."""

    def __init__(self, path: str):
        self.path = path
        self._reader = None
        self._len = len(self._open())

    def _open(self):
        if self._reader is None:
            from array_record.python.array_record_data_source import ArrayRecordDataSource
            self._reader = ArrayRecordDataSource([self.path])
        return self._reader

    def __len__(self):
        return self._len

    def __getitem__(self, i):
        return unpack(self._open()[int(i)])

    def __getstate__(self):
        return {**self.__dict__, '_reader': None}


def load_cache(path: str) -> dict:
    """A whole cache in memory: {'tokens' (N, V, L, D), 'label' (N,), 'index' (N,) when written}."""
    source = CacheSource(path)
    records = [source[i] for i in range(len(source))]
    return {k: np.stack([r[k] for r in records]) for k in records[0]} if records else {}
