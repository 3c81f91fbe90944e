"""One k-means config (``--kmeans.*``) and one default-k rule for the prune, curve and bench
jobs: the flags reach k-means in every job."""

import json
import os

import numpy as np
import pytest

from jaxprune.core.config import parse
from jaxprune.pruning import benchmark, benchmark_config, curve, curve_config, prune, prune_config
from jaxprune.pruning import data as data_lib
from jaxprune.pruning import scores as scores_lib
from jaxprune.pruning.kmeans_config import KMeansConfig, resolve_k


@pytest.mark.parametrize(
  "k, n, num_classes, want",
  [
    (None, 1348, 10, 10),  # the number of classes
    (None, 5, 10, 5),  # capped at the points
    (None, 500, None, 100),  # unlabelled: 100
    (None, 40, None, 40),
    (7, 3, 10, 7),  # an explicit k is kept (k > n is the kernel's error)
  ],
)
def test_default_k_rule(k, n, num_classes, want):
  assert resolve_k(k, n=n, num_classes=num_classes) == want


def test_curve_presets_keep_their_k():
  """The committed curve experiments' k under the one rule: the curve's old rule (``k or the
  number of classes``, 10 here) gives the same k on every pool of every preset."""
  for make in (
    curve_config.CurveConfig,
    curve_config.scaling,
    curve_config.scaling_digits,
    curve_config.quick,
  ):
    cfg = make()
    for n in cfg.pool_sizes or (1348,):
      assert resolve_k(cfg.kmeans.k, n=n, num_classes=10) == (cfg.kmeans.k or 10)


def test_defaults_are_the_jobs_old_settings():
  """The prune job's (and the curve's) k-means before the nested config: k 100, cosine, one
  init, 100 iterations, tol 1e-4, chunks of 512, algorithm auto."""
  for cfg in (prune_config.PruneConfig().kmeans, curve_config.CurveConfig().kmeans):
    assert cfg.k == 100
    assert cfg.kwargs() == dict(
      distance="cosine", n_init=1, max_iter=100, tol=1e-4, algorithm="auto", chunk_size=512
    )
  b = benchmark_config.BenchKMeansConfig().kmeans  # the bench: k 1000, euclidean, tol 0
  assert (b.k, b.distance, b.tol, b.max_iter, b.chunk_size) == (1000, "euclidean", 0.0, 100, 512)


def test_choices_are_the_kernels():
  """The config's distances and algorithms are the ones the kernels accept (no drift)."""
  from jaxprune.pruning import kmeans, kmeans_bounds, kmeans_config

  assert set(kmeans_config.DISTANCES) == set(kmeans.DISTANCES)
  assert set(kmeans_config.ALGORITHMS) == set(kmeans_bounds.ALGORITHMS)


def test_flags_parse_into_the_nested_config():
  argv = ["--kmeans.k", "7", "--kmeans.max_iter", "5", "--kmeans.n_init", "2"]
  argv += ["--kmeans.distance", "euclidean", "--kmeans.algorithm", "lloyd", "--kmeans.tol", "0"]
  want = KMeansConfig(k=7, max_iter=5, n_init=2, distance="euclidean", algorithm="lloyd", tol=0.0)
  assert parse(prune_config.PruneConfig, argv).kmeans == want
  assert parse(curve_config.CurveConfig, argv).kmeans == want
  assert parse(prune_config.PruneConfig, ["--kmeans.k", "None"]).kmeans.k is None
  b = parse(benchmark_config.BenchKMeansConfig, ["--kmeans.k", "50", "--n", "500"])
  assert b.kmeans == KMeansConfig(k=50, distance="euclidean", tol=0.0)
  # the bench's children get the same config back from its flags
  again = parse(
    benchmark_config.BenchKMeansConfig, benchmark.kmeans_flags(b.kmeans) + ["--n", "500"]
  )
  assert again.kmeans == b.kmeans


@pytest.mark.parametrize(
  "bad, msg",
  [
    (dict(k=0), "k must be >= 1"),
    (dict(n_init=0), "n_init must be >= 1"),
    (dict(max_iter=0), "max_iter must be >= 1"),
    (dict(chunk_size=0), "chunk_size must be >= 1"),
    (dict(tol=-1.0), "tol must be >= 0"),
    (dict(tol=float("inf")), "finite"),
    (dict(distance="manhattan"), "distance must be one of"),
    (dict(algorithm="elkan"), "algorithm must be one of"),
  ],
)
def test_bad_values(bad, msg):
  with pytest.raises(ValueError, match=msg):
    KMeansConfig(**bad)


