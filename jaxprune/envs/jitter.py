"""Camera jitter: the observation moves along a smooth 2-D random walk. Two mechanisms, ``JITTERS``.

Both report the camera's offset ``(dy, dx)`` in pixels: scene content at ``(y, x)`` of the still
camera's image appears at ``(y - dy, x - dx)``.

``shift`` (the default; the authors' release's mechanism): the ``S x S`` image, background
already composited, is translated by the sub-pixel shift ``(-dy, -dx)`` with bilinear
interpolation and black borders (:func:`translate`, like the release's ``cv2.warpAffine``). The
offset is a smoothed random walk in normalised units, scaled by ``120 * S / 64`` pixels
(``spatial_jitter=120`` at 64 x 64), stepped once per physics step (:func:`shift_step`)::

  start:      p ~ N(0, (0.075 / sqrt 2)^2 I_2),  v ~ N(0, 0.005^2 I_2)
  each step:  a = 0.005 eps,  eps ~ N(0, I_2);  a = -0.1 p  instead if |p| >= 0.075
              v <- (v + a / 2) sqrt(0.9);  p <- p + v / 2

so the walk is pulled back toward the centre beyond a soft radius of 0.075 (9 px at 64); there is
no hard bound. |offset| averages ~6.5 px (p95 ~10 px) and moves ~0.5 px per physics step.
These are the release's constants (``SmoothRandomWalker(d=2, pull=0.1, pullr=0.075,
randastddev=0.005, vdecay=0.9, speed_factor=1/2)``); the release drew ``eps`` from torch's unseeded
global RNG, here every draw comes from the environment's seeded generator.

``crop`` (our earlier choice, kept as an option): the scene is rendered at ``(S + 2M) x (S + 2M)``
with the camera's vertical field of view widened so that one pixel covers the same angle as in the
plain ``S x S`` render; the background video is composited at that size, and the observation is
the ``S x S`` window whose corner is at ``(M + dy, M + dx)``. The centred window (offset 0) is the
plain render (checked: at most 1 gray level apart, from rasterisation), so the border shows real
scene, not black fill. The margin is ``M = S // 4`` (16 px at 64). Its walk (per physics step, in
pixels scaled by ``S / 64``, integer offsets): ``v <- 0.95 v + 0.15 eps - 0.005 p``,
``p <- clip(p + v, -M, M)`` (the velocity of a clipped axis is zeroed); stationary std ~6.5 px.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

JITTERS = ("shift", "crop")

# --- shift: the release's walk, in normalised units ---------------------------------------------
SHIFT_SCALE = 120.0  # px per normalised unit at image size 64 (the release's spatial_jitter)
_PULL_RADIUS = 0.075
_PULL = 0.1
_ACCEL_STD = 0.005
_VEL_DECAY = 0.9
_SPEED = 0.5  # the release's speed_factor (1 / action repeat)


class ShiftState(NamedTuple):
  """Offset ``pos_2`` (dy, dx) and velocity ``vel_2`` of the shift walk, in normalised units."""

  pos_2: np.ndarray
  vel_2: np.ndarray


def shift_init(rng: np.random.Generator, dim: int = 2) -> ShiftState:
  """The walk's random start: position ``N(0, (0.075 / sqrt dim)^2)``, velocity ``N(0, 0.005^2)``.

  ``dim`` 2 for the image shift; the RoboDesk camera walks the same way in 3-D (``dim=3``)."""
  pos = rng.normal(size=dim) * (_PULL_RADIUS / math.sqrt(dim))
  vel = rng.normal(size=dim) * _ACCEL_STD
  return ShiftState(pos, vel)


def shift_step(state: ShiftState, eps_2: np.ndarray) -> ShiftState:
  """One physics step of the walk given standard-normal ``eps_2`` (pure; see the module doc)."""
  pos = np.asarray(state.pos_2, np.float64)
  if np.linalg.norm(pos) >= _PULL_RADIUS:
    accel = -_PULL * pos  # pulled back toward the centre, the noise is dropped (as the release)
  else:
    accel = _ACCEL_STD * np.asarray(eps_2, np.float64)
  vel = (state.vel_2 + _SPEED * accel) * _VEL_DECAY**_SPEED
  return ShiftState(pos + _SPEED * vel, vel)


def shift_offset(state: ShiftState, *, image_size: int) -> tuple[float, float]:
  """The camera offset ``(dy, dx)`` in pixels of an ``image_size`` image (float)."""
  dy, dx = state.pos_2 * (SHIFT_SCALE * image_size / 64)
  return float(dy), float(dx)


def _shift_axis(x: np.ndarray, d: float, axis: int) -> np.ndarray:
  """``out[i] = x(i - d)`` along ``axis``, linearly interpolated, zero outside ``x``."""
  k = math.floor(d)
  f = d - k  # x(i - k - f) = (1 - f) x[i - k] + f x[i - k - 1]
  n = x.shape[axis]

  def moved(m: int) -> np.ndarray:  # y[i] = x[i - m], zero where i - m is outside
    y = np.zeros_like(x)
    if abs(m) < n:
      src = [slice(None)] * x.ndim
      dst = [slice(None)] * x.ndim
      src[axis] = slice(max(0, -m), n - max(0, m))
      dst[axis] = slice(max(0, m), n - max(0, -m))
      y[tuple(dst)] = x[tuple(src)]
    return y

  out = moved(k)
  if f:
    out = (1.0 - f) * out + f * moved(k + 1)
  return out


def translate(frame_HxWxC: np.ndarray, shift_yx: tuple[float, float]) -> np.ndarray:
  """The ``uint8`` frame translated by ``shift_yx = (sy, sx)`` pixels (content moves down, right).

  ``out[y, x] = frame(y - sy, x - sx)``, bilinear, with black (0) outside the frame, rounded half
  up to ``uint8``: ``cv2.warpAffine(frame, [[1, 0, sx], [0, 1, sy]], (W, H))`` without its 1/32-px
  quantisation of the coordinates.
  """
  frame = np.asarray(frame_HxWxC)
  if frame.ndim not in (2, 3):
    raise ValueError(f"expected an H x W [x C] frame, got shape {frame.shape}")
  sy, sx = (float(s) for s in shift_yx)
  if not (math.isfinite(sy) and math.isfinite(sx)):
    raise ValueError(f"shift must be finite, got {shift_yx}")
  out = _shift_axis(frame.astype(np.float64), sy, axis=0)
  out = _shift_axis(out, sx, axis=1)
  return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


# --- crop: a window over a wider render ----------------------------------------------------------
_DECAY = 0.95
_SIGMA = 0.15  # px at image size 64
_PULL_CROP = 0.005
_INIT_POS_STD = 6.5  # px at image size 64, about the stationary std
_INIT_VEL_STD = 0.5


class JitterState(NamedTuple):
  """Window offset ``pos_2`` (dy, dx) in pixels (float) and its velocity ``vel_2`` (crop walk)."""

  pos_2: np.ndarray
  vel_2: np.ndarray


def jitter_margin(image_size: int) -> int:
  """Largest window offset M, in pixels, on each side."""
  return image_size // 4


def widened_fovy(fovy_deg: float, *, image_size: int, margin: int) -> float:
  """Vertical field of view (degrees) of a ``(S + 2M)``-pixel render whose central S pixels match
  a ``S``-pixel render at ``fovy_deg``: ``tan(f'/2) = tan(f/2) (S + 2M) / S``."""
  half = math.tan(math.radians(fovy_deg) / 2) * (image_size + 2 * margin) / image_size
  return math.degrees(2 * math.atan(half))


def jitter_init(rng: np.random.Generator, *, image_size: int) -> JitterState:
  """A random start for the crop walk (drawn near its stationary distribution)."""
  scale = image_size / 64
  m = jitter_margin(image_size)
  pos = np.clip(rng.normal(0.0, _INIT_POS_STD * scale, 2), -m, m)
  vel = rng.normal(0.0, _INIT_VEL_STD * scale, 2)
  return JitterState(pos, vel)


def jitter_step(state: JitterState, eps_2: np.ndarray, *, image_size: int) -> JitterState:
  """One physics step of the crop walk given standard-normal ``eps_2`` (pure)."""
  scale = image_size / 64
  m = jitter_margin(image_size)
  vel = _DECAY * state.vel_2 + _SIGMA * scale * np.asarray(eps_2) - _PULL_CROP * state.pos_2
  pos = state.pos_2 + vel
  clipped = np.abs(pos) > m
  return JitterState(np.clip(pos, -m, m), np.where(clipped, 0.0, vel))


def jitter_offset(state: JitterState) -> tuple[int, int]:
  """Integer window offset (dy, dx) of the crop walk, each in [-M, M]."""
  dy, dx = np.round(state.pos_2).astype(int)
  return int(dy), int(dx)


def crop_window(frame_HxWxC: np.ndarray, offset: tuple[int, int], *, image_size: int) -> np.ndarray:
  """The ``S x S`` window of an ``(S + 2M)``-square frame, its corner at ``(M + dy, M + dx)``."""
  m = jitter_margin(image_size)
  if frame_HxWxC.shape[:2] != (image_size + 2 * m,) * 2:
    raise ValueError(f"expected a {image_size + 2 * m} square frame, got {frame_HxWxC.shape}")
  dy, dx = offset
  if abs(dy) > m or abs(dx) > m:
    raise ValueError(f"offset {offset} outside [-{m}, {m}]")
  return frame_HxWxC[m + dy : m + dy + image_size, m + dx : m + dx + image_size]
