"""Benchmark one Lloyd iteration: jaxprune vs scikit-learn KMeans (lloyd) vs faiss-cpu Kmeans.

Same data and the same initial centroids for all three, each peer in its own subprocess so that
its peak memory (max RSS) is its own. Prints seconds per iteration, GFLOP/s (2*N*K*D per
iteration), the ratio to each peer and to a float32 matmul timed in the same run.

  python scripts/bench_kmeans.py                        # N=100,000 D=256 K=1,000, 10 iterations
  python scripts/bench_kmeans.py --n 20000 --iters 3    # quick
  python scripts/bench_kmeans.py --imagenet --path /tmp/in1k.npy   # 1,281,167 x 2048, K=1000,
                                                        # scores end to end via scripts/prune.py
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

WARM = 2  # iterations in the baseline run
HERE = os.path.dirname(os.path.abspath(__file__))


def peak_rss_gib(who=resource.RUSAGE_SELF) -> float:
  return resource.getrusage(who).ru_maxrss / 2**20  # Linux: KiB


def make_data(n, d, k, seed=0):
  """Weakly clustered Gaussian data: no peer converges within the timed iterations."""
  rng = np.random.default_rng(seed)
  centres = rng.standard_normal((k, d), dtype=np.float32) * 0.3
  x = centres[rng.integers(0, k, n)] + rng.standard_normal((n, d), dtype=np.float32)
  c0 = x[rng.choice(n, k, replace=False)].copy()
  return x, c0


def child(args):
  """Time ``iters`` and ``WARM + iters`` iterations: the difference is the cost per iteration,
  free of set-up, the initial and the final assignment passes."""
  x, c0 = make_data(args.n, args.d, args.k)
  out = {}
  runs = []
  if args.only == "jaxprune":
    import jax
    import jax.numpy as jnp
    from jaxprune.pruning.kmeans import kmeans
    xj, cj = jnp.asarray(x), jnp.asarray(c0)
    del x
    for iters in (WARM, WARM + args.iters):
      run = lambda: kmeans(xj, k=args.k, key=jax.random.key(0), init=cj, max_iter=iters,
                           tol=0.0, chunk_size=args.chunk)
      jax.block_until_ready(run())  # compile
      t = time.perf_counter()
      res = jax.block_until_ready(run())
      runs.append((time.perf_counter() - t, int(res.n_iter), float(res.inertia)))
  elif args.only == "sklearn":
    from sklearn.cluster import KMeans
    for iters in (WARM, WARM + args.iters):
      t = time.perf_counter()
      m = KMeans(args.k, init=c0, n_init=1, algorithm="lloyd", max_iter=iters, tol=0.0).fit(x)
      runs.append((time.perf_counter() - t, int(m.n_iter_), float(m.inertia_)))
  elif args.only == "faiss":
    import faiss
    for iters in (WARM, WARM + args.iters):
      km = faiss.Kmeans(args.d, args.k, niter=iters, max_points_per_centroid=args.n, seed=0,
                        verbose=False)  # every point, no subsampling
      t = time.perf_counter()
      km.train(x, init_centroids=c0)
      runs.append((time.perf_counter() - t, iters, float(km.obj[-1])))
  elif args.only == "matmul":
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
    out.update(gflops=2 * 4096**3 / min(ts) / 1e9)
  if runs:
    (t1, n1, _), (t2, n2, inertia) = runs
    out.update(per_iter=(t2 - t1) / max(1, n2 - n1), n_iter=n2 - n1, inertia=inertia)
  out["peak_rss_gib"] = peak_rss_gib()
  print(json.dumps(out))


def run_child(args, who):
  cmd = [sys.executable, __file__, "--only", who, "--n", str(args.n), "--d", str(args.d),
         "--k", str(args.k), "--iters", str(args.iters), "--chunk", str(args.chunk)]
  r = subprocess.run(cmd, capture_output=True, text=True, check=True)
  return json.loads(r.stdout.strip().splitlines()[-1])


def compare(args):
  flop = 2.0 * args.n * args.k * args.d
  print(f"Lloyd iteration, N={args.n:,} D={args.d} K={args.k:,}, marginal cost of {args.iters} "
        "iterations, "
        f"data {args.n * args.d * 4 / 2**20:.0f} MiB float32")
  roof = run_child(args, "matmul")["gflops"]
  print(f"float32 matmul 4096^3 (jax.jit): {roof:.1f} GFLOP/s  (practical roofline)")
  rows = {}
  for who in ("jaxprune", "sklearn", "faiss"):
    r = run_child(args, who)
    r["gflops"] = flop / r["per_iter"] / 1e9
    rows[who] = r
    print(f"{who:>9}: {r['per_iter']:.3f} s/iter  {r['gflops']:6.1f} GFLOP/s  "
          f"{r['gflops'] / roof:5.1%} of matmul  peak RSS {r['peak_rss_gib']:.2f} GiB  "
          f"inertia {r['inertia']:.6g}")
  j = rows["jaxprune"]["per_iter"]
  for who in ("sklearn", "faiss"):
    print(f"speed-up of jaxprune over {who}: {rows[who]['per_iter'] / j:.2f}x")
  print(f"jaxprune reaches {rows['jaxprune']['gflops'] / roof:.1%} of the matmul roofline")


def imagenet(args):
  n, d, k = 1_281_167, 2048, 1000
  path = args.path
  size = n * d * 4
  if not os.path.exists(path) or os.path.getsize(path) < size:
    print(f"writing {n:,} x {d} float32 clustered embeddings to {path} ({size / 2**30:.1f} GiB)")
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((k, d), dtype=np.float32)
    header = np.lib.format.header_data_from_array_1_0(np.empty((0, d), np.float32))
    header["shape"] = (n, d)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
      np.lib.format.write_array_header_1_0(f, header)
      for s in range(0, n, 65536):
        m = min(65536, n - s)
        blk = centres[rng.integers(0, k, m)] + 0.7 * rng.standard_normal((m, d), dtype=np.float32)
        f.write(blk.tobytes())
    os.replace(tmp, path)
  cmd = [sys.executable, os.path.join(HERE, "prune.py"), "--data", path, "--k", str(k),
         "--fraction", "0.5", "--stream", "true", "--max_iter", str(args.iters), "--workdir",
         args.workdir, "--progress", "true"]
  print(" ".join(cmd))
  t = time.perf_counter()
  subprocess.run(cmd, check=True)
  secs = time.perf_counter() - t
  peak = peak_rss_gib(resource.RUSAGE_CHILDREN)
  print(f"ImageNet-sized scoring end to end: {secs:.0f} s, peak RSS {peak:.2f} GiB = "
        f"{peak / (size / 2**30):.2f}x the embeddings ({size / 2**30:.2f} GiB)")


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--n", type=int, default=100_000)
  p.add_argument("--d", type=int, default=256)
  p.add_argument("--k", type=int, default=1000)
  p.add_argument("--iters", type=int, default=10)
  p.add_argument("--chunk", type=int, default=512)
  p.add_argument("--only", choices=["jaxprune", "sklearn", "faiss", "matmul"])
  p.add_argument("--imagenet", action="store_true")
  p.add_argument("--path", default="bench_data/in1k_embeddings.npy")
  p.add_argument("--workdir", default="runs/bench_in1k")
  args = p.parse_args()
  if args.only:
    child(args)
  elif args.imagenet:
    os.makedirs(os.path.dirname(os.path.abspath(args.path)), exist_ok=True)
    imagenet(args)
  else:
    compare(args)


if __name__ == "__main__":
  main()
