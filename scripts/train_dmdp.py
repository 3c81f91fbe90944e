r"""Train a Denoised MDP (or Dreamer) agent on a noisy DeepMind Control task from pixels.

  python scripts/train_dmdp.py --preset dmdp cheetah_run video_background_camera_jitter \
      --workdir runs/dmdp_cheetah                             # the refs' settings (GPU / TPU)
  python scripts/train_dmdp.py --preset small noiseless --workdir runs/dmdp_small
  python scripts/train_dmdp.py --preset small dreamer walker_walk --world_model.free_nats 3 \
      --agent.horizon 15 --world_model.beta_y 1 --world_model.beta_z 1 --workdir runs/walker
  python scripts/train_dmdp.py --preset small quick --progress false --workdir runs/smoke

--preset NAME [NAME ...] (or --configs) applies named overlays in order: a size (full, the
default, | small), a model (dmdp | dmdp_2c | dreamer), a task (cheetah_run | walker_walk |
reacher_easy | robodesk_tv_green_hue), a variant (noiseless | video_background | ... | noisy),
then quick (a smoke run of a minute). The size, model, task and variant give a complete config,
with the task's action size and beta from the per-(task, variant) table
jaxprune.dmdp.config.BETA (release defaults; its docstring gives the sources); every other flag
(nested: --world_model.*, --agent.*) applies on top.
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
  per_seed = summary["eval_return"]  # a list, or {seed: list} with env_backend jax
  per_seed = per_seed if isinstance(per_seed, dict) else {cfg.seed: per_seed}
  evals = "; ".join(
    f"seed {seed}: "
    + ", ".join(f"{s}: {r:.1f}" for s, r in zip(summary["eval_env_steps"], returns))
    for seed, returns in per_seed.items()
  )
  print(json.dumps({k: v for k, v in summary.items() if k != "train_return"}, indent=1))
  print(f"evaluation returns by env step: {evals}; outputs in {cfg.workdir}")


if __name__ == "__main__":
  cli(main, driver.ValueDivergedError)
