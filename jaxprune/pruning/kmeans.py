"""k-means in JAX: greedy k-means++, Lloyd iterations in ``lax.while_loop``, chunked assignment.

Shapes: ``x_NxD`` points, ``c_KxD`` centroids. Two distances:

* ``"euclidean"``: squared euclidean distance, the usual k-means objective.
* ``"cosine"``: spherical k-means; distance ``1 - cos(x, c)``. Points are normalised on the fly
  (chunk by chunk, so no normalised copy of the data is held) and centroids are renormalised
  after every update. A point of zero norm has no direction: it is rejected.

Memory: distances are computed for one chunk of points at a time (``chunk_size`` x K), never the
full N x K matrix. The centroid update is a segment sum per chunk.

Sharding: given a ``jax.sharding.Mesh``, points are sharded along N over ``axis_name``; every
device runs the chunked pass over its own points and partial sums are ``psum``-reduced.

Speed note: ``jnp.argmin`` lowers to a variadic reduce that is slow on XLA:CPU (it halves the
throughput of a Lloyd iteration); we take the min and then the first index that attains it.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DISTANCES = ("euclidean", "cosine")
_N_FAR = 8  # far-point candidates kept per chunk for re-seeding empty clusters


class KMeansResult(NamedTuple):
  """Result of :func:`kmeans`. ``centroids`` is K x D; ``inertia`` sums the points' distances to
  their nearest centroid."""

  centroids: jax.Array
  inertia: jax.Array
  n_iter: jax.Array
  converged: jax.Array
  # per iteration (max_iter, 0 past n_iter): the fraction of the N x K point-centroid distances
  # computed (1 for Lloyd; a tightened single distance counts 1/K of a row)
  computed: jax.Array | None = None


class LloydStats(NamedTuple):
  """Additive statistics of one assignment pass (mergeable across chunks, blocks and devices)."""

  sums_KxD: jax.Array
  counts_K: jax.Array
  inertia: jax.Array
  far_d_M: jax.Array  # distances of the farthest points seen so far
  far_x_MxD: jax.Array  # and the (prepared) points themselves


# ---------------------------------------------------------------------------------------------
# validation (host side, at the public boundary)


def check_distance(distance: str) -> None:
  if distance not in DISTANCES:
    raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")


def check_points(
  x, *, name: str = "embeddings", check_finite: bool = True, distance: str | None = None
) -> None:
  """Raise ``ValueError`` unless ``x`` is a non-empty, finite N x D float array (with no row of
  zero norm for ``distance="cosine"``: its cosine to anything is undefined)."""
  shape = getattr(x, "shape", None)
  if shape is None or len(shape) != 2:
    raise ValueError(f"{name} must be a 2-D array of shape (N, D), got shape {shape}")
  if shape[0] == 0 or shape[1] == 0:
    raise ValueError(
      f"{name} is empty: shape {tuple(shape)}; need at least one point and one feature"
    )
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"{name} must be floating point, got dtype {x.dtype}")
  if check_finite:
    bad = int(_count_nonfinite(x))
    if bad:
      raise ValueError(f"{name} contains {bad} NaN or inf values; clean or drop those rows first")
  if distance == "cosine":
    check_norms(count_zero_norm(x), shape[0], name=name)


def _count_nonfinite(x) -> int:
  if isinstance(x, np.ndarray):  # numpy / memmap: count block by block, bounded memory
    step = _block_rows(x)
    return sum(
      int(np.count_nonzero(~np.isfinite(x[i : i + step]))) for i in range(0, x.shape[0], step)
    )
  return int(jnp.sum(~jnp.isfinite(x)))


def _block_rows(x) -> int:
  return max(1, (1 << 26) // max(1, x.shape[1]))


def count_zero_norm(x) -> int:
  """Rows of ``x`` whose float32 norm is 0 (what :func:`normalise` cannot give a direction)."""
  if isinstance(x, np.ndarray):
    step = _block_rows(x)
    return sum(
      int(np.count_nonzero(np.einsum("ij,ij->i", b, b) == 0))
      for b in (np.asarray(x[i : i + step], np.float32) for i in range(0, x.shape[0], step))
    )
  x = jnp.asarray(x, jnp.float32)
  return int(jnp.sum(jnp.sum(x * x, axis=1) == 0))


def check_norms(zero_rows: int, n: int, *, name: str = "embeddings") -> None:
  if zero_rows:
    raise ValueError(
      f"{name} has {zero_rows} of {n} rows with zero norm: the cosine distance is undefined "
      "for them; drop those rows or use distance='euclidean'"
    )


def check_k(k, n: int) -> None:
  if not isinstance(k, (int, np.integer)) or isinstance(k, bool):
    raise ValueError(f"k must be an integer, got {k!r}")
  if k < 1 or k > n:
    raise ValueError(f"k must satisfy 1 <= k <= N (number of points = {n}), got k={k}")


# ---------------------------------------------------------------------------------------------
# chunk kernels


def prepare(x_CxD: jax.Array, distance: str) -> jax.Array:
  x_CxD = x_CxD.astype(jnp.float32)
  if distance == "cosine":
    return normalise(x_CxD)
  return x_CxD


def normalise(v: jax.Array) -> jax.Array:
  norm = jnp.linalg.norm(v, axis=-1, keepdims=True)
  return v / jnp.where(norm > 0, norm, 1.0)


def scores(xp_CxD: jax.Array, c_KxD: jax.Array, distance: str) -> jax.Array:
  """K x C scores whose per-column minimum is the nearest centroid: ``|c|^2 - 2 c.x``
  (euclidean) or ``-c.x`` (cosine)."""
  # K x C layout: the reduction over K then runs across rows, which vectorises over C.
  dot_KxC = c_KxD @ xp_CxD.T
  if distance == "cosine":
    return -dot_KxC
  return jnp.sum(c_KxD * c_KxD, axis=1)[:, None] - 2.0 * dot_KxC


def nearest2(xp_CxD: jax.Array, c_KxD: jax.Array, distance: str):
  """``(labels_C, best_C, second_C)``: the nearest centroid (lowest index among ties), its score
  and the lowest score of any other centroid (equal to ``best`` when two centroids tie)."""
  k = c_KxD.shape[0]
  score_KxC = scores(xp_CxD, c_KxD, distance)
  best_C = jnp.min(score_KxC, axis=0)
  k_ids = jnp.arange(k, dtype=jnp.int32)[:, None]
  labels_C = jnp.min(jnp.where(score_KxC == best_C[None, :], k_ids, k), axis=0)
  # only the label is masked: a centroid tied with it gives second == best
  second_C = jnp.min(jnp.where(k_ids == labels_C[None, :], jnp.inf, score_KxC), axis=0)
  return labels_C, best_C, second_C


def nearest(xp_CxD: jax.Array, c_KxD: jax.Array, distance: str):
  """Nearest centroid of each (prepared) point: ``(labels_C int32, dist_C float32)``."""
  k = c_KxD.shape[0]
  score_KxC = scores(xp_CxD, c_KxD, distance)
  best_C = jnp.min(score_KxC, axis=0)
  k_ids = jnp.arange(k, dtype=jnp.int32)[:, None]
  labels_C = jnp.min(jnp.where(score_KxC == best_C[None, :], k_ids, k), axis=0)
  return labels_C, best_dist(best_C, xp_CxD, distance)


def best_dist(best_C, xp_CxD, distance: str):
  """The distance :func:`nearest` reports from the best score: squared euclidean or 1 - cos."""
  if distance == "cosine":
    dist_C = 1.0 + best_C
  else:
    dist_C = best_C + jnp.sum(xp_CxD * xp_CxD, axis=1)
  return jnp.maximum(dist_C, 0.0)


def scan_chunks(f: Callable, x_NxD: jax.Array, carry, *, chunk_size: int, offset=0):
  """Fold ``f(carry, x_chunk, start) -> (carry, y_chunk)`` over row chunks of ``x``.

  Chunks are dynamic slices of ``x`` (no padded copy); a shorter tail chunk is handled with the
  same ``f``. Returns ``(carry, ys)`` with ``ys`` concatenated back to N rows.
  """
  n = x_NxD.shape[0]
  c = min(chunk_size, n)
  n_full, tail = divmod(n, c)

  def body(carry, i):
    start = i * c
    return f(carry, lax.dynamic_slice_in_dim(x_NxD, start, c), offset + start)

  carry, ys = lax.scan(body, carry, jnp.arange(n_full))
  ys = jax.tree.map(lambda y: y.reshape((n_full * c,) + y.shape[2:]), ys)
  if tail:
    carry, y_tail = f(carry, x_NxD[n_full * c :], offset + n_full * c)
    ys = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), ys, y_tail)
  return carry, ys


def empty_stats(k: int, d: int) -> LloydStats:
  return LloydStats(
    jnp.zeros((k, d), jnp.float32),
    jnp.zeros((k,), jnp.float32),
    jnp.zeros((), jnp.float32),
    jnp.full((_N_FAR,), -1.0, jnp.float32),
    jnp.zeros((_N_FAR, d), jnp.float32),
  )


def _merge_far(d_a, x_a, d_b, x_b):
  d = jnp.concatenate([d_a, d_b])
  top_d, idx = lax.top_k(d, _N_FAR)
  return top_d, jnp.concatenate([x_a, x_b])[idx]


def merge_stats(a: LloydStats, b: LloydStats) -> LloydStats:
  """Combine the statistics of two disjoint sets of points."""
  far_d, far_x = _merge_far(a.far_d_M, a.far_x_MxD, b.far_d_M, b.far_x_MxD)
  return LloydStats(
    a.sums_KxD + b.sums_KxD, a.counts_K + b.counts_K, a.inertia + b.inertia, far_d, far_x
  )


def lloyd_stats(
  x_NxD: jax.Array, c_KxD: jax.Array, *, distance: str, chunk_size: int, n_valid=None, offset=0
) -> LloydStats:
  """One assignment pass over ``x`` in chunks: per-cluster sums and counts, inertia, far points.

  Rows with global index ``offset + i >= n_valid`` (padding) are ignored.
  """
  return lloyd_pass(
    x_NxD, c_KxD, distance=distance, chunk_size=chunk_size, n_valid=n_valid, offset=offset
  )[0]


def lloyd_pass(
  x_NxD, c_KxD, *, distance: str, chunk_size: int, n_valid=None, offset=0, with_labels=False
):
  """:func:`lloyd_stats` and, with ``with_labels``, every row's label (else None)."""
  k, d = c_KxD.shape

  def f(stats, x_CxD, start):
    xp = prepare(x_CxD, distance)
    labels, dist = nearest(xp, c_KxD, distance)
    stats = add_chunk(stats, xp, labels, dist, row_mask(start, xp.shape[0], n_valid))
    return stats, labels if with_labels else None

  return scan_chunks(f, x_NxD, empty_stats(k, d), chunk_size=chunk_size, offset=offset)


