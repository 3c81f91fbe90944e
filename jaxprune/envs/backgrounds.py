"""Background videos for the distracting DMC variants: a clip is a ``uint8`` array ``T x H x W``.

Two sources, both deterministic given their seed:

* :func:`procedural_video` - the offline default that needs no download: two layers of drifting,
  slowly evolving 1/f^alpha noise (large blobs with soft edges from a ``tanh`` contrast curve plus a
  finer texture), each spatial scale moving with its own velocity like parallax in a moving
  camera. Every Fourier component advances by a whole number of cycles over the clip, so the
  clip loops without a seam (episodes start at a random frame and wrap around).
  :func:`procedural_color_video` adds two more such layers as colour differences (Cb, Cr): the
  offline source of noisy RoboDesk's colour TV.
* :func:`load_video_dir` - the user's own videos, read with imageio (+ ffmpeg), converted to
  grayscale (BT.601 luma) and resized to ``H x W`` (no crop: the aspect ratio is not kept, as in
  the authors' release). Files are taken in a seeded random order and their frames concatenated
  until ``num_frames`` are read (only those frames are decoded).

The paper's videos (Kinetics-400 "driving car"). The authors used the ``driving car`` class of the
Kinetics-400 *training* split, laid out as ``$KINETICS_DIR/train/driving_car/*.mp4`` (their README
links https://github.com/Showmax/kinetics-downloader, a downloader of the clips from YouTube, where
some are gone; the CVDF mirror https://github.com/cvdfoundation/kinetics-dataset has the whole split
as tarballs plus ``annotations/train.csv``, whose ``label`` column names each clip's class). Put the
clips in one folder and pass it as ``video_dir`` (``--video_dir`` of ``scripts/train_dmdp.py``)::

  python scripts/train_dmdp.py --variant video_background \\
      --video_dir $KINETICS_DIR/train/driving_car

As in the release, the clip is ``num_background_frames`` = 1000 frames (about four 10 s clips, so a
few dozen files are plenty; which ones are used depends on the seed), grayscale, 64 x 64 (bilinear),
concatenated from shuffled files, and the environment shows one frame per physics step from a random
start, looping. Differences from the release: it decodes with scikit-video's ffmpeg ``gray`` output
(ffmpeg's luma) and resizes with OpenCV's bilinear filter (no antialiasing; ours antialiases when
shrinking); it skips the first file after each shuffle (an indexing quirk); and it draws the start
frame once per environment, the video then running on across episodes, where we draw a new start at
every ``reset()``.
"""

from __future__ import annotations

import os
import warnings
from typing import Sequence

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".gif")

# px/frame of each octave band (1, 2, 4, ... cycles per image); finer scales move faster
_BLOB_SPEEDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
_TEXTURE_SPEEDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
_BOIL = 0.3  # std of the extra, non-rigid temporal frequency (cycles/clip per cycle/image)
_TIME_CHUNK = 128  # frames synthesised at once (bounds the complex64 work array)


def _check_size(*, num_frames: int, height: int, width: int) -> None:
  if num_frames < 1:
    raise ValueError(f"num_frames must be >= 1, got {num_frames}")
  if height < 4 or width < 4:
    raise ValueError(f"height and width must be >= 4, got {height} x {width}")


def to_grayscale(frame_HxWxC: np.ndarray) -> np.ndarray:
  """BT.601 luma of an RGB(A) or gray ``uint8`` frame: ``H x W [x C]`` -> ``H x W`` float32."""
  frame = np.asarray(frame_HxWxC)
  if frame.ndim == 2:
    return frame.astype(np.float32)
  if frame.ndim != 3 or frame.shape[-1] not in (1, 3, 4):
    raise ValueError(f"expected an H x W, H x W x 1, x 3 or x 4 frame, got shape {frame.shape}")
  if frame.shape[-1] == 1:
    return frame[..., 0].astype(np.float32)
  rgb = frame[..., :3].astype(np.float32)
  return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def resize_gray(gray_HxW: np.ndarray, *, height: int, width: int) -> np.ndarray:
  """Bilinear (antialiased when shrinking) resize of a gray frame to ``height x width`` uint8."""
  from PIL import Image  # a dependency of imageio and matplotlib

  img = Image.fromarray(np.clip(np.round(gray_HxW), 0, 255).astype(np.uint8), mode="L")
  return np.asarray(img.resize((width, height), Image.BILINEAR), dtype=np.uint8)


