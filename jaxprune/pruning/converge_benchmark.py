"""k-means to the Lloyd fixed point, every peer on equal terms (``scripts/bench_kmeans.py``,
``--mode converge``).

* **Kernels.** The peers that call OpenBLAS (scikit-learn through SciPy's, faiss through its
  bundled 0.3.15) are timed with the BLAS kernel that is fastest for them on this machine:
  :func:`kernel_check` times a few Lloyd iterations of each library under the environment as set
  (these machines set ``OPENBLAS_CORETYPE=Haswell``), with the variables unset (OpenBLAS picks
  its own), and with the CPU's best kernel forced (``SkylakeX`` with AVX-512, else ``Haswell``);
  each child reports the kernel its libraries loaded (``threadpoolctl``). jaxprune uses XLA's own
  kernels, no OpenBLAS.
* **The same fixed point.** Every peer starts from the same centroids; each child saves its final
  centroids and one evaluator (:func:`evaluate`, labels from a float32 pass, distances in float64)
  gives every peer's final inertia, compared with jaxprune-lloyd's to 1e-6 relative. A peer that
  stops elsewhere is marked so (scikit-learn relocates empty clusters its own way and stops when
  the labels no longer change; faiss splits big clusters into empty ones and has no convergence
  test at tol 0, so it is given as many iterations as jaxprune-lloyd needed; faiss 1.15 still
  ends early once its objective stops falling, ``early_stop_threshold`` 0).
* **Time to a target inertia** (``target_rel`` above jaxprune-lloyd's fixed point): from
  scikit-learn's and faiss's per-iteration records (the inertia of each iteration's
  assignment, stamped), and for jaxprune a second timed run of as many iterations as Lloyd's
  trajectory needs to get there (found by jaxprune-lloyd, untimed, one iteration at a time).

The raw rows (JSON) and the markdown table are written; per peer: seconds, iterations, the
fraction of distances the bounds skipped (per iteration), the kernel, peak memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io as _io
import json
import os
import subprocess
import sys
import time

import numpy as np

from jaxprune.core import io
from jaxprune.core.config import to_dict
from jaxprune.core.machine import cpu_model, own_peak_rss_gib
from jaxprune.pruning import keys
from jaxprune.pruning.benchmark_config import PEERS, BenchKMeansConfig
from jaxprune.pruning.kmeans_config import KMeansConfig

# jaxprune-lloyd first: its fixed point sets the target inertia and the iterations to reach it
RUN_ORDER = (
  "jaxprune-lloyd",
  "sklearn-lloyd",
  "jaxprune-auto",
  "jaxprune-yinyang",
  "jaxprune-hamerly",
  "sklearn-elkan",
  "faiss",
)
SAME_REL = 1e-6  # final inertia this close to jaxprune-lloyd's: the same fixed point
KERNEL_ITERS = 3  # Lloyd iterations timed per kernel in the kernel check
LIBRARY = {"sklearn-lloyd": "sklearn", "sklearn-elkan": "sklearn", "faiss": "faiss"}
BLAS_PEERS = tuple(LIBRARY)  # the peers jaxprune-auto is set against


# ---------------------------------------------------------------------------------------------
# shared with benchmark.py: data files, flags, the report's lines


def converge_paths(cfg: BenchKMeansConfig, dataset: str) -> tuple[str, str]:
  """The files that hold ``dataset``'s ``x_NxD`` and ``c0_KxD`` for every converge child."""
  stem = os.path.join(cfg.data_dir, f"{dataset}-n{cfg.n}-d{cfg.d}-k{cfg.kmeans.k}-seed{cfg.seed}")
  return stem + ".x.npy", stem + ".c0.npy"


def kmeans_flags(kmeans: KMeansConfig) -> list[str]:
  """``["--kmeans.k", "1000", ...]``: the command-line flags that give ``kmeans``."""
  return [
    a
    for f in dataclasses.fields(kmeans)
    for a in (f"--kmeans.{f.name}", str(getattr(kmeans, f.name)))
  ]


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


