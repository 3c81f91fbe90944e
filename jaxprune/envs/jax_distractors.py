"""The distractors of the noisy DMC variants (``dmc``) in pure JAX (jit, vmap, static shapes).

The same functions as the numpy environment's, so that a JAX copy of ``dmc.NoisyDMCEnv`` can run
its whole loop on the device:

* :func:`blue_mask`, :func:`composite`, :func:`sensor_noise`: ``compositing``'s (``strict`` /
  ``argmax`` masks, the gray clip frame on all three channels of the masked pixels, the mean of the
  ``H/4 x W/4`` patch at ``(H/8, W/8)`` / 255 - 0.5). Equal to numpy's: the masks and the
  composite bit for bit; the noise as the float32 nearest numpy's float64 value (the exact
  ``(2 sum - 255 n) / (510 n)`` rounded once, by integer long division).
* :func:`shift_init`, :func:`shift_step`, :func:`shift_offset`: ``jitter``'s "shift" walk (the
  release's smoothed random walk, one step per physics step, pulled back beyond 0.075), in float32.
* :func:`translate`: ``jitter.translate`` (bilinear sub-pixel shift, black outside, rounded half
  up). Computed exactly: the shift is turned into an integer part and a 48-bit fixed-point
  fraction (int32 limbs of 8 bits, from exact float32 operations only, so fused multiply-adds and
  float32 rounding cannot change it), and the bilinear sum of the four integer pixels is carried
  out in int32 limbs, so the rounding is that of the exact value. numpy's float64 result is that
  value rounded as well unless it lies within ~1e-13 of a .5 tie without being one (measured: no
  pixel of 2 x 24.6M on random frames and walks; 9 of 12288 on a walk crafted to sit 1e-14 off
  ties, where numpy's float64 is the one off). The fraction is exact for float32 shifts
  ``|s| >= 2**-25`` px and walks ``|pos| >= 2**-22``; below, its bits past ``2**-48`` are dropped.
* :class:`Distractor` with :func:`distractor_reset`, :func:`distractor_physics_step`,
  :func:`background_index`, :func:`frame_noise`, :func:`observe`: the per-episode state and the
  schedule of ``dmc.py``: clip frame ``(start + t) % T`` with ``t`` physics steps this episode and
  ``start`` uniform per episode; the walk stepped once per physics step with standard-normal
  ``eps``; the noisy sensor of a physics step reads the frame on screen *before* it; the
  observation is the render composited with the clip frame, then (camera jitter) translated by
  ``-offset``, as ``NoisyDMCEnv._observe``. In :func:`observe` the offset ``pos * 120 S / 64`` is
  used exactly (as numpy's float64 product of the float32 walk), not rounded to float32.

Variants are static Python strings (``noiseless`` traces to the render itself). Randomness comes
from ``jax.random`` keys, so the streams differ from the numpy env's ``Generator``; the
distributions and every deterministic function are the same. Only the ``shift`` jitter exists
here: ``crop`` needs a wider render and a wider clip (:func:`check_variant` refuses it).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

VARIANTS = (
  "noiseless",
  "video_background",
  "video_background_noisy_sensor",
  "video_background_camera_jitter",
)
MASKS = ("strict", "argmax")
JITTER_VARIANT = "video_background_camera_jitter"

# the release's shift walk (jitter.py; normalised units, scaled by 120 S / 64 px)
SHIFT_SCALE = 120.0
_PULL_RADIUS = 0.075
_PULL = 0.1
_ACCEL_STD = 0.005
_SPEED = 0.5
_VEL_FACTOR = 0.9**_SPEED  # float64 as in jitter.py, rounded once to float32

_FRAC_LIMBS = 6  # fraction of a shift: 6 limbs of 8 bits = 48 bits
_LIMB_BITS = 8


def check_variant(variant: str, jitter: str = "shift") -> None:
  """Host-side check: ValueError unless ``variant`` is one of ``VARIANTS`` and, for the camera
  jitter variant, ``jitter`` is ``"shift"`` (``"crop"`` renders a wider image: not in JAX)."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
  if jitter not in ("shift", "crop"):
    raise ValueError(f"jitter must be 'shift' or 'crop', got {jitter!r}")
  if variant == JITTER_VARIANT and jitter == "crop":
    raise ValueError(
      "jitter='crop' is not supported by the JAX distractors (it needs a wider render and a "
      "wider background clip); use jitter='shift', the release's mechanism, or the numpy env"
    )


def _check_mask_mode(mode: str) -> None:
  if mode not in MASKS:
    raise ValueError(f"mask mode must be one of {MASKS}, got {mode!r}")


