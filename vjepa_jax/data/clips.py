"""Which frames a clip reads: the original's rules, as pure NumPy functions.

  frame_step(fps_video, frames_per_clip, frame_step=4, target_fps=0, duration=0)
  clip_indices(num_frames, frames_per_clip, step, num_clips, rng, random=True, overlap=False)

Original (facebookresearch/jepa VideoDataset.loadvideo_decord): the video is split into
num_clips equal partitions; in a partition longer than the clip span (fpc * step) a random
end point e in [span, partition) is drawn and the clip is linspace(e - span, e, fpc) clipped
to e - 1; a shorter partition is read at `step` from its start and padded with its last
frame. V-JEPA 2 sets the step from the video's rate: ceil(fps) // target_fps.
"""
from __future__ import annotations

import math

import numpy as np


def frame_step(video_fps: float, frames_per_clip: int, step: int = 4, target_fps: float = 0,
               duration: float = 0) -> int:
    """The step between sampled frames: fixed, from a target rate, or from a clip duration (s)."""
    if duration:
        return max(1, int(duration * math.ceil(video_fps) / frames_per_clip))
    if target_fps:
        return max(1, int(math.ceil(video_fps) // target_fps))
    return step


def clip_indices(num_frames: int, frames_per_clip: int, step: int, num_clips: int = 1,
                 rng: np.random.Generator | None = None, random: bool = True, overlap: bool = False) -> np.ndarray:
    """-> (num_clips, frames_per_clip) int64 frame indices into a video of num_frames frames."""
    span = frames_per_clip * step
    part = num_frames // num_clips
    clips = []
    for i in range(num_clips):
        if part > span:
            end = int(rng.integers(span, part)) if random else span
            idx = np.clip(np.linspace(end - span, end, frames_per_clip), end - span, end - 1).astype(np.int64)
            idx = idx + i * part
        elif not overlap:
            n = part // step
            idx = np.concatenate([np.linspace(0, part, num=n), np.full(frames_per_clip - n, part)])
            idx = np.clip(idx, 0, part - 1).astype(np.int64) + i * part
        else:
            last = min(span, num_frames) - 1
            n = last // step
            idx = np.clip(np.concatenate([np.linspace(0, last, num=n), np.full(frames_per_clip - n, last)]),
                          0, max(last - 1, 0)).astype(np.int64)
            shift = (num_frames - span) // (num_clips - 1) if num_frames > span and num_clips > 1 else 0
            idx = idx + i * shift
        clips.append(idx)
    return np.stack(clips)
