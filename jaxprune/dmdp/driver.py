"""The online Denoised MDP agent's driver: collect on a noisy DMC task, train model + actor +
critic, evaluate.

``run(cfg)`` (``scripts/train_dmdp.py`` is its command line) runs under the shared driver
:class:`jaxprune.core.run.Run` (lock, config check on resume, checkpoints, metrics.jsonl, NaN
guard, progress bar) and does, per episode:

1. act: random actions for the first ``prefill`` env steps, then :func:`agent.policy_step`
   (posterior filtering on x, y, z plus exploration noise); every observation goes to the
   :class:`jaxprune.dmdp.replay.ReplayBuffer` (uint8 pixels);
2. every ``train_every`` env steps, ``updates`` agent updates: world model, actor and value in
   one step (:func:`agent.agent_loss_fn` through :func:`jaxprune.core.loop.make_update`),
   ``updates_per_dispatch`` of them per jitted ``lax.scan`` dispatch (:func:`train_dispatch`),
   data-parallel over the devices (:func:`batch_mesh`). A NaN or inf in any update's metrics
   stops the run with :class:`jaxprune.core.run.NonFiniteError` naming the update and env step,
   and a mean imagined value beyond any possible return (``value_guard``) stops it with
   :class:`ValueDivergedError`;
3. every ``eval_every`` env steps, ``eval_episodes`` episodes with the policy's mode on a second
   environment (own seed), a video strip of the first one, and the world model's pictures
   (reconstructions from all factors and from each alone);
4. at the end of an episode, when ``checkpoint_every`` env steps have passed: a checkpoint at the
   update step with the counters (env steps, episodes, next eval / checkpoint, ...) in its
   metadata and the replay buffer as its file (which records the update, env steps and episodes
   it belongs to). A restarted run restores both (a replay file of another checkpoint stops it
   with :class:`jaxprune.core.checkpoint.CheckpointError`, see :func:`check_replay_belongs`),
   replays the environments' episode draws, drops metrics written after the checkpoint and goes
   on; a restarted run with another config (except :data:`MAY_CHANGE`) stops with
   :class:`jaxprune.core.run.ConfigMismatchError`.

Env steps count physics-control steps (the paper's unit): one agent step = ``action_repeat``.

The config and its presets are :mod:`jaxprune.dmdp.run_config`; evaluation, pictures and plots
:mod:`jaxprune.dmdp.evaluation`; the state on a mesh :mod:`jaxprune.dmdp.agent_state`.
"""

from __future__ import annotations

import functools
import math
import os
import time
from typing import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxprune.core import config as config_lib
from jaxprune.core import io
from jaxprune.core.cache import memoize
from jaxprune.core.checkpoint import CheckpointError
from jaxprune.core.loop import TrainState, make_update, run_steps
from jaxprune.core.run import Dispatcher, Run
from jaxprune.core.sharding import DATA_AXIS
from jaxprune.dmdp import agent as agent_lib
from jaxprune.dmdp import evaluation
from jaxprune.dmdp import replay as replay_lib
from jaxprune.dmdp.agent import AgentConfig
from jaxprune.dmdp.agent_state import batch_mesh, init_state
from jaxprune.dmdp.config import WorldModelConfig
from jaxprune.dmdp.run_config import ROBODESK_TASKS, RunConfig
from jaxprune.dmdp.salts import EVAL_ENV_SEED_OFFSET, EVAL_SALT, EXPLORE_SALT, PICTURES_SALT

# a resumed run may change these (value_guard too: a run stopped by the guard may go on without it)
MAY_CHANGE = ("env_steps", "progress", "overwrite", "workdir", "value_guard")


class ValueDivergedError(RuntimeError):
  """The imagined values left the range any policy's return can have: the value net bootstraps
  on its own predictions (no NaN needed for that); the run stops with its last checkpoint
  intact."""


# ---------------------------------------------------------------------------------------------
# the update: data-parallel, compiled once per (configs, mesh)


@memoize
def train_dispatch(wm_cfg: WorldModelConfig, ag_cfg: AgentConfig, mesh: Mesh) -> Callable:
  """``dispatch(state, batches) -> (state, metrics)``: K agent updates in one ``lax.scan`` over
  batches stacked K x B x T x ...; data-parallel: the batch axis (B) is sharded over ``mesh``'s
  data axis, the state replicated (and donated), so gradients are all-reduced means. Memoised:
  runs in one process with the same configs and mesh share the compilation."""
  update = make_update(agent_lib.agent_loss_fn(wm_cfg, ag_cfg), agent_lib.agent_optimizer(ag_cfg))
  replicated = NamedSharding(mesh, P())
  batches = NamedSharding(mesh, P(None, DATA_AXIS))
  return jax.jit(
    lambda state, b: run_steps(update, state, b),
    in_shardings=(replicated, batches),
    out_shardings=(replicated, replicated),
    donate_argnums=0,
  )


