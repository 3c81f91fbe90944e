"""Score a dataset with (self-)supervised prototypes and keep a fraction of it.

  python scripts/prune.py                                   # bundled digits, keep hardest 50%
  python scripts/prune.py --data mnist --data_dir ~/tensorflow_datasets --k 100 --fraction 0.7
  python scripts/prune.py --data emb.npy --k 1000 --mode easy --fraction 0.3 --workdir runs/in1k
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jaxprune import config  # noqa: E402
from jaxprune.pruning import prune as pruning  # noqa: E402


def main(argv=None):
  cfg = config.parse(pruning.PruneConfig, argv)
  summary = pruning.run(cfg)
  print(pruning.format_summary(summary))
  print(f"outputs in {cfg.workdir}")


if __name__ == "__main__":
  main()
