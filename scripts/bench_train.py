"""Training throughput: the scanned loop (K steps per dispatch, lax.scan) against a plain
per-step jitted Python loop, same model, same on-device data, same steps, in one run.

  python scripts/bench_train.py                        # SmallCNN on digits, batch 64, K = 50
  python scripts/bench_train.py --classifier.model resnet18 --data cifar10 \
      --data_dir ~/tensorflow_datasets --classifier.steps_per_dispatch 20
"""

from jaxprune.core.config import parse
from jaxprune.core.run import cli
from jaxprune.pruning.benchmark import bench_train
from jaxprune.pruning.benchmark_config import BenchTrainConfig


def main(argv=None):
  bench_train(parse(BenchTrainConfig, argv, description=__doc__))


if __name__ == "__main__":
  cli(main)
