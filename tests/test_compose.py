"""The public k-means / scores / select functions compose: jit == eager, vmap == a Python loop,
grad through assign's sqdist == 2 (x - c), the jittable select == the host select; the values
are checked by one host-side check."""

import ast
import os
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import make_blobs

import jaxprune
from jaxprune.pruning.kmeans import assign, check_embeddings, inertia, kmeans, kmeans_plusplus
from jaxprune.pruning.scores import self_supervised_prototypes, supervised_prototypes
from jaxprune.pruning.select import select, select_indices, select_mask

K = 4


def _blobs(seed, n=240, d=5):
  x, y = make_blobs(n, n_features=d, centers=K, cluster_std=1.0, random_state=seed)
  return x.astype(np.float32), y.astype(np.int32)


def _same_kmeans(a, b, x, distance):
  np.testing.assert_allclose(np.asarray(a.centroids), np.asarray(b.centroids), atol=1e-5)
  np.testing.assert_allclose(float(a.inertia), float(b.inertia), rtol=1e-5)
  assert int(a.n_iter) == int(b.n_iter)
  la = np.asarray(assign(x, a.centroids, distance=distance).labels)
  lb = np.asarray(assign(x, b.centroids, distance=distance).labels)
  np.testing.assert_array_equal(la, lb)


@pytest.mark.parametrize(
  "distance, algorithm",
  [
    ("euclidean", "lloyd"),
    pytest.param("cosine", "lloyd", marks=pytest.mark.slow),  # the default run: one of three
    pytest.param("euclidean", "hamerly", marks=pytest.mark.slow),
  ],
)
def test_jit_kmeans_equals_eager(distance, algorithm):
  x, _ = _blobs(0)
  key = jax.random.key(1)
  kw = dict(k=K, distance=distance, algorithm=algorithm, n_init=2, chunk_size=64)
  eager = kmeans(x, key=key, **kw)
  jitted = jax.jit(lambda x, key: kmeans(x, key=key, **kw))(jnp.asarray(x), key)
  _same_kmeans(eager, jitted, x, distance)
  # the README's one-liner
  inert = jax.jit(lambda x, key: kmeans(x, k=K, key=key).inertia)(jnp.asarray(x), key)
  np.testing.assert_allclose(float(inert), float(kmeans(x, k=K, key=key).inertia), rtol=1e-5)


@pytest.mark.parametrize("distance", ["euclidean", pytest.param("cosine", marks=pytest.mark.slow)])
def test_vmap_over_datasets_equals_a_loop(distance):
  xs = [_blobs(seed)[0] for seed in (0, 1, 2)]
  stacked = jnp.asarray(np.stack(xs))
  key = jax.random.key(3)
  runs = jax.vmap(lambda x: kmeans(x, k=K, key=key, distance=distance))(stacked)
  assert runs.centroids.shape == (3, K, 5)
  for i, x in enumerate(xs):
    one = kmeans(x, k=K, key=key, distance=distance)
    _same_kmeans(jax.tree.map(lambda a: a[i], runs), one, x, distance)
  # assign over the 3 datasets and their centroids
  labels, sqdist = jax.vmap(partial(assign, distance=distance))(stacked, runs.centroids)
  for i, x in enumerate(xs):
    ref = assign(x, runs.centroids[i], distance=distance)
    np.testing.assert_array_equal(np.asarray(labels[i]), np.asarray(ref.labels))
    np.testing.assert_allclose(np.asarray(sqdist[i]), np.asarray(ref.sqdist), rtol=1e-5, atol=1e-6)
  in_jit = jax.jit(jax.vmap(partial(inertia, distance=distance)))(stacked, runs.centroids)
  np.testing.assert_allclose(np.asarray(in_jit), np.asarray(runs.inertia), rtol=1e-5)