# ---------------------------------------------------------------------------------------------
# BLAS kernels


def machine() -> str:
  return f"{cpu_model()} ({os.cpu_count()} cores)"


def best_kernel() -> str | None:
  """The OpenBLAS core type for this CPU's widest vector unit: ``SkylakeX`` (AVX-512),
  ``Haswell`` (AVX2), or None (leave OpenBLAS to choose)."""
  try:
    with open("/proc/cpuinfo") as f:
      flags = next((ln for ln in f if ln.startswith("flags")), "").split()
  except OSError:
    return None
  if "avx512f" in flags:
    return "SkylakeX"
  return "Haswell" if "avx2" in flags else None


def kernel_env(kernel: str) -> dict:
  """The environment of a child run with ``kernel``: ``"env"`` as set here, ``"unset"`` without
  ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` (OpenBLAS detects the CPU), else that core type
  forced."""
  env = dict(os.environ)
  if kernel != "env":
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    if kernel != "unset":
      env["OPENBLAS_CORETYPE"] = kernel
  return env


def kernel_candidates() -> list[str]:
  best = best_kernel()
  return ["env", "unset"] + ([best] if best else [])


def blas_libs() -> list[dict]:
  """The BLAS libraries loaded in this process, as ``threadpoolctl`` sees them."""
  from threadpoolctl import threadpool_info

  return [
    {
      "lib": os.path.join(*i.get("filepath", "?").split(os.sep)[-2:]),
      "api": i.get("internal_api"),
      "arch": i.get("architecture"),
      "version": i.get("version"),
      "threads": i.get("num_threads"),
    }
    for i in threadpool_info()
    if i.get("user_api") == "blas"
  ]


def kernel_of(peer: str, libs: list[dict]) -> str:
  """What computes ``peer``'s distances: the OpenBLAS it calls (library, version, core type)."""
  if peer.startswith("jaxprune"):
    return "XLA (no OpenBLAS)"
  want = "faiss_cpu.libs" if peer == "faiss" else "scipy_openblas-"
  for lib in libs:
    if want in lib["lib"]:
      return f"OpenBLAS {lib['version']} {lib['arch']}"
  return "unknown"


def kernel_child(cfg: BenchKMeansConfig) -> dict:
  """Seconds per Lloyd iteration of one library (``cfg.only`` = ``kernel-sklearn`` or
  ``kernel-faiss``) on the first dataset, under this process's environment."""
  x, c0 = _load(cfg, cfg.data[0])
  k, iters = cfg.kmeans.k, KERNEL_ITERS
  if cfg.only == "kernel-sklearn":
    from sklearn.cluster import KMeans

    def run(m):
      t = time.perf_counter()
      KMeans(k, init=c0, n_init=1, algorithm="lloyd", max_iter=m, tol=0.0).fit(x)
      return time.perf_counter() - t
  else:
    import faiss

    def run(m):
      fk = faiss.Kmeans(cfg.d, k, niter=m, max_points_per_centroid=cfg.n, seed=cfg.seed)
      t = time.perf_counter()
      fk.train(x, init_centroids=c0)
      return time.perf_counter() - t

  run(1)  # warm-up: threads, pages
  per_iter = (run(1 + iters) - run(1)) / iters
  peer = "faiss" if cfg.only == "kernel-faiss" else "sklearn-lloyd"
  libs = blas_libs()
  return {"per_iter": per_iter, "kernel": kernel_of(peer, libs), "libs": libs}


def kernel_check(cfg: BenchKMeansConfig, child) -> dict:
  """Per library (sklearn, faiss): each candidate kernel's seconds per iteration, and the
  fastest (its environment is then used for that library's peers). ``child(who, env)`` runs a
  child process."""
  out = {}
  for lib in ("sklearn", "faiss"):
    if not any(LIBRARY.get(p) == lib for p in cfg.peers):
      continue
    rows = {}
    for kernel in kernel_candidates():
      r = child(f"kernel-{lib}", kernel_env(kernel))
      rows[kernel] = r
      print(
        f"kernel check {lib:>7} with OPENBLAS_CORETYPE {kernel:>8}: "
        f"{r['per_iter']:.3f} s/iteration  ({r['kernel']})",
        flush=True,
      )
    fastest = min(rows, key=lambda kn: rows[kn]["per_iter"])
    out[lib] = {"fastest": fastest, "rows": rows}
  return out


