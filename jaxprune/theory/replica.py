"""Teacher-student perceptron theory of data pruning (Sorscher et al. 2022, Fig. 1).

The model. A teacher ``T`` (unit vector in R^N) labels Gaussian inputs ``x ~ N(0, I_N)`` with
``y = sign(T.x)``. A probe ``P`` at angle ``theta`` to ``T`` scores every example by its margin

    m = y * (P.x) / |P|          (theta = 0: m = |T.x|, the distance to the teacher's boundary)

and pruning keeps the fraction ``f`` with the smallest margins (``mode="hard"``) or the largest
(``mode="easy"``). From ``P_tot = alpha_tot * N`` examples, ``alpha_prune * N`` are kept,
``alpha_prune = f * alpha_tot``. A new student, the perceptron of optimal stability (hard-margin
SVM through the origin), is trained on the kept set; its test error is ``arccos(R) / pi`` with
``R`` the cosine between student and teacher.

Two ways to get that error, both vectorised over settings:

* :func:`simulate`: the experiment itself, jitted and vmapped over (alpha_tot, f, theta, mode)
  settings and seeds. Only the 2-D projections ``t = T.x``, ``u = T_perp.x`` decide pruning, and
  the other ``N - 2`` coordinates are independent of them, so those are drawn only for the kept
  examples (an exact shortcut, not an approximation). The max-margin student comes from
  :func:`max_margin`, a restarted FISTA on the SVM dual with a certified stopping rule.
* :func:`theory`: the replica-symmetric prediction (N -> infinity at fixed alphas), solved
  numerically in float64 JAX. The equations and their derivation are in ``docs/theory.md``;
  in short, with the student field ``lambda = R t + s u + Q z`` (``z ~ N(0, 1)``,
  ``R^2 + s^2 + Q^2 = 1``, ``rho = R cos(theta) + s sin(theta)`` the student-probe overlap),
  the largest stability ``kappa`` is

      kappa = max_{R, s} kappa(R, s),   Q^2 = alpha_tot * E_x[ 1{kept} * (kappa - y lambda)_+^2 ],

  and stationarity in ``R`` and ``s`` are the other two saddle-point equations.
"""
from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import ndtr

MODES = ("hard", "easy")

_W = 9.0  # half-width of the integration domain in units of the input's standard deviation
_N_GL = 16  # Gauss-Legendre nodes per quadrature segment
_EPS = 1e-300


# ---------------------------------------------------------------------------------------------
# validation (host side)


def _as_settings(alpha_tot, f, theta, mode):
  """Broadcast the settings to one shape; raise ``ValueError`` for values outside the model."""
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


# ---------------------------------------------------------------------------------------------
# pruning threshold


def _margin_cdf(gamma, theta):
  """``P(m < gamma)`` for the probe margin ``m`` (numpy, float64, broadcasting)."""
  gamma, theta = np.broadcast_arrays(np.asarray(gamma, np.float64), np.asarray(theta, np.float64))
  c, s = np.cos(theta), np.sin(theta)
  # P(m < g) = 2 P(t > 0, c t + s u < g) = 2 int_0^inf phi(t) Phi((g - c t) / s) dt, integrated
  # with Gauss-Legendre on segments split where (g - c t) / s changes fast (a step at theta = 0).
  s_safe = np.maximum(s, 1e-12)
  t0 = gamma / c
  breaks = np.stack([np.zeros_like(t0), t0 - 8 * s_safe / c, t0, t0 + 8 * s_safe / c,
                     np.full_like(t0, _W)], -1)
  breaks = np.sort(np.clip(breaks, 0.0, _W), -1)
  xg, wg = np.polynomial.legendre.leggauss(48)
  lo, hi = breaks[..., :-1, None], breaks[..., 1:, None]
  t = 0.5 * (hi - lo) * xg + 0.5 * (hi + lo)
  w = 0.5 * (hi - lo) * wg
  from scipy.special import ndtr as np_ndtr
  dens = np.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)
  val = dens * np_ndtr((gamma[..., None, None] - c[..., None, None] * t) / s_safe[..., None, None])
  return 2.0 * np.sum(w * val, axis=(-2, -1))


