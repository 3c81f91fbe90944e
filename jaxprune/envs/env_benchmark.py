"""Env steps per second with rendering: the JAX environment (vmapped over N) against dm_control.

An env step here is an *agent* step, as the agent sees it: ``action_repeat`` dm_control steps
(physics, reward) and one rendered, composited observation. The JAX side runs ``steps`` of them
for N vmapped environments in one jitted ``lax.scan`` (actions drawn inside, so nothing crosses
the host boundary), after a compiling warm-up call; the dm_control side steps one
:class:`jaxprune.envs.dmc.NoisyDMCEnv` (MuJoCo C physics, EGL rendering on the CPU) from Python.
Rows are dicts; :func:`table` prints them with the ratio to dm_control of the same task and
variant, measured in the same process and round.
"""

from __future__ import annotations

import time

import jax
import numpy as np


def time_jax(env, params, *, num_envs: int, steps: int, seed: int = 0) -> dict:
  """Seconds per scanned call of ``steps`` agent steps of ``num_envs`` vmapped environments
  (the median of 3 calls after a warm-up), as a row."""
  vreset = jax.jit(jax.vmap(env.reset, in_axes=(None, 0)))
  vstep = jax.vmap(env.step, in_axes=(None, 0, 0))

  @jax.jit
  def run(state, key):
    def body(s, k):
      a = jax.random.uniform(k, (num_envs, env.action_dim), minval=-1.0, maxval=1.0)
      s, obs, r, _ = vstep(params, s, a)
      return s, r.sum() + obs[:, 0, 0, 0].sum()

    return jax.lax.scan(body, state, jax.random.split(key, steps))

  key = jax.random.key(seed)
  t0 = time.perf_counter()
  state, _ = vreset(params, jax.random.split(key, num_envs))
  state, out = run(state, key)
  jax.block_until_ready(out)
  compile_s = time.perf_counter() - t0
  times = []
  for i in range(3):
    t0 = time.perf_counter()
    state, out = run(state, jax.random.fold_in(key, i + 1))
    jax.block_until_ready(out)
    times.append(time.perf_counter() - t0)
  sec = float(np.median(times))
  return {
    "side": "jax",
    "num_envs": num_envs,
    "steps": steps,
    "seconds": sec,
    "env_steps_per_s": num_envs * steps / sec,
    "first_call_s": compile_s,
  }


def time_dm_control(env, *, steps: int, seed: int = 0) -> dict:
  """Agent steps per second of one host environment (reset outside the timing)."""
  rng = np.random.default_rng(seed)
  env.reset()
  for _ in range(2):  # warm-up (the renderer's first frames)
    env.step(rng.uniform(-1, 1, env.action_dim))
  done = False
  t0 = time.perf_counter()
  for _ in range(steps):
    _, _, done, _ = env.step(rng.uniform(-1, 1, env.action_dim))
    if done:
      env.reset()
  sec = time.perf_counter() - t0
  return {
    "side": "dm_control",
    "num_envs": 1,
    "steps": steps,
    "seconds": sec,
    "env_steps_per_s": steps / sec,
  }


def table(rows: list[dict]) -> str:
  """Markdown table: per (task, variant, N) the JAX env steps/s, dm_control's (the same round's
  median) and the ratio."""
  out = [
    "| task | variant | N | JAX env steps/s | dm_control env steps/s | ratio | JAX first call, s |",
    "| --- | --- | --- | --- | --- | --- | --- |",
  ]
  keys = sorted({(r["task"], r["variant"]) for r in rows})
  for task, variant in keys:
    mine = [r for r in rows if (r["task"], r["variant"]) == (task, variant)]
    dm = [r["env_steps_per_s"] for r in mine if r["side"] == "dm_control"]
    ref = float(np.median(dm)) if dm else float("nan")
    for n in sorted({r["num_envs"] for r in mine if r["side"] == "jax"}):
      js = [r for r in mine if r["side"] == "jax" and r["num_envs"] == n]
      rate = float(np.median([r["env_steps_per_s"] for r in js]))
      first = float(np.median([r["first_call_s"] for r in js]))
      out.append(
        f"| {task} | {variant} | {n} | {rate:.1f} | {ref:.1f} | {rate / ref:.2f}x | {first:.0f} |"
      )
  return "\n".join(out)
