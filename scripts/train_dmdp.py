r"""Train a Denoised MDP (or Dreamer) agent on a noisy DeepMind Control task from pixels.

  python scripts/train_dmdp.py --env cheetah_run --variant video_background_camera_jitter \
      --model dmdp --workdir runs/dmdp_cheetah                 # the refs' settings (GPU / TPU)
  python scripts/train_dmdp.py --preset small --variant noiseless --workdir runs/dmdp_small
  python scripts/train_dmdp.py --preset small --model dreamer --env walker_walk \
      --world_model.free_nats 3 --agent.horizon 15 --beta 1 --workdir runs/walker

--preset (full | small), --model, --env and --variant give a complete config, with beta from the
per-(task, variant) table jaxprune.dmdp.config.BETA (release defaults; its docstring gives the
sources); every other flag (nested: --world_model.*, --agent.*) applies on top; --beta B sets
--world_model.beta_y and beta_z to B.
Writes to --workdir: config.json, model_config.json, metrics.jsonl (train / episode / eval
records), returns.png, pictures/, checkpoints/ and files/replay/ (resumed automatically; another
config stops with an error, --overwrite true starts afresh), summary.json.
"""

import json
import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering, before dm_control loads

from jaxprune.core.run import cli  # noqa: E402
from jaxprune.dmdp import driver, run_config  # noqa: E402


def main(argv=None):
  cfg = run_config.parse_args(argv, description=__doc__)
  summary = driver.run(cfg)
  evals = ", ".join(
    f"{s}: {r:.1f}" for s, r in zip(summary["eval_env_steps"], summary["eval_return"])
  )
  print(json.dumps({k: v for k, v in summary.items() if k != "train_return"}, indent=1))
  print(f"evaluation returns by env step: {evals}; outputs in {cfg.workdir}")


if __name__ == "__main__":
  cli(main, driver.ValueDivergedError)