def threshold(f, theta, mode):
  """Margin threshold ``gamma``: keep ``m < gamma`` (hard) or ``m > gamma`` (easy) = fraction f.

  Broadcasts over its arguments; numpy float64 out.
  """
  _, f, theta, hard = _as_settings(1.0, f, theta, mode)
  target = np.where(hard > 0, f, 1.0 - f)  # P(m < gamma) = target
  lo, hi = np.full(f.shape, -_W), np.full(f.shape, _W)
  for _ in range(100):  # bisection: P(m < gamma) is increasing in gamma
    mid = 0.5 * (lo + hi)
    below = _margin_cdf(mid, theta) < target
    lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
  return 0.5 * (lo + hi)


# ---------------------------------------------------------------------------------------------
# replica theory


class TheoryResult(NamedTuple):
  """Replica-theory prediction per setting (arrays of the broadcast settings' shape).

  ``error = arccos(R) / pi``; ``rho`` the student-probe overlap; ``kappa`` the max stability of
  the unit-norm student; ``gamma`` the pruning threshold on the probe margin. Convergence:
  ``grad_norm`` (stationarity of kappa in the student angles, relative to kappa) and
  ``residual`` (the capacity equation ``alpha <(kappa - y lambda)_+^2> - Q^2``) are ~0 at a
  solution; ``n_iter`` counts the Newton steps taken.
  """

  error: np.ndarray
  R: np.ndarray
  rho: np.ndarray
  kappa: np.ndarray
  gamma: np.ndarray
  grad_norm: np.ndarray
  residual: np.ndarray
  n_iter: np.ndarray
  converged: np.ndarray


def _gl_nodes(n):
  x, w = np.polynomial.legendre.leggauss(n)
  return jnp.asarray(x), jnp.asarray(w)


def _pdf(x):
  """Standard normal density."""
  return jnp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _gl_segments(breaks, n):
  """Gauss-Legendre nodes and weights, ``n`` per segment between consecutive sorted ``breaks``."""
  xg, wg = _gl_nodes(n)
  lo, hi = breaks[:-1, None], breaks[1:, None]
  return (0.5 * (hi - lo) * xg + 0.5 * (hi + lo)).ravel(), (0.5 * (hi - lo) * wg).ravel()


def _h(a, q):
  """``E_z[(a - q z)_+^2]`` for ``z ~ N(0, 1)``, ``q > 0``."""
  x = a / q
  return (a * a + q * q) * ndtr(x) + a * q * _pdf(x)


def _kept_moment(kappa, R, s, Q, gamma, theta, hard):
  """``E_x[1{kept} (kappa - y lambda)_+^2]`` averaged over the student's noise ``z``.

  Coordinates: ``w`` along the student's projection ``(R, s) / r`` on the (teacher, teacher-perp)
  plane and ``v`` orthogonal to it. The integrand depends on ``w`` only, so the ``v`` integral
  over the kept region (an interval for each ``w``) is a difference of normal CDFs, and one 1-D
  Gauss-Legendre quadrature in ``w`` remains, split at every place where the integrand changes
  fast: the student's margin ``kappa / r`` and the two region boundaries and their crossing.
  """
  r = jnp.sqrt(R * R + s * s)
  c, sn = jnp.cos(theta), jnp.sin(theta)
  rho, sig = R * c + s * sn, R * sn - s * c
  sgn = 2.0 * hard - 1.0  # hard keeps p < gamma (in the y = +1 half), easy p > gamma
  # constraints c1 w + c2 v > b: t > 0 and the pruning cut on p
  c1 = jnp.stack([R, -sgn * rho])
  c2 = jnp.stack([-s, -sgn * sig])
  b = jnp.stack([0.0 * R, -sgn * gamma * r])
  tiny = 1e-12
  # keep coefficients off exact zero without cutting their derivative (a student exactly in the
  # teacher's plane, s = 0, still has the d/ds of a tilting boundary)
  c1s = c1 + jnp.where(jnp.abs(c1) < tiny, tiny, 0.0)
  c2s = c2 + jnp.where(jnp.abs(c2) < tiny, tiny, 0.0)
  det = c1s[0] * c2s[1] - c1s[1] * c2s[0]
  det = jnp.where(jnp.abs(det) < tiny, tiny, det)
  w_cross = (b[0] * c2s[1] - b[1] * c2s[0]) / det
  w_k, d_k = b / c1s, 8.0 * jnp.abs(c2s / c1s)
  m = kappa / r
  dm = 8.0 * Q / r
  breaks = jnp.stack([-_W, _W, m - dm, m, m + dm, w_cross,
                      w_k[0] - d_k[0], w_k[0], w_k[0] + d_k[0],
                      w_k[1] - d_k[1], w_k[1], w_k[1] + d_k[1]])
  # The split points move with the parameters, so each segment's pulled-back integrand stays
  # smooth and autodiff of the rule is accurate to second order (the Newton solver needs it):
  # a transition of width ~|s| stays inside its own segment as s -> 0.
  w, wt = _gl_segments(jnp.sort(jnp.clip(breaks, -_W, _W)), _N_GL)
  bound = (b[:, None] - c1s[:, None] * w[None, :]) / c2s[:, None]  # 2 x nodes
  # Elementwise max / min of the two constraints, not jnp.max(axis=0): under jit on XLA:CPU the
  # reverse-mode derivative of that reduction came out wrong here (eager and jacfwd were right).
  lo_k = jnp.where(c2s[:, None] > 0, bound, -jnp.inf)
  hi_k = jnp.where(c2s[:, None] < 0, bound, jnp.inf)
  lower, upper = jnp.maximum(lo_k[0], lo_k[1]), jnp.minimum(hi_k[0], hi_k[1])
  # P(lower < v < upper), computed on the side of the tails that keeps precision
  mass = jnp.where(lower > 0, ndtr(-lower) - ndtr(-upper), ndtr(upper) - ndtr(lower))
  mass = jnp.maximum(mass, 0.0)
  return 2.0 * jnp.sum(wt * _pdf(w) * mass * _h(kappa - r * w, Q))