def value_bound(cfg: RunConfig) -> float:
  """The largest |value| :func:`check_value_bound` lets an update have (inf when off)."""
  if cfg.value_guard == 0:
    return math.inf
  return cfg.value_guard * cfg.action_repeat / (1.0 - cfg.agent.gamma)


def check_value_bound(metrics: dict, *, bound: float, first_update: int, env_steps: int) -> None:
  """:class:`ValueDivergedError` naming the first update (numbered from ``first_update``) whose
  mean imagined value (``metrics["imag_value"]``, each K) is beyond +-``bound``."""
  v = np.abs(np.asarray(metrics["imag_value"], np.float64))
  if (v > bound).any():
    i = int(np.argmax(v > bound))
    raise ValueDivergedError(
      f"the mean imagined value is {float(metrics['imag_value'][i]):.6g} at update "
      f"{first_update + i} (env step {env_steps}), beyond +-{bound:.4g} (value_guard x "
      "action_repeat / (1 - gamma)): the value net diverged (value_loss "
      f"{float(metrics['value_loss'][i]):.4g}); the run stops (its last checkpoint is intact). "
      "Lower --agent.value_lr / --agent.actor_lr, or --value_guard 0 to go on regardless"
    )


def _train(cfg: RunConfig, dispatch: Callable, state: TrainState, buf, env_steps: int):
  """One training phase: ``cfg.updates`` updates through the core
  :class:`jaxprune.core.run.Dispatcher` (the driver :func:`jaxprune.core.run.fit` uses), with a
  data source per dispatch (batches sampled from replay) and the value guard as its extra check;
  returns ``(state, the record to log)``."""
  at = int(state.step)  # the phase runs updates at + 1 ... at + cfg.updates
  bound = value_bound(cfg)
  dispatcher = Dispatcher(
    dispatch,
    where=lambda n: f"update {n} (env step {env_steps})",
    checks=[
      lambda m, at_d: check_value_bound(m, bound=bound, first_update=at_d + 1, env_steps=env_steps)
    ],
  )
  # the next batches are sampled on the host while the device runs the last dispatch
  sample = lambda k: (buf.sample(cfg.batch, cfg.seq_len, num_batches=k),)
  for _, _, state in dispatcher.run(
    state, start=at, stop=at + cfg.updates, per_dispatch=cfg.updates_per_dispatch, args=sample
  ):
    pass
  fetched = dispatcher.fetch()  # all updates' metrics in one transfer, NaN guard, value guard
  # logged: the mean over the last dispatch (the newest updates_per_dispatch updates)
  last = {k: float(np.mean(v)) for k, v in fetched[-1][1].items()}
  return state, {"kind": "train", "env_steps": env_steps, "update": at + cfg.updates, **last}


# ---------------------------------------------------------------------------------------------
# the replay file of a checkpoint


def _replay_record(step: int, counters: dict) -> dict[str, int]:
  """What a checkpoint's replay file records that it belongs to."""
  return {"update": step, "env_steps": counters["env_steps"], "episodes": counters["episodes"]}


def check_replay_belongs(
  buf: replay_lib.ReplayBuffer,
  replay_path: str,
  checkpoint: str,
  *,
  step: int,
  counters: dict,
  action_repeat: int,
) -> None:
  """:class:`CheckpointError` unless the replay buffer loaded from ``replay_path`` belongs to the
  checkpoint ``checkpoint`` restored at update ``step`` with ``counters``: its ``belongs_to``
  record (update, env steps, episodes) when the file has one, and always its own counters
  (episodes finished; transitions x ``action_repeat`` = env steps; checkpoints are taken at
  episode ends). Files of older versions lack the record and are checked by the counters."""
  want = _replay_record(step, counters)
  own = {"env_steps": buf.total_steps * action_repeat, "episodes": buf.total_episodes}
  have = {**own, **(buf.belongs_to or {})}  # the record when the file has one
  names = ("update", "env_steps", "episodes")
  bad = [(k, d[k]) for d in (have, own) for k in names if k in d and d[k] != want[k]]
  if bad:
    name, got = bad[0]
    desc = lambda d: ", ".join(
      f"update {d[k]}" if k == "update" else f"{d[k]} {k.replace('_', ' ')}"
      for k in names
      if k in d
    )
    raise CheckpointError(
      f"replay file {replay_path} belongs to {desc(have)}, but the checkpoint restored with it, "
      f"{checkpoint}, is at {desc(want)} ({name}: {got} != {want[name]}): the replay file was "
      "replaced by another checkpoint's. Put that checkpoint's own replay file back, or delete "
      f"{checkpoint} and {replay_path} to resume from the checkpoint before, or start afresh "
      "with overwrite=True (--overwrite true on the command line)"
    )


