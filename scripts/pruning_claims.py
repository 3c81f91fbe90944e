"""Decide the data-pruning claims (Sorscher et al. 2022) from per-seed results: bootstrap
intervals over every seed source, the four claims' verdicts, tables and figures.

  python scripts/pruning_claims.py          # regenerate every docs/**/per_seed*.csv's report
  python scripts/pruning_claims.py --inputs runs/readout_grid_ssl/per_seed_ssl.csv \
      --outdir runs/readout_grid_ssl/claims --title "Fashion-MNIST, SimCLR features"

A per-seed file (CSV or JSONL, jaxprune.pruning.claims.COLUMNS) ``DIR/per_seed_NAME.csv`` writes
``DIR/NAME/``: claims.md (verdicts and every difference with its interval), claims.json,
hard_minus_random.png, hard_minus_easy.png, error_vs_kept.png. Deterministic in --seed.
"""

import dataclasses
import glob
import os

from jaxprune.core.config import parse
from jaxprune.core.run import cli
from jaxprune.pruning import claims, claims_report


@dataclasses.dataclass(frozen=True)
class ClaimsConfig:
  """Decide the pruning claims from per-seed files."""

  inputs: tuple[str, ...] = ()
  """per-seed files (.csv / .jsonl); empty: every docs/**/per_seed*.csv"""
  outdir: str | None = None
  """output folder (one input only); default DIR/NAME for DIR/per_seed_NAME.csv"""
  title: str | None = None
  """figure / table title (default: the input's path)"""
  level: float = 0.9
  """two-sided interval level"""
  num_resamples: int = 2000
  """bootstrap resamples"""
  margin: float = 0.01
  """claim 4: SSL keep-hard counts as competitive when not worse by more than this (accuracy)"""
  seed: int = 0
  """the bootstrap's seed"""


def out_dir(path: str) -> str:
  stem = os.path.splitext(os.path.basename(path))[0]
  name = stem.removeprefix("per_seed").lstrip("_") or "claims"
  return os.path.join(os.path.dirname(path), name)


def main(argv=None):
  cfg = parse(ClaimsConfig, argv, description=__doc__)
  inputs = list(cfg.inputs) or sorted(glob.glob("docs/**/per_seed*.csv", recursive=True))
  if not inputs:
    raise SystemExit("no per-seed files: pass --inputs PATH (.csv / .jsonl)")
  if cfg.outdir is not None and len(inputs) != 1:
    raise SystemExit(f"--outdir needs exactly one input, got {len(inputs)}")
  for path in inputs:
    if not os.path.exists(path):
      raise SystemExit(f"{path}: no such per-seed file")
    rows = claims.read_rows(path)
    outdir = cfg.outdir or out_dir(path)
    result = claims_report.write(
      outdir,
      rows,
      title=cfg.title or path,
      level=cfg.level,
      num_resamples=cfg.num_resamples,
      seed=cfg.seed,
      margin=cfg.margin,
    )
    print(f"{path}: {len(rows)} rows -> {outdir}/claims.md")
    for k, v in result["claims"].items():
      print(f"  {k}: {v['verdict']} ({v['supported']} / {v['contradicted']} / {v['undecided']})")


if __name__ == "__main__":
  cli(main)
