"""The replica-symmetric theory of the pruned teacher-student perceptron (N -> infinity).

From ``P_tot = alpha_tot * N`` examples, the fraction ``f`` is kept by the probe margin (see
:mod:`.model`), ``alpha_prune = f * alpha_tot``, and the max-margin student is trained on them.
:func:`theory` predicts its test error ``arccos(R) / pi`` at fixed alphas, solved numerically in
float64 JAX and vectorised over settings. The equations and their derivation are in
``docs/theory.md``; in short, with the student field ``lambda = R t + s u + Q z``
(``z ~ N(0, 1)``, ``R^2 + s^2 + Q^2 = 1``, ``rho = R cos(theta) + s sin(theta)`` the
student-probe overlap), the largest stability ``kappa`` is

    kappa = max_{R, s} kappa(R, s),   Q^2 = alpha_tot * E_x[ 1{kept} * (kappa - y lambda)_+^2 ],

and stationarity in ``R`` and ``s`` are the other two saddle-point equations.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import ndtr

from jaxprune.theory.model import W, as_settings, bucket, check_margin, threshold

_N_GL = 16  # Gauss-Legendre nodes per quadrature segment
_EPS = 1e-300


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


def _kept_moment(kappa, R, s, Q, gamma, theta, hard, margin="signed"):
  """``E_x[1{kept} (kappa - y lambda)_+^2]`` averaged over the student's noise ``z``.

  By the y symmetry, twice the integral over the y = +1 half (``t > 0``), where the probe's
  signed margin is ``p = P.x``. Kept there: ``p < gamma`` (signed, hard), ``p > gamma`` (signed,
  easy), ``-gamma < p < gamma`` (abs, hard), or the union of ``p > gamma`` and ``p < -gamma``
  (abs, easy). ``hard`` is traced (0 / 1), ``margin`` static.
  """
  if margin == "signed":
    sgn = 2.0 * hard - 1.0  # hard keeps p < gamma, easy p > gamma
    return _region_moment(kappa, R, s, Q, theta, [(sgn, gamma)])
  inside = _region_moment(kappa, R, s, Q, theta, [(1.0, gamma), (-1.0, -gamma)])
  # the two one-cut regions ``p > gamma`` and ``p < -gamma`` share one traced copy (vmap): the
  # theory's compile time grows with every copy of this integrand and its derivatives
  one_cut = jax.vmap(lambda sgn, level: _region_moment(kappa, R, s, Q, theta, [(sgn, level)]))
  outside = jnp.sum(one_cut(jnp.array([-1.0, 1.0]), jnp.stack([gamma, -gamma])))
  return jnp.where(hard > 0, inside, outside)


def _region_moment(kappa, R, s, Q, theta, cuts):
  """The moment of :func:`_kept_moment` over ``t > 0`` and every cut ``(sgn, level)``, meaning
  ``sgn * p < sgn * level`` (``sgn`` +1: ``p < level``, -1: ``p > level``).

  Coordinates: ``w`` along the student's projection ``(R, s) / r`` on the (teacher, teacher-perp)
  plane and ``v`` orthogonal to it. The integrand depends on ``w`` only, so the ``v`` integral
  over the kept region (an interval for each ``w``) is a difference of normal CDFs, and one 1-D
  Gauss-Legendre quadrature in ``w`` remains, split at every place where the integrand changes
  fast: the student's margin ``kappa / r``, the region's boundaries and their crossings.
  """
  r = jnp.sqrt(R * R + s * s)
  c, sn = jnp.cos(theta), jnp.sin(theta)
  rho, sig = R * c + s * sn, R * sn - s * c
  # constraints c1 w + c2 v > b: t > 0, then the cuts on p
  c1 = jnp.stack([R] + [-sgn * rho for sgn, _ in cuts])
  c2 = jnp.stack([-s] + [-sgn * sig for sgn, _ in cuts])
  b = jnp.stack([0.0 * R] + [-sgn * level * r for sgn, level in cuts])
  tiny = 1e-12
  # keep coefficients off exact zero without cutting their derivative (a student exactly in the
  # teacher's plane, s = 0, still has the d/ds of a tilting boundary)
  c1s = c1 + jnp.where(jnp.abs(c1) < tiny, tiny, 0.0)
  c2s = c2 + jnp.where(jnp.abs(c2) < tiny, tiny, 0.0)
  crossings = []
  for i in range(len(cuts) + 1):
    for j in range(i + 1, len(cuts) + 1):
      det = c1s[i] * c2s[j] - c1s[j] * c2s[i]
      det = jnp.where(jnp.abs(det) < tiny, tiny, det)
      crossings.append((b[i] * c2s[j] - b[j] * c2s[i]) / det)
  w_k, d_k = b / c1s, 8.0 * jnp.abs(c2s / c1s)
  m = kappa / r
  dm = 8.0 * Q / r
  breaks = jnp.concatenate(
    [
      jnp.stack([-W + 0.0 * m, W + 0.0 * m, m - dm, m, m + dm] + crossings),
      w_k - d_k,
      w_k,
      w_k + d_k,
    ]
  )
  # The split points move with the parameters, so each segment's pulled-back integrand stays
  # smooth and autodiff of the rule is accurate to second order (the Newton solver needs it):
  # a transition of width ~|s| stays inside its own segment as s -> 0.
  w, wt = _gl_segments(jnp.sort(jnp.clip(breaks, -W, W)), _N_GL)
  bound = (b[:, None] - c1s[:, None] * w[None, :]) / c2s[:, None]  # constraints x nodes
  # Elementwise max / min over the constraints, not jnp.max(axis=0): under jit on XLA:CPU the
  # reverse-mode derivative of that reduction came out wrong here (eager and jacfwd were right).
  lo_k = jnp.where(c2s[:, None] > 0, bound, -jnp.inf)
  hi_k = jnp.where(c2s[:, None] < 0, bound, jnp.inf)
  lower, upper = lo_k[0], hi_k[0]
  for i in range(1, len(cuts) + 1):
    lower, upper = jnp.maximum(lower, lo_k[i]), jnp.minimum(upper, hi_k[i])
  # P(lower < v < upper), computed on the side of the tails that keeps precision
  mass = jnp.where(lower > 0, ndtr(-lower) - ndtr(-upper), ndtr(upper) - ndtr(lower))
  mass = jnp.maximum(mass, 0.0)
  return 2.0 * jnp.sum(wt * _pdf(w) * mass * _h(kappa - r * w, Q))


def _angles(x):
  """Student angles ``(log phi, psi)`` -> ``(R, s, Q)``.

  ``R = cos phi``, ``(s, Q) = sin phi (cos psi, sin psi)``.
  """
  phi = jnp.exp(x[0])
  return jnp.cos(phi), jnp.sin(phi) * jnp.cos(x[1]), jnp.sin(phi) * jnp.sin(x[1])


def _capacity(y, setting, margin="signed"):
  """``G(log phi, psi, kappa) = alpha_tot <(kappa - y lambda)_+^2>_kept - Q^2``.

  Increasing in kappa.
  """
  alpha_tot, f, gamma, theta, hard = setting
  R, s, Q = _angles(y[:2])
  return alpha_tot * _kept_moment(y[2], R, s, Q, gamma, theta, hard, margin) - Q * Q


def _solve_kappa(x, setting, kappa0=None, iters=60, margin="signed"):
  """The kappa with G(x, kappa) = 0 by Newton's method.

  G is convex and increasing in kappa, so Newton converges from any start right of the root
  (monotonically) and from a start left of it (one step overshoots to the right). Cold start:
  a point right of the root; warm start: ``kappa0``, a nearby solution.
  """
  if kappa0 is None:
    kappa0 = _cold_kappa0(setting)
  g = lambda k: _capacity(jnp.stack([x[0], x[1], k]), setting, margin)
  return _newton_from_right(g, kappa0, iters=iters, rtol=1e-14)


def _cold_kappa0(setting):
  """A start right of the root of ``G(x, .)`` for every ``x``."""
  alpha_tot, f = setting[0], setting[1]
  # Jensen: <(kappa - X)_+^2> >= (kappa - <X>)^2 with <X> <= sqrt(2/f), so G(kappa0) > 0.
  return jnp.sqrt(2.0 / f) + 1.0 / jnp.sqrt(alpha_tot * f) + 0.1


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


def _kappa_derivatives(x, kappa, setting, margin="signed"):
  """Gradient and Hessian of kappa(x) by the implicit function theorem on G(x, kappa) = 0."""
  y = jnp.stack([x[0], x[1], kappa])

  def grad_and_value(y):  # G, its gradient and Hessian from one forward-over-reverse pass
    value, grad = jax.value_and_grad(_capacity)(y, setting, margin)
    return grad, (value, grad)

  H, (residual, g) = jax.jacfwd(grad_and_value, has_aux=True)(y)
  gk = g[2]
  grad = -g[:2] / gk
  Gxk = H[:2, 2]
  hess = (
    -(H[:2, :2] + jnp.outer(Gxk, grad) + jnp.outer(grad, Gxk) + H[2, 2] * jnp.outer(grad, grad))
    / gk
  )
  return grad, hess, residual


def _solve_one(setting, *, margin: str = "signed", iters: int = 60):
  """Maximise kappa over the student angles for one setting with theta > 0 (damped Newton
  ascent in ``(log phi, psi)``). Theta = 0 has its own scaled solver, :func:`_solve_plane`.
  """
  theta = setting[3]
  solve_kappa = partial(_solve_kappa, margin=margin)
  # start: the best point of a coarse scan in (phi log-spaced, psi)
  phis = jnp.log(jnp.geomspace(1e-4, 1.5, 20))
  psis = jnp.linspace(0.3, jnp.pi - 0.3, 8)
  grid = jnp.stack(jnp.meshgrid(psis, phis, indexing="ij"), -1)[..., ::-1]  # psi x phi x 2

  def scan_phi(row):  # along phi, each solve warm-started from the previous one
    # row[0] is solved twice, cold then warm from itself, in one scan: one traced solver copy
    row = jnp.concatenate([row[:1], row])
    step = lambda k, x: (lambda kn: (kn, kn))(solve_kappa(x, setting, k))
    return lax.scan(step, _cold_kappa0(setting), row)[1][1:]

  kap = jax.vmap(scan_phi)(grid).ravel()
  grid = grid.reshape(-1, 2)
  x0 = grid[jnp.argmax(kap)]

  # One traced copy of the derivatives (the costly part to compile): each pass of the loop
  # takes them at the current point; the pass that finds the stopping rule met keeps them as
  # the result instead of stepping.
  def body(carry):
    x, k, gnorm_prev, i, _, _, _ = carry
    grad, hess, residual = _kappa_derivatives(x, k, setting, margin)
    stop = ~((i < iters) & (gnorm_prev > 1e-9))
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
      return t * 0.5, xn, solve_kappa(xn, setting, k), j + 1

    def worse(c):  # a do-while: kn = -inf makes the first try unconditional
      _, _, kn, j = c
      return (kn < k) & (j < 10) & ~stop

    _, xn, kn, _ = lax.while_loop(worse, try_step, (1.0, x, -jnp.inf, 0))
    ok = (kn >= k) & ~stop
    gnorm = jnp.linalg.norm(grad) / (jnp.abs(k) + 1e-3)
    # a rejected step means kappa is flat to rounding along the step: stop there
    x_new, k_new = jnp.where(ok, xn, x), jnp.where(ok, kn, k)
    gnorm_new = jnp.where(stop, gnorm_prev, jnp.where(ok, gnorm, 0.0))
    return x_new, k_new, gnorm_new, jnp.where(stop, i, i + 1), stop, grad, residual

  def cond(carry):
    return ~carry[4]

  init = (x0, solve_kappa(x0, setting), jnp.inf, 0, False, jnp.zeros(2), jnp.zeros(()))
  x, k, _, n_iter, _, grad, residual = lax.while_loop(cond, body, init)
  gnorm = jnp.linalg.norm(grad) / (jnp.abs(k) + 1e-3)
  R, s, _ = _angles(x)
  rho = R * jnp.cos(theta) + s * jnp.sin(theta)
  return jnp.exp(x[0]) / jnp.pi, R, rho, k, gnorm, residual, n_iter


# ---------------------------------------------------------------------------------------------
# perfect probe (theta = 0): the scaled one-angle solver


def _plane_kept(gamma, hard):
  """The kept interval of ``t > 0`` (the y = +1 half) for the perfect probe."""
  gamma = jnp.clip(gamma, 0.0, W)
  return jnp.where(hard > 0, 0.0, gamma), jnp.where(hard > 0, gamma, W)


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
  right (F is convex and increasing in k: monotone convergence), then
  ``kappa = k / sqrt(1 + r^2)``."""
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


