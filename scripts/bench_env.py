"""Env steps per second with rendering: the JAX environment (MJX + the JAX renderer +
distractors, vmapped over N) against dm_control's, in the same run.

  python scripts/bench_env.py                                   # walker_walk, N = 1, 16, 256
  python scripts/bench_env.py --tasks walker_walk cheetah_run reacher_easy --num_envs 1 16 \\
      --variant video_background --out runs/bench_env.jsonl

An env step is an agent step (action_repeat = 2 dm_control steps, one 64 x 64 render, the
distractors). Rounds alternate which side runs first; each JAX row is the median of 3 scanned
calls after a compiling one. Prints a line per measurement, then the table with the ratio
JAX / dm_control and the CPU model. See jaxprune/envs/env_benchmark.py.
"""

import dataclasses
import json
import os

os.environ.setdefault("MUJOCO_GL", "egl")


from jaxprune.core import io  # noqa: E402
from jaxprune.core.config import parse  # noqa: E402
from jaxprune.core.machine import describe  # noqa: E402
from jaxprune.core.run import cli  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Config:
  """What to time."""

  tasks: tuple[str, ...] = ("walker_walk",)
  """DMC tasks"""
  variant: str = "video_background_camera_jitter"
  """jaxprune.envs.VARIANTS"""
  num_envs: tuple[int, ...] = (1, 16, 256)
  """vmapped JAX environments"""
  steps: int = 20
  """agent steps per scanned JAX call"""
  dm_steps: int = 100
  """agent steps timed on dm_control"""
  rounds: int = 1
  """rounds (sides alternate who goes first)"""
  image_size: int = 64
  """pixels"""
  shadows: bool = True
  """the JAX renderer's shadows"""
  reflections: bool = True
  """the JAX renderer's floor reflections"""
  out: str | None = None
  """write the rows as JSONL (atomically)"""


def main(argv=None):
  cfg = parse(Config, argv, description=__doc__)
  from jaxprune import envs
  from jaxprune.envs import env_benchmark, jax_env

  rows = []
  for task in cfg.tasks:
    env, params = jax_env.make(
      task,
      cfg.variant,
      seed=0,
      image_size=cfg.image_size,
      shadows=cfg.shadows,
      reflections=cfg.reflections,
    )
    host = envs.make(task, cfg.variant, seed=0, image_size=cfg.image_size)
    for rnd in range(cfg.rounds):
      sides = ["jax", "dm_control"] if rnd % 2 == 0 else ["dm_control", "jax"]
      for side in sides:
        if side == "dm_control":
          got = [env_benchmark.time_dm_control(host, steps=cfg.dm_steps, seed=rnd)]
        else:
          got = [
            env_benchmark.time_jax(env, params, num_envs=n, steps=cfg.steps, seed=rnd)
            for n in cfg.num_envs
          ]
        for row in got:
          row.update(task=task, variant=cfg.variant, round=rnd, image_size=cfg.image_size)
          row.update(shadows=cfg.shadows, reflections=cfg.reflections)
          print(json.dumps(row), flush=True)
          rows.append(row)
    host.close()
  print(env_benchmark.table(rows))
  print(describe())
  if cfg.out:
    io.save_jsonl(cfg.out, rows)


if __name__ == "__main__":
  cli(main)