# ---------------------------------------------------------------------------------------------
# one peer (a child process)


def _load(cfg: BenchKMeansConfig, dataset: str):
  x_path, c0_path = converge_paths(cfg, dataset)
  return np.load(x_path), np.load(c0_path)


class _Stamped(_io.TextIOBase):
  """A stdout that keeps scikit-learn's verbose lines with the time each was printed."""

  def __init__(self, t0: float):
    self.t0, self.rows, self._buf = t0, [], ""

  def write(self, s):
    now = time.perf_counter() - self.t0
    self._buf += s
    while "\n" in self._buf:
      line, self._buf = self._buf.split("\n", 1)
      if line.startswith("Iteration ") and ", inertia " in line:
        self.rows.append((now, float(line.split(", inertia ")[1].rstrip("."))))
    return len(s)


def converge_child(cfg: BenchKMeansConfig) -> dict:
  """Peer ``cfg.only`` to the Lloyd fixed point (tol 0 by default, at most ``max_iter``) on
  ``cfg.dataset``'s stored ``x`` and ``c0``: seconds, iterations, its own inertia, trajectory
  (scikit-learn, faiss) or time to ``cfg.target_iter`` iterations (jaxprune), peak memory, the
  BLAS kernel; the final centroids go to ``cfg.centroids_out``."""
  x, c0 = _load(cfg, cfg.dataset)
  out, km = {}, cfg.kmeans
  if cfg.only.startswith("jaxprune"):
    import jax
    import jax.numpy as jnp

    from jaxprune.pruning.kmeans import kmeans

    xj, cj = jnp.asarray(x), jnp.asarray(c0)
    del x
    key = keys.job_key(cfg.seed, keys.KMEANS)  # unused: the initial centroids are given
    kw = {**km.kwargs(), "algorithm": cfg.only.removeprefix("jaxprune-")}
    fn = lambda m: kmeans(xj, k=km.k, key=key, init=cj, **{**kw, "max_iter": m})
    t = time.perf_counter()
    jax.block_until_ready(fn(km.max_iter))
    out["first_seconds"] = time.perf_counter() - t  # compilation and a first run
    t = time.perf_counter()
    res = jax.block_until_ready(fn(km.max_iter))
    secs, n_iter = time.perf_counter() - t, int(res.n_iter)
    computed = np.asarray(res.computed, np.float64)[:n_iter]
    centroids = np.asarray(res.centroids)
    out.update(converged=bool(res.converged), inertia=float(res.inertia))
    out.update(skipped=(1.0 - computed).tolist(), skipped_overall=1.0 - computed.sum() / n_iter)
    target_iter = cfg.target_iter
    if cfg.only == "jaxprune-lloyd":  # the target, and Lloyd's iterations to reach it (untimed)
      target = (1 + cfg.target_rel) * out["inertia"]
      c, target_iter = cj, 0
      while target_iter < n_iter:
        r = kmeans(xj, k=km.k, key=key, init=c, **{**kw, "max_iter": 1})
        c, target_iter = r.centroids, target_iter + 1
        if float(r.inertia) <= target:
          break
      out.update(target=target, target_iter=target_iter)
    if target_iter:  # the same program (max_iter is a static argument: compiled apart)
      jax.block_until_ready(fn(target_iter))
      t = time.perf_counter()
      r = jax.block_until_ready(fn(target_iter))
      out.update(target_seconds=time.perf_counter() - t, target_inertia=float(r.inertia))
  elif cfg.only.startswith("sklearn"):
    from sklearn.cluster import KMeans

    algorithm = cfg.only.removeprefix("sklearn-")
    # scikit-learn's tol means what jaxprune's means (relative to the mean feature variance);
    # verbose: each iteration's inertia, stamped (an extra O(N D) pass per iteration)
    m = KMeans(
      km.k, init=c0, n_init=1, algorithm=algorithm, max_iter=km.max_iter, tol=km.tol, verbose=1
    )
    t = time.perf_counter()
    stamped = _Stamped(t)
    with contextlib.redirect_stdout(stamped):
      m.fit(x)
    secs, n_iter = time.perf_counter() - t, int(m.n_iter_)
    centroids = np.asarray(m.cluster_centers_, np.float32)
    # at tol = 0 scikit-learn stops early only when the labels no longer change
    out.update(converged=n_iter < km.max_iter, inertia=float(m.inertia_))
    out["trajectory"] = stamped.rows
  else:
    import faiss

    n_iter = cfg.faiss_iter or km.max_iter
    fk = faiss.Kmeans(cfg.d, km.k, niter=n_iter, max_points_per_centroid=cfg.n, seed=cfg.seed)
    # every point (no subsampling); no convergence test: n_iter iterations
    t = time.perf_counter()
    fk.train(x, init_centroids=c0)
    secs = time.perf_counter() - t
    stats = list(fk.iteration_stats)
    n_iter = len(stats)  # what faiss actually ran
    centroids = np.asarray(fk.centroids, np.float32)
    out.update(converged=None, inertia=float(fk.obj[-1]))  # the last iteration's assignment
    out["trajectory"] = [(float(s["time"]), float(s["obj"])) for s in stats]  # time: cumulative
  if cfg.centroids_out:
    io.save_npy(cfg.centroids_out, centroids)
  libs = blas_libs()
  return {
    "seconds": secs,
    "n_iter": n_iter,
    **out,
    "peak_rss_gib": own_peak_rss_gib(),
    "kernel": kernel_of(cfg.only, libs),
    "blas_env": os.environ.get("OPENBLAS_CORETYPE", "unset"),
  }


