"""Benchmarks that print ratios against a peer measured in the same run (``scripts/bench_*.py``).

* :func:`bench_kmeans`: k-means, each peer in its own process (``python -m
  jaxprune.pruning.benchmark --only NAME ...``) so that its peak memory is its own, same data and
  initial centroids for every peer:

  - ``mode="converge"`` (:func:`converge_kmeans`): time to the Lloyd fixed point (tol = 0, at
    most ``max_iter`` iterations) of jaxprune (``algorithm="auto"``, bound-based, and
    ``"lloyd"``) against scikit-learn KMeans (lloyd, elkan) and faiss-cpu Kmeans, on weakly
    clustered, well clustered and real (SimCLR digits) data;
  - ``mode="iteration"`` (:func:`compare_kmeans`): one Lloyd iteration, jaxprune vs scikit-learn
    (lloyd) vs faiss-cpu, against a float32 matmul roofline;
  - ``imagenet=True``: ImageNet-sized scoring end to end.
* :func:`bench_train`: examples/s of the scanned loop (K steps per dispatch, ``lax.scan``)
  against a per-step jitted Python loop, same model, data and steps.
"""

from __future__ import annotations

import dataclasses
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
from jaxprune.core.machine import own_peak_rss_gib, peak_rss_gib
from jaxprune.pruning import keys
from jaxprune.pruning.benchmark_config import PEERS, BenchKMeansConfig, BenchTrainConfig
from jaxprune.pruning.kmeans_config import KMeansConfig

WARM = 2  # Lloyd iterations of the baseline run, subtracted from the timed one
IMAGENET = (1_281_167, 2048, 1000)  # N, D, K of the ImageNet-sized scoring run

OTHERS = ("sklearn-lloyd", "sklearn-elkan", "faiss")  # the peers jaxprune-auto is compared with
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


def converge_paths(cfg: BenchKMeansConfig, dataset: str) -> tuple[str, str]:
  """The files that hold ``dataset``'s ``x_NxD`` and ``c0_KxD`` for every converge child."""
  stem = os.path.join(cfg.data_dir, f"{dataset}-n{cfg.n}-d{cfg.d}-k{cfg.kmeans.k}-seed{cfg.seed}")
  return stem + ".x.npy", stem + ".c0.npy"


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
    return converge_child(cfg)
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


def _child(cfg: BenchKMeansConfig, who: str, *extra: str, capture: bool = True) -> dict | None:
  """Run ``who`` in a child process (``--only who``) with cfg's sizes; its JSON line (``None``
  when the output is not captured)."""
  cmd = [sys.executable, "-m", __name__, "--only", who, *extra]
  for name in ("mode", "n", "d", "iters", "seed", "data_dir"):
    cmd += [f"--{name}", str(getattr(cfg, name))]
  cmd += kmeans_flags(cfg.kmeans)
  r = subprocess.run(cmd, capture_output=capture, text=True)
  if r.returncode != 0:
    raise RuntimeError(f"benchmark child {who!r} failed:\n{(r.stderr or '')[-3000:]}")
  return json.loads(r.stdout.strip().splitlines()[-1]) if capture else None


def kmeans_flags(kmeans: KMeansConfig) -> list[str]:
  """``["--kmeans.k", "1000", ...]``: the command-line flags that give ``kmeans``."""
  return [
    a
    for f in dataclasses.fields(kmeans)
    for a in (f"--kmeans.{f.name}", str(getattr(kmeans, f.name)))
  ]


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


# ---------------------------------------------------------------------------------------------
# time to convergence