def _angles(x):
  """Student angles ``(log phi, psi)`` -> ``(R, s, Q)``: R = cos phi, (s, Q) = sin phi (cos psi, sin psi)."""
  phi = jnp.exp(x[0])
  return jnp.cos(phi), jnp.sin(phi) * jnp.cos(x[1]), jnp.sin(phi) * jnp.sin(x[1])


def _capacity(y, setting):
  """G(log phi, psi, kappa) = alpha_tot <(kappa - y lambda)_+^2>_kept - Q^2 (increasing in kappa)."""
  alpha_tot, f, gamma, theta, hard = setting
  R, s, Q = _angles(y[:2])
  return alpha_tot * _kept_moment(y[2], R, s, Q, gamma, theta, hard) - Q * Q


def _solve_kappa(x, setting, kappa0=None, iters=60):
  """The kappa with G(x, kappa) = 0 by Newton's method.

  G is convex and increasing in kappa, so Newton converges from any start right of the root
  (monotonically) and from a start left of it (one step overshoots to the right). Cold start:
  a point right of the root; warm start: ``kappa0``, a nearby solution.
  """
  alpha_tot, f = setting[0], setting[1]
  if kappa0 is None:
    # Jensen: <(kappa - X)_+^2> >= (kappa - <X>)^2 with <X> <= sqrt(2/f), so G(kappa0) > 0.
    kappa0 = jnp.sqrt(2.0 / f) + 1.0 / jnp.sqrt(alpha_tot * f) + 0.1
  g = lambda k: _capacity(jnp.stack([x[0], x[1], k]), setting)
  return _newton_from_right(g, kappa0, iters=iters, rtol=1e-14)


def _newton_from_right(g, k0, *, iters: int, rtol: float):
  """Root of ``g`` (convex and increasing) by Newton's method from ``k0``: monotone from a start
  right of the root. Stops when a step is below ``rtol (1 + |k|)`` or after ``iters`` steps."""
  g_and_dg = jax.value_and_grad(g)

  def body(carry):
    k, _, i = carry
    val, dval = g_and_dg(k)
    step = val / jnp.maximum(dval, _EPS)
    return k - step, jnp.abs(step), i + 1

  def cond(carry):
    k, step, i = carry
    return (i < iters) & (step > rtol * (1.0 + jnp.abs(k)))

  return lax.while_loop(cond, body, (k0, jnp.inf, 0))[0]


def _kappa_derivatives(x, kappa, setting):
  """Gradient and Hessian of kappa(x) by the implicit function theorem on G(x, kappa) = 0."""
  y = jnp.stack([x[0], x[1], kappa])
  g = jax.grad(_capacity)(y, setting)
  H = jax.hessian(_capacity)(y, setting)
  gk = g[2]
  grad = -g[:2] / gk
  Gxk = H[:2, 2]
  hess = -(H[:2, :2] + jnp.outer(Gxk, grad) + jnp.outer(grad, Gxk)
           + H[2, 2] * jnp.outer(grad, grad)) / gk
  residual = _capacity(y, setting)
  return grad, hess, residual


