"""Train a Denoised MDP (or Dreamer) agent on a noisy DeepMind Control task from pixels.

  python scripts/train_dmdp.py --env cheetah_run --variant video_background_camera_jitter \
      --model dmdp --workdir runs/dmdp_cheetah                      # the refs' settings (GPU)
  python scripts/train_dmdp.py --preset small --env cheetah_run --variant noiseless \
      --workdir runs/dmdp_small                                     # minutes on a CPU
  python scripts/train_dmdp.py --model dreamer --video_dir ~/kinetics/driving_car ...

Writes to --workdir: config.json, model_config.json, metrics.jsonl (train / episode / eval
records), returns.png, pictures/ (evaluation frame strips, reconstructions from every factor and
each alone), checkpoints/ + replay/ (resumed automatically), summary.json.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("MUJOCO_GL", "egl")

from jaxprune import config  # noqa: E402
from jaxprune.dmdp import experiment  # noqa: E402


def main(argv=None):
  cfg = config.parse(experiment.RunConfig, argv)
  summary = experiment.run(cfg)
  evals = ", ".join(f"{s}: {r:.1f}" for s, r in zip(summary["eval_env_steps"],
                                                     summary["eval_return"]))
  print(json.dumps({k: v for k, v in summary.items() if k != "train_return"}, indent=1))
  print(f"evaluation returns by env step: {evals}; outputs in {cfg.workdir}")


if __name__ == "__main__":
  main()
