"""k-means in JAX, the public entry points: greedy k-means++, Lloyd iterations in
``lax.while_loop`` (optionally skipping distances with Yinyang's group bounds or Hamerly's),
chunked assignment.

Shapes: ``x_NxD`` points, ``c_KxD`` centroids. Two distances (:mod:`distances`), chosen here once
from the ``distance`` string and passed down as an object:

* ``"euclidean"``: squared euclidean distance, the usual k-means objective.
* ``"cosine"``: spherical k-means; ``sqdist = 1 - cos(x, c)``. Points are normalised on the fly
  (chunk by chunk, so no normalised copy of the data is held) and centroids are renormalised
  after every update.

Composable: :func:`kmeans`, :func:`kmeans_plusplus`, :func:`assign` and :func:`inertia` are pure
functions of arrays, with ``k`` and the sizes static keyword arguments: they run under
``jax.jit``, ``jax.vmap`` (over datasets or keys) and ``jax.grad`` (through ``assign``'s
``sqdist``). They check shapes and dtypes only (static); the checks that need the values (NaN,
inf, float32 overflow, zero-norm rows for cosine, k <= N) are :func:`check_embeddings` (and
:func:`check_centroids` for centroids given to :func:`assign`), which jobs and scripts call on the
host before the work.

Sharding: given a ``jax.sharding.Mesh``, points are sharded along N over ``axis_name``; every
device runs the chunked pass over its own points and partial sums are ``psum``-reduced.

Layers: :mod:`distances` <- :mod:`kmeans_kernels` <- :mod:`kmeans_bounds` <- this module.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxprune.pruning import distances
from jaxprune.pruning.array_files import read_range
from jaxprune.pruning.distances import Distance
from jaxprune.pruning.kmeans_bounds import (
  LLOYD,
  SPARSE,
  bounded_fns,
  bounded_lloyd,
  check_algorithm,
  dense_above,
  init_bounds,
  make_groups,
  num_groups,
  radius_sq,
  resolve,
)
from jaxprune.pruning.kmeans_kernels import (
  KMeansResult,
  assign_chunks,
  default_local_trials,
  kmeanspp,
  lloyd,
  mean_variance,
  shard_points,
  stats_fn,
)

DISTANCES = distances.NAMES

__all__ = [
  "DISTANCES",
  "Assignment",
  "EmbeddingsError",
  "KMeansResult",
  "assign",
  "check_centroids",
  "check_embeddings",
  "check_k",
  "check_shape",
  "inertia",
  "kmeans",
  "kmeans_plusplus",
]


class Assignment(NamedTuple):
  """Result of :func:`assign`: the nearest centroid of every point and its ``sqdist`` (squared
  euclidean distance, or ``1 - cos``; :mod:`distances`)."""

  labels: jax.Array  # int32, N
  sqdist: jax.Array  # float32, N


# ---------------------------------------------------------------------------------------------
# checks: static ones inside the functions, value checks on the host before the work


def check_shape(x, *, name: str = "embeddings") -> None:
  """Raise ``ValueError`` unless ``x`` is a non-empty N x D float array (static: fine under
  ``jit``)."""
  shape = getattr(x, "shape", None)
  if shape is None or len(shape) != 2:
    raise ValueError(f"{name} must be a 2-D array of shape (N, D), got shape {shape}")
  if shape[0] == 0 or shape[1] == 0:
    raise ValueError(
      f"{name} is empty: shape {tuple(shape)}; need at least one point and one feature"
    )
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"{name} must be floating point, got dtype {x.dtype}")


def check_k(k, n: int) -> None:
  if not isinstance(k, (int, np.integer)) or isinstance(k, bool):
    raise ValueError(f"k must be an integer, got {k!r}")
  if k < 1 or k > n:
    raise ValueError(f"k must satisfy 1 <= k <= N (number of points = {n}), got k={k}")


class EmbeddingsError(ValueError):
  """Embedding (or centroid) values the distances cannot use: NaN / inf, float32 overflow,
  zero-norm rows under the cosine distance (:func:`check_embeddings`)."""


def check_embeddings(
  x, *, k: int | None = None, distance: str = "euclidean", name: str = "embeddings"
) -> None:
  """Host-side check of the values, before :func:`kmeans` / :func:`assign` / the prototype
  scores: raise ``ValueError`` saying what is wrong when ``x`` (N x D) has NaN or inf values,
  rows that overflow float32, the compute dtype (a value beyond float32's range, or a squared
  norm that is inf in float32: distances would be inf or NaN; the error names the rows and the
  largest magnitude), rows of zero norm for ``distance="cosine"`` (no direction: their cosine is
  undefined), or when ``k`` (if given) is not in [1, N]. Float64 input is checked after the cast
  to float32. Numpy arrays and memory maps are read block by block (bounded memory).

  Needs concrete values: call it outside ``jit``; the functions themselves check only shapes.
  Centroids given to :func:`assign` or as ``init``: :func:`check_centroids`.
  """
  check_shape(x, name=name)
  spherical = distances.get(distance).unit
  n = x.shape[0]
  bad = _scan(x)
  if bad.nonfinite:
    raise EmbeddingsError(
      f"{name} contains {bad.nonfinite} NaN or inf values (rows {_rows(bad.nonfinite_rows)}); "
      "clean or drop those rows first"
    )
  if bad.overflow:
    raise EmbeddingsError(
      f"{name} has {bad.overflow} of {n} rows whose squared norm overflows float32 (norm above "
      f"about 1.8e19), the dtype the distances are computed in: rows "
      f"{_rows(bad.overflow_rows)}, largest magnitude {bad.max_abs:.3g}; their distances would "
      "be inf or NaN; rescale the embeddings (e.g. divide by their largest norm) or drop those "
      "rows"
    )
  if spherical:
    check_norms(bad.zero, n, name=name)
  if k is not None:
    check_k(k, n)


def check_centroids(c, *, distance: str = "euclidean", d: int | None = None) -> None:
  """Host-side check of centroids (K x D) before :func:`assign` / :func:`inertia` / ``init=``,
  as :func:`check_embeddings` checks points: NaN or inf, float32 overflow, and zero-norm
  centroids under ``distance="cosine"`` (no direction: :func:`assign` would give them a
  distance of 1 to every point) raise ``ValueError``; ``d``: the points' dimension."""
  check_shape(c, name="centroids")
  if d is not None and c.shape[1] != d:
    raise ValueError(f"centroids must have shape (K, {d}), got {tuple(c.shape)}")
  check_embeddings(c, distance=distance, name="centroids")