def _solve_one(setting, *, iters: int = 60):
  """Maximise kappa over the student angles for one setting with theta > 0 (damped Newton
  ascent in ``(log phi, psi)``). Theta = 0 has its own scaled solver, :func:`_solve_plane`.
  """
  theta = setting[3]
  # start: the best point of a coarse scan in (phi log-spaced, psi)
  phis = jnp.log(jnp.geomspace(1e-4, 1.5, 20))
  psis = jnp.linspace(0.3, jnp.pi - 0.3, 8)
  grid = jnp.stack(jnp.meshgrid(psis, phis, indexing="ij"), -1)[..., ::-1]  # psi x phi x 2

  def scan_phi(row):  # along phi, each solve warm-started from the previous one
    k0 = _solve_kappa(row[0], setting)
    return lax.scan(lambda k, x: (lambda kn: (kn, kn))(_solve_kappa(x, setting, k)), k0, row)[1]

  kap = jax.vmap(scan_phi)(grid).ravel()
  grid = grid.reshape(-1, 2)
  x0 = grid[jnp.argmax(kap)]

  def body(carry):
    x, k, _, i = carry
    grad, hess, _ = _kappa_derivatives(x, k, setting)
    # Newton ascent step, with the Hessian shifted to be negative definite where it is not
    # (Levenberg-Marquardt), inside a trust region of 0.5 in (log phi, psi)
    lam, vec = jnp.linalg.eigh(0.5 * (hess + hess.T))
    shift = jnp.where(lam[1] > -1e-3 * jnp.abs(lam[0]), lam[1] + 0.1 * jnp.abs(lam[0]) + 1e-12, 0.0)
    step = vec @ ((vec.T @ grad) / (shift - lam))
    step = step * jnp.minimum(1.0, 0.5 / (jnp.linalg.norm(step) + _EPS))

    def try_step(c):  # halve the step until kappa does not decrease
      t, _, _, j = c
      xn = x + t * step
      xn = xn.at[1].set(jnp.clip(xn[1], 1e-3, jnp.pi - 1e-3))
      return t * 0.5, xn, _solve_kappa(xn, setting, k), j + 1

    def worse(c):
      _, _, kn, j = c
      return (kn < k) & (j < 10)

    _, xn, kn, _ = lax.while_loop(worse, try_step, try_step((1.0, x, k, 0)))
    ok = kn >= k
    gnorm = jnp.linalg.norm(grad) / (jnp.abs(k) + 1e-3)
    # a rejected step means kappa is flat to rounding along the step: stop there
    return jnp.where(ok, xn, x), jnp.where(ok, kn, k), jnp.where(ok, gnorm, 0.0), i + 1

  def cond(carry):
    _, _, gnorm, i = carry
    return (i < iters) & (gnorm > 1e-9)

  x, k, _, n_iter = lax.while_loop(cond, body, (x0, _solve_kappa(x0, setting), jnp.inf, 0))
  grad, _, residual = _kappa_derivatives(x, k, setting)
  gnorm = jnp.linalg.norm(grad) / (jnp.abs(k) + 1e-3)
  R, s, _ = _angles(x)
  rho = R * jnp.cos(theta) + s * jnp.sin(theta)
  return jnp.exp(x[0]) / jnp.pi, R, rho, k, gnorm, residual, n_iter


# ---------------------------------------------------------------------------------------------
# perfect probe (theta = 0): the scaled one-angle solver


def _plane_kept(gamma, hard):
  """The kept interval of ``t > 0`` (the y = +1 half) for the perfect probe."""
  gamma = jnp.clip(gamma, 0.0, _W)
  return jnp.where(hard > 0, 0.0, gamma), jnp.where(hard > 0, gamma, _W)


def _plane_capacity(k, r, setting):
  """``F(k, r) = alpha_tot E[1{kept} h1(k - r |t|)] - 1`` for the perfect probe (theta = 0).

  The capacity equation ``G = 0`` divided by ``Q^2``, in the scaled unknowns ``k = kappa / Q``
  and ``r = R / Q = cot(phi)``: nothing in it shrinks with the error, so it stays well
  conditioned for f -> 0 and errors down to 1e-12 (the kept band ``|t| < gamma`` is resolved
  however thin it is). Kept ``t > 0``: ``[0, gamma]`` (hard) or ``[gamma, W]`` (easy); the
  ``y = -1`` half doubles it.
  """
  alpha_tot, _, gamma, _, hard = setting
  lo, hi = _plane_kept(gamma, hard)
  t0, dt = k / r, 8.0 / r  # h1(k - r t) goes from ~(k - r t)^2 to ~0 around t0 over +-dt
  breaks = jnp.stack([lo, hi, t0 - dt, t0, t0 + dt, lo + 1.0, lo + 2.0, lo + 3.0, lo + 5.0])
  t, wt = _gl_segments(jnp.sort(jnp.clip(breaks, lo, hi)), 24)
  return 2.0 * alpha_tot * jnp.sum(wt * _pdf(t) * _h(k - r * t, 1.0)) - 1.0  # h1 = h at Q = 1


