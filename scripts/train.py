"""Train classifiers on the subset kept by scripts/prune.py (or on all data); report test
accuracy. Resumes from the last checkpoint in --workdir (a run of another config there stops).
Kept indices made from other data than this run's training split (another split, dataset or
--max_examples: the kept_indices.json that prune.py writes beside them says) are refused; a kept
file without that identity file is used with a warning. Raising --classifier.steps on resume is
allowed, but the learning-rate schedule changes there: the model differs from a fresh run.

  python scripts/prune.py --fraction 0.5 --workdir runs/prune
  python scripts/train.py --kept runs/prune/kept_indices.npy --workdir runs/train_half
  python scripts/train.py --workdir runs/train_full --seeds 3          # full data, 3 models
  python scripts/train.py --data cifar10 --data_dir ~/tensorflow_datasets \
      --classifier.model resnet18 --classifier.augment true --classifier.optimizer sgd \
      --classifier.lr 0.1 --classifier.weight_decay 5e-4 --classifier.steps 40000 \
      --classifier.batch_size 128
"""

import json

from jaxprune.core.config import parse
from jaxprune.core.run import cli
from jaxprune.pruning import data, npm_data, train_subset, train_subset_config


def main(argv=None):
  cfg = parse(train_subset_config.SubsetTrainConfig, argv)
  result = train_subset.run(cfg)
  print(json.dumps(result, indent=2))
  print(
    f"test accuracy {100 * result['test_accuracy_mean']:.2f}% "
    f"(+- {100 * result['test_accuracy_std']:.2f}, {len(result['test_accuracy'])} models) "
    f"trained on {result['n_train']} of {result['n_train_full']} examples; "
    f"outputs in {cfg.workdir}"
  )


if __name__ == "__main__":
  cli(main, data.KeptIdentityError, npm_data.NpmCacheError)
