"""k-means kernels, the bottom layer: chunked assignment, Lloyd statistics, k-means++, Lloyd's loop.

Pure functions of arrays; the distance is a :class:`distances.Distance` object (chosen once by
the public entry points in :mod:`kmeans`). Shapes: ``x_NxD`` points, ``xp`` prepared points
(``Distance.prepare``), ``c_KxD`` centroids.

Memory: distances are computed for one chunk of points at a time (``chunk_size`` x K), never the
full N x K matrix. The centroid update is a segment sum per chunk.

Speed note: ``jnp.argmin`` lowers to a variadic reduce that is slow on XLA:CPU (it halves the
throughput of a Lloyd iteration); we take the min and then the first index that attains it.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxprune.pruning.distances import Distance

N_FAR = 8  # far-point candidates kept per chunk for re-seeding empty clusters


class KMeansResult(NamedTuple):
  """Result of :func:`kmeans.kmeans`. ``centroids`` is K x D; ``inertia`` sums the points'
  ``sqdist`` to their nearest centroid."""

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
  far_sqdist_M: jax.Array  # sqdist of the farthest points seen so far
  far_x_MxD: jax.Array  # and the (prepared) points themselves


# ---------------------------------------------------------------------------------------------
# chunk kernels


def best_of(score_KxC: jax.Array):
  """``(labels_C, best_C)``: each column's least score and its row, the lowest among ties."""
  best_C = jnp.min(score_KxC, axis=0)
  k_ids = jnp.arange(score_KxC.shape[0], dtype=jnp.int32)[:, None]
  labels_C = jnp.min(jnp.where(score_KxC == best_C[None, :], k_ids, score_KxC.shape[0]), axis=0)
  return labels_C, best_C


def nearest(xp_CxD: jax.Array, c_KxD: jax.Array, distance: Distance):
  """Nearest centroid of each prepared point: ``(labels_C int32, sqdist_C float32)``."""
  labels_C, best_C = best_of(distance.scores(xp_CxD, c_KxD))
  return labels_C, distance.sqdist_from_score(best_C, xp_CxD)


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


def assign_chunks(x_NxD, c_KxD, *, distance: Distance, chunk_size: int):
  """Nearest centroid of every row, chunk by chunk: ``(labels_N int32, sqdist_N float32)``."""

  def f(carry, x_CxD, start):
    return carry, nearest(distance.prepare(x_CxD), c_KxD, distance)

  _, (labels, sqdist) = scan_chunks(f, x_NxD, None, chunk_size=chunk_size)
  return labels, sqdist


def empty_stats(k: int, d: int) -> LloydStats:
  return LloydStats(
    jnp.zeros((k, d), jnp.float32),
    jnp.zeros((k,), jnp.float32),
    jnp.zeros((), jnp.float32),
    jnp.full((N_FAR,), -1.0, jnp.float32),
    jnp.zeros((N_FAR, d), jnp.float32),
  )


def _merge_far(d_a, x_a, d_b, x_b):
  d = jnp.concatenate([d_a, d_b])
  top_d, idx = lax.top_k(d, N_FAR)
  return top_d, jnp.concatenate([x_a, x_b])[idx]


def merge_stats(a: LloydStats, b: LloydStats) -> LloydStats:
  """Combine the statistics of two disjoint sets of points."""
  far_d, far_x = _merge_far(a.far_sqdist_M, a.far_x_MxD, b.far_sqdist_M, b.far_x_MxD)
  return LloydStats(
    a.sums_KxD + b.sums_KxD, a.counts_K + b.counts_K, a.inertia + b.inertia, far_d, far_x
  )


def lloyd_stats(
  x_NxD: jax.Array,
  c_KxD: jax.Array,
  *,
  distance: Distance,
  chunk_size: int,
  n_valid=None,
  offset=0,
) -> LloydStats:
  """One assignment pass over ``x`` in chunks: per-cluster sums and counts, inertia, far points.

  Rows with global index ``offset + i >= n_valid`` (padding) are ignored.
  """
  return lloyd_pass(
    x_NxD, c_KxD, distance=distance, chunk_size=chunk_size, n_valid=n_valid, offset=offset
  )[0]


def lloyd_pass(
  x_NxD, c_KxD, *, distance: Distance, chunk_size: int, n_valid=None, offset=0, with_labels=False
):
  """:func:`lloyd_stats` and, with ``with_labels``, every row's label (else None)."""
  k, d = c_KxD.shape

  def f(stats, x_CxD, start):
    xp = distance.prepare(x_CxD)
    labels, sqdist = nearest(xp, c_KxD, distance)
    stats = add_chunk(stats, xp, labels, sqdist, row_mask(start, xp.shape[0], n_valid))
    return stats, labels if with_labels else None

  return scan_chunks(f, x_NxD, empty_stats(k, d), chunk_size=chunk_size, offset=offset)


def row_mask(start, c: int, n_valid):
  """1 for the rows ``start + i < n_valid`` of a chunk of ``c`` rows, 0 for padding; None when
  nothing is padded."""
  if n_valid is None:
    return None
  return (start + jnp.arange(c) < n_valid).astype(jnp.float32)