def row_mask(start, c: int, n_valid):
  """1 for the rows ``start + i < n_valid`` of a chunk of ``c`` rows, 0 for padding; None when
  nothing is padded."""
  if n_valid is None:
    return None
  return (start + jnp.arange(c) < n_valid).astype(jnp.float32)


def add_chunk(stats: LloydStats, xp_CxD, labels_C, dist_C, w_C) -> LloydStats:
  """``stats`` plus one chunk's points (weights ``w``: None, or 0 for padding rows)."""
  k = stats.counts_K.shape[0]
  if w_C is not None:
    xp_CxD, dist_C = xp_CxD * w_C[:, None], dist_C * w_C
  else:
    w_C = jnp.ones_like(dist_C)
  m = min(_N_FAR, xp_CxD.shape[0])
  top_d, top_i = lax.top_k(jnp.where(w_C > 0, dist_C, -1.0), m)
  far_d, far_x = _merge_far(stats.far_d_M, stats.far_x_MxD, top_d, xp_CxD[top_i])
  return LloydStats(
    stats.sums_KxD + jax.ops.segment_sum(xp_CxD, labels_C, k),
    stats.counts_K + jax.ops.segment_sum(w_C, labels_C, k),
    stats.inertia + jnp.sum(dist_C),
    far_d,
    far_x,
  )


