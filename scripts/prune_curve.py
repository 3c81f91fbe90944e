"""Test accuracy against the fraction of training data kept, for every pruning score.

  python scripts/prune_curve.py                                   # digits, minutes on 2 cores
  python scripts/prune_curve.py --fractions 0.2 0.5 --scores el2n forgetting --seeds 2
  python scripts/fetch_data.py fashion-mnist && \
  python scripts/prune_curve.py --preset scaling                  # pool-size axis, Fashion-MNIST
  python scripts/prune_curve.py --preset scaling_digits           # pool-size axis, digits
  python scripts/prune_curve.py --preset quick                    # the tests' pool-axis run
  python scripts/prune_curve.py --preset scaling_digits_epochs    # 30 epochs per run, 3 pool
                                                                  # draws x 2 scorers x 2 models
  python scripts/prune_curve.py --preset scaling_fashion_epochs   # the same on Fashion-MNIST
  python scripts/prune_curve.py --data cifar10 --data_dir ~/tensorflow_datasets \
      --classifier.model resnet18 --classifier.augment true --classifier.steps 20000 \
      --classifier.batch_size 128 --classifier.lr 0.1              # on an accelerator
"""

from jaxprune.core.config import parse
from jaxprune.core.run import cli
from jaxprune.pruning import curve, curve_config


def main(argv=None):
  cfg = parse(curve_config.CurveConfig, argv, presets=curve_config.PRESETS, description=__doc__)
  rows = curve.run(cfg)
  print(curve.table(rows))
  extra = ", scaling_error.png, scaling_strategy.png, scaling.json" if cfg.pool_sizes else ""
  print(
    f"outputs in {cfg.workdir} (results.jsonl, results.csv, per_seed.csv, table.txt, "
    f"accuracy_vs_fraction.png{extra}); {curve.steps_text(cfg)}"
  )


if __name__ == "__main__":
  cli(main)
