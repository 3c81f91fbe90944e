"""Test accuracy against the fraction of training data kept, for every pruning metric.

  python scripts/prune_curve.py                                   # digits, ~10 min on 2 cores
  python scripts/prune_curve.py --fractions 0.2,0.5 --metrics el2n,forgetting --seeds 2
  python scripts/prune_curve.py --data cifar10 --data_dir ~/tensorflow_datasets --model resnet18 \
      --augment true --steps 20000 --batch_size 128 --lr 0.1   # on an accelerator
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jaxprune import config  # noqa: E402
from jaxprune.pruning import curve  # noqa: E402


def main(argv=None):
  cfg = config.parse(curve.CurveConfig, argv)
  rows = curve.run(cfg)
  print(curve.table(rows))
  print(f"outputs in {cfg.workdir} (results.jsonl, results.csv, table.txt, "
        "accuracy_vs_fraction.png)")


if __name__ == "__main__":
  main()
