"""Compare train_dmdp runs: evaluation-return curves in one figure, a table of the last evaluations.

  python scripts/compare_dmdp.py --runs runs/i11/dmdp_noiseless_s0 runs/i11/dreamer_noiseless_s0 \
      --out runs/i11/compare

Writes to --out: compare.png (one panel per variant, one colour per model), compare.md (per run
and per (variant, model) over seeds), compare.json. A directory that is not a train_dmdp run
with at least one evaluation stops it (status 1) with a message naming the directory and what
it holds, before any output is written.
"""

from jaxprune.core.config import parse
from jaxprune.core.run import cli
from jaxprune.dmdp.report import CompareConfig, WorkdirKindError, compare, table


def main(argv=None):
  cfg = parse(CompareConfig, argv)
  rows = compare(cfg)
  print(table(rows))
  print(f"outputs in {cfg.out}")


if __name__ == "__main__":
  cli(main, WorkdirKindError)  # a directory of the wrong kind: its message, no traceback