@partial(jax.jit, static_argnames=("plane", "margin"))
def _solve_batch(settings, *, plane: bool, margin: str):
  # In small vmapped chunks, so that one slow setting holds back only its chunk's while-loops.
  one = _solve_plane if plane else partial(_solve_one, margin=margin)
  return lax.map(one, settings, batch_size=_CHUNK)


def theory(
  *, alpha_tot, f=1.0, theta=0.0, mode="hard", margin: str = "abs", tol: float = 1e-7
) -> TheoryResult:
  """Replica prediction of the max-margin student's test error; broadcasts over all settings.

  Args:
    alpha_tot: examples before pruning per dimension, ``P / N`` (> 0).
    f: fraction kept, in (0, 1]; ``alpha_prune = f * alpha_tot``.
    theta: probe angle to the teacher in radians, in [0, pi/2); 0 = perfect probe.
    mode: ``"hard"`` (keep the smallest probe margins) or ``"easy"`` (the largest).
    margin: ``"abs"`` (``|P.x|``, the paper's) or ``"signed"`` (``y P.x``); see :mod:`.model`.
      With a perfect probe both are the same.
    tol: a setting is ``converged`` when ``grad_norm`` and ``|residual|`` are below ``tol``.

  Compilation: the first call compiles one solver per margin for settings with theta > 0 (about
  a minute on 2 CPU cores; the solver keeps one traced copy of the capacity's derivatives and
  three of the kappa solve, which made it ~2.4x smaller than it was) and a small one for
  theta = 0; later calls reuse them (batches are padded to powers of two). To reuse them across
  processes, turn on JAX's persistent compilation cache before the first call, e.g.
  ``jax.config.update("jax_compilation_cache_dir", "/tmp/jax_cache")``.
  """
  alpha_tot, f, theta, hard = as_settings(alpha_tot, f, theta, mode)
  shape = alpha_tot.shape
  gamma = threshold(f, theta, np.where(hard > 0, "hard", "easy"), check_margin(margin))
  flat = np.stack([a.ravel() for a in (alpha_tot, f, gamma, theta, hard)], -1)
  out = np.zeros((flat.shape[0], 7))
  with jax.enable_x64(True):
    for plane in (True, False):
      idx = np.flatnonzero((flat[:, 3] == 0) == plane)
      if idx.size == 0:
        continue
      pad = bucket(idx.size, _CHUNK) - idx.size
      rows = np.concatenate([flat[idx], np.repeat(flat[idx[:1]], pad, 0)])
      res = _solve_batch(tuple(jnp.asarray(c) for c in rows.T), plane=plane, margin=margin)
      out[idx] = np.stack([np.asarray(r) for r in res], -1)[: idx.size]
  error, R, rho, kappa, gnorm, residual, n_iter = (out[:, i].reshape(shape) for i in range(7))
  converged = (gnorm < tol) & (np.abs(residual) < tol)
  return TheoryResult(
    error, R, rho, kappa, gamma.reshape(shape), gnorm, residual, n_iter, converged
  )
