"""The Denoised MDP experiment: collect on a noisy DMC task, train model + actor + critic, evaluate.

``run(RunConfig(...))`` (``scripts/train_dmdp.py`` is its command line) does, per episode:

1. act: random actions for the first ``prefill`` env steps, then :func:`agent.policy_step`
   (posterior filtering on x, y, z plus exploration noise); every observation goes to the
   :class:`jaxprune.replay.ReplayBuffer` (uint8 pixels);
2. every ``train_every`` env steps, ``updates`` agent updates: world model, actor and value in
   one jitted step (:func:`agent.agent_loss_fn` through :func:`jaxprune.train.make_update`),
   ``updates_per_dispatch`` of them per ``lax.scan`` dispatch (:func:`jaxprune.train.run_steps`);
3. every ``eval_every`` env steps, ``eval_episodes`` episodes with the policy's mode on a second
   environment (own seed), a video strip of the first one, and the world model's pictures
   (reconstructions from all factors and from each alone);
4. at the end of an episode, when ``checkpoint_every`` env steps have passed: the replay buffer
   (atomic ``.npz`` named by the update step) and then the Orbax checkpoint of the train state
   with the counters. A restarted run restores both, replays the environments' episode draws,
   drops metrics written after the checkpoint and goes on.

Env steps count physics-control steps (the paper's unit): one agent step = ``action_repeat``.
Presets: ``full`` = the refs' settings (64x64, 1e6 env steps, batch 50 x 50, 100 updates per
1000 env steps, horizon 15, full model sizes) for accelerators; ``small`` = a CPU run of minutes
(32x32 pixels, 100-step episodes, small networks, 5x the refs' learning rates, 20 updates of
16 x 16 per 100 env steps, free nats 1: with 8-dim latents KL_x stays below the refs' 3 nats, which
would leave x's prior, the one imagination runs on, untrained).
"""
from __future__ import annotations

import dataclasses
import functools
import glob
import os
import time
from dataclasses import dataclass, field
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.core import io
from jaxprune.dmdp import replay as replay_lib
from jaxprune.core.checkpoint import Checkpointer
from jaxprune.dmdp import agent as agent_lib
from jaxprune.dmdp import config as wm_config
from jaxprune.dmdp.pictures import save_factor_pictures
from jaxprune.core.loop import create_state, make_update, run_steps

MODELS = ("dmdp", "dmdp_2c", "dreamer")

# per preset: values of every RunConfig field left at None
PRESETS = {
    "full": dict(image_size=64, action_repeat=2, episode_length=1000, env_steps=1_000_000,
                 prefill=5000, train_every=1000, updates=100, updates_per_dispatch=10,
                 batch=50, seq_len=50, eval_every=10_000, eval_episodes=10,
                 checkpoint_every=10_000, replay_capacity=1_000_000, horizon=15, net_hidden=400,
                 model_size="full", model_lr=6e-4, actor_lr=8e-5, free_nats=3.0),
    "small": dict(image_size=32, action_repeat=2, episode_length=200, env_steps=16_000,
                  prefill=1000, train_every=100, updates=20, updates_per_dispatch=10,
                  batch=16, seq_len=16, eval_every=2000, eval_episodes=3,
                  checkpoint_every=2000, replay_capacity=100_000, horizon=10, net_hidden=128,
                  model_size="small", model_lr=1e-3, actor_lr=4e-4, free_nats=1.0),
}


