"""The linear-readout grid (issue 26): prune Fashion-MNIST pools of 938 .. 60,000 examples by every
metric, fit a softmax readout to convergence on frozen features (SimCLR / pixels) on each
subset, and write one per-seed row per fit; then decide the paper's claims with bootstrap
intervals (scripts/pruning_claims.py does the same from committed per-seed files).

  python scripts/fetch_data.py fashion-mnist
  python scripts/readout_grid.py --features ssl --workdir runs/readout_grid_ssl
  python scripts/readout_grid.py --features pixels --workdir runs/readout_grid_pixels
  python scripts/readout_grid.py --preset digits            # the bundled digits, minutes
  python scripts/readout_grid.py --preset quick             # the tests' grid

Writes to --workdir: per_seed_<features>.jsonl / .csv (claims.COLUMNS + num_iter, converged),
features_<features>.npz, the SimCLR run (ssl/), config.json, timing_<features>.json. Resumable:
a rerun skips the rows stored.
"""

import time

from jaxprune.core.config import parse
from jaxprune.core.run import cli
from jaxprune.pruning import readout_grid, readout_grid_config


def main(argv=None):
  cfg = parse(
    readout_grid_config.ReadoutGridConfig,
    argv,
    presets=readout_grid_config.PRESETS,
    description=__doc__,
  )
  t0 = time.perf_counter()
  out = readout_grid.run(cfg)
  for name, rows in out.items():
    bad = sum(not r["converged"] for r in rows)
    print(f"{name}: {len(rows)} fits, {bad} not converged (max_iter {cfg.max_iter})")
  print(f"done in {time.perf_counter() - t0:.0f} s; outputs in {cfg.workdir}")


if __name__ == "__main__":
  cli(main)
