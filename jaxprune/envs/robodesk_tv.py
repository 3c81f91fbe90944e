"""The TV picture of noisy RoboDesk, as the Denoised MDP release makes it.

Two clips play side by side: each is ``num_frames`` colour frames of 60 x 60, so the picture is
60 x 120. Every control step each clip advances one frame and the whole picture scrolls one
column to the right (``np.roll`` along the width, wrapping around), so the video moves across
the screen as well as in time. At ``reset()`` each clip starts at its own random frame and the
scroll returns to 0.

Each frame is prepared once, when the clips are loaded, in the release's three steps:
1. a nearest-neighbour resize to 60 x 60 (OpenCV's ``INTER_NEAREST`` index rule, no smoothing);
2. a contrast boost, a linear map around mid-gray (OpenCV's ``addWeighted`` with the release's
   ``contrast_change=20``: gain ``f = 131 (c + 127) / (127 (131 - c))`` = 1.366, offset
   ``127 (1 - f)``), rounded half to even and saturated to 0..255;
3. a sharpening with the 3 x 3 kernel ``[[0, -s, 0], [-s, 1 + 4s, -s], [0, -s, 0]]`` (``s = 0.5``),
   borders reflected without repeating the edge (OpenCV's default ``BORDER_REFLECT_101``), again
   rounded half to even and saturated.
Both are written in NumPy here (no OpenCV); tests check them against OpenCV's own functions.

Where the frames come from:
* :func:`procedural_clips`, the offline default: per clip, one
  :func:`jaxprune.envs.backgrounds.procedural_color_video` whose seed is drawn from the clip's
  loading generator.
* :func:`video_dir_clips`: the user's videos (for example Kinetics-400 ``driving_car``), read with
  imageio as RGB. Per clip, as in the release, the sorted files are shuffled by the clip's
  loading generator and read in that order, and the shuffle is drawn again and the reading goes on
  until ``num_frames`` frames are collected.

Seeding (the release's): the environment's TV seed sequence spawns one child per clip, and each
child spawns two, a loading generator (which files or which procedural clip) and a running
generator (the start frame at every ``reset()``).
"""

from __future__ import annotations

import warnings

import numpy as np

from jaxprune.envs import backgrounds

FRAME = 60  # each clip's frame: FRAME x FRAME
CLIPS = 2  # side by side: the picture is FRAME x CLIPS * FRAME
CONTRAST_CHANGE = 20.0
SHARPEN = 0.5


def resize_nearest(frames_xHxWxC: np.ndarray, height: int, width: int) -> np.ndarray:
  """Nearest-neighbour resize of ``... x H x W x C`` frames with OpenCV's ``INTER_NEAREST``
  rule: output pixel ``i`` reads input ``floor(i * in / out)``."""
  h, w = frames_xHxWxC.shape[-3:-1]
  rows = np.minimum((np.arange(height) * (h / height)).astype(np.int64), h - 1)
  cols = np.minimum((np.arange(width) * (w / width)).astype(np.int64), w - 1)
  return frames_xHxWxC[..., rows[:, None], cols[None, :], :]


def _saturate(x: np.ndarray) -> np.ndarray:
  return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def boost_contrast(frame: np.ndarray, change: float = CONTRAST_CHANGE) -> np.ndarray:
  """The release's contrast change of a ``uint8`` frame (``change`` in [-127, 127])."""
  c = max(-127.0, min(127.0, float(change)))
  f = 131 * (c + 127) / (127 * (131 - c))
  return _saturate(frame.astype(np.float32) * np.float32(f) + np.float32(127 * (1 - f)))


def sharpen(frames_xHxWxC: np.ndarray, s: float = SHARPEN) -> np.ndarray:
  """The release's 3 x 3 sharpening of ``uint8`` ``... x H x W x C`` frames (reflect-101
  borders)."""
  pad = [(0, 0)] * (frames_xHxWxC.ndim - 3) + [(1, 1), (1, 1), (0, 0)]
  x = np.pad(frames_xHxWxC.astype(np.float32), pad, mode="reflect")
  centre = x[..., 1:-1, 1:-1, :]
  cross = x[..., :-2, 1:-1, :] + x[..., 2:, 1:-1, :] + x[..., 1:-1, :-2, :] + x[..., 1:-1, 2:, :]
  return _saturate(np.float32(1 + 4 * s) * centre - np.float32(s) * cross)


