"""Benchmarks that print ratios against a peer measured in the same run (``scripts/bench_*.py``).

* :func:`bench_kmeans`: one Lloyd iteration, jaxprune vs scikit-learn KMeans (lloyd) vs faiss-cpu
  Kmeans, same data and initial centroids, each peer in its own process (``python -m
  jaxprune.pruning.benchmark --only NAME ...``) so that its peak memory is its own; or
  ImageNet-sized scoring end to end (``imagenet=True``).
* :func:`bench_train`: examples/s of the scanned loop (K steps per dispatch, ``lax.scan``)
  against a per-step jitted Python loop, same model, data and steps.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from jaxprune.core.config import check_finite, parse, require
from jaxprune.models.classifier import ClassifierConfig
from jaxprune.pruning import keys

WARM = 2  # Lloyd iterations of the baseline run, subtracted from the timed one
IMAGENET = (1_281_167, 2048, 1000)  # N, D, K of the ImageNet-sized scoring run


@dataclass(frozen=True)
class BenchKMeansConfig:
  """Benchmark one Lloyd iteration: jaxprune vs scikit-learn vs faiss, or ImageNet-sized
  scoring end to end."""

  n: int = 100_000
  """points"""
  d: int = 256
  """dimensions"""
  k: int = 1000
  """clusters"""
  iters: int = 10
  """timed Lloyd iterations (the marginal cost over a 2-iteration run)"""
  chunk: int = 512
  """jaxprune's points per chunk"""
  seed: int = 0
  """seed of the generated data and initial centroids"""
  only: Literal["jaxprune", "sklearn", "faiss", "matmul", "prune"] | None = None
  """(internal) run one peer in this process and print its JSON line"""
  imagenet: bool = False
  """score 1,281,167 x 2048 embeddings (K = 1000) end to end through the prune job, streamed"""
  path: str = "bench_data/in1k_embeddings.npy"
  """the ImageNet-sized embeddings file (written when missing)"""
  workdir: str = "runs/bench_in1k"
  """the ImageNet-sized prune job's output directory"""

  def __post_init__(self):
    for name in ("n", "d", "k", "iters", "chunk"):
      require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
    require(self.k <= self.n, f"k must be <= n, got k={self.k} n={self.n}")


def peak_rss_gib(who=resource.RUSAGE_SELF) -> float:
  return resource.getrusage(who).ru_maxrss / 2**20  # Linux: KiB


def make_data(n: int, d: int, k: int, seed: int = 0):
  """Weakly clustered Gaussian data ``x_NxD`` and initial centroids ``c0_KxD`` (rows of x): no
  peer converges within the timed iterations."""
  rng = np.random.default_rng(seed)
  centres = rng.standard_normal((k, d), dtype=np.float32) * 0.3
  x = centres[rng.integers(0, k, n)] + rng.standard_normal((n, d), dtype=np.float32)
  c0 = x[rng.choice(n, k, replace=False)].copy()
  return x, c0


def _time_runs(run, iters: int) -> dict:
  """``run(max_iter) -> (seconds, n_iter, inertia)`` at WARM and WARM + iters iterations: the
  difference is the cost per iteration, free of set-up and the initial / final passes."""
  (t1, n1, _), (t2, n2, inertia) = run(WARM), run(WARM + iters)
  return dict(per_iter=(t2 - t1) / max(1, n2 - n1), n_iter=n2 - n1, inertia=inertia)


