"""Exact bound-based k-means (Hamerly's bounds): Lloyd's iterations, skipping proven distances.

Every point carries bounds (:class:`Bounds`): ``upper`` >= its metric distance to its assigned
centroid and ``lower`` <= its metric distance to every other centroid. The metric is the square
root of :mod:`distances`' ``metric_sq`` (the triangle inequality needs a metric): the euclidean
distance, or for ``"cosine"`` the chord ``|x - c|`` between unit vectors, which orders centroids
as ``1 - cos`` does. After a centroid update the bounds loosen by
the shifts: ``upper += |shift of the assigned centroid|``, ``lower -= the largest shift of any
other centroid``. A point with ``upper < lower`` keeps its label without computing a distance.

One iteration on a set of rows (a whole array, one device's shard, or one streamed block), with
static shapes under ``jit``:

1. ``active = upper >= lower``.
2. ``"auto"``: when the active fraction is above :func:`dense_above` (compaction would not pay
   for its gathers) a dense pass over every chunk, the same matmul as Lloyd's, taking the two
   nearest scores. Otherwise, and always for ``"hamerly"``:
3. tighten: the exact distance of each active point to its assigned centroid (O(D) per point);
   the points still active get their full distance row (O(K D)). Both run on *compacted* rows: a
   stable partition of the row indices by the flag (``jnp.nonzero`` with a static size), then a
   ``lax.while_loop`` over ``ceil(n_active / chunk)`` chunks that gathers, computes, and
   scatters the results back.
4. Per-cluster sums and counts from the labels: one segment-sum pass in Lloyd's chunk order, so
   that equal labels give the same centroids bit for bit.

Exactness. float32 distances carry rounding errors; a bound is widened by the worst-case error of
a float32 dot product of length D (``kappa``: twice Higham's gamma_(D+2), times the squared norms
involved), and in addition both bounds keep a margin ``mu = sqrt(kappa (|x|^2 + R^2))`` (``R``
bounds every centroid's norm: the data's largest norm or the initial centroids'). A skipped
point is then nearer to its centroid than to any other by more than the dense pass's rounding
error, so the dense pass would give it the same label. Memory: three arrays of N (int32, two
float32) per run, nothing N x K.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxprune.pruning.distances import Distance
from jaxprune.pruning.kmeans_kernels import (
  LloydStats,
  add_chunk,
  empty_stats,
  lloyd_pass,
  nearest2,
  reduce_stats,
  row_mask,
  scan_chunks,
  update_centroids,
)

ALGORITHMS = ("auto", "lloyd", "hamerly")
# Gathering one row of x for a compacted chunk costs about as much as this many point-centroid
# distances (measured on the 2-core CPU at D = 256: 0.25 us per gathered row against 3-4 us per
# row of K = 1000 distances); "auto" compacts while the active fraction is below dense_above(k).
GATHER_ROWS = 100


class Bounds(NamedTuple):
  """Per-point state of the bounded iterations (N each)."""

  labels: jax.Array  # int32 assigned centroid
  upper: jax.Array  # float32 >= metric distance to the assigned centroid + margin
  lower: jax.Array  # float32 <= metric distance to any other centroid - margin


class StepOut(NamedTuple):
  """One bounded assignment over a set of rows: fresh bounds, the statistics for the centroid
  update, what it computed (full distance rows, single tightened distances), and whether the
  statistics' inertia and farthest points are exact (a dense pass) or unknown (compacted)."""

  bounds: Bounds
  stats: LloydStats
  n_full: jax.Array
  n_tight: jax.Array
  exact: jax.Array
  n_changed: jax.Array  # rows whose label changed


# "auto" below this much work per iteration (N * K * D) is plain Lloyd: 100 dense iterations
# then cost about 1 s on a CPU, less than the bounded program's extra compile time (~1.3 s)
AUTO_MIN_WORK = 1 << 30


def check_algorithm(algorithm: str) -> None:
  if algorithm not in ALGORITHMS:
    raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")


