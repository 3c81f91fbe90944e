"""8 fake CPU devices give the same k-means as 1 (run in a subprocess: XLA_FLAGS must be set
before JAX starts)."""

import json
import os
import subprocess
import sys

import pytest

PROG = r"""
import json, jax, numpy as np
from sklearn.datasets import make_blobs
from jaxprune.pruning.kmeans import assign, kmeans
assert jax.device_count() == 8, jax.devices()
x, _ = make_blobs(2003, n_features=10, centers=12, random_state=0)  # 2003: not divisible by 8
x = x.astype(np.float32)
from jaxprune.core.sharding import data_mesh
mesh = data_mesh(8)
out = {}
for distance in ("euclidean", "cosine"):
  for init in ("given", "kmeans++"):
    c0 = x[:12] if init == "given" else None
    kw = dict(k=12, key=jax.random.key(3), distance=distance, init=c0, chunk_size=64, n_init=2)
    one, eight = kmeans(x, **kw), kmeans(x, mesh=mesh, **kw)
    l1, d1 = assign(x, one.centroids, distance=distance, chunk_size=64)
    l8, d8 = assign(x, eight.centroids, distance=distance, chunk_size=64, mesh=mesh)
    out[distance + "/" + init] = dict(
        dc=float(np.abs(np.asarray(one.centroids) - np.asarray(eight.centroids)).max()),
        inertia=[float(one.inertia), float(eight.inertia)],
        iters=[int(one.n_iter), int(eight.n_iter)],
        labels_equal=bool((np.asarray(l1) == np.asarray(l8)).all()), n_labels=int(l8.shape[0]),
        dd=float(np.abs(np.asarray(d1) - np.asarray(d8)).max()))
print(json.dumps(out))
"""


def test_eight_devices_equal_one():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  r = subprocess.run(
    [sys.executable, "-c", PROG], capture_output=True, text=True, env=env, timeout=600
  )
  assert r.returncode == 0, r.stderr[-3000:]
  res = json.loads(r.stdout.strip().splitlines()[-1])
  for name, v in res.items():
    assert v["dc"] < 1e-4, (name, v)
    assert abs(v["inertia"][0] - v["inertia"][1]) <= 1e-4 * abs(v["inertia"][0]) + 1e-4, (name, v)
    assert v["iters"][0] == v["iters"][1], (name, v)
    assert v["labels_equal"] and v["n_labels"] == 2003, (name, v)
    assert v["dd"] < 1e-3, (name, v)


BOUNDS_PROG = r"""
import json, jax, numpy as np
from sklearn.datasets import make_blobs
from jaxprune.core.sharding import data_mesh
from jaxprune.pruning.kmeans import assign, kmeans
x, _ = make_blobs(2003, n_features=10, centers=12, random_state=0)
x = x.astype(np.float32)
mesh = data_mesh(8)
out = {}
for distance in ("euclidean", "cosine"):
  kw = dict(k=20, key=jax.random.key(3), distance=distance, init=x[:20], chunk_size=64,
            max_iter=40, tol=0.0)
  for algorithm in ("hamerly", "yinyang"):  # "auto" is Lloyd at this size (AUTO_MIN_WORK)
    one = kmeans(x, algorithm=algorithm, **kw)
    eight = kmeans(x, mesh=mesh, algorithm=algorithm, **kw)
    l1, _ = assign(x, one.centroids, distance=distance, chunk_size=64)
    l8, _ = assign(x, eight.centroids, distance=distance, chunk_size=64)
    c8 = np.asarray(eight.centroids)
    out[distance + "/" + algorithm] = dict(
        vs_one=float(np.abs(np.asarray(one.centroids) - c8).max()),
        iters=[int(one.n_iter), int(eight.n_iter)],
        inertia=[float(one.inertia), float(eight.inertia)],
        labels_equal=bool((np.asarray(l1) == np.asarray(l8)).all()),
        computed=[float(v) for v in np.asarray(eight.computed)[: int(eight.n_iter)]])
print(json.dumps(out))
"""


@pytest.mark.slow  # moved out of the default run (its 20-minute budget)
def test_bounded_kmeans_eight_devices_equal_one():
  """Each device compacts its own rows: 8 devices give the same bounded k-means as 1 (which
  equals Lloyd: tests/test_kmeans_bounds.py)."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  r = subprocess.run(
    [sys.executable, "-c", BOUNDS_PROG], capture_output=True, text=True, env=env, timeout=600
  )
  assert r.returncode == 0, r.stderr[-3000:]
  res = json.loads(r.stdout.strip().splitlines()[-1])
  assert len(res) == 4
  for name, v in res.items():
    assert v["vs_one"] < 1e-4, (name, v)
    assert v["iters"][0] == v["iters"][1], (name, v)
    assert abs(v["inertia"][0] - v["inertia"][1]) <= 1e-4 * abs(v["inertia"][0]), (name, v)
    assert v["labels_equal"], (name, v)
    assert min(v["computed"]) < 0.5, (name, v)  # the sharded bounds skip distances
