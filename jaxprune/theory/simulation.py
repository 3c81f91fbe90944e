"""The pruning experiment itself: prune, train the max-margin student, measure its error.

:func:`simulate` is jitted and vmapped over (alpha_tot, f, theta, mode) settings and seeds.
Only the 2-D projections ``t = T.x``, ``u = T_perp.x`` decide pruning, and the other ``N - 2``
coordinates are independent of them, so those are drawn only for the kept examples (an exact
shortcut, not an approximation). The student, the perceptron of optimal stability (hard-margin
SVM through the origin), comes from :func:`max_margin`, an interior-point solver with a certified
stopping rule; its test error is ``arccos(R) / pi`` with ``R`` its cosine to the teacher.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxprune.theory.model import as_settings, bucket, check_margin


class MaxMarginResult(NamedTuple):
  """Hard-margin SVM through the origin on rows ``z_i = y_i x_i`` (``mask`` marks real rows).

  ``w`` (N) is the primal solution ``sum_i a_i z_i`` scaled so that ``min_i z_i.w = 1`` on the
  real rows; ``a`` (K) the dual variables (>= 0). Convergence certificates: ``gap`` is the
  relative gap ``1 - kappa_lo / kappa_hi`` between the margin reached, ``kappa_lo = min_i
  z_i.w / |w|``, and the dual bound ``kappa_hi = 1 / sqrt(2 D(a))`` on the largest margin;
  ``kkt`` the largest complementarity residual ``|min(a_i / max(a), z_i.w - 1)|``;
  ``converged`` is ``gap <= tol`` (False: the iteration limit or rounding stopped it first).
  """

  w: jax.Array
  a: jax.Array
  margin: jax.Array
  gap: jax.Array
  kkt: jax.Array
  n_iter: jax.Array
  converged: jax.Array


def max_margin(
  z_KxN: jax.Array,
  mask_K: jax.Array | None = None,
  *,
  tol: float | None = None,
  max_iter: int = 100,
) -> MaxMarginResult:
  """The perceptron of optimal stability: ``max_w min_i z_i.w / |w|`` over the masked rows.

  Solves ``min |w|^2 / 2`` s.t. ``z_i.w >= 1`` with a primal-dual interior-point method
  (Mehrotra predictor-corrector): every step is one N x N Cholesky solve, so the iteration
  count (~20-40) does not depend on the conditioning of the data, and the dual variables come
  out with it. Stops when the certified relative margin gap is below ``tol`` (or after
  ``max_iter`` steps). Pure and jittable; vmap it.

  Precision: in float32 the certified gap stalls between ~1e-7 and ~1e-4 (rounding), so ``tol``
  defaults to 1e-10 in float64 and 1e-4 in float32 (a 1e-10 target in float32 drove the
  iterates into underflow and returned NaN). An explicit ``tol`` below ten float epsilons raises
  ``ValueError``: enable float64 (``jax.enable_x64(True)`` or
  ``jax.config.update("jax_enable_x64", True)``, with float64 inputs) or pass a larger ``tol``.
  Should a step come out non-finite or infeasible, the solver stops at the last good iterate:
  the result is never NaN, and ``converged`` (``gap <= tol``) says whether the target was met.
  """
  k, n = z_KxN.shape
  tol = _check_tol(tol, z_KxN.dtype)
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
    w, s, lam, _, i, _ = c
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
    wn, sn, lamn = w + step * dw, s + step * ds, lam + step * dlam
    gap = _certificate(z, mask_K, wn, lamn)[0]
    # rounding can still break a step (slacks underflowing to 0, a non-finite Cholesky factor):
    # keep the last finite iterate and stop rather than return NaN
    ok = jnp.isfinite(gap) & jnp.all(jnp.isfinite(wn))
    ok &= jnp.all(jnp.isfinite(sn) & (sn > 0)) & jnp.all(jnp.isfinite(lamn) & (lamn > 0))
    keep = lambda new, old: jnp.where(ok, new, old)
    return keep(wn, w), keep(sn, s), keep(lamn, lam), keep(gap, c[3]), i + 1, ~ok

  def cond(c):
    return (c[3] > tol) & (c[4] < max_iter) & ~c[5]

  init = (
    jnp.zeros(n, z.dtype),
    jnp.ones(k, z.dtype),
    jnp.ones(k, z.dtype),
    jnp.asarray(jnp.inf, z.dtype),
    0,
    jnp.asarray(False),
  )
  w, _, lam, _, n_iter, _ = lax.while_loop(cond, body, init)
  gap, kkt, gmin = _certificate(z, mask_K, w, lam)
  return MaxMarginResult(
    w / gmin, lam * valid, gmin / jnp.linalg.norm(w), gap, kkt, n_iter, gap <= tol
  )


def _check_tol(tol, dtype) -> float:
  """``max_margin``'s tolerance: the dtype's default, or ``tol`` if the dtype can reach it."""
  if dtype not in (jnp.float32, jnp.float64):
    raise ValueError(f"max_margin: z must be float32 or float64, got {jnp.dtype(dtype).name}")
  if tol is None:
    return 1e-10 if dtype == jnp.float64 else 1e-4
  floor = 10 * float(jnp.finfo(dtype).eps)  # the certified gap is rounding noise below this
  if not tol >= floor:
    raise ValueError(
      f"max_margin: tol={tol!r} is below what {jnp.dtype(dtype).name} can certify (~{floor:.1e});"
      " run in float64 (jax.enable_x64(True), or jax.config.update('jax_enable_x64', True), with"
      " float64 inputs) or pass a larger tol (the float32 default is 1e-4)"
    )
  return float(tol)


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


def prune_order(t_P, u_P, *, theta, hard, n_total, margin: str = "abs"):
  """Indices of examples from hardest to easiest (or easiest first when ``hard`` is 0).

  ``t = T.x`` and ``u = T_perp.x``, so ``P.x = cos(theta) t + sin(theta) u``; the probe margin
  is ``|P.x|`` (``margin="abs"``) or ``sign(t) P.x`` (``"signed"``). Rows ``>= n_total`` are
  padding and sort last.
  """
  p = jnp.cos(theta) * t_P + jnp.sin(theta) * u_P
  m = jnp.abs(p) if check_margin(margin) == "abs" else jnp.sign(t_P) * p
  key = jnp.where(hard > 0, m, -m)
  key = jnp.where(jnp.arange(t_P.shape[0]) < n_total, key, jnp.inf)
  return jnp.argsort(key)


def _simulate_one(key, theta, hard, n_total, n_kept, *, n, p_max, k_max, tol, max_iter, margin):
  """One (setting, seed): draw, prune, train the max-margin student, measure it."""
  k_tu, k_rest = jax.random.split(key)
  tu = jax.random.normal(k_tu, (2, p_max))
  t, u = tu[0], tu[1]
  idx = prune_order(t, u, theta=theta, hard=hard, n_total=n_total, margin=margin)[:k_max]
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


@partial(
  jax.jit, static_argnames=("n", "p_max", "k_max", "tol", "max_iter", "batch_size", "margin")
)
def _simulate_batch(
  keys, theta, hard, n_total, n_kept, *, n, p_max, k_max, tol, max_iter, batch_size, margin
):
  one = partial(
    _simulate_one, n=n, p_max=p_max, k_max=k_max, tol=tol, max_iter=max_iter, margin=margin
  )
  return lax.map(lambda a: one(*a), (keys, theta, hard, n_total, n_kept), batch_size=batch_size)


def simulate(
  key: jax.Array,
  *,
  n: int,
  alpha_tot,
  f=1.0,
  theta=0.0,
  mode="hard",
  margin: str = "abs",
  seeds: int = 4,
  tol: float = 1e-9,
  max_iter: int = 100,
  batch_size: int = 8,
  progress: bool = False,
) -> SimResult:
  """Simulate the pruned teacher-student experiment for every setting and seed in one call.

  Settings (``alpha_tot``, ``f``, ``theta``, ``mode``) broadcast together; each uses
  ``P = round(alpha_tot * n)`` examples and keeps ``round(f * P)`` (at least one). Kept sets
  are padded with a mask to a static size, so (setting, seed) problems share shapes and run
  under jit, ``batch_size`` of them vmapped at a time (``lax.map``). To not pad a 50-example
  problem to 2,000 rows, problems are grouped by kept-set size into power-of-two buckets (one
  compilation each). Seed ``j`` draws the same examples in every setting (common random
  numbers across f and modes). ``margin``: the probe margin that ranks the examples, ``"abs"``
  (the paper's) or ``"signed"`` (see :mod:`.model`). Runs in float64.
  """
  check_margin(margin)
  if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 3:
    raise ValueError(f"n (input dimension) must be an integer >= 3, got {n!r}")
  if not isinstance(seeds, (int, np.integer)) or isinstance(seeds, bool) or seeds < 1:
    raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
  alpha_tot, f, theta, hard = as_settings(alpha_tot, f, theta, mode)
  shape = alpha_tot.shape
  n_total = np.maximum(1, np.floor(alpha_tot * n + 0.5)).astype(np.int32)
  n_kept = np.maximum(1, np.floor(f * n_total + 0.5)).astype(np.int32)
  flat = {
    k: np.repeat(v.ravel(), seeds)
    for k, v in dict(theta=theta, hard=hard, n_total=n_total, n_kept=n_kept).items()
  }
  seed_idx = np.tile(np.arange(seeds), n_kept.size)
  k_pad = np.array([bucket(int(v), 8) for v in flat["n_kept"]])  # padded kept-set sizes
  out = np.zeros((7, k_pad.size))
  groups = np.unique(k_pad)
  bar = None
  if progress:
    from tqdm.auto import tqdm

    bar = tqdm(total=k_pad.size, desc="simulate", unit="student")
  with jax.enable_x64(True):
    seed_keys = jax.random.split(key, seeds)
    for k_max in groups:
      idx = np.flatnonzero(k_pad == k_max)
      pad = (-idx.size) % batch_size  # whole batches: one compilation per bucket
      idx_p = np.concatenate([idx, np.repeat(idx[:1], pad)])
      p_max = bucket(int(flat["n_total"][idx].max()), 8)
      res = _simulate_batch(
        seed_keys[seed_idx[idx_p]],
        jnp.asarray(flat["theta"][idx_p]),
        jnp.asarray(flat["hard"][idx_p]),
        jnp.asarray(flat["n_total"][idx_p]),
        jnp.asarray(flat["n_kept"][idx_p]),
        n=int(n),
        p_max=p_max,
        k_max=int(k_max),
        tol=float(tol),
        max_iter=int(max_iter),
        batch_size=int(batch_size),
        margin=margin,
      )
      out[:, idx] = np.stack([np.asarray(r, np.float64) for r in res])[:, : idx.size]
      if bar is not None:
        bar.update(idx.size)
  if bar is not None:
    bar.close()
  error, R, rho, kappa, gap, kkt, n_iter = (o.reshape(shape + (seeds,)) for o in out)
  return SimResult(error, R, rho, kappa, gap, kkt, n_iter.astype(np.int64), n_total, n_kept)