def list_videos(video_dir: str) -> list[str]:
  """Sorted paths of the files in ``video_dir`` (not recursive) with a video extension."""
  if not os.path.isdir(video_dir):
    raise FileNotFoundError(f"video directory {video_dir!r} does not exist (or is not a directory)")
  return sorted(
    os.path.join(video_dir, name)
    for name in os.listdir(video_dir)
    if name.lower().endswith(VIDEO_EXTENSIONS) and os.path.isfile(os.path.join(video_dir, name))
  )


def _read_gray_frames(path: str, *, height: int, width: int, limit: int) -> list[np.ndarray]:
  import imageio.v3 as iio

  frames = []
  for frame in iio.imiter(path):
    frames.append(resize_gray(to_grayscale(frame), height=height, width=width))
    if len(frames) >= limit:
      break
  return frames


def load_video_dir(
  video_dir: str, *, num_frames: int, height: int, width: int, seed: int
) -> np.ndarray:
  """Grayscale frames of the videos in ``video_dir``: uint8 ``T x height x width``, T <= num_frames.

  Files (extensions in ``VIDEO_EXTENSIONS``) are shuffled by ``seed``, read in that order and
  concatenated until ``num_frames`` frames are collected (fewer if the videos are shorter).
  Unreadable files are skipped with a warning. Raises ``FileNotFoundError`` if the directory is
  missing and ``ValueError`` if it holds no readable video.
  """
  _check_size(num_frames=num_frames, height=height, width=width)
  paths = list_videos(video_dir)
  if not paths:
    raise ValueError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) in {video_dir!r}")
  order = np.random.default_rng(seed).permutation(len(paths))
  frames: list[np.ndarray] = []
  failed = []
  for i in order:
    try:
      frames += _read_gray_frames(
        paths[i], height=height, width=width, limit=num_frames - len(frames)
      )
    except Exception as e:  # imageio raises OSError, ValueError, RuntimeError... by backend
      failed.append(paths[i])
      warnings.warn(f"skipping unreadable video {paths[i]!r}: {type(e).__name__}: {e}")
    if len(frames) >= num_frames:
      break
  if not frames:
    raise ValueError(
      f"no readable video frames in {video_dir!r} (tried {len(paths)} files, "
      f"{len(failed)} unreadable)"
    )
  return np.stack(frames)


