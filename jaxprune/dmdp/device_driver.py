"""The online agent with its environments on the device (``env_backend="jax"``).

``run(cfg)`` is :func:`jaxprune.dmdp.driver.run`'s counterpart for the JAX environments of
:mod:`jaxprune.envs.jax_env`: the same :class:`jaxprune.core.run.Run` (lock, config check on
resume, checkpoints, ``metrics.jsonl``, NaN guard, progress bar), with the loop of
:mod:`jaxprune.dmdp.device_loop` - ``cfg.num_envs`` environments per seed, ``cfg.seeds`` seeds
(``cfg.seed``, ``cfg.seed + 1``, ...) vmapped in one jitted program.

Schedule, in env (physics) steps per seed, as the host driver's: an iteration collects
``train_every`` env steps (``train_every / (action_repeat x num_envs)`` agent steps of every
environment) and then, once past ``prefill`` and with a finished episode in replay, runs
``updates`` agent updates. Differences from the host loop, all from the static schedule: the
prefill switches to the policy at an iteration boundary; the N environments of a seed start their
episodes together; an evaluation runs ``eval_episodes`` episodes at once (one per vmapped
environment) at the first episode end past each ``eval_every``; checkpoints (the whole loop state:
agent, environments, replay, keys) are taken at episode ends. Randomness comes from
``jax.random`` keys (the background clip is the host environment's for the same seed), so a run
is not step-for-step the host run of the same seed.
"""

from __future__ import annotations

import functools
import os
import time

import jax
import numpy as np

from jaxprune.core import config as config_lib
from jaxprune.core import io
from jaxprune.core.run import Run
from jaxprune.dmdp import device_loop
from jaxprune.dmdp.driver import MAY_CHANGE, check_value_bound, value_bound
from jaxprune.dmdp.run_config import RunConfig
from jaxprune.dmdp.salts import EVAL_ENV_SEED_OFFSET, EVAL_SALT


