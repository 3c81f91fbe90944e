"""Out-of-core k-means for embeddings larger than memory (e.g. ImageNet: 1.28M x 2048 float32).

The data stays on the host (a ``.npy`` memory map or any numpy array) and is streamed to the
device in blocks; each block is reduced with the same chunked kernels as :func:`kmeans.kmeans`
(:func:`kmeans_kernels.lloyd_stats`, :func:`kmeans_kernels.update_centroids`). Blocks of a
memory-mapped file are read with ``readinto`` so that the file's pages never count towards this
process's memory: peak memory is a few blocks plus K x D, whatever N is.

k-means++ seeding runs on a random sample of ``init_sample`` rows (all rows when None), and the
convergence tolerance is scaled by that sample's feature variance.
"""

from __future__ import annotations

from functools import partial
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxprune.pruning import distances
from jaxprune.pruning import kmeans_bounds as kb
from jaxprune.pruning.array_files import file_view
from jaxprune.pruning.distances import Distance
from jaxprune.pruning.kmeans import (
  check_k,
  check_norms,
  check_shape,
  count_zero_norm,
  kmeans_plusplus,
)
from jaxprune.pruning.kmeans_kernels import (
  KMeansResult,
  assign_chunks,
  empty_stats,
  lloyd_stats,
  mean_variance,
  merge_stats,
  update_centroids,
)


def iter_blocks(x, block_size: int) -> Iterator[tuple[int, np.ndarray]]:
  """Yield ``(start, block)`` with every block exactly ``block_size`` rows (the last one
  zero-padded)."""
  n, d = x.shape
  view = file_view(x)
  f = open(view[0], "rb") if view else None
  try:
    for start in range(0, n, block_size):
      rows = min(block_size, n - start)
      blk = np.zeros((block_size, d), np.float32)
      if f is not None and x.dtype == np.float32:
        f.seek(view[1] + start * d * 4)
        f.readinto(memoryview(blk[:rows]).cast("B"))
      else:
        blk[:rows] = x[start : start + rows]
      yield start, blk
  finally:
    if f is not None:
      f.close()


def read_rows(x, idx: np.ndarray) -> np.ndarray:
  """Rows ``idx`` (sorted) of ``x`` as float32, read without mapping the whole file."""
  view = file_view(x)
  if view is None or x.dtype != np.float32:
    return np.asarray(x[idx], np.float32)
  d = x.shape[1]
  out = np.empty((len(idx), d), np.float32)
  with open(view[0], "rb") as f:
    for j, i in enumerate(idx):
      f.seek(view[1] + int(i) * d * 4)
      f.readinto(memoryview(out[j]).cast("B"))
  return out


def _check_finite(rows_BxD: np.ndarray, row_ids: np.ndarray) -> None:
  bad = ~np.isfinite(rows_BxD).all(axis=1)
  if bad.any():
    raise ValueError(
      f"embeddings contain NaN or inf values in float32, the compute dtype (first bad row: "
      f"{int(row_ids[np.argmax(bad)])}; NaN / inf, or beyond float32's range ~3.4e38); clean, "
      "rescale or drop those rows first"
    )
  with np.errstate(over="ignore", invalid="ignore"):  # issue 25: a finite row, inf distances
    over = ~np.isfinite(np.einsum("ij,ij->i", rows_BxD, rows_BxD))
  if over.any():
    raise ValueError(
      f"embeddings have rows whose squared norm overflows float32 (first: row "
      f"{int(row_ids[np.argmax(over)])}, largest magnitude {np.abs(rows_BxD[over]).max():.3g}):"
      " their distances would be inf or NaN; rescale the embeddings or drop those rows"
    )


@partial(jax.jit, static_argnames=("distance", "chunk_size", "n_valid"))
def _block_stats(stats, blk, c, start, *, distance, chunk_size, n_valid):
  s = lloyd_stats(blk, c, distance=distance, chunk_size=chunk_size, n_valid=n_valid, offset=start)
  return merge_stats(stats, s)


@partial(jax.jit, static_argnames=("distance",))
def _update(c, stats, *, distance):
  new = update_centroids(c, stats, distance=distance)
  return new, jnp.sum((new - c) ** 2), kb.shifts(c, new)