@dataclass(frozen=True)
class RunConfig:
  """Denoised MDP / Dreamer on a noisy DMC task; fields left at None come from --preset."""

  env: str = field(default="cheetah_run", metadata={"help": "cheetah_run | walker_walk | reacher_easy"})
  variant: str = field(default="video_background_camera_jitter", metadata={
      "help": "noiseless | video_background | video_background_noisy_sensor | "
              "video_background_camera_jitter"})
  model: str = field(default="dmdp", metadata={"help": "dmdp (Fig. 2b) | dmdp_2c | dreamer"})
  preset: str = field(default="full", metadata={"help": "full (the refs') | small (CPU minutes)"})
  workdir: str = "runs/dmdp"
  seed: int = 0
  video_dir: Optional[str] = field(default=None, metadata={
      "help": "directory of background videos (default: procedural, offline)"})
  beta: float = field(default=0.25, metadata={"help": "beta_y = beta_z of the objective"})
  image_size: Optional[int] = None
  action_repeat: Optional[int] = None
  episode_length: Optional[int] = field(default=None, metadata={"help": "env (physics) steps"})
  env_steps: Optional[int] = field(default=None, metadata={"help": "total env (physics) steps"})
  prefill: Optional[int] = field(default=None, metadata={"help": "env steps of random actions"})
  train_every: Optional[int] = field(default=None, metadata={"help": "env steps between updates"})
  updates: Optional[int] = field(default=None, metadata={"help": "updates per train_every"})
  updates_per_dispatch: Optional[int] = None
  batch: Optional[int] = None
  seq_len: Optional[int] = None
  eval_every: Optional[int] = None
  eval_episodes: Optional[int] = None
  checkpoint_every: Optional[int] = None
  replay_capacity: Optional[int] = None
  horizon: Optional[int] = None
  net_hidden: Optional[int] = field(default=None, metadata={"help": "actor / value width"})
  model_size: Optional[str] = field(default=None, metadata={"help": "full | small"})
  model_lr: Optional[float] = None
  free_nats: Optional[float] = field(default=None, metadata={
      "help": "on KL_x; 3 (refs) leaves small latents' priors untrained"})
  actor_lr: Optional[float] = field(default=None, metadata={"help": "actor and value rate"})
  progress: bool = True


def resolve(cfg: RunConfig) -> RunConfig:
  """Fill the fields left at None from the preset; check the values."""
  if cfg.preset not in PRESETS:
    raise ValueError(f"unknown preset {cfg.preset!r}; expected one of {sorted(PRESETS)}")
  if cfg.model not in MODELS:
    raise ValueError(f"unknown model {cfg.model!r}; expected one of {MODELS}")
  fill = {k: v for k, v in PRESETS[cfg.preset].items() if getattr(cfg, k) is None}
  cfg = dataclasses.replace(cfg, **fill)
  for name in ("env_steps", "train_every", "updates", "updates_per_dispatch", "batch", "seq_len",
               "eval_every", "eval_episodes", "checkpoint_every", "replay_capacity"):
    if getattr(cfg, name) < 1:
      raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
  if cfg.updates % cfg.updates_per_dispatch:
    raise ValueError(f"updates ({cfg.updates}) must be a multiple of updates_per_dispatch "
                     f"({cfg.updates_per_dispatch})")
  if cfg.prefill < 0:
    raise ValueError(f"prefill must be >= 0, got {cfg.prefill}")
  agent_steps = cfg.episode_length // cfg.action_repeat
  if cfg.seq_len > agent_steps + 1:
    raise ValueError(f"seq_len {cfg.seq_len} is longer than an episode ({agent_steps} agent "
                     f"steps + the first observation)")
  if cfg.model_size not in ("full", "small"):
    raise ValueError(f"model_size must be 'full' or 'small', got {cfg.model_size!r}")
  return cfg


def world_model_config(cfg: RunConfig, action_dim: int) -> wm_config.WorldModelConfig:
  """The world model of ``--model`` at ``--model_size``, for the env's action and image size."""
  base = {"dmdp": wm_config.denoised_2b, "dmdp_2c": wm_config.denoised_2c,
          "dreamer": wm_config.dreamer}[cfg.model]
  kw = dict(action_dim=action_dim, image_size=cfg.image_size, beta_y=cfg.beta, beta_z=cfg.beta,
            free_nats=cfg.free_nats)
  if cfg.image_size == 32:  # 32 -> 15 -> 6 -> 2 and back 1 -> 5 -> 14 -> 32
    kw.update(encoder_kernels=(4, 4, 4), decoder_kernels=(5, 6, 6))
  elif cfg.image_size != 64:
    raise ValueError(f"image_size must be 32 or 64 (the conv stacks), got {cfg.image_size}")
  if cfg.model_size == "small":
    shrink = lambda d, s: (d, s) if d == 0 else (min(d, 64), min(s, 8))
    wm = base(**kw)
    xd, xs = shrink(wm.x_deter, wm.x_stoch)
    yd, ys = shrink(wm.y_deter, wm.y_stoch)
    zd, zs = shrink(wm.z_deter, wm.z_stoch)
    kw.update(x_deter=xd, x_stoch=xs, y_deter=yd, y_stoch=ys, z_deter=zd, z_stoch=zs,
              cnn_depth=16, embed_size=256, decoder_hidden=256, reward_hidden=128)
  return base(**kw)