# ---------------------------------------------------------------------------------------------
# the run


def run(cfg: RunConfig) -> dict:
  """Train (or resume) in ``cfg.workdir``; returns a summary dict (also ``summary.json``).
  ``cfg.env_backend == "jax"`` runs :func:`jaxprune.dmdp.device_driver.run` instead."""
  if cfg.env_backend == "jax":
    from jaxprune.dmdp import device_driver

    return device_driver.run(cfg)
  with Run(
    cfg.workdir,
    config=cfg,
    may_change=MAY_CHANGE,
    overwrite=cfg.overwrite,
    position_key="env_steps",
  ) as r:
    return _run(cfg, r)


def _run(cfg: RunConfig, r: Run) -> dict:
  from jaxprune import envs  # dm_control loads here, not at package import

  if r.checkpoint_steps() and os.path.isdir(os.path.join(cfg.workdir, "replay")):
    # before the shared driver: its restore would drop the metrics of these checkpoints
    raise CheckpointError(
      f"{cfg.workdir} holds a run of an older version (replay/ beside checkpoints/), which "
      "this version cannot resume; use a new workdir (or overwrite=True, --overwrite true on the "
      "command line, to discard it)"
    )
  io.save_json(os.path.join(cfg.workdir, "config.json"), config_lib.to_dict(cfg))
  os.makedirs(os.path.join(cfg.workdir, "pictures"), exist_ok=True)
  wm_cfg, ag_cfg = cfg.world_model, cfg.agent
  io.save_json(
    os.path.join(cfg.workdir, "model_config.json"),
    {"world_model": config_lib.to_dict(wm_cfg), "agent": config_lib.to_dict(ag_cfg)},
  )
  mesh = batch_mesh(cfg.batch)
  dispatch = train_dispatch(wm_cfg, ag_cfg, mesh)
  state = init_state(cfg, mesh)
  key = jax.random.key(cfg.seed)
  keys = {
    "explore": jax.random.fold_in(key, EXPLORE_SALT),
    "eval": jax.random.fold_in(key, EVAL_SALT),
    "pictures": jax.random.fold_in(key, PICTURES_SALT),
  }

  extra = {"shadows": cfg.shadows} if cfg.env in ROBODESK_TASKS else {}
  make_env = lambda seed: envs.make(
    cfg.env,
    cfg.variant,
    seed=seed,
    image_size=wm_cfg.image_size,
    action_repeat=cfg.action_repeat,
    episode_length=cfg.episode_length,
    video_dir=cfg.video_dir,
    **extra,
  )
  env, eval_env = make_env(cfg.seed), make_env(cfg.seed + EVAL_ENV_SEED_OFFSET)
  counters = dict(
    env_steps=0,
    episodes=0,
    eval_episodes=0,
    next_eval=cfg.eval_every,
    next_ckpt=cfg.checkpoint_every,
    trained_until=0,
  )
  restored = r.restore(state)
  if restored is not None:
    state, meta = restored
    counters = dict(meta["counters"])
    if "replay" not in meta.get("files", {}):
      raise CheckpointError(
        f"the checkpoint at update {int(state.step)} in {cfg.workdir} has no "
        "replay file (files/replay/); start in a fresh workdir or with "
        "overwrite=True (--overwrite true on the command line)"
      )
    replay_path = meta["files"]["replay"]
    buf = replay_lib.ReplayBuffer.load(replay_path)
    check_replay_belongs(
      buf,
      replay_path,
      os.path.join(cfg.workdir, "checkpoints", str(int(state.step))),
      step=int(state.step),
      counters=counters,
      action_repeat=cfg.action_repeat,
    )
    for _ in range(counters["episodes"]):  # the same episode draws as an uninterrupted run
      env.reset()
    for _ in range(counters["eval_episodes"]):
      eval_env.reset()
    print(
      f"resumed from update {int(state.step)}: {counters['env_steps']} env steps, "
      f"{counters['episodes']} episodes, {buf.num_episodes} in replay",
      flush=True,
    )
  else:
    buf = replay_lib.ReplayBuffer(
      capacity=cfg.replay_capacity // cfg.action_repeat,
      obs_shape=env.observation_shape,
      action_dim=env.action_dim,
      seed=cfg.seed,
    )

  bar = r.progress(
    total=cfg.env_steps,
    initial=counters["env_steps"],
    unit="env step",
    desc=f"{cfg.model} {cfg.env} {cfg.variant}",
    enabled=cfg.progress,
  )
  t_env = t_train = 0.0
  t_process = time.perf_counter()  # train records carry the seconds since (steady-state rates)
  n_updates_run = 0
  env_steps_start = counters["env_steps"]  # rates count this process's work only
  last_return = float("nan")
  try:
    while counters["env_steps"] < cfg.env_steps:
      # one episode -------------------------------------------------------------------------
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
          k = jax.random.fold_in(keys["explore"], counters["env_steps"])
          action, pstate = agent_lib.policy_step(
            wm_cfg, ag_cfg, state.params, pstate, obs, k, explore=True
          )
          action = np.asarray(action)
        obs, reward, done, info = env.step(action)
        buf.add(obs, action, reward, done)
        ep_return += reward
        ep_clean += info.get("clean_reward", reward)
        counters["env_steps"] += cfg.action_repeat
        bar.update(cfg.action_repeat)
        # train every train_every env steps once past the prefill (and once data exists)
        due = counters["env_steps"] - counters["trained_until"] >= cfg.train_every
        if due and counters["env_steps"] >= cfg.prefill and buf.longest >= cfg.seq_len:
          t_env += time.perf_counter() - t0
          t1 = time.perf_counter()
          counters["trained_until"] = counters["env_steps"]
          state, record = _train(cfg, dispatch, state, buf, counters["env_steps"])
          n_updates_run += cfg.updates
          t_train += time.perf_counter() - t1
          t0 = time.perf_counter()
          r.log([{**record, "process_s": time.perf_counter() - t_process}])
          bar.set_postfix(
            ret=f"{last_return:.1f}",
            loss=f"{record['loss']:.1f}",
            env_sps=f"{(counters['env_steps'] - env_steps_start) / t_env:.0f}",
            upd_s=f"{n_updates_run / max(t_train, 1e-9):.1f}",
          )
      t_env += time.perf_counter() - t0
      counters["episodes"] += 1
      last_return = ep_return
      r.log(
        [
          {
            "kind": "episode",
            "env_steps": counters["env_steps"],
            "episode": counters["episodes"],
            "return": ep_return,
            "clean_return": ep_clean,
          }
        ]
      )

      # evaluation, pictures, checkpoint at episode ends -------------------------------------
      finished = counters["env_steps"] >= cfg.env_steps
      if counters["env_steps"] >= counters["next_eval"] or finished:
        counters["next_eval"] += cfg.eval_every
        r.log([evaluation.evaluate(cfg, state, eval_env, buf, counters, keys)])
        evaluation.plot_returns(cfg.workdir, r.records())
      if counters["env_steps"] >= counters["next_ckpt"] or finished:
        counters["next_ckpt"] += cfg.checkpoint_every
        step = int(state.step)
        # no update since the last checkpoint (still prefilling): a resume from that one is
        # consistent, it only redoes these env steps
        if step not in r.checkpoint_steps():
          r.save(
            step,
            state,
            position=counters["env_steps"],
            meta={"counters": dict(counters)},
            files={
              "replay": functools.partial(buf.save, belongs_to=_replay_record(step, counters))
            },
          )
  finally:
    env.close()
    eval_env.close()

  rows = r.records()
  evals = [x for x in rows if x["kind"] == "eval"]
  episodes = [x for x in rows if x["kind"] == "episode"]
  summary = {
    "env": cfg.env,
    "variant": cfg.variant,
    "model": cfg.model,
    "env_steps": counters["env_steps"],
    "episodes": counters["episodes"],
    "updates": int(state.step),
    "eval_env_steps": [x["env_steps"] for x in evals],
    "eval_return": [x["return_mean"] for x in evals],
    "eval_clean_return": [x["clean_return_mean"] for x in evals],
    "train_return": [x["return"] for x in episodes],
    "env_steps_per_s": (counters["env_steps"] - env_steps_start) / t_env if t_env else None,
    "updates_per_s": n_updates_run / t_train if t_train > 0 else None,
  }
  io.save_json(os.path.join(cfg.workdir, "summary.json"), summary)
  return summary