def add_chunk(stats: LloydStats, xp_CxD, labels_C, sqdist_C, w_C) -> LloydStats:
  """``stats`` plus one chunk's points (weights ``w``: None, or 0 for padding rows)."""
  k = stats.counts_K.shape[0]
  if w_C is not None:
    xp_CxD, sqdist_C = xp_CxD * w_C[:, None], sqdist_C * w_C
  else:
    w_C = jnp.ones_like(sqdist_C)
  m = min(N_FAR, xp_CxD.shape[0])
  top_d, top_i = lax.top_k(jnp.where(w_C > 0, sqdist_C, -1.0), m)
  far_d, far_x = _merge_far(stats.far_sqdist_M, stats.far_x_MxD, top_d, xp_CxD[top_i])
  return LloydStats(
    stats.sums_KxD + jax.ops.segment_sum(xp_CxD, labels_C, k),
    stats.counts_K + jax.ops.segment_sum(w_C, labels_C, k),
    stats.inertia + jnp.sum(sqdist_C),
    far_d,
    far_x,
  )


def update_centroids(c_KxD: jax.Array, stats: LloydStats, *, distance: Distance) -> jax.Array:
  """Centroids = cluster means; an empty cluster is re-seeded with one of the farthest points."""
  counts = stats.counts_K
  means = stats.sums_KxD / jnp.maximum(counts, 1.0)[:, None]
  empty = counts == 0
  rank = jnp.cumsum(empty) - 1  # i-th empty cluster takes the i-th farthest point
  far = jnp.clip(rank, 0, N_FAR - 1)
  usable = empty & (rank < N_FAR) & (stats.far_sqdist_M[far] >= 0)
  reseed = stats.far_x_MxD[far]
  new = jnp.where(empty[:, None], jnp.where(usable[:, None], reseed, c_KxD), means)
  return distance.project(new)


# ---------------------------------------------------------------------------------------------
# sharding: points along N over a mesh axis, partial statistics psum-reduced


def stats_fn(distance: Distance, chunk_size: int, n_valid: int, mesh: Mesh | None, axis_name: str):
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
  far_d = lax.all_gather(s.far_sqdist_M, axis_name, tiled=True)
  far_x = lax.all_gather(s.far_x_MxD, axis_name, tiled=True)
  top_d, idx = lax.top_k(far_d, N_FAR)
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


def default_local_trials(k: int) -> int:
  return 2 + int(math.log(k))


def kmeanspp(key, x_NxD, *, k: int, distance: Distance, n_local_trials: int, n_valid: int):
  """Greedy k-means++ seeding of K centres among the first ``n_valid`` rows. Returns K x D."""
  n, dim = x_NxD.shape
  x_NxD = x_NxD.astype(jnp.float32)
  xsq_N = jnp.sum(x_NxD * x_NxD, axis=1)
  valid_N = (jnp.arange(n) < n_valid).astype(jnp.float32)
  first_key, key = jax.random.split(key)
  first = jax.random.randint(first_key, (), 0, n_valid)

  def centre(i):
    return distance.project(x_NxD[i])

  c0 = centre(first)
  d_N = distance.sqdist_matrix(x_NxD, xsq_N, c0[None])[0] * valid_N
  centres = jnp.zeros((k, dim), jnp.float32).at[0].set(c0)

  def body(i, carry):
    centres, d_N = carry
    cum = jnp.cumsum(d_N)
    r = jax.random.uniform(jax.random.fold_in(key, i), (n_local_trials,)) * cum[-1]
    cand = jnp.clip(jnp.searchsorted(cum, r), 0, n_valid - 1)
    cand_c = jax.vmap(centre)(cand)
    new_d = jnp.minimum(d_N[None, :], distance.sqdist_matrix(x_NxD, xsq_N, cand_c) * valid_N)
    best = jnp.argmin(jnp.sum(new_d, axis=1))
    return centres.at[i].set(cand_c[best]), new_d[best]

  centres, _ = lax.fori_loop(1, k, body, (centres, d_N))
  return centres


# ---------------------------------------------------------------------------------------------
# Lloyd


def mean_variance(x_NxD, distance: Distance, n_valid: int, chunk_size: int):
  """Mean per-feature variance of the (prepared) points, in one chunked pass."""
  d = x_NxD.shape[1]

  def f(carry, x_CxD, start):
    w = (start + jnp.arange(x_CxD.shape[0]) < n_valid).astype(jnp.float32)[:, None]
    xp = distance.prepare(x_CxD) * w
    return (carry[0] + xp.sum(0), carry[1] + (xp * xp).sum(0)), None

  zeros = jnp.zeros((d,), jnp.float32)
  (s1, s2), _ = scan_chunks(f, x_NxD, (zeros, zeros), chunk_size=chunk_size)
  mean = s1 / n_valid
  return jnp.mean(jnp.maximum(s2 / n_valid - mean * mean, 0.0))


def lloyd(x_NxD, c0_KxD, *, stats_fn: Callable, distance: Distance, max_iter: int, tol_abs):
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
