"""Test accuracy against the fraction of training data kept, for every pruning score.

  python scripts/prune_curve.py                                   # digits, minutes on 2 cores
  python scripts/prune_curve.py --fractions 0.2 0.5 --scores el2n forgetting --seeds 2
  python scripts/prune_curve.py --data cifar10 --data_dir ~/tensorflow_datasets \
      --classifier.model resnet18 --classifier.augment true --classifier.steps 20000 \
      --classifier.batch_size 128 --classifier.lr 0.1              # on an accelerator
"""

from jaxprune.core.config import parse
from jaxprune.pruning import curve


def main(argv=None):
  cfg = parse(curve.CurveConfig, argv)
  rows = curve.run(cfg)
  print(curve.table(rows))
  print(
    f"outputs in {cfg.workdir} (results.jsonl, results.csv, table.txt, accuracy_vs_fraction.png)"
  )


if __name__ == "__main__":
  main()