def converge_child(cfg: BenchKMeansConfig) -> dict:
  """Peer ``cfg.only`` run to the Lloyd fixed point (``cfg.kmeans.tol``, 0 by default, at most
  ``cfg.kmeans.max_iter`` iterations) on ``cfg.dataset``'s stored ``x`` and ``c0``, in this
  process: seconds, iterations, inertia, peak memory; jaxprune's compilation is excluded (a
  first identical call, timed apart) and ``algorithm="auto"`` reports the distances its bounds
  skipped."""
  x_path, c0_path = converge_paths(cfg, cfg.dataset)
  x, c0 = np.load(x_path), np.load(c0_path)
  out, km = {}, cfg.kmeans
  if cfg.only.startswith("jaxprune"):
    import jax
    import jax.numpy as jnp

    from jaxprune.pruning.kmeans import kmeans

    xj, cj = jnp.asarray(x), jnp.asarray(c0)
    del x
    key = keys.job_key(cfg.seed, keys.KMEANS)  # unused: the initial centroids are given
    kw = {**km.kwargs(), "algorithm": cfg.only.removeprefix("jaxprune-")}
    fn = lambda: kmeans(xj, k=km.k, key=key, init=cj, **kw)
    t = time.perf_counter()
    jax.block_until_ready(fn())
    out["first_seconds"] = time.perf_counter() - t  # compilation and a first run
    t = time.perf_counter()
    res = jax.block_until_ready(fn())
    secs, n_iter = time.perf_counter() - t, int(res.n_iter)
    computed = np.asarray(res.computed, np.float64)[:n_iter]
    out.update(converged=bool(res.converged), inertia=float(res.inertia))
    out.update(skipped=(1.0 - computed).tolist(), skipped_overall=1.0 - computed.sum() / n_iter)
  elif cfg.only.startswith("sklearn"):
    from sklearn.cluster import KMeans

    algorithm = cfg.only.removeprefix("sklearn-")
    t = time.perf_counter()
    # scikit-learn's tol means what jaxprune's means (relative to the mean feature variance)
    m = KMeans(km.k, init=c0, n_init=1, algorithm=algorithm, max_iter=km.max_iter, tol=km.tol)
    m.fit(x)
    secs, n_iter = time.perf_counter() - t, int(m.n_iter_)
    # at tol = 0 scikit-learn stops early only when the labels no longer change
    out.update(converged=n_iter < km.max_iter, inertia=float(m.inertia_))
  else:
    import faiss

    n_iter = cfg.faiss_iter or km.max_iter
    fk = faiss.Kmeans(
      cfg.d, km.k, niter=n_iter, max_points_per_centroid=cfg.n, seed=cfg.seed, verbose=False
    )  # every point, no subsampling; no convergence test: n_iter iterations
    t = time.perf_counter()
    fk.train(x, init_centroids=c0)
    secs = time.perf_counter() - t
    out.update(converged=None, inertia=float(fk.obj[-1]))  # the last iteration's assignment
  return {"seconds": secs, "n_iter": n_iter, **out, "peak_rss_gib": own_peak_rss_gib()}


def _skipped_brief(skipped: list[float], ends: int = 3) -> str:
  """``0% 12% 31% .. 97% 98% 98%``: the first and last ``ends`` iterations."""
  pct = [f"{s:.0%}" for s in skipped]
  return " ".join(pct if len(pct) <= 2 * ends + 1 else [*pct[:ends], "..", *pct[-ends:]])


def format_peer(r: dict) -> str:
  """One line of the report: a peer on a dataset."""
  first = f" (compile+first {r['first_seconds']:.2f} s)" if "first_seconds" in r else ""
  state = {True: "converged", False: "cap", None: "fixed"}[r["converged"]]
  line = (
    f"{r['dataset']:>10} {r['peer']:>14}: {r['seconds']:8.3f} s{first}  {r['n_iter']:>4} it "
    f"({state})  peak RSS {r['peak_rss_gib']:.2f} GiB  inertia {r['inertia']:.6g}"
  )
  if "skipped" in r and r["peer"] != "jaxprune-lloyd":
    line += (
      f"  skipped per iteration {_skipped_brief(r['skipped'])}, overall {r['skipped_overall']:.1%}"
    )
  return line


def converge_ratios(rows: list[dict]) -> dict:
  """Per dataset: the fastest of scikit-learn (lloyd, elkan) and faiss, its time over
  jaxprune-auto's, and jaxprune-lloyd's time over jaxprune-auto's (when measured)."""
  out = {}
  for dataset in dict.fromkeys(r["dataset"] for r in rows):
    secs = {r["peer"]: r["seconds"] for r in rows if r["dataset"] == dataset}
    if "jaxprune-auto" not in secs:
      continue
    auto, ratios = secs["jaxprune-auto"], {}
    others = [p for p in OTHERS if p in secs]
    if others:
      best = min(others, key=secs.get)
      ratios.update(best_peer=best, best_over_auto=secs[best] / auto)
    if "jaxprune-lloyd" in secs:
      ratios["lloyd_over_auto"] = secs["jaxprune-lloyd"] / auto
    out[dataset] = ratios
  return out


