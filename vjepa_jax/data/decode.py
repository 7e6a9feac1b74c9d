"""Video decoding with PyAV (FFmpeg), from encoded bytes, only the frames a clip needs.

Why PyAV: it installs from PyPI with FFmpeg inside (H.264, VP8/VP9, AV1 ...) on every
platform, is maintained, and decodes from memory; `benchmarks/data.py` measures it next to
OpenCV and decord on the same files (docs/scaling.md).

Frame indices are positions in display order, 0-based, at the stream's average rate.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io

import av
import numpy as np

MIN_BYTES = 1024  # the original skips files under 1 KB


class DecodeError(ValueError):
    """A video that cannot be read: empty, truncated, not a video."""


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    duration: float  # seconds
    height: int
    width: int


def _open(data: bytes, name: str):
    if len(data) < MIN_BYTES:
        raise DecodeError(f'{name}: {len(data)} bytes, under {MIN_BYTES} (empty or truncated file)')
    try:
        container = av.open(io.BytesIO(data), mode='r', metadata_errors='ignore')
    except Exception as e:  # FFmpeg raises many error types
        raise DecodeError(f'{name}: not a readable video ({type(e).__name__}: {e})') from None
    if not container.streams.video:
        container.close()
        raise DecodeError(f'{name}: no video stream')
    return container


@contextlib.contextmanager
def _reading(data: bytes, name: str):
    """The open container; any FFmpeg failure inside becomes a one-line DecodeError."""
    container = _open(data, name)
    try:
        yield container
    except DecodeError:
        raise
    except Exception as e:
        raise DecodeError(f'{name}: decoding failed ({type(e).__name__}: {e})') from None
    finally:
        container.close()


def probe(data: bytes, name: str = 'video') -> VideoInfo:
    """Count frames by demuxing every packet and decode the first and the last GOP, so empty,
    truncated and non-video files raise DecodeError here (at dataset build time)."""
    with _reading(data, name) as container:
        stream = container.streams.video[0]
        num_packets = sum(1 for packet in container.demux(stream) if packet.size > 0)
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        if num_packets == 0 or fps <= 0:
            raise DecodeError(f'{name}: no decodable frames')
        declared = (container.duration or 0) / av.time_base  # seconds, from the header
        if declared > 0 and num_packets / fps < declared - 2.0 / fps:
            raise DecodeError(f'{name}: truncated ({num_packets / fps:.2f}s of frames, header says {declared:.2f}s)')
        first = decode_frames(data, [0], name=name)
        decode_frames(data, [num_packets - 1], name=name, require_all=True)
        height, width = first.shape[1:3]
        return VideoInfo(num_frames=num_packets, fps=fps, duration=num_packets / fps, height=height, width=width)


def decode_frames(data: bytes, indices, name: str = 'video', threads: int = 1, require_all: bool = False) -> np.ndarray:
    """Frames at `indices` (any order, repeats allowed) -> (len(indices), H, W, 3) uint8.

    Seeks to the keyframe before the first wanted frame and decodes forward only up to the
    last wanted one, skipping the non-reference frames it does not want (_decode_wanted). An
    index past the end of the stream repeats the last decoded frame (the original pads short
    videos with their last frame); require_all makes it an error."""
    indices = np.asarray(indices, np.int64)
    wanted = np.unique(indices)
    with _reading(data, name) as container:
        stream = container.streams.video[0]
        stream.thread_type = 'AUTO' if threads > 1 else 'SLICE'
        stream.thread_count = threads
        fps = float(stream.average_rate or stream.guessed_rate)
        tb = float(stream.time_base)
        start_pts = stream.start_time or 0
        first_t = wanted[0] / fps
        if first_t > 1.0:  # seek only when it saves work
            container.seek(int(start_pts + first_t / tb), stream=stream, backward=True, any_frame=False)
        got, last, wanted_set = {}, None, set(wanted.tolist())
        index_of = lambda pts: int(round((pts - start_pts) * tb * fps))  # noqa: E731 (display-order index)
        for frame in _decode_wanted(container, stream, lambda pts: index_of(pts) in wanted_set):
            idx = index_of(frame.pts or 0)
            last = frame
            if idx in got or idx < wanted[0]:
                continue
            if idx in wanted_set:
                got[idx] = frame.to_ndarray(format='rgb24')
            if idx >= wanted[-1]:
                break
        if not got and last is None:
            raise DecodeError(f'{name}: no frames decoded')
        if require_all and len(got) < len(wanted):
            raise DecodeError(f'{name}: frames {sorted(set(wanted.tolist()) - set(got))[:5]} missing (truncated?)')
        if not got:  # every wanted index lies past the end: the last frame
            got[-1] = last.to_ndarray(format='rgb24')
        kept = np.array(sorted(got))
        # each index reads its frame, or the last decoded frame before it (past the end)
        return np.stack([got[kept[max(np.searchsorted(kept, i, side='right') - 1, 0)]] for i in indices])


def _decode_wanted(container, stream, is_wanted):
    """Decoded frames of `stream` from the container's position, skipping the packets that
    nothing needs: a packet whose own frame is not wanted (is_wanted(pts) False) is decoded
    only if later frames refer to it (FFmpeg's skip_frame 'NONREF': B-frames that are not
    references are dropped unread, the rest decode as usual), so every wanted frame comes out
    the same as when decoding everything."""
    codec = stream.codec_context
    for packet in container.demux(stream):
        codec.skip_frame = 'NONREF' if packet.pts is not None and not is_wanted(packet.pts) else 'DEFAULT'
        yield from packet.decode()


def decode_image(data: bytes, name: str = 'image') -> np.ndarray:
    """Encoded image bytes (JPEG, PNG, ...) -> (H, W, 3) uint8 RGB."""
    import cv2
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if len(data) else None
    if image is None:
        raise DecodeError(f'{name}: not a readable image ({len(data)} bytes)')
    return image[:, :, ::-1].copy()


def encode_video(frames: np.ndarray, path: str, fps: int = 30, codec: str | None = None) -> None:
    """Write uint8 frames (T, H, W, 3) to .mp4 (H.264) or .webm (VP9); for tests and demos.
    Frames are converted to yuv420p before the encoder sees them: left to the encoder, the
    conversion made the same frames come out as different bytes on reruns. H.264 is written at a
    constant quantiser (qp 18): crf rate control was not repeatable once jax was imported."""
    codec = codec or ('libvpx-vp9' if path.endswith('.webm') else 'libx264')
    with av.open(path, mode='w') as out:
        stream = out.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = 'yuv420p'
        if codec == 'libx264':
            stream.options = {'qp': '18', 'g': '16'}
        for f in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format='rgb24').reformat(format='yuv420p')
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
