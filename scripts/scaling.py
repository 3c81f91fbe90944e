"""The perceptron theory of data pruning: reproduce Fig. 1 of Sorscher et al. (2022).

  python scripts/scaling.py                          # N = 200, a few minutes on 2 CPU cores
  python scripts/scaling.py --seeds 8 --alphas 0.5 1 2 3 4 6 8 10 --workdir runs/scaling_big

Writes to --workdir: scaling.png (panels: keep-hard, keep-easy, imperfect probe, scaling of the
envelope), points.csv (every theory and simulation point) and config.json; prints the fitted
exponents.
"""

from jaxprune.core.config import parse
from jaxprune.core.run import cli
from jaxprune.theory import ScalingConfig, run_scaling


def main(argv=None):
  cfg = parse(ScalingConfig, argv)
  out = run_scaling(cfg)
  print("\n".join(out["summary"]))
  print(
    f"done in {out['seconds']:.0f} s; outputs in {cfg.workdir} "
    "(scaling.png, points.csv, config.json)"
  )


if __name__ == "__main__":
  cli(main)