# --- compositing ---------------------------------------------------------------------------------
def blue_mask(rgb_HxWx3: jax.Array, *, mode: str) -> jax.Array:
  """Background mask of a uint8 RGB frame, bool ``H x W``: ``strict`` B > R, G; ``argmax`` B >= R,
  G (``compositing.blue_mask``)."""
  _check_mask_mode(mode)
  if rgb_HxWx3.ndim != 3 or rgb_HxWx3.shape[-1] != 3:
    raise ValueError(f"expected an H x W x 3 frame, got shape {rgb_HxWx3.shape}")
  r, g, b = rgb_HxWx3[..., 0], rgb_HxWx3[..., 1], rgb_HxWx3[..., 2]
  if mode == "strict":
    return (b > r) & (b > g)
  return (b >= r) & (b >= g)


def composite(rgb_HxWx3: jax.Array, gray_HxW: jax.Array, mask_HxW: jax.Array) -> jax.Array:
  """The frame with the masked pixels set to the gray background on all channels (uint8)."""
  if gray_HxW.shape != rgb_HxWx3.shape[:2] or mask_HxW.shape != rgb_HxWx3.shape[:2]:
    raise ValueError(
      f"frame {rgb_HxWx3.shape}, background {gray_HxW.shape} and mask "
      f"{mask_HxW.shape} must share H x W"
    )
  return jnp.where(mask_HxW[..., None], gray_HxW[..., None], rgb_HxWx3).astype(jnp.uint8)


def _divide_rounded(num: jax.Array, den: int) -> jax.Array:
  """``num / den`` as the nearest float32 (ties to even), int32 ``|num| < min(den, 2**24)``,
  ``den < 2**25``.

  Integer long division (25 quotient bits and a sticky bit), as XLA may turn a division by a
  constant into a multiplication by its rounded reciprocal."""
  if not 0 < den < 2**25:
    raise ValueError(f"denominator {den} outside (0, 2**25)")
  a = jnp.abs(num).astype(jnp.int32)
  _, e_a = jnp.frexp(a.astype(jnp.float32))  # a's bit length (a < 2**24: exact)
  s = jnp.maximum(den.bit_length() - e_a, 0)
  s = jnp.where(jnp.left_shift(a, s) < den, s + 1, s)  # den <= a 2**s < 2 den
  r = jnp.left_shift(a, s)
  q = jnp.int32(0)
  for _ in range(25):  # q = floor(2**24 a 2**s / den) in [2**24, 2**25)
    bit = r >= den
    q = 2 * q + bit.astype(jnp.int32)
    r = 2 * jnp.where(bit, r - den, r)
  m = q >> 1
  up = ((q & 1) == 1) & ((r != 0) | ((m & 1) == 1))
  m = m + up.astype(jnp.int32)
  value = jnp.ldexp(m.astype(jnp.float32), -(s + 23))
  return jnp.where(a == 0, jnp.float32(0), jnp.where(num < 0, -value, value))