def resolve(algorithm: str, n: int, k: int, d: int) -> str:
  """The algorithm a run uses: ``"auto"`` is ``"lloyd"`` for problems too small for skipped
  distances to repay compiling the bounded program (``N K D < AUTO_MIN_WORK``)."""
  check_algorithm(algorithm)
  if algorithm == "auto" and n * k * d < AUTO_MIN_WORK:
    return "lloyd"
  return algorithm


def dense_above(k: int) -> float:
  """Active fraction above which ``"auto"`` takes the dense pass."""
  return 1.0 / (1.0 + GATHER_ROWS / k)


def kappa(d: int) -> float:
  """Relative error bound of a float32 squared distance from a length-``d`` dot product: the
  computed value is within ``kappa(d) * (|x|^2 + |c|^2)`` of the exact one."""
  return 2.0 * (d + 2) * 2.0**-24 / (1.0 - (d + 2) * 2.0**-24)


def _valid(n: int, n_valid, offset):
  if n_valid is None:
    return jnp.ones((n,), bool)
  return offset + jnp.arange(n) < n_valid


def init_bounds(n: int, n_valid=None, offset=0) -> Bounds:
  """Bounds that make every real row active and every padding row (global index >= n_valid)
  permanently inactive."""
  valid = _valid(n, n_valid, offset)
  return Bounds(
    jnp.zeros((n,), jnp.int32),
    jnp.where(valid, jnp.inf, -jnp.inf).astype(jnp.float32),
    jnp.where(valid, 0.0, jnp.inf).astype(jnp.float32),
  )


def radius_sq(x_NxD, c0_KxD, distance: Distance, chunk_size: int):
  """``R^2``: bounds the squared norm of every point and every centroid of the run (means and
  re-seeds are points or convex combinations of them; the initial centroids are given)."""
  if distance.unit:
    return jnp.float32(1.0)

  def f(m, x_CxD, start):
    return jnp.maximum(m, jnp.max(jnp.sum(x_CxD * x_CxD, axis=1))), None

  m, _ = scan_chunks(f, x_NxD.astype(jnp.float32), jnp.float32(0.0), chunk_size=chunk_size)
  return jnp.maximum(m, jnp.max(jnp.sum(c0_KxD * c0_KxD, axis=1)))


def _widen(best_C, second_C, xp_CxD, r_sq, distance: Distance):
  """Fresh metric ``(upper, lower)`` from the two nearest scores: widened by their rounding
  error and margined by ``mu`` (module docstring)."""
  xsq = distance.sq_norms(xp_CxD)
  err = kappa(xp_CxD.shape[1]) * (xsq + r_sq)
  mu = jnp.sqrt(err)
  best_metric_sq = distance.metric_sq_from_score(best_C, xsq)
  second_metric_sq = distance.metric_sq_from_score(second_C, xsq)
  upper = jnp.sqrt(jnp.maximum(best_metric_sq, 0.0) + err) + mu
  lower = jnp.sqrt(jnp.maximum(second_metric_sq - err, 0.0)) - mu
  return upper, lower


def _tight_upper(xp_CxD, cl_CxD, r_sq, distance: Distance):
  """Upper bound from the exact metric distance to the assigned centroid (direct difference:
  relative error <= kappa), plus the margin."""
  kap = kappa(xp_CxD.shape[1])
  metric_sq = jnp.sum((xp_CxD - cl_CxD) ** 2, axis=1)
  mu = jnp.sqrt(kap * (distance.sq_norms(xp_CxD) + r_sq))
  return jnp.sqrt(metric_sq * (1.0 + 2.0 * kap)) + mu


def _compacted(active_N, chunk_size: int, fn, outs):
  """``outs[i] = fn(i)`` for the active rows ``i``: a stable partition of row indices by the
  flag, then a ``while_loop`` over ``ceil(n_active / chunk)`` chunks of ``fn`` (rows -> values),
  scattered back. Inactive rows keep their values."""
  n = active_N.shape[0]
  c = min(chunk_size, n)
  idx_N = jnp.nonzero(active_N, size=n, fill_value=n)[0].astype(jnp.int32)
  n_active = jnp.sum(active_N.astype(jnp.int32))

  def body(carry):
    j, outs = carry
    # the last chunk may start early (overlap): its repeated rows get the same values again
    ids = lax.dynamic_slice_in_dim(idx_N, jnp.minimum(j * c, n - c), c)
    new = fn(jnp.minimum(ids, n - 1))
    outs = jax.tree.map(lambda o, v: o.at[ids].set(v, mode="drop"), outs, new)
    return j + 1, outs

  _, outs = lax.while_loop(lambda cr: cr[0] * c < n_active, body, (jnp.int32(0), outs))
  return outs