@partial(jax.jit, static_argnames=("distance", "chunk_size", "n_valid"))
def _block_step(stats, blk, c, b, r_sq, mode, start, groups, *, distance, chunk_size, n_valid):
  out = kb.assign_step(
    blk, c, b, r_sq, mode, distance=distance, chunk_size=chunk_size, groups=groups,
    n_valid=n_valid, offset=start,
  )  # fmt: skip
  return out._replace(stats=merge_stats(stats, out.stats))


@partial(jax.jit, static_argnames=("distance", "chunk_size", "n_valid"))
def _block_sqdist(blk, c, b, r_sq, mode, start, groups, *, distance, chunk_size, n_valid):
  """Exact labels (a bounded pass) and their sqdist for one block, against the final c."""
  kw = dict(distance=distance, chunk_size=chunk_size)
  out = kb.assign_step(blk, c, b, r_sq, mode, groups=groups, n_valid=n_valid, offset=start, **kw)
  labels = out.bounds.labels
  return labels, kb.label_sqdist(blk, c, labels, offset=start, **kw)


_block_assign = jax.jit(assign_chunks, static_argnames=("distance", "chunk_size"))
_loosen = jax.jit(kb.loosen)
_make_groups = jax.jit(kb.make_groups, static_argnames=("g", "distance"))
# the bounds' memory of the streamed path: G float32 per point (plus labels and upper) within
# this many bytes, held on the device whatever the block size (ImageNet: 52 groups)
BOUNDS_BYTES = 256 << 20
_count_active = jax.jit(kb.count_active, static_argnames=("chunk_size",))


