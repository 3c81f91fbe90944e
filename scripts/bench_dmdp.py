"""World-model updates per second (forward, backward, Adam) of the Denoised MDP world model.

  python scripts/bench_dmdp.py                          # 16 x 50 and 50 x 50, 64x64x3, dmdp
  python scripts/bench_dmdp.py --model dreamer --sizes 16x50 --repeats 1

Prints per size: seconds per update, first call (compilation), peak RSS, parameters, and the
ratio to the refs' PyTorch figure (measured in another run). See jaxprune/dmdp/benchmark.py.
"""

from jaxprune.core.config import parse
from jaxprune.core.run import cli
from jaxprune.dmdp import benchmark, benchmark_config


def main(argv=None):
  benchmark.run(parse(benchmark_config.BenchConfig, argv, description=__doc__))


if __name__ == "__main__":
  cli(main)
