"""Bound-based k-means (Hamerly) against the dense Lloyd pass, iteration by iteration."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs

from jaxprune.pruning import distances
from jaxprune.pruning import kmeans_bounds as kb
from jaxprune.pruning.distances import EUCLIDEAN, normalise
from jaxprune.pruning.kmeans import assign, kmeans
from jaxprune.pruning.kmeans_bounds import bounded_fns, bounded_iteration
from jaxprune.pruning.kmeans_kernels import lloyd_stats, stats_fn, update_centroids
from jaxprune.pruning.kmeans_streamed import kmeans_streamed

N, K, CHUNK = 2003, 30, 256  # 2003 = 7 full chunks and a tail of 211


@pytest.fixture(scope="module")
def blobs():
  x, _ = make_blobs(N, n_features=16, centers=12, cluster_std=1.0, random_state=0)
  return x.astype(np.float32)


def _init(x, distance, *, duplicate=False, far=False):
  c0 = x[np.random.default_rng(1).choice(len(x), K, replace=False)].copy()
  if duplicate:  # two identical centroids: every point near them is an exact tie
    c0[1] = c0[0]
  if far:  # a centroid no point is nearest to: an empty cluster, re-seeded in iteration 1
    c0[2] = 1e3
  c0 = jnp.asarray(c0)
  return normalise(c0) if distance == "cosine" else c0


def _run_both(x, c0, distance, algorithm, iters, groups=None):
  """Iterate the bounded path and the dense reference side by side from ``c0``; yields, per
  iteration, (bounded labels, dense labels, bounded centroids, dense centroids, computed)."""
  xj = jnp.asarray(x)
  distance = distances.get(distance)
  step_fn, active_fn, _, far_fn = bounded_fns(distance, CHUNK, N, None, "data")
  r_sq = kb.radius_sq(xj, c0, distance, CHUNK)
  if not isinstance(groups, kb.Groups):
    groups = kb.make_groups(c0, kb.num_groups(algorithm, K, groups), distance)
  grp = groups if algorithm != "hamerly" else kb.one_group(K)
  it = jax.jit(
    partial(
      bounded_iteration,
      step_fn=lambda x, c, b, mode: step_fn(x, c, b, r_sq, mode, grp),
      active_fn=active_fn,
      stats_fn=stats_fn(distance, CHUNK, N, None, "data"),
      distance=distance,
      algorithm=algorithm,
      n_valid=N,
      groups=grp,
      far_fn=lambda x, c, labels: far_fn(x, c, labels, r_sq),
    )
  )
  dense = jax.jit(
    lambda c: update_centroids(
      c, lloyd_stats(xj, c, distance=distance, chunk_size=CHUNK), distance=distance
    )
  )
  b, sched, c = kb.init_bounds(N, n_groups=grp.members.shape[0]), kb.init_schedule(), c0
  for i in range(iters):
    new, b, sched, labels, frac = it(xj, c, b, sched, jnp.int32(i))
    ref_labels, _ = assign(x, c, distance=distance, chunk_size=CHUNK)
    yield np.asarray(labels), np.asarray(ref_labels), np.asarray(new), np.asarray(dense(c)), frac
    c = new


def _assert_same(lab, ref, c, c_ref, i):
  """Same labels; the same centroids to float32 rounding (the cosine pass normalises the points
  in another fusion than Lloyd's, which can move the last bit)."""
  np.testing.assert_array_equal(lab, ref, err_msg=f"labels, iteration {i}")
  np.testing.assert_allclose(c, c_ref, rtol=1e-6, atol=1e-7, err_msg=f"centroids, iteration {i}")


@pytest.mark.parametrize(
  "distance, algorithm",
  [
    ("euclidean", "hamerly"),
    ("cosine", "hamerly"),
    ("euclidean", "yinyang"),
    ("cosine", "yinyang"),
    ("euclidean", "auto"),
    pytest.param("cosine", "auto", marks=pytest.mark.slow),  # auto's passes: covered above
  ],
)
def test_every_iteration_equals_lloyd(blobs, distance, algorithm):
  computed = []
  for i, (lab, ref, c, c_ref, frac) in enumerate(
    _run_both(blobs, _init(blobs, distance), distance, algorithm, 25)
  ):
    _assert_same(lab, ref, c, c_ref, i)
    computed.append(float(frac))
  if algorithm in ("hamerly", "yinyang"):  # the bounds settle most points once centroids slow
    assert max(computed[-5:]) < 0.35 * computed[0], computed
  assert min(computed) < 1.0, computed


@pytest.mark.parametrize("algorithm", ["hamerly", "yinyang"])
@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_ties_and_empty_clusters_equal_lloyd(blobs, distance, algorithm):
  c0 = _init(blobs, distance, duplicate=True, far=distance == "euclidean")
  # Yinyang: the tied pair 0, 1 in two groups ({g, g + 6, ...}), so the tie spans groups
  groups = kb.Groups(jnp.arange(K).reshape(K // 6, 6).T, jnp.arange(K) % 6)
  runs = _run_both(blobs, c0, distance, algorithm, 12, groups=groups)
  for i, (lab, ref, c, c_ref, _) in enumerate(runs):
    _assert_same(lab, ref, c, c_ref, i)


@pytest.mark.slow  # the per-iteration test above also re-seeds (euclidean, far centroid)
def test_empty_cluster_is_reseeded_like_lloyd(blobs):
  c0 = np.asarray(_init(blobs, "euclidean", far=True))
  for algorithm in ("hamerly", "auto"):
    ours = kmeans(
      blobs, k=K, key=jax.random.key(0), init=c0, max_iter=3, tol=0.0, algorithm=algorithm
    )
    ref = kmeans(blobs, k=K, key=jax.random.key(0), init=c0, max_iter=3, tol=0.0, algorithm="lloyd")
    assert np.abs(np.asarray(ref.centroids[2])).max() < 100  # re-seeded onto the data
    np.testing.assert_array_equal(np.asarray(ours.centroids), np.asarray(ref.centroids))


@pytest.mark.parametrize(
  "distance", ["euclidean", pytest.param("cosine", marks=pytest.mark.slow)]
)  # cosine: every iteration is checked above
def test_kmeans_to_convergence_matches_lloyd_and_sklearn(blobs, distance, monkeypatch):
  monkeypatch.setattr(kb, "AUTO_MIN_WORK", 0)  # auto's bounds also on a problem this small
  c0 = np.asarray(_init(blobs, distance))
  kw = dict(k=K, key=jax.random.key(0), init=c0, max_iter=100, tol=0.0, chunk_size=CHUNK)
  kw["distance"] = distance
  runs = {a: kmeans(blobs, algorithm=a, **kw) for a in kb.ALGORITHMS}
  for a in ("auto", "hamerly"):
    c, c_ref = np.asarray(runs[a].centroids), np.asarray(runs["lloyd"].centroids)
    np.testing.assert_allclose(c, c_ref, rtol=1e-6, atol=1e-7)
    assert int(runs[a].n_iter) == int(runs["lloyd"].n_iter)
    np.testing.assert_allclose(float(runs[a].inertia), float(runs["lloyd"].inertia), rtol=1e-5)
  np.testing.assert_array_equal(
    np.asarray(runs["lloyd"].computed)[: int(runs["lloyd"].n_iter)], 1.0
  )
  hamerly = np.asarray(runs["hamerly"].computed)[: int(runs["hamerly"].n_iter)]
  assert hamerly.mean() < 0.5, hamerly  # most distances skipped over the run
  if distance == "euclidean":
    sk = KMeans(K, init=c0, n_init=1, algorithm="elkan", max_iter=100, tol=0.0).fit(blobs)
    labels, _ = assign(blobs, runs["auto"].centroids)
    np.testing.assert_array_equal(np.asarray(labels), sk.labels_)
    np.testing.assert_allclose(np.asarray(runs["auto"].centroids), sk.cluster_centers_, atol=1e-4)


def test_skipped_fraction_rises_on_clustered_data():
  x, _ = make_blobs(6000, n_features=32, centers=40, cluster_std=0.5, random_state=3)
  x = x.astype(np.float32)
  c0 = x[np.random.default_rng(0).choice(len(x), 40, replace=False)]
  r = kmeans(x, k=40, key=jax.random.key(0), init=c0, max_iter=50, tol=0.0, algorithm="hamerly")
  computed = np.asarray(r.computed)[: int(r.n_iter)]
  assert int(r.n_iter) >= 4, computed
  assert computed[0] > 0.99  # the first iteration computes every distance
  # the skipped fraction rises: at the fixed point few distances are recomputed (those of points
  # between two centroids that split one blob stay active)
  assert computed[-1] < 0.2 and computed[-3:].mean() < computed[:3].mean() / 3, computed


def test_streamed_equals_in_memory_with_bounds(blobs, tmp_path, monkeypatch):
  monkeypatch.setattr(kb, "AUTO_MIN_WORK", 0)
  np.save(tmp_path / "x.npy", blobs)
  xm = np.load(tmp_path / "x.npy", mmap_mode="r")
  for distance, algorithms in (
    ("euclidean", ("lloyd", "auto", "hamerly", "yinyang")),
    ("cosine", ("lloyd", "hamerly", "yinyang")),
  ):
    ref = None
    for algorithm in algorithms:
      res, labels, dist = kmeans_streamed(
        xm, k=K, key=jax.random.key(2), distance=distance, max_iter=30, tol=0.0,
        block_size=700, chunk_size=128, algorithm=algorithm,
      )  # fmt: skip
      mem_labels, mem_dist = assign(blobs, res.centroids, distance=distance)
      np.testing.assert_array_equal(labels, np.asarray(mem_labels))
      np.testing.assert_allclose(dist, np.asarray(mem_dist), rtol=1e-4, atol=1e-3)
      if ref is None:
        ref = res
        continue
      np.testing.assert_allclose(np.asarray(res.centroids), np.asarray(ref.centroids), atol=1e-5)
      assert int(res.n_iter) == int(ref.n_iter)
      computed = np.asarray(res.computed)[: int(res.n_iter)]
      assert computed[0] == 1.0, computed  # the first pass is Lloyd's (it finds the largest norm)
      if algorithm in ("hamerly", "yinyang"):
        assert computed.min() < 0.5, computed


@pytest.mark.parametrize("n_groups", [1, 3, 10])  # Hamerly; Yinyang; a group per centroid
def test_bounds_hold(n_groups):
  """The bounds are bounds: upper >= the true distance to the assigned centroid, each group's
  lower <= the distance to every other centroid of that group (float64 reference), after
  several loosened iterations."""
  x, _ = make_blobs(1500, n_features=8, centers=10, random_state=5)
  x = x.astype(np.float32)
  c = jnp.asarray(x[:10])
  r_sq = kb.radius_sq(jnp.asarray(x), c, EUCLIDEAN, 128)
  grp = kb.make_groups(c, n_groups, EUCLIDEAN)
  assert grp.members.shape[0] == n_groups
  of = np.asarray(grp.of)
  np.testing.assert_array_equal(np.sort(np.asarray(grp.members).ravel())[:10], np.arange(10))
  b = kb.init_bounds(1500, n_groups=n_groups)

  @jax.jit
  def step(c, b):
    out = kb.assign_step(
      jnp.asarray(x), c, b, r_sq, kb.SPARSE, distance=EUCLIDEAN, chunk_size=128, groups=grp
    )
    new = update_centroids(c, out.stats, distance=EUCLIDEAN)
    return new, kb.loosen(out.bounds, kb.shifts(c, new), grp), out.bounds.labels

  for i in range(6):
    c_old = c
    c, b, labels = step(c, b)
    ref, _ = assign(x, c_old)
    np.testing.assert_array_equal(np.asarray(labels), np.asarray(ref), err_msg=f"iteration {i}")
    d = np.sqrt(((x[:, None, :].astype(np.float64) - np.asarray(c, np.float64)[None]) ** 2).sum(-1))
    lab = np.asarray(b.labels)
    own = d[np.arange(1500), lab]
    d[np.arange(1500), lab] = np.inf
    assert (np.asarray(b.upper) >= own).all(), i
    lower = np.asarray(b.lower)
    for g in range(n_groups):
      assert (lower[:, g] <= d[:, of == g].min(1)).all(), (i, g)


def test_auto_is_lloyd_below_the_work_threshold(blobs):
  assert kb.resolve("auto", 1348, 100, 64) == "lloyd"  # the digits: compile time would dominate
  assert kb.resolve("auto", 100_000, 1000, 256) == "auto"
  assert kb.resolve("hamerly", 10, 2, 2) == "hamerly"
  r = kmeans(blobs, k=K, key=jax.random.key(0), max_iter=5, tol=0.0, algorithm="auto")
  np.testing.assert_array_equal(np.asarray(r.computed), 1.0)


def test_bad_algorithm_raises(blobs, tmp_path):
  with pytest.raises(ValueError, match="algorithm must be one of"):
    kmeans(blobs, k=3, key=jax.random.key(0), algorithm="elkan")
  np.save(tmp_path / "x.npy", blobs)
  with pytest.raises(ValueError, match="algorithm must be one of"):
    kmeans_streamed(np.load(tmp_path / "x.npy", mmap_mode="r"), k=3, key=jax.random.key(0),
                    algorithm="Hamerly")  # fmt: skip


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_far_points_are_lloyds(blobs, distance):
  """The re-seeding candidates without the dense pass: the same far points (values and rows)
  as Lloyd's pass keeps, over chunks with a tail; ok unless rounding could hide one."""
  dist = distances.get(distance)
  c = _init(blobs, distance)
  xj = jnp.asarray(blobs)
  labels, _ = assign(blobs, c, distance=distance, chunk_size=CHUNK)
  ref = lloyd_stats(xj, c, distance=dist, chunk_size=CHUNK)
  r_sq = kb.radius_sq(xj, c, dist, CHUNK)
  far_d, far_x, ok = jax.jit(partial(kb.far_points, distance=dist, chunk_size=CHUNK))(
    xj, c, labels, r_sq
  )
  assert bool(ok)
  # the same points in the same order; their distances to float32 rounding (another fusion)
  np.testing.assert_array_equal(np.asarray(far_x), np.asarray(ref.far_x_MxD))
  np.testing.assert_allclose(np.asarray(far_d), np.asarray(ref.far_sqdist_M), rtol=1e-5)
  # padding rows (global index >= n_valid) are never candidates
  n_valid = N - 300
  ref_v = lloyd_stats(xj, c, distance=dist, chunk_size=CHUNK, n_valid=n_valid)
  far_v = kb.far_points(xj, c, labels, r_sq, distance=dist, chunk_size=CHUNK, n_valid=n_valid)
  np.testing.assert_array_equal(np.asarray(far_v[1]), np.asarray(ref_v.far_x_MxD))
  # a radius so large that rounding could reorder the candidates: not ok (Lloyd's pass instead)
  assert not bool(kb.far_points(xj, c, labels, 1e12, distance=dist, chunk_size=CHUNK)[2])