def update_centroids(c_KxD: jax.Array, stats: LloydStats, *, distance: str) -> jax.Array:
  """Centroids = cluster means; an empty cluster is re-seeded with one of the farthest points."""
  counts = stats.counts_K
  means = stats.sums_KxD / jnp.maximum(counts, 1.0)[:, None]
  empty = counts == 0
  rank = jnp.cumsum(empty) - 1  # i-th empty cluster takes the i-th farthest point
  usable = empty & (rank < _N_FAR) & (stats.far_d_M[jnp.clip(rank, 0, _N_FAR - 1)] >= 0)
  reseed = stats.far_x_MxD[jnp.clip(rank, 0, _N_FAR - 1)]
  new = jnp.where(empty[:, None], jnp.where(usable[:, None], reseed, c_KxD), means)
  if distance == "cosine":
    new = normalise(new)
  return new


# ---------------------------------------------------------------------------------------------
# sharding


def _stats_fn(distance: str, chunk_size: int, n_valid: int, mesh: Mesh | None, axis_name: str):
  """``(x, c) -> LloydStats`` on one device, or sharded over ``mesh`` with psum reductions."""
  if mesh is None:  # unpadded: no row mask needed
    return partial(lloyd_stats, distance=distance, chunk_size=chunk_size)

  def local(x_local, c):
    offset = lax.axis_index(axis_name) * x_local.shape[0]
    s = lloyd_stats(
      x_local, c, distance=distance, chunk_size=chunk_size, n_valid=n_valid, offset=offset
    )
    return reduce_stats(s, axis_name)

  return jax.shard_map(
    local, mesh=mesh, in_specs=(P(axis_name), P()), out_specs=P(), check_vma=False
  )


