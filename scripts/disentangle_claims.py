r"""Decide the Denoised MDP representation claims again from a run's per-seed R^2 (r2.csv), with
the bounds its summary.json recorded: claims.md, claims.json and claims.png in the same folder.

  python scripts/disentangle_claims.py                     # every docs/disentangle*/ since #27
  python scripts/disentangle_claims.py --dirs runs/disentangle

The claims, bounds and bootstrap are jaxprune.dmdp.disentangle_claims; a folder whose
summary.json records no bounds (a run before issue 27, on other targets) is refused; a bound
added since a run gets DisentangleConfig's default.
"""

import dataclasses
import glob
import os

from jaxprune.core import io
from jaxprune.core.config import parse, to_dict
from jaxprune.core.run import cli
from jaxprune.dmdp import disentangle, disentangle_claims
from jaxprune.dmdp.disentangle_config import DisentangleConfig


@dataclasses.dataclass(frozen=True)
class ReportConfig:
  """Regenerate the claims of disentangle runs from their r2.csv."""

  dirs: tuple[str, ...] = ()
  """run folders holding r2.csv and summary.json; empty: every docs/disentangle*/ whose run
  recorded the claims' bounds"""


def report(folder: str) -> list[dict]:
  """Decide the claims of ``folder`` and write its claims.md / .json / .png."""
  csv_path, summary_path = (os.path.join(folder, f) for f in ("r2.csv", "summary.json"))
  for p in (csv_path, summary_path):
    if not os.path.exists(p):
      raise FileNotFoundError(f"{p} is missing: run scripts/disentangle.py --workdir {folder}")
  if not _strict(summary_path):
    raise ValueError(
      f"{summary_path} records no claim bounds: a run before issue 27, whose targets (raw "
      "angles, the sensor noise beside its affine copy) these claims do not apply to"
    )
  saved = io.read_json(summary_path)["config"]
  # the bounds the run recorded; any it lacks take today's defaults
  settings = disentangle.claim_settings({**to_dict(DisentangleConfig()), **saved})
  checks = disentangle_claims.check(disentangle_claims.read_csv(csv_path), **settings)
  disentangle.write_claims(folder, checks, saved["updates"])
  return checks


def _strict(summary_path: str) -> bool:
  """Whether a folder's run recorded the claims' bounds (runs since issue 27; the earlier ones
  probe other targets: raw angles, the sensor noise beside its affine copy)."""
  return os.path.exists(summary_path) and "noise_floor" in io.read_json(summary_path)["config"]


def main(argv=None):
  cfg = parse(ReportConfig, argv, description=__doc__)
  here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
  dirs = cfg.dirs or tuple(
    sorted(
      os.path.dirname(p)
      for p in glob.glob(os.path.join(here, "docs", "disentangle*", "r2.csv"))
      if _strict(os.path.join(os.path.dirname(p), "summary.json"))
    )
  )
  if not dirs:
    raise FileNotFoundError("no run folder with r2.csv and summary.json found; give --dirs")
  for d in dirs:
    checks = report(d)
    tally = disentangle_claims.tally(checks, updates=max(c["updates"] for c in checks))["all"]
    print(f"{d}: {tally['holds']} hold, {tally['fails']} fail, {tally['undecided']} undecided")


if __name__ == "__main__":
  cli(main)
