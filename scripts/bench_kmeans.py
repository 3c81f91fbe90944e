"""Benchmark one Lloyd iteration: jaxprune vs scikit-learn KMeans (lloyd) vs faiss-cpu Kmeans.

Same data and the same initial centroids for all three, each peer in its own process so that
its peak memory (max RSS) is its own. Prints seconds per iteration, GFLOP/s (2*N*K*D per
iteration), the ratio to each peer and to a float32 matmul timed in the same run.

  python scripts/bench_kmeans.py                        # N=100,000 D=256 K=1,000, 10 iterations
  python scripts/bench_kmeans.py --n 20000 --iters 3    # quick
  python scripts/bench_kmeans.py --imagenet true --path /tmp/in1k.npy   # 1,281,167 x 2048,
                                                        # K=1000, scored end to end, streamed
"""

from jaxprune.core.config import parse
from jaxprune.core.run import cli
from jaxprune.pruning.benchmark import BenchKMeansConfig, bench_kmeans


def main(argv=None):
  bench_kmeans(parse(BenchKMeansConfig, argv, description=__doc__))


if __name__ == "__main__":
  cli(main)