def _plane_kappa(u, setting, iters=200):
  """``(kappa, k, r)`` at the student angle ``u = log r``: Newton on ``F(., r) = 0`` from the
  right (F is convex and increasing in k: monotone convergence), then ``kappa = k / sqrt(1 + r^2)``."""
  alpha_tot, f, gamma, _, hard = setting
  r = jnp.exp(u)
  # Jensen: E_kept[h1(k - r t)] >= (k - r E_kept[t])_+^2, so F > 0 right of this start
  lo, hi = _plane_kept(gamma, hard)
  mean_t = (_pdf(lo) - _pdf(hi)) / jnp.maximum(ndtr(hi) - ndtr(lo), _EPS)
  k0 = r * mean_t + 1.0 / jnp.sqrt(alpha_tot * f) + 1.0
  k = _newton_from_right(lambda k: _plane_capacity(k, r, setting), k0, iters=iters, rtol=1e-15)
  return k / jnp.sqrt(1.0 + r * r), k, r


def _solve_plane(setting, *, grid=(-16.0, 26.0, 85), golden_iters=50):
  """Maximise ``kappa`` over ``u = log cot(phi)`` for theta = 0: a scan of ``u`` (global), then
  golden-section search in the bracket around the best grid point."""
  us = jnp.linspace(*grid)
  kap = jax.vmap(lambda u: _plane_kappa(u, setting)[0])(us)
  i = jnp.clip(jnp.argmax(kap), 1, us.size - 2)
  g = (math.sqrt(5.0) - 1.0) / 2.0
  kappa_of = lambda u: _plane_kappa(u, setting)[0]

  def body(_, c):
    a, b, x1, x2, f1, f2 = c
    left = f1 >= f2  # the max is in [a, x2]
    a, b = jnp.where(left, a, x1), jnp.where(left, x2, b)
    x1n, x2n = b - g * (b - a), a + g * (b - a)
    xn = jnp.where(left, x1n, x2n)
    fn = kappa_of(xn)
    x1, x2 = jnp.where(left, x1n, x2), jnp.where(left, x1, x2n)
    f1, f2 = jnp.where(left, fn, f2), jnp.where(left, f1, fn)
    return a, b, x1, x2, f1, f2

  a, b = us[i - 1], us[i + 1]
  x1, x2 = b - g * (b - a), a + g * (b - a)
  a, b, *_ = lax.fori_loop(0, golden_iters, body, (a, b, x1, x2, kappa_of(x1), kappa_of(x2)))
  u = 0.5 * (a + b)
  kappa, k, r = _plane_kappa(u, setting)
  # stationarity by the implicit function theorem: dk/du = -r F_r / F_k
  dF = jax.grad(_plane_capacity, argnums=(0, 1))(k, r, setting)
  dk_du = -r * dF[1] / dF[0]
  dkappa_du = (dk_du - k * r * r / (1.0 + r * r)) / jnp.sqrt(1.0 + r * r)
  gnorm = jnp.abs(dkappa_du) / (jnp.abs(kappa) + 1e-3)
  residual = _plane_capacity(k, r, setting)
  R = r / jnp.sqrt(1.0 + r * r)
  error = jnp.arctan2(1.0, r) / jnp.pi
  return error, R, R, kappa, gnorm, residual, jnp.asarray(golden_iters)


_CHUNK = 16  # settings vmapped together; chunks run one after another (lax.map)


@partial(jax.jit, static_argnames="plane")
def _solve_batch(settings, *, plane: bool):
  # In small vmapped chunks, so that one slow setting holds back only its chunk's while-loops.
  return lax.map(_solve_plane if plane else _solve_one, settings, batch_size=_CHUNK)


def _bucket(n: int, least: int = _CHUNK) -> int:
  """Pad batch sizes to powers of two (at least ``least``) so repeated calls reuse compilations."""
  return max(least, 1 << (n - 1).bit_length())