def test_vmap_over_keys_equals_a_loop():
  x, _ = _blobs(4)
  keys = jax.random.split(jax.random.key(0), 3)
  fn = lambda x, key: kmeans(x, k=K, key=key)
  runs = jax.vmap(fn, in_axes=(None, 0))(jnp.asarray(x), keys)  # x passed, not closed over
  seeds = jax.vmap(lambda key: kmeans_plusplus(x, k=K, key=key))(keys)
  for i in range(3):
    _same_kmeans(jax.tree.map(lambda a: a[i], runs), fn(x, keys[i]), x, "euclidean")
    np.testing.assert_array_equal(
      np.asarray(seeds[i]), np.asarray(kmeans_plusplus(x, k=K, key=keys[i]))
    )


def test_grad_through_assign_is_two_x_minus_c():
  # hand-checked: point 0 is nearest centroid 0 (1, 0), point 1 nearest centroid 1 (3, 3)
  x = jnp.array([[0.0, 0.0], [3.0, 1.0], [1.5, 0.5]])
  c = jnp.array([[1.0, 0.0], [3.0, 3.0]])
  out = assign(x, c)
  np.testing.assert_array_equal(np.asarray(out.labels), [0, 1, 0])
  np.testing.assert_allclose(np.asarray(out.sqdist), [1.0, 4.0, 0.5], rtol=1e-6)
  g = jax.grad(lambda x: jnp.sum(assign(x, c).sqdist))(x)
  np.testing.assert_allclose(np.asarray(g), [[-2.0, 0.0], [0.0, -4.0], [1.0, 1.0]], rtol=1e-6)
  # the same under jit, and with respect to the centroids: -2 (x - c) summed per cluster
  gx, gc = jax.jit(jax.grad(lambda x, c: jnp.sum(assign(x, c).sqdist), argnums=(0, 1)))(x, c)
  np.testing.assert_allclose(np.asarray(gx), np.asarray(g), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(gc), [[-2 * (-1 + 0.5), -2 * (0 + 0.5)], [0, 4]], rtol=1e-6)


def test_prototype_scores_under_jit_equal_eager():
  x, y = _blobs(5)
  key = jax.random.key(2)
  for distance in ("cosine", "euclidean"):
    s, cl, res = self_supervised_prototypes(x, k=K, key=key, distance=distance)
    fn = lambda x, key: self_supervised_prototypes(x, k=K, key=key, distance=distance)
    sj, clj, resj = jax.jit(fn)(jnp.asarray(x), key)
    assert isinstance(s, jax.Array) and isinstance(sj, jax.Array)
    np.testing.assert_allclose(np.asarray(sj), np.asarray(s), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(clj), np.asarray(cl))
    sup = supervised_prototypes(x, y, distance=distance)
    supj = jax.jit(partial(supervised_prototypes, distance=distance, num_classes=K))(x, y)
    np.testing.assert_allclose(np.asarray(supj), np.asarray(sup), rtol=1e-5, atol=1e-6)
  # numpy reference for the euclidean supervised score
  cent = np.stack([x[y == j].mean(0) for j in range(K)])
  ref = np.linalg.norm(x - cent[y], axis=1)
  np.testing.assert_allclose(np.asarray(supj), ref, rtol=1e-4, atol=1e-5)


SCORES = np.round(np.random.default_rng(0).uniform(0, 3, 90), 1)  # many ties
LABELS = np.repeat([0, 1, 2], [50, 30, 10]).astype(np.int32)


@pytest.mark.parametrize("mode", ["hard", "easy", "random"])
@pytest.mark.parametrize("balance", [0.0, 0.5, pytest.param(1.0, marks=pytest.mark.slow)])
def test_jittable_select_equals_host_select(mode, balance):
  key, tie_key = jax.random.key(0), jax.random.key(1)
  for fraction in (0.05, 0.35, 0.77):
    for ties in (None, tie_key):
      kw = dict(fraction=fraction, mode=mode, class_balance=balance)
      host = select(SCORES, key=key, labels=LABELS, tie_key=ties, **kw)
      fn = jax.jit(partial(select_indices, num_classes=3, **kw))
      idx = fn(jnp.asarray(SCORES), key=key, labels=jnp.asarray(LABELS), tie_key=ties)
      assert isinstance(idx, jax.Array)
      np.testing.assert_array_equal(np.asarray(idx), host, err_msg=str((fraction, ties)))
      if mode != "random" and balance == 0.0 and ties is None:  # independent numpy reference
        rank = -SCORES if mode == "hard" else SCORES
        n_keep = max(1, int(np.floor(fraction * 90 + 0.5)))
        ref = np.sort(np.lexsort((np.arange(90), rank.astype(np.float32)))[:n_keep])
        np.testing.assert_array_equal(host, ref)
  mask = select_mask(SCORES, key=key, labels=LABELS, num_classes=3, tie_key=tie_key, **kw)
  np.testing.assert_array_equal(np.flatnonzero(np.asarray(mask)), host)