def _sums(x_NxD, labels_N, k: int, *, distance: Distance, chunk_size: int, n_valid, offset):
  """Per-cluster sums and counts of the (prepared) points, in :func:`kmeans.lloyd_stats`'s chunk
  order and arithmetic (so equal labels give equal bits). Inertia and far points: unknown."""
  d = x_NxD.shape[1]

  def f(carry, x_CxD, start):
    xp = distance.prepare(x_CxD)
    lab = lax.dynamic_slice_in_dim(labels_N, start - offset, x_CxD.shape[0])
    w = row_mask(start, xp.shape[0], n_valid)
    if w is not None:
      xp = xp * w[:, None]
    else:
      w = jnp.ones(xp.shape[:1], jnp.float32)
    return (
      carry[0] + jax.ops.segment_sum(xp, lab, k),
      carry[1] + jax.ops.segment_sum(w, lab, k),
    ), None

  init = (jnp.zeros((k, d), jnp.float32), jnp.zeros((k,), jnp.float32))
  (sums, counts), _ = scan_chunks(f, x_NxD, init, chunk_size=chunk_size, offset=offset)
  return LloydStats(sums, counts, *empty_stats(k, d)[2:])


def _dense(x_NxD, c_KxD, r_sq, *, distance: Distance, chunk_size: int, n_valid, offset) -> StepOut:
  """Every row's distances (Lloyd's pass, two nearest scores kept): exact statistics."""
  k, d = c_KxD.shape

  def f(stats, x_CxD, start):
    xp = distance.prepare(x_CxD)
    labels, best, second = nearest2(xp, c_KxD, distance)
    upper, lower = _widen(best, second, xp, r_sq, distance)
    w = row_mask(start, xp.shape[0], n_valid)
    if w is not None:
      upper = jnp.where(w > 0, upper, -jnp.inf)
      lower = jnp.where(w > 0, lower, jnp.inf)
    stats = add_chunk(stats, xp, labels, distance.sqdist_from_score(best, xp), w)
    return stats, Bounds(labels, upper, lower)

  stats, b = scan_chunks(f, x_NxD, empty_stats(k, d), chunk_size=chunk_size, offset=offset)
  n_rows = jnp.sum(_valid(x_NxD.shape[0], n_valid, offset).astype(jnp.int32))
  return StepOut(b, stats, n_rows, jnp.int32(0), jnp.bool_(True), jnp.int32(0))


def _sparse(
  x_NxD, c_KxD, b: Bounds, r_sq, active_N, *, distance: Distance, chunk_size, n_valid, offset
):
  """Tighten, then full rows for the points still active, both compacted; sums from labels."""
  k = c_KxD.shape[0]

  def tighten(ids):
    return _tight_upper(distance.prepare(x_NxD[ids]), c_KxD[b.labels[ids]], r_sq, distance)

  upper = _compacted(active_N, chunk_size, tighten, b.upper)
  full_N = active_N & (upper >= b.lower)

  def rows(ids):
    xp = distance.prepare(x_NxD[ids])
    labels, best, second = nearest2(xp, c_KxD, distance)
    return (labels, *_widen(best, second, xp, r_sq, distance))

  labels, upper, lower = _compacted(full_N, chunk_size, rows, (b.labels, upper, b.lower))
  stats = _sums(
    x_NxD, labels, k, distance=distance, chunk_size=chunk_size, n_valid=n_valid, offset=offset
  )
  n_full = jnp.sum(full_N.astype(jnp.int32))
  n_tight = jnp.sum(active_N.astype(jnp.int32))
  return StepOut(
    Bounds(labels, upper, lower), stats, n_full, n_tight, jnp.bool_(False), jnp.int32(0)
  )


SPARSE, DENSE, LLOYD = 0, 1, 2  # the passes of one iteration (see :func:`assign_step`)


