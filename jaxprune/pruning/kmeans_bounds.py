"""Exact bound-based k-means (Yinyang's group bounds; Hamerly's with one group): Lloyd's
iterations, skipping proven distances.

The K centroids are split once into G groups (:func:`make_groups`: k-means of the initial
centroids, cut into equal groups of M so that shapes stay static). Every point carries bounds
(:class:`Bounds`): ``upper`` >= its metric distance to its assigned centroid and, per group g,
``lower[g]`` <= its metric distance to every other centroid of g. The metric is the square root
of :mod:`distances`' ``metric_sq`` (the triangle inequality needs a metric): the euclidean
distance, or for ``"cosine"`` the chord ``|x - c|`` between unit vectors, which orders centroids
as ``1 - cos`` does. After a centroid update the bounds loosen by the shifts: ``upper += |shift
of the assigned centroid|``, ``lower[g] -= the largest shift in g`` (the own centroid left out).
A point with ``upper < min_g lower[g]`` keeps its label without computing a distance (the global
filter); one that fails it needs only the groups with ``lower[g] <= upper`` (the group filter).
G = 1 is Hamerly's algorithm (Ding et al. 2015 take G = K / 10).

One iteration on a set of rows (a whole array, one device's shard, or one streamed block), with
static shapes under ``jit``:

1. ``active = upper >= min_g lower[g]``.
2. ``"auto"``: when the estimated work is above :func:`dense_above` (compaction would not pay
   for its gathers and the bounds' upkeep) Lloyd's own pass, or a dense pass over every chunk
   (the same matmul, keeping each group's least score) that rebuilds the bounds. Otherwise, and
   always for ``"hamerly"`` / ``"yinyang"``:
3. tighten: the exact distance of each active point to its assigned centroid (O(D) per point).
   Hamerly: the points still active get their full distance row (O(K D)). Yinyang: the points
   still active are sorted by label and taken a chunk at a time; the chunk computes the union of
   its points' open groups (:func:`_group_pass`: blocks of whole groups, a ``while_loop`` over
   the needed ones) and scores each point's own centroid directly. A point whose winner does
   not beat every rival it was compared with by twice the rounding error (a near tie) takes
   a full row from Lloyd's kernel instead, so exact ties (equal centroids) break as Lloyd's pass
   breaks them, lowest index first. (Scores of one pair computed in two XLA fusions can differ
   in the last bit; a choice that Lloyd's pass makes on that last bit alone is the one place
   the bounded passes may differ from it, as Hamerly's compacted rows always could.) Every pass
   runs on *compacted* rows: a stable partition of the row indices by the flag, then a
   ``lax.while_loop`` over ``ceil(n_active / chunk)`` chunks that gathers, computes, and
   scatters the results back.
4. Per-cluster sums and counts from the labels: one segment-sum pass in Lloyd's chunk order, so
   that equal labels give the same centroids bit for bit.

What is not built: Yinyang's local filter (skipping single centroids inside an open group). A
group's distances come from one matmul block; skipping single centroids would not save work.

Exactness. float32 distances carry rounding errors; a bound is widened by the worst-case error of
a float32 dot product of length D (``kappa``: twice Higham's gamma_(D+2), times the squared norms
involved), and in addition both bounds keep a margin ``mu = sqrt(kappa (|x|^2 + R^2))`` (``R``
bounds every centroid's norm: the data's largest norm or the initial centroids'). A skipped
point is then nearer to its centroid than to any other by more than the dense pass's rounding
error, so the dense pass would give it the same label. Memory: per point an int32 label, a
float32 upper bound and G float32 lower bounds (4 (2 + G) bytes; G = 100 at K = 1000: 408 bytes,
41 MB per 100k points), nothing N x K.
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
  N_FAR,
  LloydStats,
  add_chunk,
  best_of,
  empty_stats,
  lloyd_pass,
  nearest,
  reduce_stats,
  row_mask,
  scan_chunks,
  update_centroids,
)

ALGORITHMS = ("auto", "lloyd", "hamerly", "yinyang")
# Gathering one row of x for a compacted chunk costs about as much as this many point-centroid
# distances (measured on the 2-core CPU at D = 256: 0.25 us per gathered row against 3-4 us per
# row of K = 1000 distances); "auto" compacts while the active fraction is below dense_above(k).
GATHER_ROWS = 100


class Bounds(NamedTuple):
  """Per-point state of the bounded iterations: N, N and N x G (G groups of centroids)."""

  labels: jax.Array  # int32 assigned centroid
  upper: jax.Array  # float32 >= metric distance to the assigned centroid + margin
  lower: jax.Array  # float32 N x G: <= metric distance to any other centroid of group g - margin


class Groups(NamedTuple):
  """A fixed partition of the K centroids into G groups of at most M (Yinyang's groups; G = 1:
  Hamerly's single bound). ``members`` lists each group's centroid ids, padded with K."""

  members: jax.Array  # int32 G x M
  of: jax.Array  # int32 K: the group of each centroid


def one_group(k: int) -> Groups:
  """Every centroid in one group: Hamerly's bounds."""
  return Groups(jnp.arange(k, dtype=jnp.int32)[None, :], jnp.zeros((k,), jnp.int32))


def group_shape(k: int, g: int) -> tuple[int, int]:
  """``(G, M)`` of :func:`make_groups` for ``g`` groups asked of K centroids: groups of M =
  ceil(K / g) (static sizes under ``jit``), G = ceil(K / M) <= g of them."""
  m = -(-k // max(1, min(g, k)))
  return -(-k // m), m


def make_groups(c_KxD, g: int, distance: Distance, iters: int = 5) -> Groups:
  """Yinyang's grouping: ``iters`` Lloyd iterations of ``g`` group centres over the centroids
  (started from evenly spaced centroids), then the centroids ordered by (nearest centre,
  distance to it) and cut into equal groups of M (:func:`group_shape`), so that every group is
  M centroids that lie close together. Any partition keeps the bounds exact; a tight one makes
  them pay."""
  k = c_KxD.shape[0]
  n_groups, m = group_shape(k, g)
  if n_groups == 1:
    return one_group(k)
  centres = c_KxD[(jnp.arange(n_groups) * k) // n_groups]

  def lloyd_step(centres, _):
    lab, _ = nearest(distance.prepare(c_KxD), centres, distance)
    sums = jax.ops.segment_sum(c_KxD, lab, n_groups)
    counts = jax.ops.segment_sum(jnp.ones((k,), jnp.float32), lab, n_groups)
    means = distance.project(sums / jnp.maximum(counts, 1.0)[:, None])
    return jnp.where((counts > 0)[:, None], means, centres), None

  centres, _ = lax.scan(lloyd_step, centres, None, length=iters)
  lab, sqd = nearest(distance.prepare(c_KxD), centres, distance)
  order = jnp.lexsort((sqd, lab)).astype(jnp.int32)
  members = jnp.concatenate([order, jnp.full((n_groups * m - k,), k, jnp.int32)])
  of = jnp.zeros((k,), jnp.int32).at[order].set(jnp.arange(k, dtype=jnp.int32) // m)
  return Groups(members.reshape(n_groups, m), of)


def group_min(score_KxC, groups: Groups):
  """G x C: the least score of each group's centroids (inf for padding)."""
  if groups.members.shape[0] == 1:
    return jnp.min(score_KxC, axis=0)[None]
  ext = jnp.concatenate([score_KxC, jnp.full((1, score_KxC.shape[1]), jnp.inf)])
  return jnp.min(ext[groups.members], axis=1)


def nearest_groups(xp_CxD, c_KxD, distance: Distance, groups: Groups):
  """``(labels_C, best_C, low_CxG)``: the nearest centroid (lowest index among ties, as
  :func:`kmeans_kernels.nearest`), its score, and per group the least score of any centroid
  other than the nearest (a tied centroid gives ``best``)."""
  score_KxC = distance.scores(xp_CxD, c_KxD)
  labels_C, best_C = best_of(score_KxC)
  k_ids = jnp.arange(c_KxD.shape[0], dtype=jnp.int32)[:, None]
  masked = jnp.where(k_ids == labels_C[None, :], jnp.inf, score_KxC)
  return labels_C, best_C, group_min(masked, groups).T


class StepOut(NamedTuple):
  """One bounded assignment over a set of rows: fresh bounds, the statistics for the centroid
  update, what it computed (full distance rows, single tightened distances), and whether the
  statistics' inertia and farthest points are exact (a dense pass) or unknown (compacted)."""

  bounds: Bounds
  stats: LloydStats
  n_full: jax.Array  # float32: whole rows computed, or their equivalent in group distances
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


GROUP_SIZE = 10  # centroids per group by default (Ding et al. 2015: G = K / 10)


def num_groups(algorithm: str, k: int, groups: int | None = None) -> int:
  """G, the groups of centroids whose lower bounds every point keeps: 1 for ``"hamerly"`` (and
  ``"lloyd"``, which keeps none); ``groups`` if given, else K / :data:`GROUP_SIZE`, for
  ``"yinyang"`` and ``"auto"``. Memory: G float32 per point."""
  if algorithm in ("hamerly", "lloyd"):
    return 1
  if groups is not None:
    if int(groups) < 1:
      raise ValueError(f"groups must be >= 1, got {groups}")
    return group_shape(k, int(groups))[0]
  return group_shape(k, max(1, k // GROUP_SIZE))[0]


# Yinyang's upkeep (G bounds per point loosened, compared and rebuilt every iteration) costs
# about 2/3 of a Lloyd pass before any distance when every point is active (measured at
# N = 100k, K = 1000, G = 100 on the 2-core CPU): "auto" keeps group bounds while the estimated
# work is below this fraction of Lloyd's
GROUP_DENSE_ABOVE = 0.3
# each rebuild of the bounds that did not pay (a dense pass, the work estimate and a loosening:
# ~1.5 Lloyd passes with groups) multiplies the wait before the next one by this
BACKOFF = 8


def dense_above(k: int, n_groups: int = 1) -> float:
  """Active fraction (whole-row equivalents, :func:`count_active`) above which ``"auto"`` takes
  the dense pass."""
  if n_groups > 1:
    return GROUP_DENSE_ABOVE
  return 1.0 / (1.0 + GATHER_ROWS / k)


def kappa(d: int) -> float:
  """Relative error bound of a float32 squared distance from a length-``d`` dot product: the
  computed value is within ``kappa(d) * (|x|^2 + |c|^2)`` of the exact one."""
  return 2.0 * (d + 2) * 2.0**-24 / (1.0 - (d + 2) * 2.0**-24)


def _valid(n: int, n_valid, offset):
  if n_valid is None:
    return jnp.ones((n,), bool)
  return offset + jnp.arange(n) < n_valid


def init_bounds(n: int, n_valid=None, offset=0, n_groups: int = 1) -> Bounds:
  """Bounds that make every real row active and every padding row (global index >= n_valid)
  permanently inactive."""
  valid = _valid(n, n_valid, offset)
  lower = jnp.where(valid, 0.0, jnp.inf).astype(jnp.float32)
  return Bounds(
    jnp.zeros((n,), jnp.int32),
    jnp.where(valid, jnp.inf, -jnp.inf).astype(jnp.float32),
    jnp.broadcast_to(lower[:, None], (n, n_groups)),
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


def _widen(best_C, low_CxG, xp_CxD, r_sq, distance: Distance):
  """Fresh metric ``(upper_C, lower_CxG)`` from the nearest score and each group's least other
  score: widened by their rounding error and margined by ``mu`` (module docstring)."""
  xsq = distance.sq_norms(xp_CxD)
  err = kappa(xp_CxD.shape[1]) * (xsq + r_sq)
  mu = jnp.sqrt(err)
  best_metric_sq = distance.metric_sq_from_score(best_C, xsq)
  low_metric_sq = distance.metric_sq_from_score(low_CxG, xsq[:, None])
  upper = jnp.sqrt(jnp.maximum(best_metric_sq, 0.0) + err) + mu
  lower = jnp.sqrt(jnp.maximum(low_metric_sq - err[:, None], 0.0)) - mu[:, None]
  return upper, lower


def _tight_upper(xp_CxD, cl_CxD, r_sq, distance: Distance):
  """Upper bound from the exact metric distance to the assigned centroid (direct difference:
  relative error <= kappa), plus the margin."""
  kap = kappa(xp_CxD.shape[1])
  metric_sq = jnp.sum((xp_CxD - cl_CxD) ** 2, axis=1)
  mu = jnp.sqrt(kap * (distance.sq_norms(xp_CxD) + r_sq))
  return jnp.sqrt(metric_sq * (1.0 + 2.0 * kap)) + mu


def _compacted(active_N, chunk_size: int, fn, outs, *, counted: bool = False, key_N=None):
  """``outs[i] = fn(i)`` for the active rows ``i``: a stable partition of row indices by the
  flag, then a ``while_loop`` over ``ceil(n_active / chunk)`` chunks of ``fn`` (rows -> values),
  scattered back. Inactive rows keep their values. ``counted``: ``fn`` returns ``(values,
  work)`` and the work of every chunk is summed (returned after the outputs). ``key_N``: the
  active rows are taken in the order of this key (a stable sort) instead of by index."""
  n = active_N.shape[0]
  c = min(chunk_size, n)
  if key_N is None:
    idx_N = jnp.nonzero(active_N, size=n, fill_value=n)[0].astype(jnp.int32)
  else:  # inactive rows last, then mapped to n like nonzero's fill
    big = jnp.iinfo(jnp.int32).max
    idx_N = jnp.argsort(jnp.where(active_N, key_N, big), stable=True).astype(jnp.int32)
    idx_N = jnp.where(jnp.arange(n) < jnp.sum(active_N.astype(jnp.int32)), idx_N, n)
  n_active = jnp.sum(active_N.astype(jnp.int32))

  def body(carry):
    j, outs, work = carry
    # the last chunk may start early (overlap): its repeated rows get the same values again
    ids = lax.dynamic_slice_in_dim(idx_N, jnp.minimum(j * c, n - c), c)
    new = fn(jnp.minimum(ids, n - 1), ids < n)
    if counted:
      new, w = new
      work = work + w
    outs = jax.tree.map(lambda o, v: o.at[ids].set(v, mode="drop"), outs, new)
    return j + 1, outs, work

  init = (jnp.int32(0), outs, jnp.float32(0.0))
  _, outs, work = lax.while_loop(lambda cr: cr[0] * c < n_active, body, init)
  return (outs, work) if counted else outs


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


def _dense(
  x_NxD, c_KxD, r_sq, groups, *, distance: Distance, chunk_size: int, n_valid, offset
) -> StepOut:
  """Every row's distances (Lloyd's pass, each group's least other score kept): exact
  statistics."""
  k, d = c_KxD.shape

  def f(stats, x_CxD, start):
    xp = distance.prepare(x_CxD)
    labels, best, low = nearest_groups(xp, c_KxD, distance, groups)
    upper, lower = _widen(best, low, xp, r_sq, distance)
    w = row_mask(start, xp.shape[0], n_valid)
    if w is not None:
      upper = jnp.where(w > 0, upper, -jnp.inf)
      lower = jnp.where(w[:, None] > 0, lower, jnp.inf)
    stats = add_chunk(stats, xp, labels, distance.sqdist_from_score(best, xp), w)
    return stats, Bounds(labels, upper, lower)

  stats, b = scan_chunks(f, x_NxD, empty_stats(k, d), chunk_size=chunk_size, offset=offset)
  n_rows = jnp.sum(_valid(x_NxD.shape[0], n_valid, offset).astype(jnp.float32))
  return StepOut(b, stats, n_rows, jnp.int32(0), jnp.bool_(True), jnp.int32(0))


def _sparse(
  x_NxD, c_KxD, b: Bounds, r_sq, groups, active_N, *, distance: Distance, chunk_size, n_valid,
  offset,
):  # fmt: skip
  """Tighten, then full rows for the points still active, both compacted; sums from labels."""
  k = c_KxD.shape[0]

  def tighten(ids, _):
    return _tight_upper(distance.prepare(x_NxD[ids]), c_KxD[b.labels[ids]], r_sq, distance)

  upper_t = _compacted(active_N, chunk_size, tighten, b.upper)
  full_N = active_N & (upper_t >= jnp.min(b.lower, axis=1))

  def rows(ids, _):
    xp = distance.prepare(x_NxD[ids])
    labels, best, low = nearest_groups(xp, c_KxD, distance, groups)
    return (labels, *_widen(best, low, xp, r_sq, distance))

  state = (b.labels, upper_t, b.lower)
  if groups.members.shape[0] == 1:  # Hamerly: every active point's whole row
    labels, upper, lower = _compacted(full_N, chunk_size, rows, state)
    n_full = jnp.sum(full_N.astype(jnp.float32))
  else:  # Yinyang: the groups the bounds do not settle, then whole rows for near ties

    def group_rows(ids, real):
      out, work, resolved = _group_pass(
        x_NxD[ids], c_KxD, b.labels[ids], upper_t[ids], b.lower[ids], real, r_sq, groups, distance
      )
      return (*out, ~resolved), work

    (labels, upper, lower, tie_N), work = _compacted(
      full_N,
      chunk_size,
      group_rows,
      (*state, jnp.zeros_like(full_N)),
      counted=True,
      key_N=b.labels,  # points of one cluster rule out the same groups: small chunk unions
    )
    tie_N = tie_N & full_N
    labels, upper, lower = _compacted(tie_N, chunk_size, rows, (labels, upper, lower))
    n_full = work / k + jnp.sum(tie_N.astype(jnp.float32))
  stats = _sums(
    x_NxD, labels, k, distance=distance, chunk_size=chunk_size, n_valid=n_valid, offset=offset
  )
  n_tight = jnp.sum(active_N.astype(jnp.int32))
  return StepOut(
    Bounds(labels, upper, lower), stats, n_full, n_tight, jnp.bool_(False), jnp.int32(0)
  )


GROUP_BLOCK = 256  # centroids per matmul of the group pass (whole groups)


def _group_pass(x_CxD, c_KxD, labels_C, upper_C, lower_CxG, real_C, r_sq, groups, distance):
  """Yinyang's group filter on one chunk of points: only the groups that some point of the chunk
  cannot rule out by its bound (``upper >= lower_g``) get their distances computed, in blocks of
  whole groups (a ``while_loop`` over the needed ones); each point's own centroid is scored
  directly (O(D)).

  Returns ``((labels, upper, lower), work, resolved)``: fresh bounds for the computed groups,
  the old ones kept for the rest (their centroids are farther than the old label's; the old
  label's group, when not computed and left, is bounded by the old label's distance), the
  distances computed, and whether each point's winner beats every rival it was compared with by
  more than the rounding error. Points that do not (near ties) take Lloyd's full row instead,
  so that ties break exactly as Lloyd's pass breaks them.
  """
  k = c_KxD.shape[0]
  n_groups, m = groups.members.shape
  bsz = max(1, min(n_groups, GROUP_BLOCK // m))
  need_G = jnp.any((upper_C[:, None] >= lower_CxG) & real_C[:, None], axis=0)
  order = jnp.nonzero(need_G, size=n_groups, fill_value=n_groups)[0].astype(jnp.int32)
  order = jnp.concatenate([order, jnp.full((bsz,), n_groups, jnp.int32)])
  n_need = jnp.sum(need_G.astype(jnp.int32))
  members = jnp.concatenate([groups.members, jnp.full((1, m), k, jnp.int32)])
  c_ext = jnp.concatenate([c_KxD, jnp.zeros((1, c_KxD.shape[1]), c_KxD.dtype)])
  xp = distance.prepare(x_CxD)
  c = xp.shape[0]

  def body(carry):
    j, best, lab, min1, id1, min2 = carry
    gid = lax.dynamic_slice_in_dim(order, j * bsz, bsz)
    mem = members[gid]  # bsz x m centroid ids (k: padding)
    score = distance.scores(xp, c_ext[mem.reshape(-1)]).reshape(bsz, m, c)
    score = jnp.where((mem < k)[:, :, None], score, jnp.inf)
    g1 = jnp.min(score, axis=1)  # bsz x C: each group's least score, its centroid, the next
    gi1 = jnp.min(jnp.where(score == g1[:, None], mem[:, :, None], k), axis=1)
    g2 = jnp.min(jnp.where(mem[:, :, None] == gi1[:, None], jnp.inf, score), axis=1)
    b_best = jnp.min(g1, axis=0)
    b_lab = jnp.min(jnp.where(g1 == b_best[None], gi1, k), axis=0)
    lab = jnp.where(b_best < best, b_lab, jnp.where(b_best == best, jnp.minimum(lab, b_lab), lab))
    best = jnp.minimum(best, b_best)
    put = lambda a, v: lax.dynamic_update_slice_in_dim(a, v, j * bsz, axis=0)  # slot order
    return j + 1, best, lab, put(min1, g1), put(id1, gi1), put(min2, g2)

  slots = n_groups + bsz
  init = (
    jnp.int32(0),
    jnp.full((c,), jnp.inf, jnp.float32),
    jnp.full((c,), k, jnp.int32),
    jnp.full((slots, c), jnp.inf, jnp.float32),
    jnp.full((slots, c), k, jnp.int32),
    jnp.full((slots, c), jnp.inf, jnp.float32),
  )
  _, best_g, lab_g, min1, id1, min2 = lax.while_loop(lambda cr: cr[0] * bsz < n_need, body, init)
  slot_G = jnp.where(need_G, jnp.cumsum(need_G.astype(jnp.int32)) - 1, slots - 1)
  min1, id1, min2 = (a[slot_G].T for a in (min1, id1, min2))  # C x G (inf / k: not computed)
  # the old label a, scored directly where its group was not computed
  own_done = need_G[groups.of[labels_C]]
  zero = jnp.zeros_like(best_g)
  s_a = distance.sqdist(xp, c_KxD[labels_C]) - distance.sqdist_from_score(zero, xp)
  s_a = jnp.where(own_done, jnp.inf, s_a)
  lab = jnp.where(
    s_a < best_g, labels_C, jnp.where(s_a == best_g, jnp.minimum(labels_C, lab_g), lab_g)
  )
  best = jnp.minimum(best_g, s_a)
  low = jnp.where(id1 == lab[:, None], min2, min1)  # computed groups, the winner left out
  rival_a = jnp.where(lab != labels_C, s_a, jnp.inf)  # a, when it lost and was scored directly
  low = jnp.where(need_G[None, :], low, jnp.inf)
  # near ties: the winner must beat every rival by twice the scores' rounding error
  xsq = distance.sq_norms(xp)
  err = kappa(xp.shape[1]) * (xsq + r_sq)
  rival = jnp.minimum(jnp.min(low, axis=1), rival_a)
  best_m = distance.metric_sq_from_score(best, xsq)
  resolved = best_m + 2.0 * err < distance.metric_sq_from_score(rival, xsq)
  upper, fresh = _widen(best, jnp.concatenate([low, rival_a[:, None]], axis=1), xp, r_sq, distance)
  lower = jnp.where(need_G[None, :], fresh[:, :n_groups], lower_CxG)
  own_col = jnp.arange(n_groups)[None, :] == groups.of[labels_C][:, None]
  lower = jnp.where(own_col & ~own_done[:, None], jnp.minimum(lower, fresh[:, -1:]), lower)
  work = (n_need * m * jnp.sum(real_C.astype(jnp.int32))).astype(jnp.float32)
  return (lab, upper, lower), work, resolved


SPARSE, DENSE, LLOYD = 0, 1, 2  # the passes of one iteration (see :func:`assign_step`)


class Schedule(NamedTuple):
  """``"auto"``'s state: whether the bounds are valid, the fraction of labels the last iteration
  changed, the work its compacted pass did (-1 after a dense one), and when bounds may be rebuilt
  again after they did not pay (exponential back-off)."""

  bounded: jax.Array  # bool
  changed: jax.Array  # float32
  wait: jax.Array  # int32
  probe_at: jax.Array  # int32
  work: jax.Array  # float32: fraction of the N x K distances the last compacted pass computed


def init_schedule() -> Schedule:
  return Schedule(jnp.bool_(False), jnp.float32(1.0), jnp.int32(1), jnp.int32(0), jnp.float32(0))


def choose(s: Schedule, i, frac_active, k: int, algorithm: str, n_groups: int = 1):
  """The pass of iteration ``i`` and the next schedule.

  ``"hamerly"``, ``"yinyang"``: always the compacted pass. ``"auto"``: the compacted pass while
  the estimated work (:func:`count_active`, which sees each chunk's union of open groups) is at
  most :func:`dense_above` and the last compacted pass computed at most that fraction of the
  distances; otherwise Lloyd's own pass (bounds dropped). Bounds are rebuilt (the dense pass
  that keeps each group's least score, a little dearer than Lloyd's) only once the labels have
  calmed down -- the last iteration changed at most ``1 - dense_above(k, 1)`` of them -- and
  each rebuild that did not pay multiplies the wait before the next one by :data:`BACKOFF`:
  where bounds never pay, a whole run spends a couple of those passes.
  """
  if algorithm in ("hamerly", "yinyang"):
    return jnp.int32(SPARSE), s
  limit = dense_above(k, n_groups)
  pays = s.bounded & (frac_active <= limit) & (s.work <= limit)
  failed = s.bounded & ~pays
  # the first compacted pass after a rebuild is a trial (work < 0: not measured yet); only a
  # measured one that paid resets the back-off
  confirmed = pays & (s.work >= 0)
  wait = jnp.where(confirmed, 1, jnp.where(failed, BACKOFF * s.wait, s.wait)).astype(jnp.int32)
  probe_at = jnp.where(failed, i + wait, s.probe_at).astype(jnp.int32)
  calm = s.changed <= 1.0 - dense_above(k)
  mode = jnp.where(pays, SPARSE, jnp.where((i >= probe_at) & calm, DENSE, LLOYD))
  return mode.astype(jnp.int32), Schedule(mode != LLOYD, s.changed, wait, probe_at, s.work)


def observe(s: Schedule, n_changed, n_valid, mode, work) -> Schedule:
  """The schedule after a pass: the labels it changed and, for a compacted pass (``mode``
  SPARSE), the fraction of the distances it computed (``work``)."""
  return s._replace(
    changed=n_changed.astype(jnp.float32) / n_valid,
    work=jnp.where(mode == SPARSE, jnp.float32(work), -1.0),
  )


def is_active(b: Bounds) -> jax.Array:
  """Yinyang's global filter: a point whose upper bound is below every group's lower bound
  keeps its label."""
  return b.upper >= jnp.min(b.lower, axis=1)


def count_active(b: Bounds, chunk_size: int = 512) -> jax.Array:
  """The work the bounds leave, in whole-row equivalents. One group: the active points. Groups:
  what :func:`_group_pass` would compute (before tightening, so at least as much): the active
  points sorted by label and cut into chunks, each chunk computing the union of its points' open
  groups (``upper >= lower[g]``) for every one of its points."""
  active = is_active(b)
  n, n_groups = b.lower.shape
  if n_groups == 1:
    return jnp.sum(active.astype(jnp.float32))
  c = min(chunk_size, n)
  big = jnp.iinfo(jnp.int32).max
  order = jnp.argsort(jnp.where(active, b.labels, big), stable=True)
  open_NxG = (b.upper[order, None] >= b.lower[order]) & active[order, None]
  pad = (-n) % c
  open_NxG = jnp.concatenate([open_NxG, jnp.zeros((pad, n_groups), bool)])
  per_chunk = open_NxG.reshape(-1, c, n_groups)
  union = jnp.mean(jnp.any(per_chunk, axis=1).astype(jnp.float32), axis=1)
  rows = jnp.sum(jnp.any(per_chunk, axis=2).astype(jnp.float32), axis=1)
  return jnp.sum(union * rows)


def assign_step(
  x_NxD,
  c_KxD,
  b: Bounds,
  r_sq,
  mode,
  *,
  distance: Distance,
  chunk_size: int,
  groups: Groups | None = None,
  n_valid=None,
  offset=0,
) -> StepOut:
  """Exact labels of the rows ``x`` w.r.t. ``c`` given bounds valid for ``c`` (see the module
  docstring), by the pass ``mode``: SPARSE (compacted, bounds kept), DENSE (every distance, bounds
  rebuilt) or LLOYD (every distance, Lloyd's own pass; bounds dropped: every row active). Rows
  with global index ``offset + i >= n_valid`` are padding. ``groups``: the partition the
  bounds' G columns refer to (None: one group, Hamerly's)."""
  kw = dict(distance=distance, chunk_size=chunk_size, n_valid=n_valid, offset=offset)
  if groups is None:
    groups = one_group(c_KxD.shape[0])

  def sparse():
    return _sparse(x_NxD, c_KxD, b, r_sq, groups, is_active(b), **kw)

  if isinstance(mode, int) and mode == SPARSE:
    out = sparse()
  else:
    dense = lambda: _dense(x_NxD, c_KxD, r_sq, groups, **kw)
    lloyd = lambda: _lloyd(x_NxD, c_KxD, b.lower, **kw)
    out = lax.switch(mode, [sparse, dense, lloyd])
  valid = _valid(x_NxD.shape[0], n_valid, offset)
  changed = jnp.sum((valid & (out.bounds.labels != b.labels)).astype(jnp.int32))
  return out._replace(n_changed=changed)


def _lloyd(x_NxD, c_KxD, lower, *, distance: Distance, chunk_size: int, n_valid, offset) -> StepOut:
  """Lloyd's own pass (:func:`kmeans_kernels.lloyd_stats`'s arithmetic), keeping the labels;
  the bounds are dropped (every row active)."""
  stats, labels = lloyd_pass(
    x_NxD, c_KxD, distance=distance, chunk_size=chunk_size, n_valid=n_valid, offset=offset,
    with_labels=True,
  )  # fmt: skip
  # every real row active (upper = inf); the lower bounds are stale and unused until the next
  # dense pass rebuilds them (not rewritten here: N x G floats)
  upper = init_bounds(x_NxD.shape[0], n_valid, offset, 1).upper
  b = Bounds(labels, upper, lower)
  n_rows = jnp.sum(_valid(x_NxD.shape[0], n_valid, offset).astype(jnp.float32))
  return StepOut(b, stats, n_rows, jnp.int32(0), jnp.bool_(True), jnp.int32(0))


def shifts(c_old_KxD, c_new_KxD):
  """How far each centroid moved (rounded up by ``kappa`` so that the bounds stay bounds)."""
  kap = kappa(c_old_KxD.shape[1])
  return jnp.sqrt(jnp.sum((c_new_KxD - c_old_KxD) ** 2, axis=1)) * (1.0 + 2.0 * kap)


def loosen(b: Bounds, shift_K, groups: Groups | None = None) -> Bounds:
  """Bounds valid for the moved centroids: each group's lower bound drops by the largest shift
  of its centroids, not counting the point's own centroid (Hamerly's rule, per group)."""
  upper = b.upper + shift_K[b.labels]
  if groups is None:
    groups = one_group(shift_K.shape[0])
  n_groups, m = groups.members.shape
  if m == 1:  # every group one centroid: no other centroid in the own group
    return Bounds(b.labels, upper, b.lower - shift_K[groups.members[:, 0]][None, :])
  ext = jnp.concatenate([shift_K, jnp.zeros((1,), shift_K.dtype)])  # padding moves 0
  top, pos = lax.top_k(ext[groups.members], 2)  # G x 2
  first_id = jnp.take_along_axis(groups.members, pos[:, :1], axis=1)[:, 0]
  own_g = groups.of[b.labels]
  own = jnp.where(b.labels == first_id[own_g], top[own_g, 1], top[own_g, 0])
  is_own = jnp.arange(n_groups, dtype=jnp.int32)[None, :] == own_g[:, None]
  return Bounds(b.labels, upper, b.lower - jnp.where(is_own, own[:, None], top[None, :, 0]))


def label_sqdist(x_NxD, c_KxD, labels_N, *, distance: Distance, chunk_size: int, offset=0):
  """``sqdist`` of every row to the centroid ``labels`` names, as :func:`kmeans.assign` reports
  it (squared euclidean, or ``1 - cos``); O(N D)."""

  def f(carry, x_CxD, start):
    cl = c_KxD[lax.dynamic_slice_in_dim(labels_N, start - offset, x_CxD.shape[0])]
    return carry, distance.sqdist(distance.prepare(x_CxD), cl)

  _, sqdist = scan_chunks(f, x_NxD, None, chunk_size=chunk_size, offset=offset)
  return sqdist


def far_points(
  x_NxD, c_KxD, labels_N, r_sq, *, distance: Distance, chunk_size: int, n_valid=None, offset=0
):
  """The farthest points Lloyd's pass would keep for re-seeding empty clusters (``N_FAR`` of
  them, by ``sqdist`` to their centroid, lower row first among equal ones), without its K x N
  distances: every row's distance to its own centroid directly (O(N D)), then the ``chunk``
  rows with the largest ones scored again by Lloyd's own kernel (:func:`nearest` on one chunk),
  which gives Lloyd's values (to the last bit where XLA fuses the two passes alike; two far
  points within float32 rounding of each other could swap). Returns ``(far_sqdist_M,
  far_x_MxD, ok)``; ``ok`` is False when the candidates might miss one of Lloyd's far points
  (the chunk-th largest distance is within rounding error of the ``N_FAR``-th): then the caller
  takes Lloyd's pass."""
  n = x_NxD.shape[0]
  c = min(chunk_size, n)
  valid = _valid(n, n_valid, offset)
  direct = label_sqdist(x_NxD, c_KxD, labels_N, distance=distance, chunk_size=chunk_size)
  direct = jnp.where(valid, direct, -1.0)
  top, ids = lax.top_k(direct, c)
  # both ways of computing a sqdist are within kappa (|x|^2 + |c|^2) <= 2 kappa R^2 of exact
  err = 2.0 * kappa(x_NxD.shape[1]) * 2.0 * r_sq
  m = min(N_FAR, c)
  ok = (c == n) | (top[m - 1] - top[c - 1] > 2.0 * err) | (top[c - 1] < 0)
  ids = jnp.sort(ids)  # row order: equal values keep Lloyd's (lower row first) order
  xp = distance.prepare(x_NxD[ids])
  _, sq = nearest(xp, c_KxD, distance)
  sq = jnp.where(valid[ids], sq, -1.0)
  far_d, pos = lax.top_k(sq, m)
  far_x = xp[pos]
  if m < N_FAR:
    far_d = jnp.concatenate([far_d, jnp.full((N_FAR - m,), -1.0, jnp.float32)])
    far_x = jnp.concatenate([far_x, jnp.zeros((N_FAR - m, far_x.shape[1]), far_x.dtype)])
  return far_d, far_x, ok


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
  groups: Groups | None = None,
  far_fn: Callable | None = None,
):
  """One of Lloyd's iterations with group bounds (one group: Hamerly's), given bounds ``b``
  valid for ``c`` and ``groups``.
  ``step_fn(x, c, bounds, mode) -> StepOut`` runs the pass :func:`choose` picks from
  ``active_fn(bounds)`` (the number of active points); an iteration whose compacted pass empties
  a cluster needs Lloyd's farthest points for re-seeding: from ``far_fn(x, c, labels) ->
  (far_sqdist, far_x, ok)`` (:func:`far_points`, O(N D)) when given and ``ok``, else from
  ``stats_fn`` (the dense pass).

  Returns ``(new centroids, bounds valid for them, schedule, labels w.r.t. c, fraction of the
  N x K distances computed)``: the labels and centroids of Lloyd's iteration from ``c``.
  """
  k = c_KxD.shape[0]
  n_groups = b.lower.shape[1]
  # Lloyd's passes keep no bounds: skip their O(N G) upkeep
  frac_active = lax.cond(sched.bounded, lambda: active_fn(b) / n_valid, lambda: jnp.float32(1.0))
  mode, sched = choose(sched, i, frac_active, k, algorithm, n_groups)
  out = step_fn(x_NxD, c_KxD, b, mode)
  frac = (out.n_full.astype(jnp.float32) + out.n_tight.astype(jnp.float32) / k) / n_valid
  sched = observe(sched, out.n_changed, n_valid, mode, frac)
  dense_stats = lambda: stats_fn(x_NxD, c_KxD)
  if far_fn is None:
    reseed = dense_stats
  else:

    def reseed():
      far_d, far_x, ok = far_fn(x_NxD, c_KxD, out.bounds.labels)
      with_far = lambda: out.stats._replace(far_sqdist_M=far_d, far_x_MxD=far_x)
      return lax.cond(ok, with_far, dense_stats)

  stats = lax.cond(jnp.any(out.stats.counts_K == 0) & ~out.exact, reseed, lambda: out.stats)
  new = update_centroids(c_KxD, stats, distance=distance)
  b_new = lax.cond(
    mode == LLOYD, lambda: out.bounds, lambda: loosen(out.bounds, shifts(c_KxD, new), groups)
  )
  return new, b_new, sched, out.bounds.labels, frac


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
  """``step_fn(x, c, bounds, r_sq, mode, groups) -> StepOut``, ``active_fn(bounds)`` (active
  points), ``inertia_fn(x, c, labels)`` and ``far_fn(x, c, labels, r_sq)`` (:func:`far_points`)
  on one device, or sharded over ``mesh``: every device compacts its own rows; the statistics
  and counts are reduced over the devices."""
  kw = dict(distance=distance, chunk_size=chunk_size)
  if mesh is None:
    step = lambda x, c, b, r_sq, mode, groups: assign_step(x, c, b, r_sq, mode, groups=groups, **kw)
    inertia = lambda x, c, labels: jnp.sum(label_sqdist(x, c, labels, **kw))
    active = partial(count_active, chunk_size=chunk_size)
    return step, active, inertia, partial(far_points, **kw)

  def local_step(x_l, c, b_l, r_sq, mode, groups):
    offset = lax.axis_index(axis_name) * x_l.shape[0]
    out = assign_step(x_l, c, b_l, r_sq, mode, groups=groups, n_valid=n_valid, offset=offset, **kw)
    psum = lambda a: lax.psum(a, axis_name)
    stats = reduce_stats(out.stats, axis_name)
    n = (psum(out.n_full), psum(out.n_tight))
    return StepOut(out.bounds, stats, *n, out.exact, psum(out.n_changed))

  def local_inertia(x_l, c, labels_l):
    offset = lax.axis_index(axis_name) * x_l.shape[0]
    sqdist = label_sqdist(x_l, c, labels_l, offset=offset, **kw)
    valid = offset + jnp.arange(x_l.shape[0]) < n_valid
    return lax.psum(jnp.sum(jnp.where(valid, sqdist, 0.0)), axis_name)

  def local_far(x_l, c, labels_l, r_sq):
    offset = lax.axis_index(axis_name) * x_l.shape[0]
    far_d, far_x, ok = far_points(x_l, c, labels_l, r_sq, n_valid=n_valid, offset=offset, **kw)
    far_d = lax.all_gather(far_d, axis_name, tiled=True)  # device order: row order
    far_x = lax.all_gather(far_x, axis_name, tiled=True)
    top_d, idx = lax.top_k(far_d, N_FAR)
    return top_d, far_x[idx], lax.pmin(ok.astype(jnp.int32), axis_name) > 0

  rows = P(axis_name)
  bounds = Bounds(rows, rows, rows)
  shard = partial(jax.shard_map, mesh=mesh, check_vma=False)
  step = shard(
    local_step,
    in_specs=(rows, P(), bounds, P(), P(), Groups(P(), P())),
    out_specs=StepOut(bounds, P(), P(), P(), P(), P()),  # the mode is the same on every device
  )
  active = shard(
    lambda b: lax.psum(count_active(b, chunk_size), axis_name), in_specs=(bounds,), out_specs=P()
  )
  inertia = shard(local_inertia, in_specs=(rows, P(), rows), out_specs=P())
  far = shard(local_far, in_specs=(rows, P(), rows, P()), out_specs=(P(), P(), P()))
  return step, active, inertia, far
