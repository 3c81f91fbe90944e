"""The teacher-student pruning model: its settings, the probe margin's law and the threshold.

A teacher ``T`` (unit vector in R^N) labels Gaussian inputs ``x ~ N(0, I_N)`` with
``y = sign(T.x)``. A probe ``P`` (unit vector) at angle ``theta`` to ``T`` scores every example
by its margin, one of

    margin="abs":     m = |P.x|       the distance to the probe's boundary, label-free (default)
    margin="signed":  m = y * (P.x)   the probe's signed margin (negative: the probe errs)

and pruning keeps the fraction ``f`` with the smallest margins (``mode="hard"``) or the largest
(``mode="easy"``). With a perfect probe (``theta = 0``) both are ``|T.x|``. The default is the
paper's: its theory keeps a slab around the probe's boundary (as ``f -> 0`` the kept examples'
``E[(T.x)^2] -> sin(theta)^2``, which holds for ``|P.x|`` only; see docs/theory.md). Shared by
the replica theory (:mod:`.replica`) and the simulation (:mod:`.simulation`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr, ndtri

MODES = ("hard", "easy")
MARGINS = ("abs", "signed")

W = 9.0  # half-width of the integration domain in units of the input's standard deviation


def as_settings(alpha_tot, f, theta, mode):
  """Broadcast the settings to one shape; raise ``ValueError`` for values outside the model.

  Returns float64 arrays ``(alpha_tot, f, theta, hard)``, ``hard`` 1.0 for keep-hard, 0.0 easy.
  """
  alpha_tot = np.asarray(alpha_tot, dtype=np.float64)
  f = np.asarray(f, dtype=np.float64)
  theta = np.asarray(theta, dtype=np.float64)
  mode = np.asarray(mode)
  if not np.all(np.isfinite(alpha_tot)) or np.any(alpha_tot <= 0):
    raise ValueError(f"alpha_tot must be finite and > 0, got {alpha_tot.ravel()[:8]}")
  if not np.all((f > 0) & (f <= 1)):  # also rejects NaN
    raise ValueError(f"f (fraction kept) must be in (0, 1], got {f.ravel()[:8]}")
  if not np.all((theta >= 0) & (theta < math.pi / 2)):
    raise ValueError(f"theta (probe angle, radians) must be in [0, pi/2), got {theta.ravel()[:8]}")
  if mode.dtype.kind not in "US":
    raise ValueError(f"mode must be one of {MODES} (or an array of them), got {mode!r}")
  bad = sorted(set(np.unique(mode).tolist()) - set(MODES))
  if bad:
    raise ValueError(f"mode must be one of {MODES}, got {bad}")
  alpha_tot, f, theta, mode = np.broadcast_arrays(alpha_tot, f, theta, mode)
  hard = (mode == "hard").astype(np.float64)
  return alpha_tot, f, theta, hard


def margin_cdf(gamma, theta):
  """``P(m < gamma)`` for the signed probe margin ``m = y P.x`` (numpy, float64, broadcasting)."""
  gamma, theta = np.broadcast_arrays(np.asarray(gamma, np.float64), np.asarray(theta, np.float64))
  c, s = np.cos(theta), np.sin(theta)
  # P(m < g) = 2 P(t > 0, c t + s u < g) = 2 int_0^inf phi(t) Phi((g - c t) / s) dt, integrated
  # with Gauss-Legendre on segments split where (g - c t) / s changes fast (a step at theta = 0).
  s_safe = np.maximum(s, 1e-12)
  t0 = gamma / c
  breaks = np.stack(
    [np.zeros_like(t0), t0 - 8 * s_safe / c, t0, t0 + 8 * s_safe / c, np.full_like(t0, W)], -1
  )
  breaks = np.sort(np.clip(breaks, 0.0, W), -1)
  xg, wg = np.polynomial.legendre.leggauss(48)
  lo, hi = breaks[..., :-1, None], breaks[..., 1:, None]
  t = 0.5 * (hi - lo) * xg + 0.5 * (hi + lo)
  w = 0.5 * (hi - lo) * wg
  dens = np.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)
  val = dens * ndtr((gamma[..., None, None] - c[..., None, None] * t) / s_safe[..., None, None])
  return 2.0 * np.sum(w * val, axis=(-2, -1))


def check_margin(margin) -> str:
  if margin not in MARGINS:
    raise ValueError(f"margin must be one of {MARGINS}, got {margin!r}")
  return margin


def threshold(f, theta, mode, margin: str = "abs"):
  """Margin threshold ``gamma``: keep ``m < gamma`` (hard) or ``m > gamma`` (easy) = fraction f.

  Broadcasts over its arguments; numpy float64 out. For ``margin="abs"``, ``P.x ~ N(0, 1)``
  whatever theta, so ``P(m < gamma) = 2 Phi(gamma) - 1``.
  """
  check_margin(margin)
  _, f, theta, hard = as_settings(1.0, f, theta, mode)
  target = np.where(hard > 0, f, 1.0 - f)  # P(m < gamma) = target
  if margin == "abs":
    return np.minimum(ndtri(0.5 * (1.0 + target)), W)  # f = 1 (hard): everything, gamma = W
  lo, hi = np.full(f.shape, -W), np.full(f.shape, W)
  for _ in range(100):  # bisection: P(m < gamma) is increasing in gamma
    mid = 0.5 * (lo + hi)
    below = margin_cdf(mid, theta) < target
    lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
  return 0.5 * (lo + hi)


def bucket(n: int, least: int) -> int:
  """Pad batch sizes to powers of two (at least ``least``) so repeated calls reuse compilations."""
  return max(least, 1 << (n - 1).bit_length())