def agent_config(cfg: RunConfig) -> agent_lib.AgentConfig:
  layers = {"full": (4, 3), "small": (2, 2)}[cfg.model_size]
  return agent_lib.AgentConfig(horizon=cfg.horizon, actor_hidden=cfg.net_hidden,
                               value_hidden=cfg.net_hidden, actor_layers=layers[0],
                               value_layers=layers[1], model_lr=cfg.model_lr,
                               actor_lr=cfg.actor_lr, value_lr=cfg.actor_lr)


def _replay_path(workdir: str, step: int) -> str:
  return os.path.join(workdir, "replay", f"{step:010d}.npz")


def run(cfg: RunConfig) -> dict:
  """Train (or resume) in ``cfg.workdir``; returns a summary dict (also ``summary.json``)."""
  from jaxprune import envs  # dm_control loads here, not at package import
  cfg = resolve(cfg)
  os.makedirs(os.path.join(cfg.workdir, "replay"), exist_ok=True)
  os.makedirs(os.path.join(cfg.workdir, "pictures"), exist_ok=True)
  io.save_json(os.path.join(cfg.workdir, "config.json"), cfg)
  make_env = lambda seed: envs.make(cfg.env, cfg.variant, seed=seed, image_size=cfg.image_size,
                                    action_repeat=cfg.action_repeat,
                                    episode_length=cfg.episode_length, video_dir=cfg.video_dir)
  env, eval_env = make_env(cfg.seed), make_env(cfg.seed + 10_000)
  wm_cfg = world_model_config(cfg, env.action_dim)
  ag_cfg = agent_config(cfg)
  io.save_json(os.path.join(cfg.workdir, "model_config.json"),
               {"world_model": dataclasses.asdict(wm_cfg), "agent": dataclasses.asdict(ag_cfg)})

  key = jax.random.key(cfg.seed)
  k_init, k_train, k_act = jax.random.split(key, 3)
  optimizer = agent_lib.agent_optimizer(ag_cfg)
  state = create_state(agent_lib.init_agent(wm_cfg, ag_cfg, k_init), optimizer, k_train)
  train_k = _train_fn(wm_cfg, ag_cfg)

  ckpt = Checkpointer(os.path.join(cfg.workdir, "checkpoints"))
  counters = dict(env_steps=0, episodes=0, eval_episodes=0, next_eval=cfg.eval_every,
                  next_ckpt=cfg.checkpoint_every, trained_until=0)
  restored = ckpt.restore_latest(state)
  if restored is not None:
    state, meta = restored
    counters = meta["counters"]
    buf = replay_lib.ReplayBuffer.load(_replay_path(cfg.workdir, int(state.step)))
    for _ in range(counters["episodes"]):  # the same episode draws as an uninterrupted run
      env.reset()
    for _ in range(counters["eval_episodes"]):
      eval_env.reset()
    print(f"resumed from update {int(state.step)}: {counters['env_steps']} env steps, "
          f"{counters['episodes']} episodes, {buf.num_episodes} in replay", flush=True)
  else:
    buf = replay_lib.ReplayBuffer(capacity=cfg.replay_capacity // cfg.action_repeat,
                                  obs_shape=env.observation_shape, action_dim=env.action_dim,
                                  seed=cfg.seed)
  metrics_path = os.path.join(cfg.workdir, "metrics.jsonl")
  if os.path.exists(metrics_path):  # records past the checkpoint (or of an earlier run) go
    io.truncate_jsonl(metrics_path, counters["env_steps"] if restored is not None else -1,
                      key="env_steps")
  log = lambda record: io.append_jsonl(metrics_path, [record])

  bar = None
  if cfg.progress:
    from tqdm.auto import tqdm
    bar = tqdm(total=cfg.env_steps, initial=counters["env_steps"], unit="env step",
               desc=f"{cfg.model} {cfg.env} {cfg.variant}", smoothing=0.05)
  t_env = t_train = 0.0
  n_updates_run = 0
  env_steps_start = counters["env_steps"]  # rates count this process's work only
  last_return = float("nan")
  while counters["env_steps"] < cfg.env_steps:
    # one episode ---------------------------------------------------------------------------
    t0 = time.perf_counter()
    obs = env.reset()
    buf.add(obs)
    pstate = agent_lib.initial_policy_state(wm_cfg)
    rng = np.random.default_rng([cfg.seed, counters["episodes"]])
    ep_return = ep_clean = 0.0
    done = False
    while not done:
      if counters["env_steps"] < cfg.prefill:
        action = rng.uniform(-1.0, 1.0, env.action_dim).astype(np.float32)
      else:
        k = jax.random.fold_in(k_act, counters["env_steps"])
        action, pstate = agent_lib.policy_step(wm_cfg, ag_cfg, state.params, pstate, obs, k,
                                               explore=True)
        action = np.asarray(action)
      obs, reward, done, info = env.step(action)
      buf.add(obs, action, reward, done)
      ep_return += reward
      ep_clean += info.get("clean_reward", reward)
      counters["env_steps"] += cfg.action_repeat
      if bar is not None:
        bar.update(cfg.action_repeat)
      # train every train_every env steps once past the prefill (and once data exists)
      due = counters["env_steps"] - counters["trained_until"] >= cfg.train_every
      if due and counters["env_steps"] >= cfg.prefill and buf.longest >= cfg.seq_len:
        t_env += time.perf_counter() - t0
        t1 = time.perf_counter()
        counters["trained_until"] = counters["env_steps"]
        for _ in range(cfg.updates // cfg.updates_per_dispatch):
          batches = buf.sample(cfg.batch, cfg.seq_len, num_batches=cfg.updates_per_dispatch)
          state, m = train_k(state, batches)
        m = {k: float(np.mean(v)) for k, v in jax.device_get(m).items()}
        n_updates_run += cfg.updates
        t_train += time.perf_counter() - t1
        t0 = time.perf_counter()
        log({"kind": "train", "env_steps": counters["env_steps"],
             "update": int(state.step), **m})
        if bar is not None:
          bar.set_postfix(ret=f"{last_return:.1f}", loss=f"{m['loss']:.1f}",
                          env_sps=f"{(counters['env_steps'] - env_steps_start) / t_env:.0f}",
                          upd_s=f"{n_updates_run / max(t_train, 1e-9):.1f}")
    t_env += time.perf_counter() - t0
    counters["episodes"] += 1
    last_return = ep_return
    log({"kind": "episode", "env_steps": counters["env_steps"],
         "episode": counters["episodes"], "return": ep_return,
         "clean_return": ep_clean})

    # evaluation, pictures, checkpoint at episode ends ---------------------------------------
    if counters["env_steps"] >= counters["next_eval"] or counters["env_steps"] >= cfg.env_steps:
      counters["next_eval"] += cfg.eval_every
      _evaluate(cfg, wm_cfg, ag_cfg, state, eval_env, buf, counters, log, k_act)
      _plot_returns(cfg.workdir, io.read_jsonl(metrics_path))
    if counters["env_steps"] >= counters["next_ckpt"] or counters["env_steps"] >= cfg.env_steps:
      counters["next_ckpt"] += cfg.checkpoint_every
      _checkpoint(cfg, ckpt, state, buf, counters)
  if bar is not None:
    bar.close()
  ckpt.close()

  rows = io.read_jsonl(metrics_path)
  evals = [r for r in rows if r["kind"] == "eval"]
  episodes = [r for r in rows if r["kind"] == "episode"]
  summary = {
      "env": cfg.env, "variant": cfg.variant, "model": cfg.model, "preset": cfg.preset,
      "env_steps": counters["env_steps"], "episodes": counters["episodes"],
      "updates": int(state.step),
      "eval_env_steps": [r["env_steps"] for r in evals],
      "eval_return": [r["return_mean"] for r in evals],
      "eval_clean_return": [r["clean_return_mean"] for r in evals],
      "train_return": [r["return"] for r in episodes],
      "env_steps_per_s": (counters["env_steps"] - env_steps_start) / t_env if t_env else None,
      "updates_per_s": n_updates_run / t_train if t_train > 0 else None,
  }
  io.save_json(os.path.join(cfg.workdir, "summary.json"), summary)
  return summary


@functools.lru_cache(maxsize=8)
def _train_fn(wm_cfg, ag_cfg):
  """``(state, K stacked batches) -> (state, K metrics)``: K agent updates in one ``lax.scan``
  (cached per config, so runs in one process share the compilation)."""
  update = make_update(agent_lib.agent_loss_fn(wm_cfg, ag_cfg), agent_lib.agent_optimizer(ag_cfg))
  return jax.jit(lambda s, b: run_steps(update, s, b), donate_argnums=0)


def _evaluate(cfg, wm_cfg, ag_cfg, state, eval_env, buf, counters, log, k_act):
  """Eval episodes with the policy's mode; a frame strip of the first; factor pictures."""
  returns, clean, frames = [], [], []
  for e in range(cfg.eval_episodes):
    obs = eval_env.reset()
    counters["eval_episodes"] += 1
    pstate = agent_lib.initial_policy_state(wm_cfg)
    total = total_clean = 0.0
    done = False
    t = 0
    while not done:
      if e == 0:
        frames.append(obs)
      k = jax.random.fold_in(jax.random.fold_in(k_act, 0x0E7A1), t)
      action, pstate = agent_lib.policy_step(wm_cfg, ag_cfg, state.params, pstate, obs, k,
                                             explore=False)
      obs, reward, done, info = eval_env.step(np.asarray(action))
      total += reward
      total_clean += info.get("clean_reward", reward)
      t += 1
    returns.append(total)
    clean.append(total_clean)
  step = counters["env_steps"]
  log({"kind": "eval", "env_steps": step, "return_mean": float(np.mean(returns)),
       "return_std": float(np.std(returns)), "clean_return_mean": float(np.mean(clean)),
       "returns": [float(r) for r in returns]})
  pic = os.path.join(cfg.workdir, "pictures")
  _save_strip(os.path.join(pic, f"eval_{step:08d}.png"), frames[::max(1, len(frames) // 16)][:16])
  _save_gif(os.path.join(pic, f"eval_{step:08d}.gif"), frames)
  if buf.num_episodes:
    ep = buf.episode(-1)  # the newest (episode ids are not positions once old ones are evicted)
    n = min(16, ep["image"].shape[0])
    save_factor_pictures(os.path.join(pic, f"factors_{step:08d}.png"), wm_cfg,
                         state.params["model"], ep["image"][:n], ep["action"][:n],
                         jax.random.fold_in(k_act, step))


def _save_strip(path: str, frames) -> None:
  from PIL import Image
  strip = np.concatenate(list(frames), axis=1)
  img = Image.fromarray(strip).resize((strip.shape[1] * 2, strip.shape[0] * 2), Image.NEAREST)
  with io.atomic_path(path) as tmp:
    img.save(tmp, format="PNG")


def _save_gif(path: str, frames) -> None:
  """The evaluation episode as an animated GIF (every agent step, 2x upscaled)."""
  import imageio.v2 as imageio
  big = [np.repeat(np.repeat(f, 2, 0), 2, 1) for f in frames]
  with io.atomic_path(path) as tmp:
    imageio.mimsave(tmp, big, format="GIF", duration=0.05, loop=0)


def _checkpoint(cfg, ckpt, state, buf, counters) -> None:
  """Replay first (atomic, named by the update step), then the train state; then old replays go."""
  step = int(state.step)
  buf.save(_replay_path(cfg.workdir, step))
  ckpt.save(step, state, {"counters": dict(counters)})
  keep = {_replay_path(cfg.workdir, s) for s in ckpt.all_steps()}
  for p in glob.glob(os.path.join(cfg.workdir, "replay", "*.npz")):
    if p not in keep:
      os.remove(p)


def _plot_returns(workdir: str, rows: list[dict]) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  ep = [r for r in rows if r["kind"] == "episode"]
  ev = [r for r in rows if r["kind"] == "eval"]
  tr = [r for r in rows if r["kind"] == "train"]
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
  ax = axes[0]
  if ep:
    ax.plot([r["env_steps"] for r in ep], [r["return"] for r in ep], ".", ms=3, alpha=0.5,
            label="training episodes (exploring)")
  if ev:
    ax.errorbar([r["env_steps"] for r in ev], [r["return_mean"] for r in ev],
                yerr=[r["return_std"] for r in ev], fmt="o-", capsize=2, label="evaluation (mode)")
  ax.set(xlabel="env steps", ylabel="episode return", title="returns")
  ax.legend(fontsize=8)
  ax = axes[1]
  for k in ("recon_nll", "kl_x", "kl_y", "actor_loss", "value_loss"):
    if tr and k in tr[0]:
      ax.plot([r["env_steps"] for r in tr], [r[k] for r in tr], lw=1, label=k)
  ax.set(xlabel="env steps", yscale="symlog", title="loss terms")
  ax.legend(fontsize=8)
  fig.tight_layout()
  io.save_figure(os.path.join(workdir, "returns.png"), fig)
  plt.close(fig)