def ab(cfg: BenchKMeansConfig) -> dict:
  """jaxprune ``algorithm="auto"`` against ``"lloyd"`` to the fixed point on each dataset,
  interleaved in this process (auto, lloyd, auto, lloyd, ...; ``cfg.iters`` rounds after one
  untimed round), so that the machine's drift falls on both alike. Prints each round and the
  medians, writes ``cfg.out`` (JSON)."""
  import jax
  import jax.numpy as jnp

  from jaxprune.pruning.kmeans import kmeans

  run_child(cfg, "prepare", capture=False)
  print(f"auto vs lloyd, interleaved, {cfg.iters} rounds; CPU {machine()}", flush=True)
  out = {"config": to_dict(cfg), "machine": machine(), "rows": []}
  for dataset in cfg.data:
    x, c0 = _load(cfg, dataset)
    xj, cj = jnp.asarray(x), jnp.asarray(c0)
    kw = {**cfg.kmeans.kwargs(), "max_iter": cfg.kmeans.max_iter}
    run = lambda a: kmeans(xj, k=cfg.kmeans.k, key=0, init=cj, **{**kw, "algorithm": a})
    secs = {"auto": [], "lloyd": []}
    for r in range(cfg.iters + 1):
      for a in secs:
        t = time.perf_counter()
        jax.block_until_ready(run(a))
        if r:
          secs[a].append(time.perf_counter() - t)
    med = {a: float(np.median(v)) for a, v in secs.items()}
    row = {"dataset": dataset, "seconds": secs, "median": med}
    row["auto_over_lloyd"] = med["auto"] / med["lloyd"]
    out["rows"].append(row)
    print(
      f"{dataset:>10}: auto {' '.join(f'{v:.2f}' for v in secs['auto'])} (median "
      f"{med['auto']:.2f} s), lloyd {' '.join(f'{v:.2f}' for v in secs['lloyd'])} (median "
      f"{med['lloyd']:.2f} s): auto / lloyd = {row['auto_over_lloyd']:.3f}",
      flush=True,
    )
  io.save_json(cfg.out, out)
  return out