def process_frames(frames_xHxWx3: np.ndarray) -> np.ndarray:
  """Resize to 60 x 60, boost the contrast, sharpen: frames (``... x H x W x 3``) as the TV
  shows them."""
  return sharpen(boost_contrast(resize_nearest(frames_xHxWx3, FRAME, FRAME)))


def clip_generators(tv_seed: np.random.SeedSequence) -> list[tuple[np.random.Generator, ...]]:
  """Per clip, ``(loading, running)`` generators from the environment's TV seed sequence."""
  return [tuple(np.random.default_rng(s) for s in child.spawn(2)) for child in tv_seed.spawn(CLIPS)]


def procedural_clips(loaders: list[np.random.Generator], num_frames: int) -> np.ndarray:
  """Processed frames of one procedural colour clip per generator: ``uint8`` ``C x T x 60 x 60 x
  3``."""
  size = dict(num_frames=num_frames, height=FRAME, width=FRAME)
  return np.stack([
    process_frames(backgrounds.procedural_color_video(seed=int(g.integers(2**32)), **size))
    for g in loaders
  ])  # fmt: skip


def _rgb(frame: np.ndarray) -> np.ndarray:
  frame = np.asarray(frame)
  if frame.ndim == 2:
    return np.repeat(frame[..., None], 3, axis=-1)
  if frame.shape[-1] == 1:
    return np.repeat(frame, 3, axis=-1)
  return frame[..., :3]


def read_frames(path: str):
  """The RGB ``uint8`` frames of one video file, one at a time (imageio)."""
  import imageio.v3 as iio

  for frame in iio.imiter(path):
    yield _rgb(frame).astype(np.uint8, copy=False)


def video_dir_clips(
  video_dir: str, loaders: list[np.random.Generator], num_frames: int, *, read=read_frames
) -> np.ndarray:
  """Processed frames of the videos in ``video_dir``, one clip per generator: ``uint8``
  ``C x num_frames x 60 x 60 x 3``. Unreadable files are skipped with a warning; a directory
  that is missing or holds no readable frame raises."""
  paths = backgrounds.list_videos(video_dir)
  if not paths:
    exts = ", ".join(backgrounds.VIDEO_EXTENSIONS)
    raise ValueError(f"no video files ({exts}) in {video_dir!r}")
  bad: set[str] = set()
  clips = []
  for g in loaders:
    frames = np.empty((num_frames, FRAME, FRAME, 3), np.uint8)
    n = 0
    while n < num_frames:
      before = n
      for path in g.permutation(paths):
        if path in bad:
          continue
        try:
          for frame in read(str(path)):
            frames[n] = process_frames(frame)
            n += 1
            if n == num_frames:
              break
        except Exception as e:  # imageio raises OSError, ValueError, RuntimeError... by backend
          bad.add(path)
          warnings.warn(f"skipping unreadable video {path!r}: {type(e).__name__}: {e}")
        if n == num_frames:
          break
      if n == before:
        raise ValueError(
          f"no readable video frames in {video_dir!r} ({len(paths)} files, {len(bad)} unreadable)"
        )
    clips.append(frames)
  return np.stack(clips)


def still_clips() -> np.ndarray:
  """The picture without the video distractor: mid-gray, one frame per clip."""
  return np.full((CLIPS, 1, FRAME, FRAME, 3), 128, np.uint8)


def picture(clips_CxTxHxWx3: np.ndarray, starts_C: np.ndarray, t: int) -> np.ndarray:
  """The TV picture ``t`` control steps after reset: ``uint8`` ``60 x 120 x 3``, clip ``c`` at
  frame ``(starts[c] + t) % T``, side by side, scrolled ``t`` columns to the right."""
  num_frames = clips_CxTxHxWx3.shape[1]
  frames = [clip[(int(s) + t) % num_frames] for clip, s in zip(clips_CxTxHxWx3, starts_C)]
  return np.roll(np.concatenate(frames, axis=1), t, axis=1)