class Schedule(NamedTuple):
  """``"auto"``'s state: whether the bounds are valid, the fraction of labels the last iteration
  changed, and when bounds may be rebuilt again after they did not pay (exponential back-off)."""

  bounded: jax.Array  # bool
  changed: jax.Array  # float32
  wait: jax.Array  # int32
  probe_at: jax.Array  # int32


def init_schedule() -> Schedule:
  return Schedule(jnp.bool_(False), jnp.float32(1.0), jnp.int32(1), jnp.int32(0))


def choose(s: Schedule, i, frac_active, k: int, algorithm: str):
  """The pass of iteration ``i`` and the next schedule.

  ``"hamerly"``: always the compacted pass. ``"auto"``: the compacted pass while the active
  fraction is at most :func:`dense_above`; otherwise Lloyd's own pass (bounds dropped). Bounds
  are rebuilt (the dense pass that keeps the two nearest scores, about one pass over the K x C
  scores dearer than Lloyd's) only once the labels have calmed down -- the last iteration changed
  at most ``1 - dense_above`` of them, so enough points could be skipped -- and each rebuild that
  did not pay doubles the wait before the next one: where bounds never pay, a whole run spends a
  handful of those passes.
  """
  if algorithm == "hamerly":
    return jnp.int32(SPARSE), s
  limit = dense_above(k)
  pays = s.bounded & (frac_active <= limit)
  failed = s.bounded & ~pays
  wait = jnp.where(pays, 1, jnp.where(failed, 2 * s.wait, s.wait)).astype(jnp.int32)
  probe_at = jnp.where(failed, i + wait, s.probe_at).astype(jnp.int32)
  calm = s.changed <= 1.0 - limit
  mode = jnp.where(pays, SPARSE, jnp.where((i >= probe_at) & calm, DENSE, LLOYD))
  return mode.astype(jnp.int32), Schedule(mode != LLOYD, s.changed, wait, probe_at)


def observe(s: Schedule, n_changed, n_valid) -> Schedule:
  return s._replace(changed=n_changed.astype(jnp.float32) / n_valid)


def count_active(b: Bounds) -> jax.Array:
  return jnp.sum((b.upper >= b.lower).astype(jnp.int32))


def assign_step(
  x_NxD,
  c_KxD,
  b: Bounds,
  r_sq,
  mode,
  *,
  distance: Distance,
  chunk_size: int,
  n_valid=None,
  offset=0,
) -> StepOut:
  """Exact labels of the rows ``x`` w.r.t. ``c`` given bounds valid for ``c`` (see the module
  docstring), by the pass ``mode``: SPARSE (compacted, bounds kept), DENSE (every distance, bounds
  rebuilt) or LLOYD (every distance, Lloyd's own pass; bounds dropped: every row active). Rows
  with global index ``offset + i >= n_valid`` are padding."""
  kw = dict(distance=distance, chunk_size=chunk_size, n_valid=n_valid, offset=offset)

  def sparse():
    return _sparse(x_NxD, c_KxD, b, r_sq, b.upper >= b.lower, **kw)

  if isinstance(mode, int) and mode == SPARSE:
    out = sparse()
  else:
    dense = lambda: _dense(x_NxD, c_KxD, r_sq, **kw)
    out = lax.switch(mode, [sparse, dense, lambda: _lloyd(x_NxD, c_KxD, **kw)])
  valid = _valid(x_NxD.shape[0], n_valid, offset)
  changed = jnp.sum((valid & (out.bounds.labels != b.labels)).astype(jnp.int32))
  return out._replace(n_changed=changed)


def _lloyd(x_NxD, c_KxD, *, distance: Distance, chunk_size: int, n_valid, offset) -> StepOut:
  """Lloyd's own pass (:func:`kmeans_kernels.lloyd_stats`'s arithmetic), keeping the labels;
  the bounds are dropped (every row active)."""
  stats, labels = lloyd_pass(
    x_NxD, c_KxD, distance=distance, chunk_size=chunk_size, n_valid=n_valid, offset=offset,
    with_labels=True,
  )  # fmt: skip
  b = init_bounds(x_NxD.shape[0], n_valid, offset)._replace(labels=labels)
  n_rows = jnp.sum(_valid(x_NxD.shape[0], n_valid, offset).astype(jnp.int32))
  return StepOut(b, stats, n_rows, jnp.int32(0), jnp.bool_(True), jnp.int32(0))


