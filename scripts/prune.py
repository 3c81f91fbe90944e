"""Score a dataset with (self-)supervised prototypes and keep a fraction of it. Writes
kept_indices.npy with kept_indices.json beside it (the identity of the data they index: dataset
and split, size, content hash), which scripts/train.py checks.

python scripts/prune.py                                   # bundled digits, keep hardest 50%
python scripts/prune.py --data mnist --data_dir ~/tensorflow_datasets --kmeans.k 100 --fraction 0.7
python scripts/prune.py --data emb.npy --kmeans.k 1000 --mode easy --fraction 0.3 --workdir w
python scripts/prune.py --score el2n --classifier.model resnet18 --classifier.augment true
"""

from jaxprune.core.config import parse
from jaxprune.core.run import cli
from jaxprune.pruning import npm_data, prune, prune_config
from jaxprune.pruning.kmeans import EmbeddingsError


def main(argv=None):
  cfg = parse(prune_config.PruneConfig, argv)
  summary = prune.run(cfg)
  print(prune.format_summary(summary))
  print(f"outputs in {cfg.workdir}")


if __name__ == "__main__":
  cli(main, npm_data.NpmCacheError, EmbeddingsError)