def evaluate_child(cfg: BenchKMeansConfig) -> dict:
  """Every saved peer's final inertia on ``cfg.dataset`` by one evaluator: labels from a float32
  pass (jaxprune's :func:`assign`), the squared distances to those centroids in float64."""
  import jax.numpy as jnp

  from jaxprune.pruning.kmeans import assign

  x, _ = _load(cfg, cfg.dataset)
  xj = jnp.asarray(x)
  out = {}
  for path in cfg.evaluate:
    c = np.load(path)
    labels = np.asarray(assign(xj, jnp.asarray(c)).labels)
    total = 0.0
    for s in range(0, len(x), 65536):
      diff = x[s : s + 65536].astype(np.float64) - c[labels[s : s + 65536]].astype(np.float64)
      total += float(np.einsum("ij,ij->", diff, diff))
    out[path] = total
  return {"inertia64": out}


# ---------------------------------------------------------------------------------------------
# the run


def run_child(cfg: BenchKMeansConfig, who: str, *extra: str, env=None, capture=True) -> dict:
  """Run ``who`` in a child process (``python -m jaxprune.pruning.benchmark --only who``) with
  cfg's sizes, datasets and k-means flags, under ``env`` (None: this one); its JSON line ({}
  when the output is not captured)."""
  cmd = [sys.executable, "-m", "jaxprune.pruning.benchmark", "--only", who, *extra]
  for name in ("mode", "n", "d", "iters", "seed", "data_dir"):
    cmd += [f"--{name}", str(getattr(cfg, name))]
  cmd += ["--data", *cfg.data, *kmeans_flags(cfg.kmeans)]
  r = subprocess.run(cmd, capture_output=capture, text=True, env=env)
  if r.returncode != 0:
    raise RuntimeError(f"benchmark child {who!r} failed:\n{(r.stderr or '')[-3000:]}")
  return json.loads(r.stdout.strip().splitlines()[-1]) if capture else {}


def time_to_target(row: dict, target: float) -> float | None:
  """Seconds until ``row``'s peer first reached ``target`` (None: never, or not measured)."""
  if "trajectory" in row:
    return next((t for t, inertia in row["trajectory"] if inertia <= target), None)
  if "target_seconds" in row and row["target_inertia"] <= target * (1 + 1e-6):
    return row["target_seconds"]
  return None