def sensor_noise(gray_HxW: jax.Array) -> jax.Array:
  """Noisy-sensor value of a background frame, float32 in [-0.5, 0.5]: the mean of the ``H/4 x
  W/4`` patch at ``(H/8, W/8)`` / 255 - 0.5 (``compositing.sensor_noise``), correctly rounded."""
  h, w = gray_HxW.shape
  ph, pw = max(h // 4, 1), max(w // 4, 1)
  patch = gray_HxW[h // 8 : h // 8 + ph, w // 8 : w // 8 + pw]
  n = ph * pw  # mean/255 - 1/2 = (2 sum - 255 n) / (510 n), exact integers
  if 510 * n >= 2**25:
    raise ValueError(f"background frame {gray_HxW.shape} too large (patch of {n} pixels)")
  num = 2 * jnp.sum(patch.astype(jnp.int32)) - 255 * n
  return _divide_rounded(num, 510 * n)


# --- the shift walk ------------------------------------------------------------------------------
class ShiftWalk(NamedTuple):
  """Offset ``pos_2`` (dy, dx) and velocity ``vel_2`` of the shift walk (normalised, float32)."""

  pos_2: jax.Array
  vel_2: jax.Array


def shift_init(key: jax.Array) -> ShiftWalk:
  """The walk's random start: position ``N(0, (0.075 / sqrt 2)^2 I)``, velocity ``N(0, 0.005^2
  I)`` (``jitter.shift_init``)."""
  k_pos, k_vel = jax.random.split(key)
  pos = jax.random.normal(k_pos, (2,), jnp.float32) * jnp.float32(_PULL_RADIUS / math.sqrt(2))
  vel = jax.random.normal(k_vel, (2,), jnp.float32) * jnp.float32(_ACCEL_STD)
  return ShiftWalk(pos, vel)


def shift_step(walk: ShiftWalk, eps_2: jax.Array) -> ShiftWalk:
  """One physics step given standard-normal ``eps_2`` (``jitter.shift_step``): ``a = 0.005 eps``,
  or ``-0.1 pos`` when ``|pos| >= 0.075``; ``v <- (v + a / 2) sqrt 0.9``; ``p <- p + v / 2``."""
  pos = jnp.asarray(walk.pos_2, jnp.float32)
  vel = jnp.asarray(walk.vel_2, jnp.float32)
  pulled = jnp.sqrt(jnp.sum(pos * pos)) >= jnp.float32(_PULL_RADIUS)
  accel = jnp.where(pulled, -_PULL * pos, _ACCEL_STD * jnp.asarray(eps_2, jnp.float32))
  vel = (vel + _SPEED * accel) * jnp.float32(_VEL_FACTOR)
  return ShiftWalk(pos + _SPEED * vel, vel)


def _shift_scale(image_size: int) -> float:
  """``120 S / 64 = 15 S / 8``: at most 14 significant bits, exact in float32."""
  return SHIFT_SCALE * image_size / 64


def shift_offset(walk: ShiftWalk, *, image_size: int) -> tuple[jax.Array, jax.Array]:
  """The camera offset ``(dy, dx)`` in pixels (float32, rounded; :func:`observe` uses the exact
  product). The scene appears moved by ``(-dy, -dx)``."""
  off = walk.pos_2 * jnp.float32(_shift_scale(image_size))
  return off[0], off[1]


# --- exact translation ---------------------------------------------------------------------------
def _limbs_of_magnitude(x: jax.Array, num: int) -> list[jax.Array]:
  """int32 limbs (8 bits, lowest first; the top one unbounded) of ``floor(x)``, float32 ``x >= 0``.

  Exact: scaling by powers of two, floor, and subtracting the part already taken (the lower bits
  of ``x``'s mantissa, representable) are all exact in float32."""
  limbs = [None] * num
  y = x
  for j in range(num - 1, 0, -1):
    q = jnp.floor(y * jnp.float32(2.0 ** (-_LIMB_BITS * j)))
    y = y - q * jnp.float32(2.0 ** (_LIMB_BITS * j))
    limbs[j] = q.astype(jnp.int32)
  limbs[0] = jnp.floor(y).astype(jnp.int32)
  return limbs


def _fixed_point(terms: list[jax.Array]) -> tuple[jax.Array, list[jax.Array]]:
  """``d = sum(terms)`` (float32 scalars, ``|term| < 2**15``) as ``(k, F)``: ``k = floor(d)``
  (int32) and the fraction ``F`` (6 limbs in [0, 256), lowest first): ``d = k + F / 2**48``,
  exact when every term is a multiple of ``2**-48``."""
  num = _FRAC_LIMBS + 2  # two integer limbs: |d| < 2**16
  acc = [jnp.int32(0)] * num
  for t in terms:
    t = jnp.asarray(t, jnp.float32)
    sign = jnp.where(t < 0, -1, 1).astype(jnp.int32)
    mag = jnp.abs(t) * jnp.float32(2.0 ** (_LIMB_BITS * _FRAC_LIMBS))
    for j, limb in enumerate(_limbs_of_magnitude(mag, num)):
      acc[j] = acc[j] + sign * limb
  for j in range(_FRAC_LIMBS):  # normalise the fraction limbs to [0, 256), carry upward
    carry = acc[j] >> _LIMB_BITS  # arithmetic shift: floor division
    acc[j] = acc[j] - (carry << _LIMB_BITS)
    acc[j + 1] = acc[j + 1] + carry
  k = acc[_FRAC_LIMBS] + (acc[_FRAC_LIMBS + 1] << _LIMB_BITS)
  return k, acc[:_FRAC_LIMBS]


def _bilinear_exact(frame_HxWxC: jax.Array, ky, fy, kx, fx) -> jax.Array:
  """``out[i, j] = frame(i - ky - fy, j - kx - fx)`` (zero outside), rounded half up, exactly.

  With corners ``p00 = x[i-ky, j-kx]``, ``p10 = x[i-ky-1, j-kx]``, ``p01 = x[i-ky, j-kx-1]``,
  ``p11``: ``v = p00 + fy e1 + fx e2 + fx fy e3`` (``e1 = p10 - p00``, ``e2 = p01 - p00``,
  ``e3 = p00 - p10 - p01 + p11``), summed as ``v 2**96`` in 8-bit limb positions (int32, no
  overflow: at most 6 * 255^2 * 510 + carries < 2**29 per position); the rounded value is
  ``p00`` plus the carry out of the fraction after adding ``2**95``."""
  h, w, c = frame_HxWxC.shape
  x = frame_HxWxC.astype(jnp.int32)
  py, px = h + 1, w + 1  # pads: k and k + 1 in [-S - 1, S + 1]
  xp = jnp.pad(x, ((py, py), (px, px), (0, 0)))
  block = jax.lax.dynamic_slice(xp, (py - ky - 1, px - kx - 1, 0), (h + 1, w + 1, c))
  p00, p10 = block[1:, 1:], block[:-1, 1:]
  p01, p11 = block[1:, :-1], block[:-1, :-1]
  e1, e2, e3 = p10 - p00, p01 - p00, p00 - p10 - p01 + p11
  nl = _FRAC_LIMBS
  cross = [sum(fx[i] * fy[p - i] for i in range(nl) if 0 <= p - i < nl) for p in range(2 * nl - 1)]
  carry = jnp.zeros_like(x[:h, :w])
  for p in range(2 * nl):  # position p weighs 2**(8 p); p00 sits at 2 nl (2**96)
    s = carry
    if p < 2 * nl - 1:
      s = s + cross[p] * e3
    if p >= nl:
      s = s + fy[p - nl] * e1 + fx[p - nl] * e2
    if p == 2 * nl - 1:
      s = s + (1 << (_LIMB_BITS - 1))  # + 1/2: 2**95
    carry = s >> _LIMB_BITS
  return jnp.clip(p00 + carry, 0, 255).astype(jnp.uint8)


def _translate_terms(frame: jax.Array, terms_y: list, terms_x: list) -> jax.Array:
  """``frame`` translated by the shift ``(sum terms_y, sum terms_x)`` (see :func:`translate`)."""
  if frame.ndim not in (2, 3):
    raise ValueError(f"expected an H x W [x C] frame, got shape {frame.shape}")
  squeeze = frame.ndim == 2
  f3 = frame[..., None] if squeeze else frame
  h, w = f3.shape[:2]
  ky, fy = _fixed_point(terms_y)
  kx, fx = _fixed_point(terms_x)
  # beyond the frame the output is black whatever the fraction: k in [-S - 1, S] keeps that
  out = _bilinear_exact(f3, jnp.clip(ky, -h - 1, h), fy, jnp.clip(kx, -w - 1, w), fx)
  return out[..., 0] if squeeze else out


def _bounded(s: jax.Array, n: int) -> jax.Array:
  """``s`` clipped to ``[-n - 2, n + 2]``, NaN to ``n + 2`` (either: an all-black frame)."""
  s = jnp.asarray(s, jnp.float32)
  return jnp.where(jnp.isnan(s), jnp.float32(n + 2), jnp.clip(s, -n - 2, n + 2))


def translate(frame_HxWxC: jax.Array, shift_yx) -> jax.Array:
  """The ``uint8`` frame moved by ``shift_yx = (sy, sx)`` float32 pixels (``jitter.translate``):
  ``out[y, x] = frame(y - sy, x - sx)``, bilinear, black (0) outside, rounded half up; computed
  exactly (module docstring). Shifts beyond the frame, infinite or NaN give a black frame (numpy
  raises on non-finite shifts)."""
  h, w = frame_HxWxC.shape[:2]
  sy, sx = shift_yx[0], shift_yx[1]
  return _translate_terms(frame_HxWxC, [_bounded(sy, h)], [_bounded(sx, w)])


def _exact_product_terms(p: jax.Array, scale: float) -> list[jax.Array]:
  """Three float32 terms summing exactly to ``p * scale`` (``scale`` with <= 16 significant bits):
  ``p``'s 24-bit mantissa cut into 8-bit pieces, each product then exact."""
  m8 = float(scale) * 8
  if not (m8.is_integer() and 0 < m8 < 2**16):
    raise ValueError(f"scale {scale} must be a positive multiple of 1/8 below 2**13")
  mant, expo = jnp.frexp(jnp.abs(p))  # |p| = mant 2**expo, mant in [0.5, 1)
  m = mant * jnp.float32(2.0**24)  # integer < 2**24
  hi = jnp.floor(m * jnp.float32(2.0**-16)) * jnp.float32(2.0**16)
  mid = jnp.floor((m - hi) * jnp.float32(2.0**-8)) * jnp.float32(2.0**8)
  lo = m - hi - mid
  sign = jnp.where(p < 0, jnp.float32(-1), jnp.float32(1))
  return [sign * jnp.ldexp(piece * jnp.float32(scale), expo - 24) for piece in (hi, mid, lo)]


def translate_by_offset(frame_HxWxC: jax.Array, walk: ShiftWalk, *, image_size: int) -> jax.Array:
  """``frame`` translated by ``-offset`` with the offset ``pos * 120 S / 64`` taken exactly (as
  numpy's float64 ``jitter.translate(frame, (-dy, -dx))`` for the same float32 walk)."""
  h, w = frame_HxWxC.shape[:2]
  scale = _shift_scale(image_size)
  out = []
  for axis, n in ((0, h), (1, w)):
    p = walk.pos_2[axis]
    big = jnp.isnan(p) | (jnp.abs(p * jnp.float32(scale)) > n + 1)
    terms = _exact_product_terms(-p, scale)
    far = _bounded(-p * jnp.float32(scale), n)  # off the frame (or NaN): black either way
    out.append([jnp.where(big, far if i == 0 else 0.0, t) for i, t in enumerate(terms)])
  return _translate_terms(frame_HxWxC, out[0], out[1])


# --- the per-episode state and the env's schedule ------------------------------------------------
class Distractor(NamedTuple):
  """Per-episode distractor state: clip ``start`` frame, physics steps ``t`` this episode (int32)
  and the shift ``walk`` (zeros and never stepped unless camera jitter)."""

  start: jax.Array
  t: jax.Array
  walk: ShiftWalk


def _zero_walk() -> ShiftWalk:
  return ShiftWalk(jnp.zeros(2, jnp.float32), jnp.zeros(2, jnp.float32))


def distractor_reset(clip_TxHxW: jax.Array | None, key: jax.Array, *, variant: str) -> Distractor:
  """A new episode's state: start frame uniform in ``[0, T)`` (0 when noiseless: ``clip`` may be
  None) and, for camera jitter, the walk's random start."""
  check_variant(variant)
  k_start, k_walk = jax.random.split(key)
  if variant == "noiseless":
    start = jnp.int32(0)
  else:
    start = jax.random.randint(k_start, (), 0, clip_TxHxW.shape[0], jnp.int32)
  walk = shift_init(k_walk) if variant == JITTER_VARIANT else _zero_walk()
  return Distractor(start, jnp.int32(0), walk)


def distractor_physics_step(state: Distractor, key: jax.Array, *, variant: str) -> Distractor:
  """After one physics (dm_control ``env.step``) step: ``t + 1`` and, for camera jitter, the walk
  stepped with standard-normal ``eps`` drawn from ``key``."""
  check_variant(variant)
  walk = state.walk
  if variant == JITTER_VARIANT:
    walk = shift_step(walk, jax.random.normal(key, (2,), jnp.float32))
  return Distractor(state.start, state.t + 1, walk)


def background_index(state: Distractor, num_frames: int) -> jax.Array:
  """Index of the clip frame on screen: ``(start + t) % T``."""
  return (state.start + state.t) % num_frames


def frame_noise(clip_TxHxW: jax.Array, state: Distractor) -> jax.Array:
  """The sensor noise of the frame on screen now: call it before :func:`distractor_physics_step`
  for the noise that physics step's reward reads (``dmc.py``)."""
  return sensor_noise(clip_TxHxW[background_index(state, clip_TxHxW.shape[0])])


def observe(
  rgb_HxWx3: jax.Array,
  clip_TxHxW: jax.Array | None,
  state: Distractor,
  *,
  variant: str,
  mask_mode: str,
  image_size: int,
) -> jax.Array:
  """The observation (uint8 ``S x S x 3``) of the render ``rgb``: as ``NoisyDMCEnv._observe``,
  the clip frame composited into the blue pixels, then (camera jitter) the image translated by
  ``-offset`` with black borders. ``noiseless`` returns the render."""
  check_variant(variant)
  _check_mask_mode(mask_mode)
  if rgb_HxWx3.shape != (image_size, image_size, 3):
    raise ValueError(f"expected a {image_size} x {image_size} x 3 render, got {rgb_HxWx3.shape}")
  frame = jnp.asarray(rgb_HxWx3, jnp.uint8)
  if variant == "noiseless":
    return frame
  if clip_TxHxW.shape[1:] != (image_size, image_size):
    raise ValueError(f"clip frames {clip_TxHxW.shape[1:]} must be {image_size} x {image_size}")
  gray = clip_TxHxW[background_index(state, clip_TxHxW.shape[0])]
  frame = composite(frame, gray, blue_mask(frame, mode=mask_mode))
  if variant == JITTER_VARIANT:
    frame = translate_by_offset(frame, state.walk, image_size=image_size)
  return frame