def kmeans_child(cfg: BenchKMeansConfig) -> dict:
  """One peer, timed in this process (see :func:`_time_runs`); with its peak memory."""
  if cfg.only == "matmul":
    return {"gflops": _matmul_gflops(), "peak_rss_gib": peak_rss_gib()}
  x, c0 = make_data(cfg.n, cfg.d, cfg.k, cfg.seed)
  if cfg.only == "jaxprune":
    import jax
    import jax.numpy as jnp

    from jaxprune.pruning.kmeans import kmeans

    xj, cj = jnp.asarray(x), jnp.asarray(c0)
    del x
    key = keys.job_key(cfg.seed, keys.KMEANS)  # unused: the initial centroids are given

    def run(iters):
      fn = lambda: kmeans(
        xj, k=cfg.k, key=key, init=cj, max_iter=iters, tol=0.0, chunk_size=cfg.chunk
      )
      jax.block_until_ready(fn())  # compile
      t = time.perf_counter()
      res = jax.block_until_ready(fn())
      return time.perf_counter() - t, int(res.n_iter), float(res.inertia)
  elif cfg.only == "sklearn":
    from sklearn.cluster import KMeans

    def run(iters):
      t = time.perf_counter()
      m = KMeans(cfg.k, init=c0, n_init=1, algorithm="lloyd", max_iter=iters, tol=0.0).fit(x)
      return time.perf_counter() - t, int(m.n_iter_), float(m.inertia_)
  elif cfg.only == "faiss":
    import faiss

    def run(iters):
      km = faiss.Kmeans(
        cfg.d, cfg.k, niter=iters, max_points_per_centroid=cfg.n, seed=cfg.seed, verbose=False
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


def _child(cfg: BenchKMeansConfig, who: str) -> dict:
  cmd = [
    sys.executable,
    "-m",
    __name__,
    "--only",
    who,
    "--n",
    str(cfg.n),
    "--d",
    str(cfg.d),
    "--k",
    str(cfg.k),
    "--iters",
    str(cfg.iters),
    "--chunk",
    str(cfg.chunk),
    "--seed",
    str(cfg.seed),
  ]
  r = subprocess.run(cmd, capture_output=True, text=True)
  if r.returncode != 0:
    raise RuntimeError(f"benchmark child {who!r} failed:\n{r.stderr[-3000:]}")
  return json.loads(r.stdout.strip().splitlines()[-1])


def compare_kmeans(cfg: BenchKMeansConfig) -> list[str]:
  """Time every peer in its own process; returns the printed report's lines (also printed as
  they come)."""
  lines = []
  say = lambda s: (print(s, flush=True), lines.append(s))
  flop = 2.0 * cfg.n * cfg.k * cfg.d
  say(
    f"Lloyd iteration, N={cfg.n:,} D={cfg.d} K={cfg.k:,}, marginal cost of {cfg.iters} "
    f"iterations, data {cfg.n * cfg.d * 4 / 2**20:.0f} MiB float32"
  )
  roof = _child(cfg, "matmul")["gflops"]
  say(f"float32 matmul 4096^3 (jax.jit): {roof:.1f} GFLOP/s  (practical roofline)")
  rows = {}
  for who in ("jaxprune", "sklearn", "faiss"):
    r = _child(cfg, who)
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
    "--iters",
    str(cfg.iters),
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
      k=IMAGENET[2],
      fraction=0.5,
      stream=True,
      max_iter=cfg.iters,
      seed=cfg.seed,
      workdir=cfg.workdir,
    )
  )
  print(format_summary(summary))


def bench_kmeans(cfg: BenchKMeansConfig) -> None:
  """The benchmark ``cfg`` asks for (see the module docstring)."""
  if cfg.only == "prune":
    _prune_child(cfg)
  elif cfg.only is not None:
    print(json.dumps(kmeans_child(cfg)))
  elif cfg.imagenet:
    imagenet_scoring(cfg)
  else:
    compare_kmeans(cfg)


# ---------------------------------------------------------------------------------------------
# the training loop


@dataclass(frozen=True)
class BenchTrainConfig:
  """Training throughput: the scanned loop against a per-step jitted Python loop."""

  data: str = "digits"
  """digits | a TFDS name (its train split)"""
  data_dir: str | None = None
  """TFDS data_dir"""
  classifier: ClassifierConfig = field(
    default_factory=lambda: ClassifierConfig(steps=400, steps_per_dispatch=50)
  )
  """the model; steps are timed, steps_per_dispatch is K of the scanned loop"""
  repeats: int = 3
  """timed repeats of each loop (the fastest is reported)"""
  seed: int = 0
  """seed of the model's initial parameters and data order"""

  def __post_init__(self):
    check_finite(self)
    require(self.repeats >= 1, f"repeats must be >= 1, got {self.repeats}")
    require(
      self.classifier.steps >= self.classifier.steps_per_dispatch,
      "classifier.steps must be >= classifier.steps_per_dispatch, got "
      f"{self.classifier.steps} < {self.classifier.steps_per_dispatch}",
    )


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
