"""Reference returns on noisy RoboDesk: random actions, standing still, and a scripted press of
the green button (from the true state), to read an agent's returns against.

  python scripts/robodesk_reference.py --episode_length 400 --shadows false   # the CPU preset's
  python scripts/robodesk_reference.py                                        # the release's

Prints one line per policy (returns and clean returns, their mean) and writes --out (JSON).
"""

import json
import os
from dataclasses import dataclass

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering, before dm_control loads

import numpy as np  # noqa: E402

from jaxprune.core import io  # noqa: E402
from jaxprune.core.config import parse, require  # noqa: E402
from jaxprune.core.run import cli  # noqa: E402


@dataclass(frozen=True)
class ReferenceConfig:
  """Episodes of three fixed policies on robodesk_tv_green_hue."""

  variant: str = "noisy"
  """noisy | noiseless"""
  episodes: int = 3
  """episodes per policy"""
  episode_length: int = 1000
  """control steps per episode (the release: 1000; the CPU preset: 400)"""
  action_repeat: int = 2
  seed: int = 10_000
  """the environment's seed (10,000: the agent's evaluation environment for seed 0)"""
  shadows: bool = True
  out: str = "runs/robodesk_reference.json"

  def __post_init__(self):
    require(self.episodes >= 1, f"episodes must be >= 1, got {self.episodes}")
    require(
      self.variant in ("noisy", "noiseless"),
      f"variant must be noisy or noiseless, got {self.variant!r}",
    )


def main(argv=None):
  from jaxprune import envs
  from jaxprune.envs import robodesk

  cfg = parse(ReferenceConfig, argv, description=__doc__)
  env = envs.make(
    "robodesk_tv_green_hue",
    cfg.variant,
    seed=cfg.seed,
    episode_length=cfg.episode_length,
    action_repeat=cfg.action_repeat,
    shadows=cfg.shadows,
  )
  rng = np.random.default_rng(cfg.seed)
  policies = {
    "random": lambda e: rng.uniform(-1, 1, robodesk.ACTION_DIM),
    "still": lambda e: np.zeros(robodesk.ACTION_DIM),
    "scripted_press": robodesk.press_green_action,
  }
  result = {}
  for name, policy in policies.items():
    runs = [robodesk.episode_return(env, policy) for _ in range(cfg.episodes)]
    result[name] = {
      "returns": [r for r, _ in runs],
      "clean_returns": [c for _, c in runs],
      "mean": float(np.mean([r for r, _ in runs])),
    }
    print(f"{name}: mean {result[name]['mean']:.1f}, returns "
          f"{', '.join(f'{r:.1f}' for r, _ in runs)}", flush=True)  # fmt: skip
  env.close()
  io.save_json(cfg.out, {"config": cfg.__dict__, **result})
  print(json.dumps({k: round(v["mean"], 1) for k, v in result.items()}))


if __name__ == "__main__":
  cli(main)
