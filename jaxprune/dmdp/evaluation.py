"""Evaluation of the online agent and its reports: eval episodes with the policy's mode
(:func:`evaluate`, with a frame strip, a GIF and the world model's factor pictures), and the
returns / loss plot of a run's records (:func:`plot_returns`)."""

from __future__ import annotations

import os

import jax
import numpy as np

from jaxprune.core import io
from jaxprune.dmdp import agent as agent_lib
from jaxprune.dmdp.pictures import save_factor_pictures
from jaxprune.dmdp.run_config import RunConfig


def evaluate(cfg: RunConfig, state, eval_env, buf, counters, keys) -> dict:
  """Eval episodes with the policy's mode; a frame strip of the first; factor pictures.
  Returns the eval record."""
  wm_cfg, ag_cfg = cfg.world_model, cfg.agent
  returns, clean, frames = [], [], []
  for e in range(cfg.eval_episodes):
    obs = eval_env.reset()
    k_episode = jax.random.fold_in(keys["eval"], counters["eval_episodes"])
    counters["eval_episodes"] += 1
    pstate = agent_lib.initial_policy_state(wm_cfg)
    total = total_clean = 0.0
    done = False
    t = 0
    while not done:
      if e == 0:
        frames.append(obs)
      action, pstate = agent_lib.policy_step(
        wm_cfg, ag_cfg, state.params, pstate, obs, jax.random.fold_in(k_episode, t), explore=False
      )
      obs, reward, done, info = eval_env.step(np.asarray(action))
      total += reward
      total_clean += info.get("clean_reward", reward)
      t += 1
    returns.append(total)
    clean.append(total_clean)
  step = counters["env_steps"]
  pic = os.path.join(cfg.workdir, "pictures")
  save_strip(os.path.join(pic, f"eval_{step:08d}.png"), frames[:: max(1, len(frames) // 16)][:16])
  save_gif(os.path.join(pic, f"eval_{step:08d}.gif"), frames)
  if buf.num_episodes:
    ep = buf.episode(-1)  # the newest (episode ids are not positions once old ones are evicted)
    n = min(16, ep["image"].shape[0])
    save_factor_pictures(
      os.path.join(pic, f"factors_{step:08d}.png"),
      wm_cfg,
      state.params["model"],
      ep["image"][:n],
      ep["action"][:n],
      jax.random.fold_in(keys["pictures"], step),
    )
  return {
    "kind": "eval",
    "env_steps": step,
    "return_mean": float(np.mean(returns)),
    "return_std": float(np.std(returns)),
    "clean_return_mean": float(np.mean(clean)),
    "returns": [float(x) for x in returns],
  }


def save_strip(path: str, frames) -> None:
  from PIL import Image

  strip = np.concatenate(list(frames), axis=1)
  img = Image.fromarray(strip).resize((strip.shape[1] * 2, strip.shape[0] * 2), Image.NEAREST)
  with io.atomic_path(path) as tmp:
    img.save(tmp, format="PNG")


def save_gif(path: str, frames) -> None:
  """The evaluation episode as an animated GIF (every agent step, 2x upscaled)."""
  import imageio.v2 as imageio

  big = [np.repeat(np.repeat(f, 2, 0), 2, 1) for f in frames]
  with io.atomic_path(path) as tmp:
    imageio.mimsave(tmp, big, format="GIF", duration=0.05, loop=0)


def plot_returns(workdir: str, rows: list[dict]) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  ep = [x for x in rows if x["kind"] == "episode"]
  ev = [x for x in rows if x["kind"] == "eval"]
  tr = [x for x in rows if x["kind"] == "train"]
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
  ax = axes[0]
  if ep:
    ax.plot(
      [x["env_steps"] for x in ep],
      [x["return"] for x in ep],
      ".",
      ms=3,
      alpha=0.5,
      label="training episodes (exploring)",
    )
  if ev:
    ax.errorbar(
      [x["env_steps"] for x in ev],
      [x["return_mean"] for x in ev],
      yerr=[x["return_std"] for x in ev],
      fmt="o-",
      capsize=2,
      label="evaluation (mode)",
    )
  ax.set(xlabel="env steps", ylabel="episode return", title="returns")
  ax.legend(fontsize=8)
  ax = axes[1]
  for k in ("recon_nll", "kl_x", "kl_y", "actor_loss", "value_loss"):
    if tr and k in tr[0]:
      ax.plot([x["env_steps"] for x in tr], [x[k] for x in tr], lw=1, label=k)
  ax.set(xlabel="env steps", yscale="symlog", title="loss terms")
  ax.legend(fontsize=8)
  fig.tight_layout()
  io.save_figure(os.path.join(workdir, "returns.png"), fig)
  plt.close(fig)