def reduce_stats(s: LloydStats, axis_name: str) -> LloydStats:
  """Every device's statistics merged (inside ``shard_map``)."""
  far_d = lax.all_gather(s.far_d_M, axis_name, tiled=True)
  far_x = lax.all_gather(s.far_x_MxD, axis_name, tiled=True)
  top_d, idx = lax.top_k(far_d, _N_FAR)
  return LloydStats(
    lax.psum(s.sums_KxD, axis_name),
    lax.psum(s.counts_K, axis_name),
    lax.psum(s.inertia, axis_name),
    top_d,
    far_x[idx],
  )


def shard_points(x_NxD, mesh: Mesh, axis_name: str = "data") -> jax.Array:
  """Pad N to a multiple of the mesh axis (zero rows, masked later) and shard along N."""
  n_dev = mesh.shape[axis_name]
  n = x_NxD.shape[0]
  pad = (-n) % n_dev
  x = jnp.asarray(x_NxD, jnp.float32)
  if pad:
    x = jnp.concatenate([x, jnp.zeros((pad, x.shape[1]), x.dtype)])
  return jax.device_put(x, NamedSharding(mesh, P(axis_name)))


# ---------------------------------------------------------------------------------------------
# k-means++


def _dists_to(x_NxD, xsq_N, c_MxD, distance: str) -> jax.Array:
  """M x N distances from a few centres to all points (memory M x N; M is small)."""
  dot = c_MxD @ x_NxD.T
  if distance == "cosine":
    d = 1.0 - dot * lax.rsqrt(jnp.maximum(xsq_N, 1e-30))[None, :]
  else:
    d = xsq_N[None, :] - 2.0 * dot + jnp.sum(c_MxD * c_MxD, axis=1)[:, None]
  return jnp.maximum(d, 0.0)