def _spy(monkeypatch, module):
  """Record the keyword arguments of ``module.self_supervised_prototypes`` (then run it)."""
  calls, real = [], scores_lib.self_supervised_prototypes

  def spy(x, **kw):
    calls.append(kw)
    return real(x, **kw)

  monkeypatch.setattr(module, "self_supervised_prototypes", spy)
  return calls


def test_prune_job_passes_every_option(tmp_path, monkeypatch):
  rng = np.random.default_rng(0)
  np.save(tmp_path / "e.npy", rng.standard_normal((90, 5)).astype(np.float32))
  calls = _spy(monkeypatch, scores_lib)
  wd = str(tmp_path / "w")
  argv = ["--data", str(tmp_path / "e.npy"), "--workdir", wd, "--progress", "false"]
  argv += ["--kmeans.k", "7", "--kmeans.max_iter", "1", "--kmeans.n_init", "2"]
  argv += ["--kmeans.tol", "0", "--kmeans.chunk_size", "32", "--kmeans.algorithm", "lloyd"]
  s = prune.run(parse(prune_config.PruneConfig, argv))
  (kw,) = calls
  want = dict(k=7, distance="cosine", n_init=2, max_iter=1, tol=0.0, chunk_size=32)
  assert {name: kw[name] for name in want} == want and kw["algorithm"] == "lloyd"
  assert s["k"] == 7 and s["kmeans_iterations"] == 1  # max_iter reached the kernel
  assert s["kmeans_algorithm"] == "lloyd"
  clusters = np.load(os.path.join(wd, "scores.npz"))["cluster"]
  assert clusters.min() >= 0 and clusters.max() <= 6
  with open(os.path.join(wd, "config.json")) as f:
    stored = json.load(f)["kmeans"]
  assert stored["k"] == 7 and stored["max_iter"] == 1 and stored["n_init"] == 2


def test_prune_job_default_k_is_the_rule(tmp_path, monkeypatch):
  """k None on labelled data: the number of classes (3), as resolve_k says."""
  rng = np.random.default_rng(1)
  np.savez(
    tmp_path / "e.npz",
    embeddings=rng.standard_normal((60, 4)).astype(np.float32),
    labels=np.arange(60) % 3,
  )
  calls = _spy(monkeypatch, scores_lib)
  cfg = prune_config.PruneConfig(
    data=str(tmp_path / "e.npz"),
    kmeans=KMeansConfig(k=None),
    workdir=str(tmp_path / "w"),
    progress=False,
  )
  assert prune.run(cfg)["k"] == 3 and calls[0]["k"] == 3


def test_curve_passes_every_option(tmp_path, monkeypatch):
  """The curve's prototype scores get k and every other option of ``--kmeans`` (they used to
  get k and the distance only), and k None is the same rule as the prune job's."""
  train, _ = data_lib.load_train_test(data_lib.DEFAULT)
  pool = np.arange(0, train.size, 4)  # 337 examples
  calls = _spy(monkeypatch, curve)
  argv = ["--scores", "ssl_prototypes", "--embedding", "pixels", "--scorer_seeds", "1"]
  argv += ["--kmeans.k", "7", "--kmeans.max_iter", "3", "--kmeans.n_init", "2"]
  argv += ["--kmeans.tol", "0", "--kmeans.chunk_size", "64", "--kmeans.algorithm", "lloyd"]
  argv += ["--workdir", str(tmp_path / "a"), "--progress", "false"]
  cfg = parse(curve_config.CurveConfig, argv)
  out = curve.compute_all_scores(cfg, train, pool, len(pool))
  (kw,) = calls
  want = dict(k=7, distance="cosine", n_init=2, max_iter=3, tol=0.0, chunk_size=64)
  assert {name: kw[name] for name in want} == want and kw["algorithm"] == "lloyd"
  assert out["ssl_prototypes", 0].shape == (len(pool),)
  # the same scores as the prototype score called directly with these options
  emb = data_lib.pixel_embeddings(train.images)[pool]
  direct, _, res = scores_lib.self_supervised_prototypes(emb, **kw)
  np.testing.assert_allclose(out["ssl_prototypes", 0], np.asarray(direct), rtol=1e-6)
  assert int(res.n_iter) <= 3
  calls.clear()
  cfg = curve_config.CurveConfig(
    scores=("ssl_prototypes",),
    embedding="pixels",
    scorer_seeds=1,
    kmeans=KMeansConfig(k=None),
    workdir=str(tmp_path / "b"),
    progress=False,
  )
  curve.compute_all_scores(cfg, train, pool[:8], 8)
  assert calls[0]["k"] == resolve_k(None, n=8, num_classes=10) == 8  # capped at the pool