def check_norms(zero_rows: int, n: int, *, name: str = "embeddings") -> None:
  if zero_rows:
    raise EmbeddingsError(
      f"{name} has {zero_rows} of {n} rows with zero norm: the cosine distance is undefined "
      "for them; drop those rows or use distance='euclidean'"
    )


class _Bad(NamedTuple):
  nonfinite: int  # NaN or inf values (in the input's own dtype)
  nonfinite_rows: list  # the first few of their rows
  overflow: int  # rows finite in the input dtype whose float32 values or squared norm are inf
  overflow_rows: list
  max_abs: float  # largest magnitude in the overflowing rows
  zero: int  # rows whose float32 squared norm is 0


_FIRST = 5  # rows named in an error


def _rows(rows: list) -> str:
  return ", ".join(map(str, rows[:_FIRST])) + (", ..." if len(rows) > _FIRST else "")


def _scan(x) -> _Bad:
  if isinstance(x, np.ndarray):  # numpy / memmap: block by block, bounded memory (a memmap's
    # blocks are read, not mapped: the resident memory stays a block whatever the file's size)
    step = max(1, (1 << 26) // max(1, x.shape[1]))
    parts = [
      _scan_block(np, read_range(x, i, min(i + step, x.shape[0])), i)
      for i in range(0, x.shape[0], step)
    ]
  else:
    parts = [_scan_block(jnp, jnp.asarray(x), 0)]
  return _Bad(
    sum(p.nonfinite for p in parts),
    [r for p in parts for r in p.nonfinite_rows][: _FIRST + 1],
    sum(p.overflow for p in parts),
    [r for p in parts for r in p.overflow_rows][: _FIRST + 1],
    max((p.max_abs for p in parts), default=0.0),
    sum(p.zero for p in parts),
  )


def _scan_block(xnp, b, offset: int) -> _Bad:
  finite = xnp.isfinite(b)
  finite_rows = xnp.all(finite, axis=1)
  with np.errstate(over="ignore", invalid="ignore"):  # overflow is what is counted
    b32 = b.astype(np.float32)
    sq = xnp.sum(b32 * b32, axis=1)
  over = finite_rows & ~xnp.isfinite(sq)
  nonfinite = int(xnp.sum(~finite))
  n_over = int(xnp.sum(over))
  max_abs = float(xnp.max(xnp.abs(b[over]))) if n_over else 0.0
  return _Bad(
    nonfinite,
    (np.flatnonzero(np.asarray(~finite_rows))[: _FIRST + 1] + offset).tolist() if nonfinite else [],
    n_over,
    (np.flatnonzero(np.asarray(over))[: _FIRST + 1] + offset).tolist() if n_over else [],
    max_abs,
    int(xnp.sum(sq == 0)),
  )


def count_zero_norm(x) -> int:
  """Rows of ``x`` whose float32 norm is 0 (what :func:`distances.normalise` cannot give a
  direction)."""
  return _scan(x).zero


def _as_key(key) -> jax.Array:
  """An int seed becomes ``jax.random.key(seed)``; a key (typed, or a legacy uint32 pair) passes
  as is; anything else is a ``TypeError`` saying what to pass."""
  if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
    return jax.random.key(int(key))
  dtype = getattr(key, "dtype", None)
  if dtype is not None and (
    jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    or (dtype == jnp.uint32 and tuple(key.shape)[-1:] == (2,))
  ):
    return key
  raise TypeError(
    f"key must be a JAX PRNG key such as jax.random.key(0) (or an int seed), got "
    f"{type(key).__name__} {getattr(key, 'dtype', '')} {getattr(key, 'shape', '')}".rstrip()
  )


def _check_tol(tol) -> None:
  """``tol`` must be a finite number >= 0 (checked when it is concrete; a traced tol passes)."""
  if isinstance(tol, jax.core.Tracer):
    return
  try:
    value = float(tol)
  except (TypeError, ValueError):
    raise ValueError(f"tol must be a number >= 0, got {tol!r}") from None
  if not np.isfinite(value) or value < 0:
    raise ValueError(
      f"tol must be a finite number >= 0 (relative to the mean feature variance), got {tol!r}"
    )


# ---------------------------------------------------------------------------------------------
# k-means++


@partial(jax.jit, static_argnames=("k", "distance", "n_local_trials", "n_valid"))
def _kmeanspp(key, x, *, k, distance, n_local_trials, n_valid):
  return kmeanspp(key, x, k=k, distance=distance, n_local_trials=n_local_trials, n_valid=n_valid)


def kmeans_plusplus(
  x,
  *,
  k: int,
  key: jax.Array,
  distance: str | Distance = "euclidean",
  n_local_trials: int | None = None,
) -> jax.Array:
  """Greedy k-means++ seeding (``2 + log k`` local trials per centre) of ``x`` (N x D).
  Returns K x D. Jittable (``k`` static); values: :func:`check_embeddings`."""
  distance = distances.get(distance)
  check_shape(x)
  check_k(k, x.shape[0])
  trials = default_local_trials(k) if n_local_trials is None else int(n_local_trials)
  return _kmeanspp(
    _as_key(key), jnp.asarray(x), k=k, distance=distance, n_local_trials=trials, n_valid=x.shape[0]
  )


# ---------------------------------------------------------------------------------------------
# Lloyd


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
    "groups",
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
  groups,
):
  stats = stats_fn(distance, chunk_size, n_valid, mesh, axis_name)
  tol_abs = tol * mean_variance(x, distance, n_valid, chunk_size)

  def seed(key):
    if given_init:
      return distance.project(init.astype(jnp.float32))
    return kmeanspp(key, x, k=k, distance=distance, n_local_trials=n_local_trials, n_valid=n_valid)

  def one(key):
    c0 = seed(key)
    c, n_iter, converged = lloyd(
      x, c0, stats_fn=stats, distance=distance, max_iter=max_iter, tol_abs=tol_abs
    )
    computed = (jnp.arange(max_iter) < n_iter).astype(jnp.float32)
    return KMeansResult(c, stats(x, c).inertia, n_iter, converged, computed)

  def one_bounded(key):
    c0 = seed(key)
    step_fn, active_fn, inertia_fn, far_fn = bounded_fns(
      distance, chunk_size, n_valid, mesh, axis_name
    )
    r_sq = radius_sq(x, c0, distance, chunk_size)
    grp = make_groups(c0, groups, distance)
    step = lambda x, c, b, mode: step_fn(x, c, b, r_sq, mode, grp)
    b0 = init_bounds(x.shape[0], n_valid if mesh is not None else None, 0, grp.members.shape[0])
    c, n_iter, converged, computed, b = bounded_lloyd(
      x, c0, b0, step_fn=step, active_fn=active_fn, stats_fn=stats, distance=distance,
      algorithm=algorithm, max_iter=max_iter, tol_abs=tol_abs, n_valid=n_valid, groups=grp,
      far_fn=lambda x, c, labels: far_fn(x, c, labels, r_sq),
    )  # fmt: skip
    # exact labels for the final centroids: compacted when the bounds pay, else Lloyd's pass
    final = jnp.where(active_fn(b) <= dense_above(k, groups) * n_valid, SPARSE, LLOYD).astype(
      jnp.int32
    )
    labels = step(x, c, b, final).bounds.labels
    return KMeansResult(c, inertia_fn(x, c, labels), n_iter, converged, computed)

  keys = jax.random.split(key, n_init)
  if algorithm == "lloyd":
    runs = jax.vmap(one)(keys)
  else:  # sequential restarts: under vmap, the per-iteration lax.cond would run both branches
    runs = lax.map(one_bounded, keys)
  best = jnp.argmin(runs.inertia)
  return jax.tree.map(lambda a: a[best], runs)