def _kmeanspp(key, x_NxD, *, k: int, distance: str, n_local_trials: int, n_valid: int):
  n, dim = x_NxD.shape
  x_NxD = x_NxD.astype(jnp.float32)
  xsq_N = jnp.sum(x_NxD * x_NxD, axis=1)
  valid_N = (jnp.arange(n) < n_valid).astype(jnp.float32)
  first_key, key = jax.random.split(key)
  first = jax.random.randint(first_key, (), 0, n_valid)

  def centre(i):
    c = x_NxD[i]
    return normalise(c) if distance == "cosine" else c

  c0 = centre(first)
  d_N = _dists_to(x_NxD, xsq_N, c0[None], distance)[0] * valid_N
  centres = jnp.zeros((k, dim), jnp.float32).at[0].set(c0)

  def body(i, carry):
    centres, d_N = carry
    cum = jnp.cumsum(d_N)
    r = jax.random.uniform(jax.random.fold_in(key, i), (n_local_trials,)) * cum[-1]
    cand = jnp.clip(jnp.searchsorted(cum, r), 0, n_valid - 1)
    cand_c = jax.vmap(centre)(cand)
    new_d = jnp.minimum(d_N[None, :], _dists_to(x_NxD, xsq_N, cand_c, distance) * valid_N)
    best = jnp.argmin(jnp.sum(new_d, axis=1))
    return centres.at[i].set(cand_c[best]), new_d[best]

  centres, _ = lax.fori_loop(1, k, body, (centres, d_N))
  return centres


def default_local_trials(k: int) -> int:
  return 2 + int(math.log(k))


def kmeans_plusplus(
  x, *, k: int, key: jax.Array, distance: str = "euclidean", n_local_trials: int | None = None
) -> jax.Array:
  """Greedy k-means++ seeding (``2 + log k`` local trials per centre). Returns K x D."""
  check_distance(distance)
  check_points(x, distance=distance)
  check_k(k, x.shape[0])
  trials = default_local_trials(k) if n_local_trials is None else int(n_local_trials)
  return kmeanspp_jit(
    key, jnp.asarray(x), k=k, distance=distance, n_local_trials=trials, n_valid=x.shape[0]
  )


kmeanspp_jit = jax.jit(_kmeanspp, static_argnames=("k", "distance", "n_local_trials", "n_valid"))


# ---------------------------------------------------------------------------------------------
# Lloyd


def mean_variance(x_NxD, distance: str, n_valid: int, chunk_size: int):
  """Mean per-feature variance of the (prepared) points, in one chunked pass."""
  d = x_NxD.shape[1]

  def f(carry, x_CxD, start):
    w = (start + jnp.arange(x_CxD.shape[0]) < n_valid).astype(jnp.float32)[:, None]
    xp = prepare(x_CxD, distance) * w
    return (carry[0] + xp.sum(0), carry[1] + (xp * xp).sum(0)), None

  zeros = jnp.zeros((d,), jnp.float32)
  (s1, s2), _ = scan_chunks(f, x_NxD, (zeros, zeros), chunk_size=chunk_size)
  mean = s1 / n_valid
  return jnp.mean(jnp.maximum(s2 / n_valid - mean * mean, 0.0))


def lloyd(x_NxD, c0_KxD, *, stats_fn: Callable, distance: str, max_iter: int, tol_abs):
  """Lloyd iterations in a ``lax.while_loop`` until the total squared centre shift <= tol_abs.

  Returns ``(centroids, n_iter, converged)``; matches scikit-learn's lloyd loop step for step.
  """

  def cond(carry):
    _, i, shift = carry
    return (i < max_iter) & (shift > tol_abs)

  def body(carry):
    c, i, _ = carry
    new = update_centroids(c, stats_fn(x_NxD, c), distance=distance)
    return new, i + 1, jnp.sum((new - c) ** 2)

  c, n_iter, shift = lax.while_loop(cond, body, (c0_KxD, jnp.int32(0), jnp.float32(jnp.inf)))
  return c, n_iter, shift <= tol_abs