def test_select_indices_vmaps_over_score_vectors():
  s3 = np.stack([SCORES, SCORES[::-1], np.roll(SCORES, 7)])
  fn = partial(select_indices, fraction=0.2, mode="hard", num_classes=3, class_balance=0.5)
  out = jax.vmap(lambda s: fn(s, labels=jnp.asarray(LABELS)))(jnp.asarray(s3))
  for i in range(3):
    host = select(s3[i], fraction=0.2, mode="hard", labels=LABELS, class_balance=0.5)
    np.testing.assert_array_equal(np.asarray(out[i]), host)


def _bad(kind):
  x = np.random.default_rng(0).standard_normal((12, 3)).astype(np.float32)
  if kind == "nan":
    x[4, 1] = np.nan
  elif kind == "inf":
    x[2, 0] = -np.inf
  elif kind == "overflow":
    x[5] = 1e20  # finite in float32, but its squared norm is not
  elif kind == "zero":
    x[[1, 7]] = 0.0
  return x


@pytest.mark.parametrize(
  "kind, kw, msg",
  [
    ("nan", {}, "1 NaN or inf values"),
    ("inf", {"distance": "cosine"}, "1 NaN or inf values"),
    ("overflow", {"distance": "cosine"}, "1 of 12 rows whose squared norm overflows float32"),
    ("overflow", {}, "1 of 12 rows whose squared norm overflows float32"),
    ("zero", {"distance": "cosine"}, "2 of 12 rows with zero norm"),
    ("ok", {"k": 13}, "1 <= k <= N"),
    ("ok", {"distance": "manhattan"}, "distance must be one of"),
  ],
)
def test_host_check_raises_clear_errors(kind, kw, msg, tmp_path):
  x = _bad(kind)
  np.save(tmp_path / "x.npy", x)
  for arr in (x, jnp.asarray(x), np.load(tmp_path / "x.npy", mmap_mode="r")):
    with pytest.raises(ValueError, match=msg):
      check_embeddings(arr, **kw)


def test_host_check_passes_good_data_and_is_exported():
  x = _bad("zero")
  check_embeddings(x, k=12)  # zero rows are fine for the euclidean distance
  check_embeddings(_bad("ok"), k=3, distance="cosine")
  assert jaxprune.check_embeddings is check_embeddings
  assert jaxprune.select_indices is select_indices


MODULES = ("distances", "kmeans_kernels", "kmeans_bounds", "kmeans", "kmeans_streamed", "scores")


def test_kmeans_modules_layered_without_function_level_imports():
  here = os.path.join(os.path.dirname(jaxprune.__file__), "pruning")
  imports = {}
  for m in MODULES:
    tree = ast.parse(open(os.path.join(here, m + ".py")).read())
    for node in ast.walk(tree):
      if isinstance(node, (ast.FunctionDef, ast.Lambda)):
        inner = [n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert not inner, (m, getattr(node, "name", "lambda"))
    imports[m] = {
      a.name.split(".")[-1] if isinstance(n, ast.Import) else (n.module or "").split(".")[-1]
      for n in tree.body
      if isinstance(n, (ast.Import, ast.ImportFrom))
      for a in n.names
    } | {
      a.name
      for n in tree.body
      if isinstance(n, ast.ImportFrom) and n.module == "jaxprune.pruning"
      for a in n.names
    }
  # each module imports only modules below it in MODULES' order
  for i, m in enumerate(MODULES):
    assert not (imports[m] & set(MODULES[i:])), (m, imports[m] & set(MODULES[i:]))
