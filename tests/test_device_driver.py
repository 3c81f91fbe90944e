"""train_dmdp --env_backend jax end to end (jaxprune.dmdp.device_driver) on reacher at 16 px
with a tiny model: two seeds of two environments each, interrupted at a checkpoint and resumed,
equal to the uninterrupted run. Slow: each run compiles the environment and the agent."""

import dataclasses
import json
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxprune import dmdp  # noqa: E402
from jaxprune.dmdp import device_driver, driver, run_config  # noqa: E402


def _cfg(workdir, env_steps):
  base = run_config.small(model="dmdp", env="reacher_easy", variant="video_background")
  wm = dmdp.tiny(base.world_model, action_dim=2)
  ag = dataclasses.replace(
    base.agent, horizon=3, actor_hidden=16, actor_layers=2, value_hidden=16, value_layers=2
  )
  return dataclasses.replace(
    base,
    workdir=str(workdir),
    world_model=wm,
    agent=ag,
    env_backend="jax",
    num_envs=2,
    seeds=2,
    episode_length=40,
    env_steps=env_steps,
    prefill=40,
    train_every=40,
    updates=2,
    updates_per_dispatch=2,
    batch=4,
    seq_len=5,
    eval_every=80,
    eval_episodes=2,
    checkpoint_every=40,
    replay_capacity=400,
    progress=False,
  )


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted(tmp_path):
  whole = driver.run(_cfg(tmp_path / "whole", 160))
  device_driver.run(_cfg(tmp_path / "split", 80))
  split = driver.run(_cfg(tmp_path / "split", 160))  # resumes from the checkpoint at 80
  assert whole["env_steps"] == split["env_steps"] == 160 and whole["seeds"] == [0, 1]
  assert whole["updates"] == split["updates"] == 4  # 2 per iteration after the prefill

  def rows(d):
    with open(os.path.join(d, "metrics.jsonl")) as f:
      return [json.loads(x) for x in f]

  a, b = rows(tmp_path / "whole"), rows(tmp_path / "split")
  assert [(r["kind"], r["env_steps"], r["seed"]) for r in a] == [
    (r["kind"], r["env_steps"], r["seed"]) for r in b
  ]
  for ra, rb in zip(a, b):
    for k, v in ra.items():
      if isinstance(v, float) and k != "process_s":  # process_s: wall time
        np.testing.assert_allclose(rb[k], v, rtol=1e-4, atol=1e-5, err_msg=k)
  kinds = {r["kind"] for r in a}
  assert kinds == {"train", "episode", "eval"}
  assert {r["seed"] for r in a if r["kind"] == "eval"} == {0, 1}
  ev = [r for r in a if r["kind"] == "eval"]
  assert all(len(r["returns"]) == 2 for r in ev)


def test_bad_backend_settings_raise():
  base = run_config.small(env="reacher_easy", variant="noiseless")
  with pytest.raises(ValueError, match="need env_backend jax"):
    dataclasses.replace(base, num_envs=4)
  with pytest.raises(ValueError, match="multiple of action_repeat x num_envs"):
    dataclasses.replace(base, env_backend="jax", num_envs=3)
  with pytest.raises(ValueError, match="must divide an episode"):
    dataclasses.replace(base, env_backend="jax", num_envs=1, train_every=60)
  with pytest.raises(ValueError, match="DMC tasks only"):
    dataclasses.replace(run_config.small(env="robodesk_tv_green_hue"), env_backend="jax")