def converge(cfg: BenchKMeansConfig) -> dict:
  """Every peer to the fixed point on every dataset (each in its own process, the BLAS peers
  with their fastest kernel); prints the lines and the table, writes ``cfg.out`` and its .md."""
  print(
    f"k-means to the fixed point: N={cfg.n:,} D={cfg.d} K={cfg.kmeans.k:,}, tol "
    f"{cfg.kmeans.tol:g}, at most {cfg.kmeans.max_iter} iterations, data "
    f"{cfg.n * cfg.d * 4 / 2**20:.0f} MiB float32; CPU: {cpu_model()} ({os.cpu_count()} cores)",
    flush=True,
  )
  run_child(cfg, "prepare", capture=False)  # the data (and the digits' encoder) in a child
  kernels = (
    kernel_check(cfg, lambda who, env: run_child(cfg, who, env=env))
    if cfg.blas == "fastest"
    else {}
  )
  env_of = {
    p: kernel_env(kernels[LIBRARY[p]]["fastest"]) if LIBRARY.get(p) in kernels else None
    for p in PEERS
  }
  work = os.path.join(os.path.dirname(os.path.abspath(cfg.out)), "centroids")
  rows = []
  for dataset in cfg.data:
    lloyd_iter, target_iter, target, ds_rows = None, None, None, []
    for peer in (p for p in RUN_ORDER if p in cfg.peers):
      path = os.path.join(work, f"{dataset}-{peer}.npy")
      extra = ["--dataset", dataset, "--centroids_out", path]
      if peer == "faiss" and lloyd_iter is not None:
        extra += ["--faiss_iter", str(lloyd_iter)]
      if peer.startswith("jaxprune") and target_iter:
        extra += ["--target_iter", str(target_iter)]
      r = {"dataset": dataset, "peer": peer, **run_child(cfg, peer, *extra, env=env_of[peer])}
      r["centroids"] = path
      if peer == "jaxprune-lloyd":
        lloyd_iter, target, target_iter = r["n_iter"], r["target"], r["target_iter"]
      ds_rows.append(r)
      print(format_peer(r) + f"  [{r['kernel']}]", flush=True)
    ev = run_child(
      cfg, "evaluate", "--dataset", dataset, "--evaluate", *(r["centroids"] for r in ds_rows)
    )
    ref = next((r for r in ds_rows if r["peer"] == "jaxprune-lloyd"), None)
    for r in ds_rows:
      r["inertia64"] = ev["inertia64"][r["centroids"]]
      if ref is not None:
        ref64 = ev["inertia64"][ref["centroids"]]
        r["rel_to_lloyd"] = (r["inertia64"] - ref64) / ref64
        r["same_fixed_point"] = abs(r["rel_to_lloyd"]) <= SAME_REL
      if target is not None:
        r["target_inertia_goal"] = target
        r["seconds_to_target"] = time_to_target(r, target)
    rows += ds_rows
    for line in ratio_lines(ds_rows):
      print(line, flush=True)
  table = format_table(cfg, rows, kernels)
  print("\n" + table, end="")
  result = {
    "config": to_dict(cfg), "cpu": cpu_model(), "machine": machine(), "kernels": kernels,
    "rows": rows,
  }  # fmt: skip
  io.save_json(cfg.out, result)
  io.save_text(os.path.splitext(cfg.out)[0] + ".md", table)
  print(f"written {cfg.out} and {os.path.splitext(cfg.out)[0]}.md")
  return result


def ratios(ds_rows: list[dict]) -> dict:
  """One dataset: the fastest BLAS peer to the same fixed point (peers that stop elsewhere are
  left out of it) and the fastest to the target inertia, each one's time over jaxprune-auto's;
  jaxprune-lloyd's over jaxprune-auto's."""
  by = {r["peer"]: r for r in ds_rows}
  if "jaxprune-auto" not in by:
    return {}
  auto, q = by["jaxprune-auto"], {}
  others = [by[p] for p in BLAS_PEERS if p in by]
  same = [r for r in others if r.get("same_fixed_point") is not False]
  if same:
    best = min(same, key=lambda r: r["seconds"])
    q.update(best_peer=best["peer"], best_over_auto=best["seconds"] / auto["seconds"])
  if others:
    reach = [r for r in others if r.get("seconds_to_target") is not None]
    if reach and auto.get("seconds_to_target"):
      bt = min(reach, key=lambda r: r["seconds_to_target"])
      q.update(best_peer_target=bt["peer"])
      q["best_over_auto_target"] = bt["seconds_to_target"] / auto["seconds_to_target"]
  if "jaxprune-lloyd" in by:
    q["lloyd_over_auto"] = by["jaxprune-lloyd"]["seconds"] / auto["seconds"]
  return q


def ratio_lines(ds_rows: list[dict]) -> list[str]:
  q, ds = ratios(ds_rows), ds_rows[0]["dataset"]
  lines = []
  if "best_peer" in q:
    lines.append(
      f"{ds:>10} same fixed point: best peer {q['best_peer']} / jaxprune-auto = "
      f"{q['best_over_auto']:.2f}x"
    )
  elif ds_rows and "jaxprune-auto" in {r["peer"] for r in ds_rows}:
    lines.append(f"{ds:>10} same fixed point: no other peer stopped there")
  if "best_peer_target" in q:
    lines.append(
      f"{ds:>10} to the target: best peer {q['best_peer_target']} / jaxprune-auto = "
      f"{q['best_over_auto_target']:.2f}x"
    )
  if "lloyd_over_auto" in q:
    lines.append(f"{ds:>10} jaxprune-lloyd / jaxprune-auto = {q['lloyd_over_auto']:.2f}x")
  return lines