def theory(*, alpha_tot, f=1.0, theta=0.0, mode="hard", tol: float = 1e-7) -> TheoryResult:
  """Replica prediction of the max-margin student's test error; broadcasts over all settings.

  Args:
    alpha_tot: examples before pruning per dimension, ``P / N`` (> 0).
    f: fraction kept, in (0, 1]; ``alpha_prune = f * alpha_tot``.
    theta: probe angle to the teacher in radians, in [0, pi/2); 0 = perfect probe.
    mode: ``"hard"`` (keep the smallest probe margins) or ``"easy"`` (the largest).
    tol: a setting is ``converged`` when ``grad_norm`` and ``|residual|`` are below ``tol``.
  """
  alpha_tot, f, theta, hard = _as_settings(alpha_tot, f, theta, mode)
  shape = alpha_tot.shape
  gamma = threshold(f, theta, np.where(hard > 0, "hard", "easy"))
  flat = np.stack([a.ravel() for a in (alpha_tot, f, gamma, theta, hard)], -1)
  out = np.zeros((flat.shape[0], 7))
  with jax.enable_x64(True):
    for plane in (True, False):
      idx = np.flatnonzero((flat[:, 3] == 0) == plane)
      if idx.size == 0:
        continue
      rows = np.concatenate([flat[idx], np.repeat(flat[idx[:1]], _bucket(idx.size) - idx.size, 0)])
      res = _solve_batch(tuple(jnp.asarray(c) for c in rows.T), plane=plane)
      out[idx] = np.stack([np.asarray(r) for r in res], -1)[:idx.size]
  error, R, rho, kappa, gnorm, residual, n_iter = (out[:, i].reshape(shape) for i in range(7))
  converged = (gnorm < tol) & (np.abs(residual) < tol)
  return TheoryResult(error, R, rho, kappa, gamma.reshape(shape), gnorm, residual, n_iter, converged)


# ---------------------------------------------------------------------------------------------
# the max-margin student


class MaxMarginResult(NamedTuple):
  """Hard-margin SVM through the origin on rows ``z_i = y_i x_i`` (``mask`` marks real rows).

  ``w`` (N) is the primal solution ``sum_i a_i z_i`` scaled so that ``min_i z_i.w = 1`` on the
  real rows; ``a`` (K) the dual variables (>= 0). Convergence certificates: ``gap`` is the
  relative gap ``1 - kappa_lo / kappa_hi`` between the margin reached, ``kappa_lo = min_i
  z_i.w / |w|``, and the dual bound ``kappa_hi = 1 / sqrt(2 D(a))`` on the largest margin;
  ``kkt`` the largest complementarity residual ``|min(a_i / max(a), z_i.w - 1)|``.
  """

  w: jax.Array
  a: jax.Array
  margin: jax.Array
  gap: jax.Array
  kkt: jax.Array
  n_iter: jax.Array


def max_margin(z_KxN: jax.Array, mask_K: jax.Array | None = None, *, tol: float = 1e-10,
               max_iter: int = 100) -> MaxMarginResult:
  """The perceptron of optimal stability: ``max_w min_i z_i.w / |w|`` over the masked rows.

  Solves ``min |w|^2 / 2`` s.t. ``z_i.w >= 1`` with a primal-dual interior-point method
  (Mehrotra predictor-corrector): every step is one N x N Cholesky solve, so the iteration
  count (~20-40) does not depend on the conditioning of the data, and the dual variables come
  out with it. Stops when the certified relative margin gap is below ``tol`` (or after
  ``max_iter`` steps); run it in float64 for gaps below ~1e-6. Pure and jittable; vmap it.
  """
  k, n = z_KxN.shape
  if mask_K is None:
    mask_K = jnp.ones(k, bool)
  valid = mask_K.astype(z_KxN.dtype)
  z = z_KxN * valid[:, None]
  b = 2.0 * valid - 1.0  # padding rows get the constraint 0 >= -1: always slack, dual -> 0
  eye = jnp.eye(n, dtype=z.dtype)

  def solve_dir(w, s, lam, chol, d, rc):
    r_d = w - z.T @ lam
    r_p = z @ w - s - b
    rhs = -r_d - z.T @ (d * r_p + rc / s)
    dw = jax.scipy.linalg.cho_solve((chol, True), rhs)
    dlam = -d * (r_p + z @ dw) - rc / s
    ds = (-rc - s * dlam) / lam
    return dw, ds, dlam

  def max_step(v, dv):
    return jnp.minimum(1.0, jnp.min(jnp.where(dv < 0, -v / jnp.where(dv < 0, dv, -1.0), jnp.inf)))

  def body(c):
    w, s, lam, _, i = c
    d = lam / s
    chol = jnp.linalg.cholesky(eye + (z.T * d) @ z)
    mu = jnp.mean(s * lam)
    # predictor (affine scaling), then Mehrotra's centring-corrector
    dw, ds, dlam = solve_dir(w, s, lam, chol, d, s * lam)
    a_aff = jnp.minimum(max_step(s, ds), max_step(lam, dlam))
    mu_aff = jnp.mean((s + a_aff * ds) * (lam + a_aff * dlam))
    sigma = (mu_aff / mu) ** 3
    dw, ds, dlam = solve_dir(w, s, lam, chol, d, s * lam + ds * dlam - sigma * mu)
    step = 0.99 * jnp.minimum(max_step(s, ds), max_step(lam, dlam))
    w, s, lam = w + step * dw, s + step * ds, lam + step * dlam
    return w, s, lam, _certificate(z, mask_K, w, lam)[0], i + 1

  def cond(c):
    return (c[3] > tol) & (c[4] < max_iter)

  init = (jnp.zeros(n, z.dtype), jnp.ones(k, z.dtype), jnp.ones(k, z.dtype),
          jnp.asarray(jnp.inf, z.dtype), 0)
  w, _, lam, _, n_iter = lax.while_loop(cond, body, init)
  gap, kkt, gmin = _certificate(z, mask_K, w, lam)
  return MaxMarginResult(w / gmin, lam * valid, gmin / jnp.linalg.norm(w), gap, kkt, n_iter)