def format_table(cfg: BenchKMeansConfig, rows: list[dict], ratios: dict) -> str:
  """The results as markdown (for docs/benchmarks.md)."""
  faiss_runs = (
    "jaxprune-lloyd's iterations" if "jaxprune-lloyd" in cfg.peers else "max_iter iterations"
  )
  lines = [
    f"N={cfg.n:,} D={cfg.d} K={cfg.kmeans.k:,}, tol {cfg.kmeans.tol:g}, at most "
    f"{cfg.kmeans.max_iter} iterations, seed "
    f"{cfg.seed}; seconds exclude jaxprune's compilation; faiss runs "
    f"{faiss_runs}; skipped: the fraction of the N x K distances jaxprune did not compute",
    "",
    "| dataset | peer | seconds | iterations | skipped | peak RSS | inertia |",
    "| --- | --- | --- | --- | --- | --- | --- |",
  ]
  for r in rows:
    skipped = f"{r['skipped_overall']:.1%}" if "skipped_overall" in r else "-"
    it = f"{r['n_iter']}" + {True: "", False: " (cap)", None: " (fixed)"}[r["converged"]]
    lines.append(
      f"| {r['dataset']} | {r['peer']} | {r['seconds']:.3f} | {it} | {skipped} | "
      f"{r['peak_rss_gib']:.2f} GiB | {r['inertia']:.6g} |"
    )
  if ratios:
    lines += [
      "",
      "| dataset | best peer | best peer / jaxprune-auto | jaxprune-lloyd / jaxprune-auto |",
      "| --- | --- | --- | --- |",
    ]
    for dataset, q in ratios.items():
      best = f"{q['best_over_auto']:.2f}x" if "best_peer" in q else "-"
      lloyd = f"{q['lloyd_over_auto']:.2f}x" if "lloyd_over_auto" in q else "-"
      lines.append(f"| {dataset} | {q.get('best_peer', '-')} | {best} | {lloyd} |")
  return "\n".join(lines) + "\n"


def converge_kmeans(cfg: BenchKMeansConfig) -> dict:
  """Time every peer to convergence on every dataset, each in its own process; prints one line
  per peer and the summary table, writes ``cfg.out`` (JSON) and its ``.md``; returns what the
  JSON holds."""
  print(
    f"k-means to convergence: N={cfg.n:,} D={cfg.d} K={cfg.kmeans.k:,}, "
    f"tol {cfg.kmeans.tol:g}, at most {cfg.kmeans.max_iter} iterations, "
    f"data {cfg.n * cfg.d * 4 / 2**20:.0f} MiB float32, {os.cpu_count()} CPUs",
    flush=True,
  )
  # the data (and the digits' SimCLR encoder) are made in a child too: this process stays small
  _child(cfg, "prepare", "--data", *cfg.data, capture=False)
  rows = []
  for dataset in cfg.data:
    lloyd_iter = None
    for peer in (p for p in PEERS if p in cfg.peers):
      extra = ["--dataset", dataset]
      if peer == "faiss" and lloyd_iter is not None:
        extra += ["--faiss_iter", str(lloyd_iter)]
      r = {"dataset": dataset, "peer": peer, **_child(cfg, peer, *extra)}
      if peer == "jaxprune-lloyd":
        lloyd_iter = r["n_iter"]
      rows.append(r)
      print(format_peer(r), flush=True)
    q = converge_ratios([r for r in rows if r["dataset"] == dataset]).get(dataset, {})
    if "best_peer" in q:
      print(
        f"{dataset:>10} speed-up of jaxprune-auto over the best peer ({q['best_peer']}): "
        f"{q['best_over_auto']:.2f}x",
        flush=True,
      )
    if "lloyd_over_auto" in q:
      print(
        f"{dataset:>10} jaxprune-lloyd / jaxprune-auto: {q['lloyd_over_auto']:.2f}x", flush=True
      )
  ratios = converge_ratios(rows)
  table = format_table(cfg, rows, ratios)
  print("\n" + table, end="")
  result = {"config": to_dict(cfg), "rows": rows, "ratios": ratios}
  io.save_json(cfg.out, result)
  io.save_text(os.path.splitext(cfg.out)[0] + ".md", table)
  print(f"written {cfg.out} and {os.path.splitext(cfg.out)[0]}.md")
  return result


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
  if cfg.only == "prune":
    _prune_child(cfg)
  elif cfg.only == "prepare":
    prepare_data(cfg)
  elif cfg.only is not None:
    print(json.dumps(kmeans_child(cfg)))
  elif cfg.imagenet:
    imagenet_scoring(cfg)
  elif cfg.mode == "iteration":
    compare_kmeans(cfg)
  else:
    converge_kmeans(cfg)


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