def kmeans(
  x,
  *,
  k: int,
  key: jax.Array,
  distance: str | Distance = "euclidean",
  n_init: int = 1,
  max_iter: int = 100,
  tol: float = 1e-4,
  init=None,
  chunk_size: int = 512,
  mesh: Mesh | None = None,
  axis_name: str = "data",
  n_local_trials: int | None = None,
  algorithm: str = "auto",
  groups: int | None = None,
) -> KMeansResult:
  """k-means of ``x`` (N x D) with ``k`` clusters.

  ``algorithm``: ``"lloyd"`` computes every point-centroid distance at every iteration;
  ``"hamerly"`` skips the distances Hamerly's bounds prove unchanged (:mod:`kmeans_bounds`), with
  the same labels and centroids at every iteration; ``"yinyang"`` keeps ``groups`` lower bounds
  per point (default K / 10; G float32 per point) and computes only the groups of centroids they
  do not rule out; ``"auto"`` (default) takes, per iteration, the dense pass while most
  distances would be computed and Yinyang's compacted pass once the points settle
  (plain Lloyd for problems below ``kmeans_bounds.AUTO_MIN_WORK``, where the bounds cannot repay
  their compile time).

  ``init``: None for greedy k-means++ (``n_init`` restarts, vmapped, best inertia kept) or a
  K x D array of initial centroids. ``tol`` is relative to the mean feature variance, as in
  scikit-learn: stop when the total squared centre shift is <= ``tol * mean(var(x, axis=0))``.
  With ``mesh``, points are sharded along N over ``axis_name``.
  ``tol`` must be finite and >= 0 (a ``ValueError`` otherwise). ``key``: a PRNG key,
  ``jax.random.key(seed)``; a plain int is taken as that seed.
  Deterministic for a given ``key``. Jittable and vmappable (``k`` and the sizes static); the
  values are checked by :func:`check_embeddings`, not here.
  """
  distance = distances.get(distance)
  check_algorithm(algorithm)
  check_shape(x)
  n, d = x.shape
  check_k(k, n)
  algorithm = resolve(algorithm, n, k, d)
  if n_init < 1:
    raise ValueError(f"n_init must be >= 1, got {n_init}")
  if max_iter < 1:
    raise ValueError(f"max_iter must be >= 1, got {max_iter}")
  if chunk_size < 1:
    raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
  _check_tol(tol)
  key = _as_key(key)
  if init is not None:
    init = jnp.asarray(init)
    if init.shape != (k, d):
      raise ValueError(f"init must have shape (k, D) = {(k, d)}, got {init.shape}")
    check_shape(init, name="init")
  xs = shard_points(x, mesh, axis_name) if mesh is not None else jnp.asarray(x)
  trials = default_local_trials(k) if n_local_trials is None else int(n_local_trials)
  return _fit(
    xs,
    init if init is not None else jnp.zeros((k, d), jnp.float32),
    key,
    jnp.asarray(tol, jnp.float32),
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
    groups=num_groups(algorithm, k, groups),
  )


