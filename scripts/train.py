"""Train a classifier on the subset kept by scripts/prune.py (or on all data); report test
accuracy. Resumes from the last checkpoint in --workdir.

  python scripts/prune.py --fraction 0.5 --workdir runs/prune
  python scripts/train.py --kept runs/prune/kept_indices.npy --workdir runs/train_half
  python scripts/train.py --workdir runs/train_full --seeds 3          # full data, 3 seeds
  python scripts/train.py --data cifar10 --data_dir ~/tensorflow_datasets --model resnet18 \
      --augment true --optimizer sgd --lr 0.1 --weight_decay 5e-4 --steps 40000 --batch_size 128
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jaxprune import config  # noqa: E402
from jaxprune.pruning import train_subset as trainer  # noqa: E402


def main(argv=None):
  cfg = config.parse(trainer.TrainConfig, argv)
  result = trainer.run(cfg)
  print(json.dumps(result, indent=2))
  print(f"test accuracy {100 * result['test_accuracy_mean']:.2f}% "
        f"(+- {100 * result['test_accuracy_std']:.2f}, {len(result['test_accuracy'])} models) "
        f"trained on {result['n_train']} of {result['n_train_full']} examples; "
        f"outputs in {cfg.workdir}")


if __name__ == "__main__":
  main()
