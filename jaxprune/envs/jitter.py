"""Camera jitter: the observation is a window that moves along a smooth 2-D random walk.

How (our choice): the scene is rendered at ``(S + 2M) x (S + 2M)`` with the camera's vertical field
of view widened so that one pixel covers the same angle as in the plain ``S x S`` render; the
background video is composited at that size, and the observation is the ``S x S`` window whose
corner is at ``(M + dy, M + dx)``. The centred window (offset 0) is the plain render (checked: at
most 1 gray level apart, from rasterisation), so the whole image, scene and background, is
translated by ``(-dy, -dx)`` and the border shows real scene, not the black fill of the authors'
``cv2.warpAffine``. The margin is ``M = S // 4`` (16 px at 64).

The walk (per physics-control step, in pixels scaled by ``S / 64``) is a damped, mean-reverting
second-order process: ``v <- 0.95 v + 0.15 eps - 0.005 p``, ``p <- clip(p + v, -M, M)`` (the
velocity of a clipped axis is zeroed). Its stationary std is ~6.5 px and it moves ~0.75 px per
agent step (action repeat 2) on average. All draws come from the environment's seeded generator
(the authors' release drew them from torch's unseeded global RNG).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

_DECAY = 0.95
_SIGMA = 0.15  # px at image size 64
_PULL = 0.005
_INIT_POS_STD = 6.5  # px at image size 64, about the stationary std
_INIT_VEL_STD = 0.5


class JitterState(NamedTuple):
  """Window offset ``pos_2`` (dy, dx) in pixels (float) and its velocity ``vel_2``."""

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
  """A random start for the walk (drawn near its stationary distribution)."""
  scale = image_size / 64
  m = jitter_margin(image_size)
  pos = np.clip(rng.normal(0.0, _INIT_POS_STD * scale, 2), -m, m)
  vel = rng.normal(0.0, _INIT_VEL_STD * scale, 2)
  return JitterState(pos, vel)


def jitter_step(state: JitterState, eps_2: np.ndarray, *, image_size: int) -> JitterState:
  """One physics step of the walk given standard-normal ``eps_2`` (pure)."""
  scale = image_size / 64
  m = jitter_margin(image_size)
  vel = _DECAY * state.vel_2 + _SIGMA * scale * np.asarray(eps_2) - _PULL * state.pos_2
  pos = state.pos_2 + vel
  clipped = np.abs(pos) > m
  return JitterState(np.clip(pos, -m, m), np.where(clipped, 0.0, vel))


def jitter_offset(state: JitterState) -> tuple[int, int]:
  """Integer window offset (dy, dx), each in [-M, M]."""
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
