r"""End-to-end agent throughput: the host loop (dm_control) against the device loop
(``--env_backend jax``, N environments x S seeds), in the same run.

  python scripts/bench_agent.py                          # small dreamer walker_walk noiseless
  python scripts/bench_agent.py --preset small dmdp walker_walk video_background \
      --jax 1x1 1x3 2x3 --env_steps 3000 --out runs/bench_agent.jsonl \
      --overrides="--agent.model_lr 6e-4"

Each setting is the real driver run whole in a fresh process and workdir; the rates are its
steady state (collection + updates + episode resets from the second training phase to the last,
from the training records' time stamps), the whole run's seconds beside them
(jaxprune/dmdp/loop_benchmark.py). Rounds alternate which side goes first.
Prints a line per measurement, then the table with each setting's ratio to the host loop, and the
CPU model.
"""

import dataclasses
import json
import os
import shlex
import tempfile

os.environ.setdefault("MUJOCO_GL", "egl")


from jaxprune.core import io  # noqa: E402
from jaxprune.core.config import parse  # noqa: E402
from jaxprune.core.machine import describe  # noqa: E402
from jaxprune.core.run import cli  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Config:
  """What to time."""

  preset: tuple[str, ...] = ("small", "dreamer", "walker_walk", "noiseless")
  """the agent's --preset overlays (scripts/train_dmdp.py)"""
  overrides: str = ""
  """further train_dmdp flags in one string, e.g. --overrides="--agent.model_lr 6e-4" """
  env_steps: int = 3000
  """env steps per seed of each timed run"""
  prefill: int = 400
  """env steps of random actions"""
  jax: tuple[str, ...] = ("1x1", "1x3", "2x3")
  """device-loop settings, NxS: N environments per seed x S seeds"""
  rounds: int = 1
  """rounds (sides alternate who goes first)"""
  workdir: str | None = None
  """where the timed runs write (default: a temporary folder, removed at the end)"""
  out: str | None = None
  """write the rows as JSONL (atomically)"""


def main(argv=None):
  cfg = parse(Config, argv, description=__doc__)
  from jaxprune.dmdp import loop_benchmark, run_config

  base = run_config.parse_args(["--preset", *cfg.preset, *shlex.split(cfg.overrides)])
  base = dataclasses.replace(base, prefill=cfg.prefill, env_steps=cfg.env_steps)
  settings = [base]
  for s in cfg.jax:
    n, seeds = (int(x) for x in s.lower().split("x"))
    settings.append(dataclasses.replace(base, env_backend="jax", num_envs=n, seeds=seeds))
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    workdir = cfg.workdir or tmp
    for rnd in range(cfg.rounds):
      order = settings if rnd % 2 == 0 else settings[::-1]
      for c in order:
        row = loop_benchmark.time_loop(c, os.path.join(workdir, f"r{rnd}"))
        row.update(round=rnd, preset=list(cfg.preset), overrides=cfg.overrides)
        print(json.dumps(row), flush=True)
        rows.append(row)
  print(loop_benchmark.table(rows))
  print(describe())
  if cfg.out:
    io.save_jsonl(cfg.out, rows)


if __name__ == "__main__":
  cli(main)