# ---------------------------------------------------------------------------------------------
# assignment


@partial(jax.jit, static_argnames=("distance", "chunk_size", "mesh", "axis_name"))
def _assign(x, c, *, distance, chunk_size, mesh, axis_name):
  fn = partial(assign_chunks, distance=distance, chunk_size=chunk_size)
  if mesh is None:
    return fn(x, c)
  shard = jax.shard_map(
    fn,
    mesh=mesh,
    in_specs=(P(axis_name), P()),
    out_specs=(P(axis_name), P(axis_name)),
    check_vma=False,
  )
  return shard(x, c)


def assign(
  x,
  centroids,
  *,
  distance: str | Distance = "euclidean",
  chunk_size: int = 512,
  mesh: Mesh | None = None,
  axis_name: str = "data",
) -> Assignment:
  """Nearest centroid of every point of ``x`` (N x D) among ``centroids`` (K x D):
  ``Assignment(labels_N int32, sqdist_N float32)``.

  ``sqdist`` is the squared euclidean distance ``|x - c|^2`` (its gradient w.r.t. ``x`` is
  ``2 (x - c)``), or ``1 - cos`` for ``distance="cosine"`` (centroids are normalised first).
  Jittable, vmappable and differentiable; values: :func:`check_embeddings`.
  """
  distance = distances.get(distance)
  check_shape(x)
  centroids = jnp.asarray(centroids, jnp.float32)
  if centroids.ndim != 2 or centroids.shape[1] != x.shape[1]:
    raise ValueError(f"centroids must have shape (K, {x.shape[1]}), got {centroids.shape}")
  centroids = distance.project(centroids)
  n = x.shape[0]
  xs = shard_points(x, mesh, axis_name) if mesh is not None else jnp.asarray(x)
  labels, sqdist = _assign(
    xs, centroids, distance=distance, chunk_size=chunk_size, mesh=mesh, axis_name=axis_name
  )
  return Assignment(labels[:n], sqdist[:n])


def inertia(
  x, centroids, *, distance: str | Distance = "euclidean", chunk_size: int = 512
) -> jax.Array:
  """Sum over points of the ``sqdist`` to the nearest centroid (the k-means objective)."""
  return jnp.sum(assign(x, centroids, distance=distance, chunk_size=chunk_size).sqdist)