def kmeans_streamed(
  x,
  *,
  k: int,
  key: jax.Array,
  distance: str | Distance = "euclidean",
  max_iter: int = 100,
  tol: float = 1e-4,
  init_sample: int | None = None,
  block_size: int | None = None,
  chunk_size: int = 512,
  progress: bool = False,
  algorithm: str = "auto",
  groups: int | None = None,
):
  """k-means over a host array streamed in blocks.

  ``algorithm`` as in :func:`kmeans.kmeans`: with bounds (``"auto"``, ``"hamerly"``,
  ``"yinyang"``) every block keeps its rows' bounds (label and upper bound, and ``groups``
  lower bounds: 4 (2 + G) bytes per point, held in device memory whatever the block size; by
  default G = K / 10 capped so that they fit in :data:`BOUNDS_BYTES`, 256 MiB: 52 groups, 270
  MB for ImageNet; Hamerly's G = 1, 15 MiB) and computes only the distances they do not settle;
  every block is still read once per iteration for the centroid sums. The first iteration is
  Lloyd's pass (it also measures the largest norm, which the bounds' error margin needs).

  Returns ``(KMeansResult, labels_N, sqdist_N)``; labels and ``sqdist`` (as in
  :func:`kmeans.assign`) are numpy arrays computed against the final centroids.

  A host function (it reads ``x`` block by block): it checks the values itself, in the first
  pass (NaN or inf, and zero-norm rows for cosine), as :func:`kmeans.check_embeddings` would.
  """
  distance = distances.get(distance)
  kb.check_algorithm(algorithm)
  check_shape(x)
  n, d = x.shape
  check_k(k, n)
  algorithm = kb.resolve(algorithm, n, k, d)
  if groups is None and algorithm in ("auto", "yinyang"):  # the bounds within BOUNDS_BYTES
    groups = max(1, min(k // kb.GROUP_SIZE, BOUNDS_BYTES // (4 * n)))
  n_groups = kb.num_groups(algorithm, k, groups)
  if block_size is None:  # about 128 MiB of float32 per block
    block_size = max(1024, (128 << 20) // (4 * d))
  block_size = min(block_size, n)
  m = n if init_sample is None else max(k, min(n, int(init_sample)))
  key_sample, key_init = jax.random.split(key)
  idx = (
    np.arange(n)
    if m == n
    else np.sort(np.asarray(jax.random.choice(key_sample, n, (m,), replace=False)))
  )
  sample = read_rows(x, idx)
  _check_finite(sample, idx)
  sample = jnp.asarray(sample)
  c = kmeans_plusplus(sample, k=k, key=key_init, distance=distance)
  tol_abs = float(tol * mean_variance(sample, distance, m, chunk_size))
  del sample

  n_blocks = -(-n // block_size)
  bar = tqdm(
    total=max_iter * n_blocks, desc="k-means (streamed)", unit="block", disable=not progress
  )
  bounded = algorithm != "lloyd"
  starts = list(range(0, n, block_size))
  bounds = {s: kb.init_bounds(block_size, n, s, n_groups) for s in starts} if bounded else {}
  grp = _make_groups(c, n_groups, distance=distance) if bounded else None
  sched = kb.init_schedule()
  r_sq = 1.0 if distance.unit else float(jnp.max(jnp.sum(c * c, axis=1)))
  computed = np.zeros(max_iter, np.float32)
  kw = dict(distance=distance, chunk_size=chunk_size, n_valid=n)
  n_iter, converged, zero_rows = 0, False, 0
  for n_iter in range(1, max_iter + 1):
    i = n_iter - 1
    if bounded:
      n_active = n  # only "auto" with valid bounds reads the estimate (one host sync)
      if algorithm == "auto" and bool(sched.bounded):
        n_active = float(sum(_count_active(b, chunk_size) for b in bounds.values()))
      mode, sched = kb.choose(sched, jnp.int32(i), n_active / n, k, algorithm, n_groups)
      mode = kb.LLOYD if i == 0 else int(mode)  # the first pass also finds the largest norm
    stats = empty_stats(k, d)
    counted = jnp.zeros(3, jnp.float32)  # full rows, tightened rows, changed labels (on device)
    for start, blk in iter_blocks(x, block_size):
      if n_iter == 1:
        _check_finite(blk, np.arange(start, start + len(blk)))
        if distance.unit:  # zero norms counted over the whole pass: the error says how many
          zero_rows += count_zero_norm(blk[: min(block_size, n - start)])
        elif bounded:
          r_sq = max(r_sq, float(np.max(np.einsum("ij,ij->i", blk, blk))))
      prev = stats
      if bounded:
        out = _block_step(stats, blk, c, bounds[start], r_sq, mode, start, grp, **kw)
        stats, bounds[start] = out.stats, out.bounds
        counted = counted + jnp.stack([out.n_full, out.n_tight, out.n_changed]).astype(jnp.float32)
      else:
        stats = _block_stats(stats, blk, c, start, **kw)
      # back-pressure: at most one block computing while the next is read, so memory stays at
      # a few blocks instead of async dispatch queueing the whole file
      jax.block_until_ready(prev)
      bar.update(1)
    if zero_rows:
      bar.close()
      check_norms(zero_rows, n)
    if bounded:
      counted = np.asarray(counted, np.float64)
      computed[i] = (counted[0] + counted[1] / k) / n
      sched = kb.observe(sched, jnp.int32(round(counted[2])), n, jnp.int32(mode), computed[i])
      if mode == kb.SPARSE and bool(jnp.any(stats.counts_K == 0)):  # re-seeding: far points
        stats = empty_stats(k, d)
        for start, blk in iter_blocks(x, block_size):
          stats = _block_stats(stats, blk, c, start, **kw)
    else:
      computed[i] = 1.0
    c_new, shift, moved = _update(c, stats, distance=distance)
    if bounded and mode != kb.LLOYD:  # Lloyd's pass dropped the bounds: nothing to loosen
      bounds = {s: _loosen(b, moved, grp) for s, b in bounds.items()}
    c = c_new
    shift = float(shift)
    bar.set_postfix(shift=f"{shift:.3g}", computed=f"{computed[i]:.3f}")
    if shift <= tol_abs:
      converged = True
      break
  bar.close()

  labels = np.empty(n, np.int32)
  sqdist = np.empty(n, np.float32)
  if bounded:  # the bounds settle most labels for the final centroids: compacted when they pay
    n_active = int(sum(_count_active(b, chunk_size) for b in bounds.values()))
    final = kb.SPARSE if n_active <= kb.dense_above(k, n_groups) * n else kb.LLOYD
  for start, blk in iter_blocks(x, block_size):
    if bounded:
      lab, sqd = _block_sqdist(blk, c, bounds[start], r_sq, final, start, grp, **kw)
    else:
      lab, sqd = _block_assign(blk, c, distance=distance, chunk_size=chunk_size)
    rows = min(block_size, n - start)
    labels[start : start + rows] = np.asarray(lab[:rows])
    sqdist[start : start + rows] = np.asarray(sqd[:rows])
  result = KMeansResult(
    c,
    jnp.float32(sqdist.sum(dtype=np.float64)),
    jnp.int32(n_iter),
    jnp.bool_(converged),
    jnp.asarray(computed),
  )
  return result, labels, sqdist
