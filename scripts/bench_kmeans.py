"""Benchmark k-means: jaxprune vs scikit-learn KMeans vs faiss-cpu Kmeans.

Same data and the same initial centroids for every peer, each peer in its own process so that
its peak memory (max RSS) is its own.

--mode converge (default): time to the Lloyd fixed point (--kmeans.tol 0, at most
--kmeans.max_iter iterations) and to a target inertia (--target_rel above jaxprune-lloyd's fixed
point) of jaxprune-auto (group bounds where they pay), jaxprune-yinyang, jaxprune-hamerly,
jaxprune-lloyd, scikit-learn lloyd and elkan, and faiss (given jaxprune-lloyd's iterations; it
may stop earlier). A kernel check first times scikit-learn and faiss under OPENBLAS_CORETYPE as
set, unset and the CPU's best, and each then runs with its fastest (--blas env: as set); the
kernel each loaded is printed beside its figures. jaxprune's compilation is excluded. One
evaluator scores every peer's final centroids in float64 and marks whether it stopped at Lloyd's
fixed point. Written: --out (JSON) and its .md; --render PATH rewrites a run's table from its
JSON. Datasets:

  weak        weakly clustered Gaussian (centres ~ N(0, 0.3^2), unit noise): slow to converge
  blobs       well separated blobs: K centres ~ N(0, 1) per dimension, isotropic noise of std 0.1
  digits-ssl  the prune job's SimCLR embeddings of the 1,797 digits (scripts/prune.py
              --embedding ssl, default SSL config and seed, cached in --data_dir), projected to D
              by a fixed Gaussian matrix / sqrt(E = 128) and tiled to N rows with Gaussian jitter of
              0.05 x each feature's std

--mode iteration: the marginal cost of one Lloyd iteration (jaxprune's plain Lloyd, scikit-learn
lloyd, faiss), GFLOP/s (2*N*K*D per iteration) and the ratio to a float32 matmul timed in the
same run.

  python scripts/bench_kmeans.py                        # converge: N=100,000 D=256 K=1,000
  python scripts/bench_kmeans.py --n 5000 --d 32 --kmeans.k 50 --kmeans.max_iter 30  # quick
  python scripts/bench_kmeans.py --data blobs --peers jaxprune-auto sklearn-elkan
  python scripts/bench_kmeans.py --kmeans.k 10000 --data blobs digits-ssl \
      --peers jaxprune-auto jaxprune-lloyd sklearn-lloyd faiss     # K = 10,000
  python scripts/bench_kmeans.py --mode ab --iters 3    # auto vs lloyd, interleaved, one process
  python scripts/bench_kmeans.py --render docs/kmeans_bench_issue30/n100k_k1k/converge.json
  python scripts/bench_kmeans.py --mode iteration       # one Lloyd iteration, 10 timed
  python scripts/bench_kmeans.py --mode iteration --n 20000 --iters 3    # quick
  python scripts/bench_kmeans.py --imagenet true --kmeans.max_iter 50   # 1,281,167 x 2048,
      # K=1000, cosine, streamed, scored end to end (--kmeans.algorithm lloyd: without bounds)
"""

from jaxprune.core.config import parse
from jaxprune.core.run import cli
from jaxprune.pruning.benchmark import bench_kmeans
from jaxprune.pruning.benchmark_config import BenchKMeansConfig


def main(argv=None):
  bench_kmeans(parse(BenchKMeansConfig, argv, description=__doc__))


if __name__ == "__main__":
  cli(main)