def _certificate(z, mask, w, lam):
  """Relative margin gap, complementarity residual and ``min z_i.w`` of a primal-dual pair."""
  g = z @ w
  gmin = jnp.min(jnp.where(mask, g, jnp.inf))
  lo = gmin / jnp.linalg.norm(w)  # the margin w reaches
  lam = jnp.maximum(lam, 0.0) * mask
  v = z.T @ lam
  dual = jnp.sum(lam) - 0.5 * jnp.dot(v, v)  # <= |w*|^2 / 2 = 1 / (2 kappa*^2)
  hi = 1.0 / jnp.sqrt(2.0 * jnp.maximum(dual, 1e-300))
  kkt = jnp.max(jnp.where(mask, jnp.abs(jnp.minimum(lam / jnp.max(lam), g / gmin - 1.0)), 0.0))
  return 1.0 - lo / hi, kkt, gmin


# ---------------------------------------------------------------------------------------------
# simulation


class SimResult(NamedTuple):
  """Simulated students, arrays of shape ``settings_shape + (seeds,)``.

  ``error = arccos(R) / pi``; ``rho`` the student-probe cosine; ``kappa`` the student's margin
  ``min_i y_i x_i.J / |J|`` on the kept set; ``gap`` / ``kkt`` / ``n_iter`` from
  :func:`max_margin`; ``n_total`` and ``n_kept`` (settings shape) the example counts.
  """

  error: np.ndarray
  R: np.ndarray
  rho: np.ndarray
  kappa: np.ndarray
  gap: np.ndarray
  kkt: np.ndarray
  n_iter: np.ndarray
  n_total: np.ndarray
  n_kept: np.ndarray


def prune_order(t_P, u_P, *, theta, hard, n_total):
  """Indices of examples from hardest to easiest (or easiest first when ``hard`` is 0).

  ``t = T.x`` and ``u = T_perp.x``; the probe margin is ``m = sign(t) (cos(theta) t + sin(theta)
  u)``. Rows ``>= n_total`` are padding and sort last.
  """
  m = jnp.sign(t_P) * (jnp.cos(theta) * t_P + jnp.sin(theta) * u_P)
  key = jnp.where(hard > 0, m, -m)
  key = jnp.where(jnp.arange(t_P.shape[0]) < n_total, key, jnp.inf)
  return jnp.argsort(key)


def _simulate_one(key, theta, hard, n_total, n_kept, *, n, p_max, k_max, tol, max_iter):
  """One (setting, seed): draw, prune, train the max-margin student, measure it."""
  k_tu, k_rest = jax.random.split(key)
  tu = jax.random.normal(k_tu, (2, p_max))
  t, u = tu[0], tu[1]
  idx = prune_order(t, u, theta=theta, hard=hard, n_total=n_total)[:k_max]
  mask = jnp.arange(k_max) < n_kept
  y = jnp.sign(t[idx])
  # the other N - 2 coordinates are independent of the pruning (and of y): draw them per
  # example index, so every setting sharing a seed sees the same examples
  rest = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(k_rest, i), (n - 2,)))(idx)
  z = jnp.concatenate([(y * t[idx])[:, None], (y * u[idx])[:, None], y[:, None] * rest], 1)
  res = max_margin(z, mask, tol=tol, max_iter=max_iter)
  w = res.w / jnp.linalg.norm(res.w)
  R = jnp.clip(w[0], -1.0, 1.0)
  rho = jnp.cos(theta) * w[0] + jnp.sin(theta) * w[1]
  return jnp.arccos(R) / jnp.pi, R, rho, res.margin, res.gap, res.kkt, res.n_iter