def shifts(c_old_KxD, c_new_KxD):
  """How far each centroid moved (rounded up by ``kappa`` so that the bounds stay bounds)."""
  kap = kappa(c_old_KxD.shape[1])
  return jnp.sqrt(jnp.sum((c_new_KxD - c_old_KxD) ** 2, axis=1)) * (1.0 + 2.0 * kap)


def loosen(b: Bounds, shift_K) -> Bounds:
  """Bounds valid for the moved centroids."""
  if shift_K.shape[0] == 1:
    return Bounds(b.labels, b.upper + shift_K[b.labels], b.lower)
  top, arg = lax.top_k(shift_K, 2)
  other = jnp.where(b.labels == arg[0], top[1], top[0])
  return Bounds(b.labels, b.upper + shift_K[b.labels], b.lower - other)


def label_sqdist(x_NxD, c_KxD, labels_N, *, distance: Distance, chunk_size: int, offset=0):
  """``sqdist`` of every row to the centroid ``labels`` names, as :func:`kmeans.assign` reports
  it (squared euclidean, or ``1 - cos``); O(N D)."""

  def f(carry, x_CxD, start):
    cl = c_KxD[lax.dynamic_slice_in_dim(labels_N, start - offset, x_CxD.shape[0])]
    return carry, distance.sqdist(distance.prepare(x_CxD), cl)

  _, sqdist = scan_chunks(f, x_NxD, None, chunk_size=chunk_size, offset=offset)
  return sqdist


# ---------------------------------------------------------------------------------------------
# Lloyd's iterations with bounds


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
  distance: Distance,
  algorithm: str,
  n_valid: int,
):
  """One of Lloyd's iterations with Hamerly's bounds, given bounds ``b`` valid for ``c``.
  ``step_fn(x, c, bounds, mode) -> StepOut`` runs the pass :func:`choose` picks from
  ``active_fn(bounds)`` (the number of active points); an iteration whose compacted pass empties
  a cluster takes its statistics from ``stats_fn`` (the dense pass, which knows the farthest
  points for re-seeding).

  Returns ``(new centroids, bounds valid for them, schedule, labels w.r.t. c, fraction of the
  N x K distances computed)``: the labels and centroids of Lloyd's iteration from ``c``.
  """
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


def bounded_fns(
  distance: Distance, chunk_size: int, n_valid: int, mesh: Mesh | None, axis_name: str
):
  """``step_fn(x, c, bounds, r_sq, mode) -> StepOut``, ``active_fn(bounds)`` (active points) and
  ``inertia_fn(x, c, labels)`` on one device, or sharded over ``mesh``: every device compacts
  its own rows; the statistics and counts are reduced over the devices."""
  kw = dict(distance=distance, chunk_size=chunk_size)
  if mesh is None:
    step = lambda x, c, b, r_sq, mode: assign_step(x, c, b, r_sq, mode, **kw)
    return step, count_active, lambda x, c, labels: jnp.sum(label_sqdist(x, c, labels, **kw))

  def local_step(x_l, c, b_l, r_sq, mode):
    offset = lax.axis_index(axis_name) * x_l.shape[0]
    out = assign_step(x_l, c, b_l, r_sq, mode, n_valid=n_valid, offset=offset, **kw)
    psum = lambda a: lax.psum(a, axis_name)
    stats = reduce_stats(out.stats, axis_name)
    n = (psum(out.n_full), psum(out.n_tight))
    return StepOut(out.bounds, stats, *n, out.exact, psum(out.n_changed))

  def local_inertia(x_l, c, labels_l):
    offset = lax.axis_index(axis_name) * x_l.shape[0]
    sqdist = label_sqdist(x_l, c, labels_l, offset=offset, **kw)
    valid = offset + jnp.arange(x_l.shape[0]) < n_valid
    return lax.psum(jnp.sum(jnp.where(valid, sqdist, 0.0)), axis_name)

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