def bounded_iteration(
  x_NxD,
  c_KxD,
  b,
  sched,
  i,
  *,
  step_fn: Callable,
  active_fn: Callable,
  stats_fn: Callable,
  distance: str,
  algorithm: str,
  n_valid: int,
):
  """One of Lloyd's iterations with Hamerly's bounds (:mod:`kmeans_bounds`), given bounds ``b``
  valid for ``c``. ``step_fn(x, c, bounds, mode) -> StepOut`` runs the pass
  :func:`kmeans_bounds.choose` picks from ``active_fn(bounds)`` (the number of active points);
  an iteration whose compacted pass empties a cluster takes its statistics from ``stats_fn``
  (the dense pass, which knows the farthest points for re-seeding).

  Returns ``(new centroids, bounds valid for them, schedule, labels w.r.t. c, fraction of the
  N x K distances computed)``: the labels and centroids of Lloyd's iteration from ``c``.
  """
  from jaxprune.pruning.kmeans_bounds import choose, loosen, observe, shifts

  k = c_KxD.shape[0]
  mode, sched = choose(sched, i, active_fn(b) / n_valid, k, algorithm)
  out = step_fn(x_NxD, c_KxD, b, mode)
  sched = observe(sched, out.n_changed, n_valid)
  stats = lax.cond(
    jnp.any(out.stats.counts_K == 0) & ~out.exact, lambda: stats_fn(x_NxD, c_KxD), lambda: out.stats
  )
  new = update_centroids(c_KxD, stats, distance=distance)
  frac = (out.n_full.astype(jnp.float32) + out.n_tight.astype(jnp.float32) / k) / n_valid
  return new, loosen(out.bounds, shifts(c_KxD, new)), sched, out.bounds.labels, frac


def bounded_lloyd(x_NxD, c0_KxD, b0, *, max_iter: int, tol_abs, **kw):
  """:func:`bounded_iteration` in a ``lax.while_loop`` until the total squared centre shift
  <= tol_abs (``kw``: its keyword arguments). Returns ``(centroids, n_iter, converged,
  computed_per_iteration, bounds)``; the bounds are valid for the returned centroids."""
  from jaxprune.pruning.kmeans_bounds import init_schedule

  def cond(carry):
    return (carry[3] < max_iter) & (carry[4] > tol_abs)

  def body(carry):
    c, b, sched, i, _, computed = carry
    new, b, sched, _, frac = bounded_iteration(x_NxD, c, b, sched, i, **kw)
    return new, b, sched, i + 1, jnp.sum((new - c) ** 2), computed.at[i].set(frac)

  init = (
    c0_KxD,
    b0,
    init_schedule(),
    jnp.int32(0),
    jnp.float32(jnp.inf),
    jnp.zeros((max_iter,), jnp.float32),
  )
  c, b, _, n_iter, shift, computed = lax.while_loop(cond, body, init)
  return c, n_iter, shift <= tol_abs, computed, b


@partial(
  jax.jit,
  static_argnames=(
    "k",
    "distance",
    "n_init",
    "max_iter",
    "chunk_size",
    "n_valid",
    "mesh",
    "axis_name",
    "n_local_trials",
    "given_init",
    "algorithm",
  ),
)
def _fit(
  x,
  init,
  key,
  tol,
  *,
  k,
  distance,
  n_init,
  max_iter,
  chunk_size,
  n_valid,
  mesh,
  axis_name,
  n_local_trials,
  given_init,
  algorithm,
):
  stats_fn = _stats_fn(distance, chunk_size, n_valid, mesh, axis_name)
  tol_abs = tol * mean_variance(x, distance, n_valid, chunk_size)

  def seed(key):
    if given_init:
      c0 = init.astype(jnp.float32)
      return normalise(c0) if distance == "cosine" else c0
    return _kmeanspp(key, x, k=k, distance=distance, n_local_trials=n_local_trials, n_valid=n_valid)

  def one(key):
    c0 = seed(key)
    c, n_iter, converged = lloyd(
      x, c0, stats_fn=stats_fn, distance=distance, max_iter=max_iter, tol_abs=tol_abs
    )
    computed = (jnp.arange(max_iter) < n_iter).astype(jnp.float32)
    return KMeansResult(c, stats_fn(x, c).inertia, n_iter, converged, computed)

  def one_bounded(key):
    from jaxprune.pruning.kmeans_bounds import LLOYD, SPARSE, dense_above, init_bounds, radius_sq

    c0 = seed(key)
    step_fn, active_fn, inertia_fn = _bounded_fns(distance, chunk_size, n_valid, mesh, axis_name)
    r_sq = radius_sq(x, c0, distance, chunk_size)
    step = lambda x, c, b, mode: step_fn(x, c, b, r_sq, mode)
    b0 = init_bounds(x.shape[0], n_valid if mesh is not None else None)
    c, n_iter, converged, computed, b = bounded_lloyd(
      x, c0, b0, step_fn=step, active_fn=active_fn, stats_fn=stats_fn, distance=distance,
      algorithm=algorithm, max_iter=max_iter, tol_abs=tol_abs, n_valid=n_valid,
    )  # fmt: skip
    # exact labels for the final centroids: compacted when the bounds pay, else Lloyd's pass
    final = jnp.where(active_fn(b) <= dense_above(k) * n_valid, SPARSE, LLOYD).astype(jnp.int32)
    labels = step(x, c, b, final).bounds.labels
    return KMeansResult(c, inertia_fn(x, c, labels), n_iter, converged, computed)

  keys = jax.random.split(key, n_init)
  if algorithm == "lloyd":
    runs = jax.vmap(one)(keys)
  else:  # sequential restarts: under vmap, the per-iteration lax.cond would run both branches
    runs = lax.map(one_bounded, keys)
  best = jnp.argmin(runs.inertia)
  return jax.tree.map(lambda a: a[best], runs)