def loop_spec(cfg: RunConfig) -> device_loop.LoopSpec:
  """The loop's static sizes from ``cfg`` (replay slots: ``replay_capacity`` env steps per seed,
  at least two episodes)."""
  per_slot = cfg.episode_length * cfg.num_envs
  return device_loop.LoopSpec(
    wm_cfg=cfg.world_model,
    ag_cfg=cfg.agent,
    num_envs=cfg.num_envs,
    collect_steps=cfg.train_every // (cfg.action_repeat * cfg.num_envs),
    updates=cfg.updates,
    batch=cfg.batch,
    seq_len=cfg.seq_len,
    slots=max(2, cfg.replay_capacity // per_slot),
  )


def make_envs(cfg: RunConfig, *, eval_env: bool = False):
  """``(env, params)``: the task's JAX environment and its parameters, the clip stacked over the
  seeds (each seed's background clip is the host environment's of that seed; the physics and
  the scene are shared, see :func:`jaxprune.envs.jax_env.params_axes`)."""
  from jaxprune.envs import jax_env

  offset = EVAL_ENV_SEED_OFFSET if eval_env else 0
  made = [
    jax_env.make(
      cfg.env,
      cfg.variant,
      seed=cfg.seed + i + offset,
      image_size=cfg.world_model.image_size,
      action_repeat=cfg.action_repeat,
      episode_length=cfg.episode_length,
      video_dir=cfg.video_dir,
    )
    for i in range(cfg.seeds)
  ]
  env, params = made[0]
  params = params.replace(clip=jax.numpy.stack([p.clip for _, p in made]))
  return env, params


class _Programs:
  """The jitted, seed-vmapped functions of one (spec, env)."""

  def __init__(self, spec: device_loop.LoopSpec, env, params, eval_episodes: int):
    from jaxprune.envs import jax_env

    self._axes = axes = jax_env.params_axes(params)
    self.init = jax.jit(
      jax.vmap(functools.partial(device_loop.init_loop, spec, env), in_axes=(axes, 0))
    )
    self.start = jax.jit(
      device_loop.seeds_fn(
        functools.partial(device_loop.start_episodes, spec, env), params_axis=axes
      ),
      donate_argnums=1,
    )
    self._iteration = {}
    self._spec, self._env = spec, env
    ev = functools.partial(device_loop.evaluate, spec, env, episodes=eval_episodes)
    self.evaluate = jax.jit(jax.vmap(ev, in_axes=(axes, 0, 0)))

  def iteration(self, random: bool, learn: bool):
    if (random, learn) not in self._iteration:
      fn = functools.partial(
        device_loop.iteration, self._spec, self._env, random=random, learn=learn
      )
      self._iteration[random, learn] = jax.jit(
        device_loop.seeds_fn(fn, params_axis=self._axes), donate_argnums=1
      )
    return self._iteration[random, learn]


def run(cfg: RunConfig) -> dict:
  """Train (or resume) in ``cfg.workdir``; returns a summary dict (also ``summary.json``)."""
  if cfg.env_backend != "jax":
    raise ValueError(f"device_driver.run needs env_backend='jax', got {cfg.env_backend!r}")
  with Run(
    cfg.workdir,
    config=cfg,
    may_change=MAY_CHANGE,
    overwrite=cfg.overwrite,
    position_key="env_steps",
  ) as r:
    return _run(cfg, r)


def _seed_keys(cfg: RunConfig):
  return jax.numpy.stack([jax.random.key(cfg.seed + i) for i in range(cfg.seeds)])


def _run(cfg: RunConfig, r: Run) -> dict:
  io.save_json(os.path.join(cfg.workdir, "config.json"), config_lib.to_dict(cfg))
  spec = loop_spec(cfg)
  env, params = make_envs(cfg)
  eval_env, eval_params = make_envs(cfg, eval_env=True)
  programs = _Programs(spec, env, params, cfg.eval_episodes)
  eval_programs = (
    programs if eval_env == env else _Programs(spec, eval_env, eval_params, cfg.eval_episodes)
  )
  keys = _seed_keys(cfg)
  state = programs.init(params, keys)
  eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, EVAL_SALT))(keys)
  per_iteration = cfg.train_every  # env steps per seed
  episode_iterations = env.episode_steps // spec.collect_steps
  counters = dict(env_steps=0, episodes=0, evals=0, next_eval=cfg.eval_every, iterations=0)
  counters["next_ckpt"] = cfg.checkpoint_every
  restored = r.restore(_saved(state))
  if restored is not None:
    saved, meta = restored
    state = _unsaved(saved, state)
    counters = dict(meta["counters"])
    print(
      f"resumed at {counters['env_steps']} env steps per seed, {counters['episodes']} episodes "
      f"per environment",
      flush=True,
    )
  bound = value_bound(cfg)
  bar = r.progress(
    total=cfg.env_steps,
    initial=counters["env_steps"],
    unit="env step",
    desc=f"{cfg.model} {cfg.env} {cfg.variant} jax x{cfg.num_envs} x{cfg.seeds} seeds",
    enabled=cfg.progress,
  )
  seeds = [cfg.seed + i for i in range(cfg.seeds)]
  # rates count this process's iterations after each program's first (compiling) call
  t_loop = 0.0
  t_process = time.perf_counter()  # train records carry the seconds since (steady-state rates)
  n_updates = rate_steps = 0
  compiled: set = set()
  while counters["env_steps"] < cfg.env_steps:
    random = counters["env_steps"] < cfg.prefill
    after = counters["env_steps"] + per_iteration
    learn = after > cfg.prefill and counters["episodes"] >= 1
    t0 = time.perf_counter()
    state, metrics = programs.iteration(random, learn)(params, state)
    metrics = jax.device_get(metrics)
    if (random, learn) in compiled:
      t_loop += time.perf_counter() - t0
      rate_steps += per_iteration * cfg.seeds
      n_updates += cfg.updates if learn else 0
    compiled.add((random, learn))
    counters["env_steps"] = after
    counters["iterations"] += 1
    bar.update(per_iteration)
    if learn:
      records = []
      for i, s in enumerate(seeds):
        m = {k: v[i] for k, v in metrics.items()}
        check_value_bound(
          m, bound=bound, first_update=counters["iterations"], env_steps=counters["env_steps"]
        )
        last = {k: float(np.mean(v)) for k, v in m.items()}
        records.append(
          {
            "kind": "train",
            "env_steps": after,
            "seed": s,
            **last,
            "process_s": time.perf_counter() - t_process,
          }
        )
      r.log(records)
    if counters["iterations"] % episode_iterations:
      continue
    # an episode of every environment ends --------------------------------------------------
    ret, clean = jax.device_get((state.ret_N, state.clean_N))
    counters["episodes"] += 1
    r.log(
      {
        "kind": "episode",
        "env_steps": after,
        "seed": s,
        "episode": counters["episodes"],
        "return": float(np.mean(ret[i])),
        "clean_return": float(np.mean(clean[i])),
        "returns": [float(x) for x in ret[i]],
      }
      for i, s in enumerate(seeds)
    )
    bar.set_postfix(
      ret=f"{float(np.mean(ret)):.1f}", env_sps=f"{rate_steps / max(t_loop, 1e-9):.0f}"
    )
    state = programs.start(params, state)
    finished = counters["env_steps"] >= cfg.env_steps
    if counters["env_steps"] >= counters["next_eval"] or finished:
      counters["next_eval"] += cfg.eval_every
      k = jax.vmap(lambda key: jax.random.fold_in(key, counters["evals"]))(eval_keys)
      counters["evals"] += 1
      ret_e, clean_e = jax.device_get(eval_programs.evaluate(eval_params, state.train.params, k))
      r.log(
        {
          "kind": "eval",
          "env_steps": after,
          "seed": s,
          "return_mean": float(np.mean(ret_e[i])),
          "return_std": float(np.std(ret_e[i])),
          "clean_return_mean": float(np.mean(clean_e[i])),
          "returns": [float(x) for x in ret_e[i]],
        }
        for i, s in enumerate(seeds)
      )
    if counters["env_steps"] >= counters["next_ckpt"] or finished:
      counters["next_ckpt"] += cfg.checkpoint_every
      r.save(
        counters["iterations"],
        _saved(state),
        position=counters["env_steps"],
        meta={"counters": dict(counters)},
      )

  rows = r.records()
  evals = [x for x in rows if x["kind"] == "eval"]
  summary = {
    "env": cfg.env,
    "variant": cfg.variant,
    "model": cfg.model,
    "env_backend": "jax",
    "num_envs": cfg.num_envs,
    "seeds": seeds,
    "env_steps": counters["env_steps"],
    "episodes": counters["episodes"],
    "updates": int(np.asarray(state.train.step)[0]),
    "eval_env_steps": sorted({x["env_steps"] for x in evals}),
    "eval_return": {s: [x["return_mean"] for x in evals if x["seed"] == s] for s in seeds},
    # env steps of all seeds per second of iterations (collection + updates), first calls and
    # episode resets left out; None when every iteration was a first call
    "env_steps_per_s": rate_steps / t_loop if t_loop > 0 else None,
    "updates_per_s_per_seed": n_updates / t_loop if t_loop > 0 else None,
  }
  io.save_json(os.path.join(cfg.workdir, "summary.json"), summary)
  return summary


def _saved(state) -> dict:
  """The loop state as orbax saves it: its non-empty leaves by position (orbax refuses
  zero-size arrays, which MJX's data holds, e.g. ``act`` of models without actuator state)."""
  leaves = jax.tree.leaves(state)
  return {f"leaf{i:05d}": x for i, x in enumerate(leaves) if np.size(x)}


def _unsaved(saved: dict, like):
  """:func:`_saved`'s inverse: ``like``'s structure with the saved leaves (empty ones from
  ``like``)."""
  leaves, treedef = jax.tree.flatten(like)
  return treedef.unflatten([saved.get(f"leaf{i:05d}", x) for i, x in enumerate(leaves)])
