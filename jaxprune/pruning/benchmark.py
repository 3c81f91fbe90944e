"""Benchmarks that print ratios against a peer measured in the same run (``scripts/bench_*.py``).

* :func:`bench_kmeans`: k-means, each peer in its own process (``python -m
  jaxprune.pruning.benchmark --only NAME ...``) so that its peak memory is its own, same data and
  initial centroids for every peer:

  - ``mode="converge"`` (:mod:`converge_benchmark`): time to the Lloyd fixed point (tol = 0, at
    most ``max_iter`` iterations) and to a target inertia of jaxprune (``algorithm="auto"``,
    bound-based, ``"yinyang"``, ``"hamerly"`` and ``"lloyd"``) against scikit-learn KMeans
    (lloyd, elkan) and faiss-cpu Kmeans, each with its fastest BLAS kernel and the final inertia
    checked by one evaluator, on weakly clustered, well clustered and real (SimCLR digits) data;
  - ``mode="iteration"`` (:func:`compare_kmeans`): one Lloyd iteration, jaxprune vs scikit-learn
    (lloyd) vs faiss-cpu, against a float32 matmul roofline;
  - ``imagenet=True``: ImageNet-sized scoring end to end.
* :func:`bench_train`: examples/s of the scanned loop (K steps per dispatch, ``lax.scan``)
  against a per-step jitted Python loop, same model, data and steps.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from jaxprune.core import io
from jaxprune.core.config import parse, to_dict
from jaxprune.core.machine import peak_rss_gib
from jaxprune.pruning import converge_benchmark, keys
from jaxprune.pruning.benchmark_config import PEERS, BenchKMeansConfig, BenchTrainConfig
from jaxprune.pruning.converge_benchmark import converge_paths, kmeans_flags, run_child
from jaxprune.pruning.kmeans_config import KMeansConfig

WARM = 2  # Lloyd iterations of the baseline run, subtracted from the timed one
IMAGENET = (1_281_167, 2048, 1000)  # N, D, K of the ImageNet-sized scoring run

BLOB_NOISE = 0.1  # std of the isotropic noise around each blob's centre (centres ~ N(0, 1))
JITTER = 0.05  # digits-ssl: jitter std, relative to each feature's std


# ---------------------------------------------------------------------------------------------
# data


def make_data(n: int, d: int, k: int, seed: int = 0):
  """Weakly clustered Gaussian data ``x_NxD`` and initial centroids ``c0_KxD`` (rows of x): no
  peer converges within the timed iterations. K centres ~ N(0, 0.3^2) per dimension, each point
  a random centre plus N(0, 1) noise: the clusters overlap."""
  rng = np.random.default_rng(seed)
  centres = rng.standard_normal((k, d), dtype=np.float32) * 0.3
  x = centres[rng.integers(0, k, n)] + rng.standard_normal((n, d), dtype=np.float32)
  c0 = x[rng.choice(n, k, replace=False)].copy()
  return x, c0


def make_blobs(n: int, d: int, k: int, seed: int = 0):
  """Well clustered data ``x_NxD`` and initial centroids ``c0_KxD`` (rows of x): K centres ~
  N(0, 1) per dimension, each point a uniformly drawn centre plus isotropic N(0, BLOB_NOISE^2)
  noise, so that the blobs (radius about 0.1 sqrt(D)) lie far apart (about sqrt(2 D))."""
  rng = np.random.default_rng(seed)
  centres = rng.standard_normal((k, d), dtype=np.float32)
  x = centres[rng.integers(0, k, n)] + BLOB_NOISE * rng.standard_normal((n, d), dtype=np.float32)
  c0 = x[rng.choice(n, k, replace=False)].copy()
  return x, c0


def tile_embeddings(emb_MxE, n: int, d: int, k: int, seed: int = 0):
  """``(x_NxD, c0_KxD)`` from M real embeddings: projected to D by a fixed Gaussian matrix
  (E x D, entries N(0, 1) / sqrt(E)) when E != D, row i a copy of embedding i mod M, plus
  Gaussian jitter of JITTER times each feature's std (so that the copies are distinct points);
  c0 is K rows of x."""
  rng = np.random.default_rng(seed)
  emb = np.asarray(emb_MxE, np.float32)
  m, e = emb.shape
  if e != d:
    emb = emb @ (rng.standard_normal((e, d), dtype=np.float32) / np.float32(np.sqrt(e)))
  std_D = emb.std(axis=0)
  x = emb[np.arange(n) % m] + JITTER * std_D * rng.standard_normal((n, d), dtype=np.float32)
  c0 = x[rng.choice(n, k, replace=False)].copy()
  return x, c0


def digits_ssl_embeddings(data_dir: str) -> np.ndarray:
  """The 1,797 x 128 SimCLR embeddings of all the digits, computed as ``scripts/prune.py
  --embedding ssl`` computes them (:func:`jaxprune.pruning.embeddings.ssl_embeddings` with the
  job's defaults: ``SSLConfig()``, seed 0) but on the ``all`` split, and cached in ``data_dir``
  under a name that holds a hash of the SSL config (the encoder's run, resumable, next to it)."""
  from jaxprune.pruning import data as data_lib
  from jaxprune.pruning.embeddings import SSLConfig, ssl_embeddings

  ssl, seed = SSLConfig(), 0
  stored = json.dumps({"ssl": to_dict(ssl), "seed": seed}, sort_keys=True)
  name = f"digits-ssl-{hashlib.sha256(stored.encode()).hexdigest()[:8]}"
  path = os.path.join(data_dir, name + ".npy")
  if os.path.exists(path):
    return np.load(path)
  images = data_lib.load(data_lib.DEFAULT, split="all").images
  emb = np.asarray(ssl_embeddings(images, cfg=ssl, seed=seed, workdir=os.path.join(data_dir, name)))
  io.save_npy(path, emb)
  return emb


def prepare_data(cfg: BenchKMeansConfig) -> None:
  """Write ``x`` and ``c0`` of every dataset in ``cfg.data`` (atomically)."""
  for dataset in cfg.data:
    k = cfg.kmeans.k
    if dataset == "weak":
      x, c0 = make_data(cfg.n, cfg.d, k, cfg.seed)
    elif dataset == "blobs":
      x, c0 = make_blobs(cfg.n, cfg.d, k, cfg.seed)
    else:
      x, c0 = tile_embeddings(digits_ssl_embeddings(cfg.data_dir), cfg.n, cfg.d, k, cfg.seed)
    x_path, c0_path = converge_paths(cfg, dataset)
    io.save_npy(x_path, x)
    io.save_npy(c0_path, c0)


# ---------------------------------------------------------------------------------------------
# one Lloyd iteration


def _time_runs(run, iters: int) -> dict:
  """``run(max_iter) -> (seconds, n_iter, inertia)`` at WARM and WARM + iters iterations: the
  difference is the cost per iteration, free of set-up and the initial / final passes."""
  (t1, n1, _), (t2, n2, inertia) = run(WARM), run(WARM + iters)
  return dict(per_iter=(t2 - t1) / max(1, n2 - n1), n_iter=n2 - n1, inertia=inertia)


def kmeans_child(cfg: BenchKMeansConfig) -> dict:
  """One peer, timed in this process (see :func:`_time_runs`, or :func:`converge_child` for the
  converge peers); with its peak memory."""
  if cfg.only in PEERS and cfg.mode == "converge":  # "faiss" names a peer of both modes
    return converge_benchmark.converge_child(cfg)
  if cfg.only in ("kernel-sklearn", "kernel-faiss"):
    return converge_benchmark.kernel_child(cfg)
  if cfg.only == "evaluate":
    return converge_benchmark.evaluate_child(cfg)
  if cfg.only == "matmul":
    return {"gflops": _matmul_gflops(), "peak_rss_gib": peak_rss_gib()}
  k = cfg.kmeans.k
  x, c0 = make_data(cfg.n, cfg.d, k, cfg.seed)
  if cfg.only == "jaxprune":
    import jax
    import jax.numpy as jnp

    from jaxprune.pruning.kmeans import kmeans

    xj, cj = jnp.asarray(x), jnp.asarray(c0)
    del x
    key = keys.job_key(cfg.seed, keys.KMEANS)  # unused: the initial centroids are given

    # plain Lloyd at tol 0: the cost of an iteration that computes every distance
    kw = {**cfg.kmeans.kwargs(), "tol": 0.0, "algorithm": "lloyd"}

    def run(iters):
      fn = lambda: kmeans(xj, k=k, key=key, init=cj, **{**kw, "max_iter": iters})
      jax.block_until_ready(fn())  # compile
      t = time.perf_counter()
      res = jax.block_until_ready(fn())
      return time.perf_counter() - t, int(res.n_iter), float(res.inertia)
  elif cfg.only == "sklearn":
    from sklearn.cluster import KMeans

    def run(iters):
      t = time.perf_counter()
      m = KMeans(k, init=c0, n_init=1, algorithm="lloyd", max_iter=iters, tol=0.0).fit(x)
      return time.perf_counter() - t, int(m.n_iter_), float(m.inertia_)
  elif cfg.only == "faiss":
    import faiss

    def run(iters):
      km = faiss.Kmeans(
        cfg.d, k, niter=iters, max_points_per_centroid=cfg.n, seed=cfg.seed, verbose=False
      )  # every point, no subsampling
      t = time.perf_counter()
      km.train(x, init_centroids=c0)
      return time.perf_counter() - t, iters, float(km.obj[-1])
  else:
    raise ValueError(f"no k-means peer {cfg.only!r}")
  return {**_time_runs(run, cfg.iters), "peak_rss_gib": peak_rss_gib()}


def _matmul_gflops() -> float:
  """float32 4096^3 matmul (jax.jit), best of 5: the practical roofline of this machine."""
  import jax
  import jax.numpy as jnp

  a = jnp.asarray(np.random.default_rng(0).standard_normal((4096, 4096), dtype=np.float32))
  f = jax.jit(lambda a: a @ a)
  jax.block_until_ready(f(a))
  ts = []
  for _ in range(5):
    t = time.perf_counter()
    jax.block_until_ready(f(a))
    ts.append(time.perf_counter() - t)
  return 2 * 4096**3 / min(ts) / 1e9


def compare_kmeans(cfg: BenchKMeansConfig) -> list[str]:
  """Time every peer in its own process; returns the printed report's lines (also printed as
  they come)."""
  lines = []
  say = lambda s: (print(s, flush=True), lines.append(s))
  flop = 2.0 * cfg.n * cfg.kmeans.k * cfg.d
  say(
    f"Lloyd iteration, N={cfg.n:,} D={cfg.d} K={cfg.kmeans.k:,}, marginal cost of {cfg.iters} "
    f"iterations, data {cfg.n * cfg.d * 4 / 2**20:.0f} MiB float32"
  )
  roof = run_child(cfg, "matmul")["gflops"]
  say(f"float32 matmul 4096^3 (jax.jit): {roof:.1f} GFLOP/s  (practical roofline)")
  rows = {}
  for who in ("jaxprune", "sklearn", "faiss"):
    r = run_child(cfg, who)
    r["gflops"] = flop / r["per_iter"] / 1e9
    rows[who] = r
    say(
      f"{who:>9}: {r['per_iter']:.3f} s/iter  {r['gflops']:6.1f} GFLOP/s  "
      f"{r['gflops'] / roof:5.1%} of matmul  peak RSS {r['peak_rss_gib']:.2f} GiB  "
      f"inertia {r['inertia']:.6g}"
    )
  j = rows["jaxprune"]["per_iter"]
  for who in ("sklearn", "faiss"):
    say(f"speed-up of jaxprune over {who}: {rows[who]['per_iter'] / j:.2f}x")
  say(f"jaxprune reaches {rows['jaxprune']['gflops'] / roof:.1%} of the matmul roofline")
  return lines


# ---------------------------------------------------------------------------------------------
# time to convergence


def _write_imagenet_embeddings(path: str, seed: int) -> None:
  n, d, k = IMAGENET
  print(f"writing {n:,} x {d} float32 clustered embeddings to {path} ({n * d * 4 / 2**30:.1f} GiB)")
  rng = np.random.default_rng(seed)
  centres = rng.standard_normal((k, d), dtype=np.float32)
  header = np.lib.format.header_data_from_array_1_0(np.empty((0, d), np.float32))
  header["shape"] = (n, d)
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:  # block by block: never the whole file in memory
    np.lib.format.write_array_header_1_0(f, header)
    for s in range(0, n, 65536):
      m = min(65536, n - s)
      f.write(
        (
          centres[rng.integers(0, k, m)] + 0.7 * rng.standard_normal((m, d), dtype=np.float32)
        ).tobytes()
      )
  os.replace(tmp, path)


def imagenet_scoring(cfg: BenchKMeansConfig) -> None:
  """Score ImageNet-sized embeddings end to end (the prune job, streamed, in a child process
  whose peak memory is reported against the file's size)."""
  n, d, _ = IMAGENET
  size = n * d * 4
  os.makedirs(os.path.dirname(os.path.abspath(cfg.path)), exist_ok=True)
  if not os.path.exists(cfg.path) or os.path.getsize(cfg.path) < size:
    _write_imagenet_embeddings(cfg.path, cfg.seed)
  cmd = [
    sys.executable,
    "-m",
    __name__,
    "--only",
    "prune",
    "--path",
    cfg.path,
    *kmeans_flags(cfg.kmeans),
    "--workdir",
    cfg.workdir,
    "--seed",
    str(cfg.seed),
  ]
  print(" ".join(cmd))
  t = time.perf_counter()
  subprocess.run(cmd, check=True)
  secs = time.perf_counter() - t
  peak = peak_rss_gib(resource.RUSAGE_CHILDREN)
  print(
    f"ImageNet-sized scoring end to end: {secs:.0f} s, peak RSS {peak:.2f} GiB = "
    f"{peak / (size / 2**30):.2f}x the embeddings ({size / 2**30:.2f} GiB)"
  )


def _prune_child(cfg: BenchKMeansConfig) -> None:
  from jaxprune.pruning.prune import PruneConfig, format_summary, run

  summary = run(
    PruneConfig(
      data=cfg.path,
      # the prune job's k-means (cosine, tol 1e-4) with the benchmark's max_iter and algorithm
      kmeans=KMeansConfig(
        k=IMAGENET[2], max_iter=cfg.kmeans.max_iter, algorithm=cfg.kmeans.algorithm
      ),
      fraction=0.5,
      stream=True,
      seed=cfg.seed,
      workdir=cfg.workdir,
    )
  )
  print(format_summary(summary))


def bench_kmeans(cfg: BenchKMeansConfig) -> None:
  """The benchmark ``cfg`` asks for (see the module docstring)."""
  if cfg.render is not None:
    print(converge_benchmark.render(cfg.render), end="")
  elif cfg.only == "prune":
    _prune_child(cfg)
  elif cfg.only == "prepare":
    prepare_data(cfg)
  elif cfg.only is not None:
    print(json.dumps(kmeans_child(cfg)))
  elif cfg.imagenet:
    imagenet_scoring(cfg)
  elif cfg.mode == "iteration":
    compare_kmeans(cfg)
  elif cfg.mode == "ab":
    converge_benchmark.ab(cfg)
  else:
    converge_benchmark.converge(cfg)


# ---------------------------------------------------------------------------------------------
# the training loop


def bench_train(cfg: BenchTrainConfig) -> dict:
  """Examples/s of both loops over the same steps; prints the report, returns the numbers."""
  import jax

  from jaxprune.core.loop import create_state, make_data_step, make_update, run_steps, to_device
  from jaxprune.models.classifier import build
  from jaxprune.pruning import data as data_lib

  c = cfg.classifier
  train = data_lib.load(cfg.data, data_dir=cfg.data_dir)
  clf = build(c, num_classes=int(train.labels.max()) + 1, image_shape=train.images.shape[1:])
  data = to_device(train.images, train.labels)
  step = make_data_step(
    make_update(clf.loss_fn, clf.optimizer), batch_size=c.batch_size, preprocess=clf.preprocess
  )

  def fresh():  # new buffers every time: the loops donate the state, its key included
    k_init, k_run = jax.random.split(keys.job_key(cfg.seed, keys.TRAIN_MODELS))
    return create_state(clf.init_fn(k_init), clf.optimizer, k_run)

  k = c.steps_per_dispatch
  n_disp = c.steps // k
  per_step = jax.jit(step, donate_argnums=0)
  scanned = jax.jit(
    lambda s, d: run_steps(lambda st, _: step(st, d), s, length=k), donate_argnums=0
  )

  def loop(fn, calls):
    s = fresh()
    for _ in range(calls):
      s, _ = fn(s, data)
    return jax.block_until_ready(s)

  out = {}
  for name, fn, calls in (("per-step jit", per_step, n_disp * k), ("scanned", scanned, n_disp)):
    loop(fn, calls)  # compile
    ts = []
    for _ in range(cfg.repeats):
      t = time.perf_counter()
      loop(fn, calls)
      ts.append(time.perf_counter() - t)
    out[name] = n_disp * k * c.batch_size / min(ts)
  a1, a2 = out["per-step jit"], out["scanned"]
  params = sum(x.size for x in jax.tree.leaves(fresh().params))
  print(
    f"{c.model} ({params:,} params) on {train.name}, batch {c.batch_size}, "
    f"{n_disp * k} steps, {jax.devices()[0].platform}"
  )
  print(f"per-step jitted Python loop: {a1:10.0f} examples/s")
  print(f"scanned loop (K={k}):       {a2:10.0f} examples/s")
  print(f"scanned / per-step: {a2 / a1:.2f}x")
  return out


if __name__ == "__main__":  # the k-means benchmark's child processes
  bench_kmeans(parse(BenchKMeansConfig))