def _bounded_fns(distance, chunk_size, n_valid, mesh, axis_name):
  """``step_fn(x, c, bounds, r_sq, mode) -> StepOut``, ``active_fn(bounds)`` (active points) and
  ``inertia_fn(x, c, labels)`` on one device, or sharded over ``mesh``: every device compacts
  its own rows; the statistics and counts are reduced over the devices."""
  from jaxprune.pruning.kmeans_bounds import (
    Bounds,
    StepOut,
    assign_step,
    count_active,
    label_dists,
  )

  kw = dict(distance=distance, chunk_size=chunk_size)
  if mesh is None:
    step = lambda x, c, b, r_sq, mode: assign_step(x, c, b, r_sq, mode, **kw)
    return step, count_active, lambda x, c, labels: jnp.sum(label_dists(x, c, labels, **kw))

  def local_step(x_l, c, b_l, r_sq, mode):
    offset = lax.axis_index(axis_name) * x_l.shape[0]
    out = assign_step(x_l, c, b_l, r_sq, mode, n_valid=n_valid, offset=offset, **kw)
    psum = lambda a: lax.psum(a, axis_name)
    stats = reduce_stats(out.stats, axis_name)
    n = (psum(out.n_full), psum(out.n_tight))
    return StepOut(out.bounds, stats, *n, out.exact, psum(out.n_changed))

  def local_inertia(x_l, c, labels_l):
    offset = lax.axis_index(axis_name) * x_l.shape[0]
    dist = label_dists(x_l, c, labels_l, offset=offset, **kw)
    valid = offset + jnp.arange(x_l.shape[0]) < n_valid
    return lax.psum(jnp.sum(jnp.where(valid, dist, 0.0)), axis_name)

  rows = P(axis_name)
  bounds = Bounds(rows, rows, rows)
  shard = partial(jax.shard_map, mesh=mesh, check_vma=False)
  step = shard(
    local_step,
    in_specs=(rows, P(), bounds, P(), P()),
    out_specs=StepOut(bounds, P(), P(), P(), P(), P()),  # the mode is the same on every device
  )
  active = shard(lambda b: lax.psum(count_active(b), axis_name), in_specs=(bounds,), out_specs=P())
  inertia = shard(local_inertia, in_specs=(rows, P(), rows), out_specs=P())
  return step, active, inertia