def _noise_layer(
  rng: np.random.Generator,
  *,
  num_frames: int,
  height: int,
  width: int,
  alpha: float,
  speeds: Sequence[float],
  boil: float,
) -> np.ndarray:
  """One looping layer of drifting 1/f^alpha noise: float32 ``T x H x W``, zero mean, unit std."""
  ky = np.fft.fftfreq(height) * height  # cycles per image
  kx = np.fft.rfftfreq(width) * width
  ky_HxK, kx_HxK = np.meshgrid(ky, kx, indexing="ij")
  k = np.hypot(ky_HxK / height, kx_HxK / width) * max(height, width)
  amp = np.where(k > 0, (k**2 + 1.0) ** (-alpha / 2), 0.0)
  band = np.clip(np.floor(np.log2(np.maximum(k, 1.0))), 0, len(speeds) - 1).astype(int)
  # one main direction of motion, each band a little off it
  angle = rng.uniform(0, 2 * np.pi) + rng.normal(0.0, 0.3, len(speeds))
  speed = np.asarray(speeds, np.float64)
  # whole image periods travelled per clip, so that the clip loops seamlessly
  periods_x = np.round(speed * np.cos(angle) * num_frames / width)
  periods_y = np.round(speed * np.sin(angle) * num_frames / height)
  cycles = kx_HxK * periods_x[band] + ky_HxK * periods_y[band]
  cycles = cycles + np.round(rng.normal(size=k.shape) * boil * k)  # slow non-rigid change
  cycles = cycles.astype(np.int64) % num_frames
  spec = amp * rng.rayleigh(size=k.shape) * np.exp(1j * rng.uniform(0, 2 * np.pi, k.shape))
  spec = spec.astype(np.complex64)
  # whole cycles per clip: the phase at frame t is a root of unity, looked up (12x faster than exp)
  roots = np.exp(2j * np.pi * np.arange(num_frames) / num_frames).astype(np.complex64)
  out = np.empty((num_frames, height, width), np.float32)
  for start in range(0, num_frames, _TIME_CHUNK):
    t = np.arange(start, min(num_frames, start + _TIME_CHUNK))
    phase = roots[(t[:, None, None] * cycles) % num_frames]
    out[t[0] : t[-1] + 1] = np.fft.irfft2(spec * phase, s=(height, width))
  std = out.std()
  return (out - out.mean()) / (std if std > 0 else 1.0)


def _luma(rng: np.random.Generator, *, num_frames: int, height: int, width: int) -> np.ndarray:
  """The gray level of :func:`procedural_video` before rounding: float ``T x H x W``."""
  size = dict(num_frames=num_frames, height=height, width=width)
  blobs = _noise_layer(rng, alpha=2.2, speeds=_BLOB_SPEEDS, boil=_BOIL, **size)
  texture = _noise_layer(rng, alpha=1.0, speeds=_TEXTURE_SPEEDS, boil=_BOIL, **size)
  x = np.tanh(1.2 * blobs) + 0.25 * texture
  std = x.std()
  return (x - x.mean()) / (std if std > 0 else 1.0) * 55.0 + 128.0


def procedural_video(*, num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
  """A looping, natural-looking grayscale clip: ``uint8`` ``num_frames x height x width``.

  Deterministic given ``seed``. Mean gray ~128, std ~55; consecutive frames differ by a few gray
  levels on average (motion of ~0.05-0.6 px/frame depending on the spatial scale).
  """
  _check_size(num_frames=num_frames, height=height, width=width)
  x = _luma(np.random.default_rng(seed), num_frames=num_frames, height=height, width=width)
  return np.clip(np.round(x), 0, 255).astype(np.uint8)


_CHROMA_STD = 30.0  # std of each colour-difference layer (Cb, Cr), in 8-bit levels
_YCBCR_TO_RGB = np.array([[0.0, -0.344136, 1.772], [1.402, -0.714136, 0.0]], np.float32)


def procedural_color_video(*, num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
  """A looping colour clip: ``uint8`` ``num_frames x height x width x 3`` (RGB).

  The luma is :func:`procedural_video`'s (same seed, same gray level); two more drifting blob
  layers of the same kind give the colour differences Cb and Cr (std ``_CHROMA_STD``), turned
  into RGB with the BT.601 (JPEG) matrix. Deterministic given ``seed``.
  """
  _check_size(num_frames=num_frames, height=height, width=width)
  rng = np.random.default_rng(seed)
  size = dict(num_frames=num_frames, height=height, width=width)
  luma = _luma(rng, **size)
  chroma = np.stack(
    [_noise_layer(rng, alpha=2.2, speeds=_BLOB_SPEEDS, boil=_BOIL, **size) for _ in range(2)], -1
  )
  rgb = luma[..., None] + (_CHROMA_STD * chroma) @ _YCBCR_TO_RGB
  return np.clip(np.round(rgb), 0, 255).astype(np.uint8)