@partial(jax.jit, static_argnames=("n", "p_max", "k_max", "tol", "max_iter", "batch_size"))
def _simulate_batch(keys, theta, hard, n_total, n_kept, *, n, p_max, k_max, tol, max_iter,
                    batch_size):
  one = partial(_simulate_one, n=n, p_max=p_max, k_max=k_max, tol=tol, max_iter=max_iter)
  return lax.map(lambda a: one(*a), (keys, theta, hard, n_total, n_kept), batch_size=batch_size)


def simulate(key: jax.Array, *, n: int, alpha_tot, f=1.0, theta=0.0, mode="hard",
             seeds: int = 4, tol: float = 1e-9, max_iter: int = 100,
             batch_size: int = 8, progress: bool = False) -> SimResult:
  """Simulate the pruned teacher-student experiment for every setting and seed in one call.

  Settings (``alpha_tot``, ``f``, ``theta``, ``mode``) broadcast together; each uses
  ``P = round(alpha_tot * n)`` examples and keeps ``round(f * P)`` (at least one). Kept sets
  are padded with a mask to a static size, so (setting, seed) problems share shapes and run
  under jit, ``batch_size`` of them vmapped at a time (``lax.map``). To not pad a 50-example
  problem to 2,000 rows, problems are grouped by kept-set size into power-of-two buckets (one
  compilation each). Seed ``j`` draws the same examples in every setting (common random
  numbers across f and modes). Runs in float64.
  """
  if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 3:
    raise ValueError(f"n (input dimension) must be an integer >= 3, got {n!r}")
  if not isinstance(seeds, (int, np.integer)) or isinstance(seeds, bool) or seeds < 1:
    raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
  alpha_tot, f, theta, hard = _as_settings(alpha_tot, f, theta, mode)
  shape = alpha_tot.shape
  n_total = np.maximum(1, np.floor(alpha_tot * n + 0.5)).astype(np.int32)
  n_kept = np.maximum(1, np.floor(f * n_total + 0.5)).astype(np.int32)
  flat = {k: np.repeat(v.ravel(), seeds) for k, v in
          dict(theta=theta, hard=hard, n_total=n_total, n_kept=n_kept).items()}
  seed_idx = np.tile(np.arange(seeds), n_kept.size)
  bucket = np.array([_bucket(int(v), 8) for v in flat["n_kept"]])
  out = np.zeros((7, bucket.size))
  groups = np.unique(bucket)
  bar = None
  if progress:
    from tqdm.auto import tqdm
    bar = tqdm(total=bucket.size, desc="simulate", unit="student")
  with jax.enable_x64(True):
    seed_keys = jax.random.split(key, seeds)
    for k_max in groups:
      idx = np.flatnonzero(bucket == k_max)
      pad = (-idx.size) % batch_size  # whole batches: one compilation per bucket
      idx_p = np.concatenate([idx, np.repeat(idx[:1], pad)])
      p_max = _bucket(int(flat["n_total"][idx].max()), 8)
      res = _simulate_batch(seed_keys[seed_idx[idx_p]],
                            jnp.asarray(flat["theta"][idx_p]), jnp.asarray(flat["hard"][idx_p]),
                            jnp.asarray(flat["n_total"][idx_p]), jnp.asarray(flat["n_kept"][idx_p]),
                            n=int(n), p_max=p_max, k_max=int(k_max), tol=float(tol),
                            max_iter=int(max_iter), batch_size=int(batch_size))
      out[:, idx] = np.stack([np.asarray(r, np.float64) for r in res])[:, :idx.size]
      if bar is not None:
        bar.update(idx.size)
  if bar is not None:
    bar.close()
  error, R, rho, kappa, gap, kkt, n_iter = (o.reshape(shape + (seeds,)) for o in out)
  return SimResult(error, R, rho, kappa, gap, kkt, n_iter.astype(np.int64), n_total, n_kept)