def _fmt(v, spec=".2f", none="-"):
  return none if v is None else format(v, spec)


def render(path: str) -> str:
  """Rewrite the table of a converge run from its JSON (``path``; the .md next to it)."""
  from jaxprune.core.config import from_dict

  res = io.read_json(path)
  cfg = from_dict(BenchKMeansConfig, res["config"])
  # runs before the cores were recorded: 2 cores (the logs say so)
  cpu = res.get("machine") or f"{res['cpu']} (2 cores)"
  table = format_table(cfg, res["rows"], res["kernels"], cpu=cpu)
  io.save_text(os.path.splitext(path)[0] + ".md", table)
  return table


def format_table(cfg: BenchKMeansConfig, rows: list[dict], kernels: dict, cpu=None) -> str:
  """The results as markdown (for docs/benchmarks.md)."""
  lines = [
    f"N={cfg.n:,} D={cfg.d} K={cfg.kmeans.k:,}, tol {cfg.kmeans.tol:g}, at most "
    f"{cfg.kmeans.max_iter} iterations, seed {cfg.seed}, CPU {cpu or machine()}. "
    "Seconds exclude jaxprune's compilation; faiss is given jaxprune-lloyd's iterations (it stops "
    "earlier when its objective stops falling: early_stop_threshold 0); "
    f"skipped: the distances jaxprune's bounds did not compute; target: {cfg.target_rel:g} "
    "above jaxprune-lloyd's final inertia; final inertia: one float64 evaluator for every "
    f"peer's centroids, against jaxprune-lloyd's (same fixed point: within {SAME_REL:g}).",
    "",
  ]
  if kernels:
    lines += ["| library | kernel check (s per Lloyd iteration) | used |", "| --- | --- | --- |"]
    for lib, kc in kernels.items():
      cells = ", ".join(
        f"{kn}: {r['per_iter']:.3f} ({r['kernel']})" for kn, r in kc["rows"].items()
      )
      lines.append(f"| {lib} | {cells} | {kc['fastest']} |")
    lines.append("")
  lines += [
    "| dataset | peer | kernel | s to fixed point | iterations | skipped | s to target | "
    "final inertia | vs jaxprune-lloyd | peak RSS |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ]
  for r in rows:
    skipped = f"{r['skipped_overall']:.1%}" if "skipped_overall" in r else "-"
    it = f"{r['n_iter']}" + {True: "", False: " (cap)", None: " (fixed)"}[r["converged"]]
    rel = r.get("rel_to_lloyd")
    same = "-" if rel is None else ("same" if r["same_fixed_point"] else f"{rel:+.2e} elsewhere")
    lines.append(
      f"| {r['dataset']} | {r['peer']} | {r['kernel']} | {r['seconds']:.2f} | {it} | {skipped} | "
      f"{_fmt(r.get('seconds_to_target'))} | {r['inertia64']:.7g} | {same} | "
      f"{r['peak_rss_gib']:.2f} GiB |"
    )
  summary = [
    (r["dataset"], ratios([x for x in rows if x["dataset"] == r["dataset"]])) for r in rows
  ]
  summary = dict(summary)
  if any(summary.values()):
    lines += [
      "",
      "| dataset | best peer (same fixed point) | best / jaxprune-auto | best peer (target) | "
      "best / jaxprune-auto | jaxprune-lloyd / jaxprune-auto |",
      "| --- | --- | --- | --- | --- | --- |",
    ]
    x = lambda v: "-" if v is None else f"{v:.2f}x"
    for ds, q in summary.items():
      lines.append(
        f"| {ds} | {q.get('best_peer', 'none there')} | {x(q.get('best_over_auto'))} | "
        f"{q.get('best_peer_target', '-')} | {x(q.get('best_over_auto_target'))} | "
        f"{x(q.get('lloyd_over_auto'))} |"
      )
  return "\n".join(lines) + "\n"
