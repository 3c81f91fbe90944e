"""k-means against scikit-learn and numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs

from jaxprune.pruning.distances import EUCLIDEAN
from jaxprune.pruning.kmeans import assign, check_embeddings, inertia, kmeans, kmeans_plusplus
from jaxprune.pruning.kmeans_kernels import lloyd_stats, update_centroids
from jaxprune.pruning.kmeans_streamed import kmeans_streamed


@pytest.fixture(scope="module")
def blobs():
  x, y = make_blobs(3000, n_features=12, centers=15, cluster_std=1.5, random_state=0)
  return x.astype(np.float32), y


def _init(x, k, seed=0):
  return x[np.random.default_rng(seed).choice(len(x), k, replace=False)]


def test_same_init_matches_sklearn(blobs):
  x, _ = blobs
  c0 = _init(x, 15)
  ours = kmeans(x, k=15, key=jax.random.key(0), init=c0, max_iter=300, tol=1e-4)
  sk = KMeans(15, init=c0, n_init=1, algorithm="lloyd", max_iter=300, tol=1e-4).fit(x)
  labels, _ = assign(x, ours.centroids)
  np.testing.assert_array_equal(np.asarray(labels), sk.labels_)
  np.testing.assert_allclose(float(ours.inertia), sk.inertia_, rtol=1e-4)
  np.testing.assert_allclose(np.asarray(ours.centroids), sk.cluster_centers_, atol=1e-4)
  assert int(ours.n_iter) == sk.n_iter_


def test_fixed_iterations_match_sklearn_step_for_step(blobs):
  x, _ = blobs
  c0 = _init(x, 25, seed=1)  # more clusters than blobs: several iterations before convergence
  for it in (1, 2, 5):
    ours = kmeans(x, k=25, key=jax.random.key(0), init=c0, max_iter=it, tol=0.0)
    sk = KMeans(25, init=c0, n_init=1, algorithm="lloyd", max_iter=it, tol=0.0).fit(x)
    np.testing.assert_allclose(float(ours.inertia), sk.inertia_, rtol=1e-4)


def test_kmeanspp_inertia_close_to_sklearn(blobs):
  x, _ = blobs
  ours = [float(kmeans(x, k=15, key=jax.random.key(s), n_init=1).inertia) for s in range(5)]
  sk = [KMeans(15, n_init=1, random_state=s).fit(x).inertia_ for s in range(5)]
  assert np.mean(ours) <= 1.03 * np.mean(sk)


def test_kmeanspp_seeds_are_data_points_and_spread(blobs):
  x, y = blobs
  c = np.asarray(kmeans_plusplus(x, k=15, key=jax.random.key(3)))
  d = ((c[:, None, :] - x[None]) ** 2).sum(-1)
  assert np.allclose(d.min(1), 0.0, atol=1e-3)  # every seed is a data point
  # greedy k-means++ on well separated blobs hits most blobs
  assert len(set(y[d.argmin(1)])) >= 12


def test_n_init_keeps_best(blobs):
  x, _ = blobs
  best = kmeans(x, k=15, key=jax.random.key(0), n_init=4)
  singles = [
    float(kmeans(x, k=15, key=k, n_init=1).inertia) for k in jax.random.split(jax.random.key(0), 4)
  ]
  np.testing.assert_allclose(float(best.inertia), min(singles), rtol=1e-5)


def test_cosine_matches_numpy_reference(blobs):
  x, _ = blobs
  c0 = _init(x, 10)
  it = 4
  ours = kmeans(x, k=10, key=jax.random.key(0), init=c0, distance="cosine", max_iter=it, tol=0.0)
  xn = x / np.linalg.norm(x, axis=1, keepdims=True)
  c = c0 / np.linalg.norm(c0, axis=1, keepdims=True)
  for _ in range(it):
    lab = (xn @ c.T).argmax(1)
    c = np.stack([xn[lab == j].mean(0) if (lab == j).any() else c[j] for j in range(10)])
    c /= np.linalg.norm(c, axis=1, keepdims=True)
  np.testing.assert_allclose(np.asarray(ours.centroids), c, atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(ours.centroids), axis=1), 1.0, atol=1e-5)
  labels, dist = assign(x, ours.centroids, distance="cosine")
  sims = xn @ c.T
  np.testing.assert_array_equal(np.asarray(labels), sims.argmax(1))
  np.testing.assert_allclose(np.asarray(dist), 1.0 - sims.max(1), atol=1e-5)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_chunked_equals_unchunked(blobs, distance):
  x, _ = blobs
  c0 = _init(x, 15)
  ref = kmeans(x, k=15, key=jax.random.key(0), init=c0, distance=distance, chunk_size=len(x))
  for chunk in (7, 256, 1000):  # 3000 = 428 * 7 + 4: exercises the tail chunk
    r = kmeans(x, k=15, key=jax.random.key(0), init=c0, distance=distance, chunk_size=chunk)
    np.testing.assert_allclose(np.asarray(r.centroids), np.asarray(ref.centroids), atol=1e-4)
    np.testing.assert_allclose(float(r.inertia), float(ref.inertia), rtol=1e-5)
    l1, d1 = assign(x, r.centroids, distance=distance, chunk_size=chunk)
    l2, d2 = assign(x, r.centroids, distance=distance, chunk_size=len(x))
    np.testing.assert_array_equal(np.asarray(l1), np.asarray(l2))


def test_assign_matches_brute_force(blobs):
  x, _ = blobs
  c = _init(x, 9, seed=5)
  labels, dist = assign(x, c, chunk_size=100)
  d = ((x[:, None, :] - c[None]) ** 2).sum(-1)
  np.testing.assert_array_equal(np.asarray(labels), d.argmin(1))
  np.testing.assert_allclose(np.asarray(dist), d.min(1), rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(float(inertia(x, c)), d.min(1).sum(), rtol=1e-5)


def test_ties_go_to_lowest_index():
  x = np.array([[0.0, 0.0]], np.float32)
  c = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], np.float32)
  labels, dist = assign(x, c)
  assert int(labels[0]) == 0 and float(dist[0]) == pytest.approx(1.0)


def test_same_key_same_result(blobs):
  x, _ = blobs
  a = kmeans(x, k=15, key=jax.random.key(7), n_init=2)
  b = kmeans(x, k=15, key=jax.random.key(7), n_init=2)
  np.testing.assert_array_equal(np.asarray(a.centroids), np.asarray(b.centroids))
  c = kmeans(x, k=15, key=jax.random.key(8), n_init=2)
  assert not np.array_equal(np.asarray(a.centroids), np.asarray(c.centroids))


def test_empty_cluster_is_reseeded_never_nan():
  x = np.concatenate([np.zeros((50, 2)), np.ones((50, 2)) * 10]).astype(np.float32)
  x += np.random.default_rng(0).normal(0, 0.1, x.shape).astype(np.float32)
  # third centre far from everything: it gets no points in the first assignment
  c0 = np.array([[0, 0], [10, 10], [1000, 1000]], np.float32)
  stats = lloyd_stats(jnp.asarray(x), jnp.asarray(c0), distance=EUCLIDEAN, chunk_size=16)
  assert float(stats.counts_K[2]) == 0
  new = np.asarray(update_centroids(jnp.asarray(c0), stats, distance=EUCLIDEAN))
  assert np.isfinite(new).all()
  # re-seeded at the point farthest from its centre
  d = np.minimum(((x - c0[0]) ** 2).sum(1), ((x - c0[1]) ** 2).sum(1))
  np.testing.assert_allclose(new[2], x[d.argmax()], atol=1e-6)
  r = kmeans(x, k=3, key=jax.random.key(0), init=c0, max_iter=20)
  assert np.isfinite(np.asarray(r.centroids)).all()
  labels, _ = assign(x, r.centroids)
  assert len(np.unique(np.asarray(labels))) == 3


def test_duplicate_points_k_equals_n():
  x = np.ones((5, 3), np.float32)
  r = kmeans(x, k=5, key=jax.random.key(0))
  assert np.isfinite(np.asarray(r.centroids)).all()
  assert float(r.inertia) == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_streamed_equals_in_memory(blobs, tmp_path, distance):
  x, _ = blobs
  path = tmp_path / "x.npy"
  np.save(path, x)
  xm = np.load(path, mmap_mode="r")
  res, labels, dist = kmeans_streamed(
    xm, k=15, key=jax.random.key(0), distance=distance, block_size=700, chunk_size=128
  )
  assert bool(res.converged)
  l2, d2 = assign(x, res.centroids, distance=distance)
  np.testing.assert_array_equal(labels, np.asarray(l2))
  np.testing.assert_allclose(dist, np.asarray(d2), rtol=1e-4, atol=1e-5)
  # same seeding path as in memory: same final inertia as scikit-learn from a good init
  sk = KMeans(15, n_init=1, init=np.asarray(kmeans_plusplus(x, k=15, key=jax.random.key(1)))).fit(x)
  if distance == "euclidean":
    assert float(res.inertia) <= 1.03 * sk.inertia_


@pytest.mark.parametrize(
  "bad, msg",
  [
    (np.array([[np.nan, 1.0], [0.0, 1.0]], np.float32), "NaN or inf"),
    (np.array([[np.inf, 1.0], [0.0, 1.0]], np.float32), "NaN or inf"),
    (np.zeros((0, 3), np.float32), "empty"),
    (np.zeros((4,), np.float32), "2-D"),
  ],
)
def test_bad_points_raise(bad, msg):
  # values: the host check before the work; shapes: also kmeans itself (static)
  with pytest.raises(ValueError, match=msg):
    check_embeddings(bad, k=1)
  if msg in ("empty", "2-D"):
    with pytest.raises(ValueError, match=msg):
      kmeans(bad, k=1, key=jax.random.key(0))


@pytest.mark.parametrize("k", [0, -1, 11, 2.5])
def test_bad_k_raises(k):
  x = np.random.default_rng(0).normal(size=(10, 2)).astype(np.float32)
  with pytest.raises(ValueError, match="k must"):
    kmeans(x, k=k, key=jax.random.key(0))


def test_bad_distance_and_init_raise():
  x = np.random.default_rng(0).normal(size=(10, 2)).astype(np.float32)
  with pytest.raises(ValueError, match="distance must be one of"):
    kmeans(x, k=2, key=jax.random.key(0), distance="manhattan")
  with pytest.raises(ValueError, match="init must have shape"):
    kmeans(x, k=2, key=jax.random.key(0), init=np.zeros((3, 2)))


def test_streamed_rejects_nan(tmp_path):
  x = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
  x[57, 2] = np.nan
  np.save(tmp_path / "x.npy", x)
  with pytest.raises(ValueError, match="NaN or inf"):
    kmeans_streamed(np.load(tmp_path / "x.npy", mmap_mode="r"), k=3, key=jax.random.key(0))