def kmeans(
  x,
  *,
  k: int,
  key: jax.Array,
  distance: str = "euclidean",
  n_init: int = 1,
  max_iter: int = 100,
  tol: float = 1e-4,
  init=None,
  chunk_size: int = 512,
  mesh: Mesh | None = None,
  axis_name: str = "data",
  n_local_trials: int | None = None,
  algorithm: str = "auto",
) -> KMeansResult:
  """k-means of ``x`` (N x D) with ``k`` clusters.

  ``algorithm``: ``"lloyd"`` computes every point-centroid distance at every iteration;
  ``"hamerly"`` skips the distances Hamerly's bounds prove unchanged (:mod:`kmeans_bounds`), with
  the same labels and centroids at every iteration; ``"auto"`` (default) takes, per iteration,
  the dense pass while most points are active and the compacted bounded pass once they settle
  (plain Lloyd for problems below ``kmeans_bounds.AUTO_MIN_WORK``, where the bounds cannot repay
  their compile time).

  ``init``: None for greedy k-means++ (``n_init`` restarts, vmapped, best inertia kept) or a
  K x D array of initial centroids. ``tol`` is relative to the mean feature variance, as in
  scikit-learn: stop when the total squared centre shift is <= ``tol * mean(var(x, axis=0))``.
  With ``mesh``, points are sharded along N over ``axis_name``.
  Deterministic for a given ``key``.
  """
  from jaxprune.pruning.kmeans_bounds import check_algorithm, resolve

  check_distance(distance)
  check_algorithm(algorithm)
  check_points(x, distance=distance)
  n, d = x.shape
  check_k(k, n)
  algorithm = resolve(algorithm, n, k, d)
  if n_init < 1:
    raise ValueError(f"n_init must be >= 1, got {n_init}")
  if max_iter < 1:
    raise ValueError(f"max_iter must be >= 1, got {max_iter}")
  if chunk_size < 1:
    raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
  if init is not None:
    init = jnp.asarray(init)
    if init.shape != (k, d):
      raise ValueError(f"init must have shape (k, D) = {(k, d)}, got {init.shape}")
    check_points(init, name="init", distance=distance)
  xs = shard_points(x, mesh, axis_name) if mesh is not None else jnp.asarray(x)
  trials = default_local_trials(k) if n_local_trials is None else int(n_local_trials)
  return _fit(
    xs,
    init if init is not None else jnp.zeros((k, d), jnp.float32),
    key,
    jnp.float32(tol),
    k=k,
    distance=distance,
    n_init=1 if init is not None else n_init,
    max_iter=max_iter,
    chunk_size=chunk_size,
    n_valid=n,
    mesh=mesh,
    axis_name=axis_name,
    n_local_trials=trials,
    given_init=init is not None,
    algorithm=algorithm,
  )


# ---------------------------------------------------------------------------------------------
# assignment


def _assign(x_NxD, c_KxD, *, distance: str, chunk_size: int):
  def f(carry, x_CxD, start):
    return carry, nearest(prepare(x_CxD, distance), c_KxD, distance)

  _, (labels, dist) = scan_chunks(f, x_NxD, None, chunk_size=chunk_size)
  return labels, dist


@partial(jax.jit, static_argnames=("distance", "chunk_size", "mesh", "axis_name"))
def assign_jit(x, c, *, distance, chunk_size, mesh, axis_name):
  if mesh is None:
    return _assign(x, c, distance=distance, chunk_size=chunk_size)
  fn = jax.shard_map(
    partial(_assign, distance=distance, chunk_size=chunk_size),
    mesh=mesh,
    in_specs=(P(axis_name), P()),
    out_specs=(P(axis_name), P(axis_name)),
    check_vma=False,
  )
  return fn(x, c)


def assign(
  x,
  centroids,
  *,
  distance: str = "euclidean",
  chunk_size: int = 512,
  mesh: Mesh | None = None,
  axis_name: str = "data",
):
  """Nearest centroid of every point: ``(labels_N int32, dist_N float32)``.

  ``dist`` is the squared euclidean distance, or ``1 - cos`` for ``distance="cosine"``.
  """
  check_distance(distance)
  check_points(x, distance=distance)
  centroids = jnp.asarray(centroids, jnp.float32)
  if centroids.ndim != 2 or centroids.shape[1] != x.shape[1]:
    raise ValueError(f"centroids must have shape (K, {x.shape[1]}), got {centroids.shape}")
  if distance == "cosine":
    centroids = normalise(centroids)
  n = x.shape[0]
  xs = shard_points(x, mesh, axis_name) if mesh is not None else jnp.asarray(x)
  labels, dist = assign_jit(
    xs, centroids, distance=distance, chunk_size=chunk_size, mesh=mesh, axis_name=axis_name
  )
  return labels[:n], dist[:n]


def inertia(x, centroids, *, distance: str = "euclidean", chunk_size: int = 512) -> jax.Array:
  """Sum over points of the distance to the nearest centroid."""
  return jnp.sum(assign(x, centroids, distance=distance, chunk_size=chunk_size)[1])
