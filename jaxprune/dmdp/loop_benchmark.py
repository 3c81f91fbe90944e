"""End-to-end throughput of the online agent: the host loop (dm_control, one environment, one
seed) against the device loop (``env_backend="jax"``, N environments x S seeds in one program).

Each setting is timed as a researcher runs it: :func:`jaxprune.dmdp.driver.run` in a fresh Python
process on a fresh workdir (a process of its own, so no run reuses another's compiled programs).
Both drivers stamp each training record with ``process_s``, the seconds since their loop began;
the steady-state rates come from the records between the second training phase (everything
compiled: the update, the policy, the episode start) and the last:

    env steps/s = S x (E_last - E_second) / (t_last - t_second)
    updates/s   = S x updates x (phases between) / (t_last - t_second)

which is collection with the policy + updates + episode resets, all of it, for S seeds. Evaluations
and intermediate checkpoints are pushed past the budget so that they fall outside the window.
The whole run's wall time (imports, set-up, compiling, prefill, final evaluation) is reported
beside it.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time

import numpy as np

from jaxprune.core import config as config_lib
from jaxprune.core import io
from jaxprune.dmdp import driver
from jaxprune.dmdp.run_config import RunConfig


def setting_name(cfg: RunConfig) -> str:
  if cfg.env_backend != "jax":
    return "host (dm_control)"
  return f"jax N={cfg.num_envs} x S={cfg.seeds}"


def steady_rates(records: list[dict], *, seeds: int, updates: int) -> dict:
  """Rates from a run's training records (those of its first seed): from the second to the last
  (module docstring). Needs at least three training phases."""
  seed = records_seed(records)
  train = [r for r in records if r.get("kind") == "train" and r.get("seed", 0) == seed]
  if len(train) < 3:
    raise ValueError(f"need at least 3 training phases to time, got {len(train)}")
  a, b = train[1], train[-1]
  dt = b["process_s"] - a["process_s"]
  return {
    "window_env_steps": [a["env_steps"], b["env_steps"]],
    "window_s": dt,
    "env_steps_per_s": seeds * (b["env_steps"] - a["env_steps"]) / dt,
    "updates_per_s": seeds * updates * (len(train) - 2) / dt,
  }


def records_seed(records: list[dict]) -> int:
  """The seed whose records are used (the smallest; 0 for the host loop's seedless records)."""
  return min((r.get("seed", 0) for r in records if r.get("kind") == "train"), default=0)


def time_loop(cfg: RunConfig, workdir: str) -> dict:
  """One setting's row: ``cfg`` run whole in a subprocess, in a fresh subfolder of ``workdir``."""
  run_cfg = dataclasses.replace(
    cfg,
    eval_every=10 * cfg.env_steps,
    checkpoint_every=10 * cfg.env_steps,
    progress=False,
    overwrite=True,
    workdir=os.path.join(workdir, setting_name(cfg).replace(" ", "_").replace("=", "")),
  )
  spec = run_cfg.workdir + ".json"
  io.save_json(spec, config_lib.to_dict(run_cfg))
  t0 = time.perf_counter()
  done = subprocess.run(
    [sys.executable, "-m", "jaxprune.dmdp.loop_benchmark", spec], capture_output=True, text=True
  )
  seconds = time.perf_counter() - t0
  if done.returncode:
    raise RuntimeError(f"the timed run {spec} failed:\n{done.stderr[-3000:]}")
  records = io.read_jsonl(os.path.join(run_cfg.workdir, "metrics.jsonl"))
  return {
    "setting": setting_name(cfg),
    "env_backend": cfg.env_backend,
    "num_envs": cfg.num_envs,
    "seeds": cfg.seeds,
    "env_steps": cfg.env_steps,
    "run_s": seconds,
    **steady_rates(records, seeds=cfg.seeds, updates=cfg.updates),
  }


def table(rows: list[dict]) -> str:
  """Markdown table with each setting's ratio to the host loop's median (same run)."""
  host = [r for r in rows if r["env_backend"] != "jax"]
  ref_env = float(np.median([r["env_steps_per_s"] for r in host])) if host else float("nan")
  ref_upd = float(np.median([r["updates_per_s"] for r in host])) if host else float("nan")
  out = [
    "| setting | env steps/s (all seeds) | ratio | updates/s (all seeds) | ratio | whole run, s |",
    "| --- | --- | --- | --- | --- | --- |",
  ]
  for name in dict.fromkeys(r["setting"] for r in rows):
    mine = [r for r in rows if r["setting"] == name]
    env = float(np.median([r["env_steps_per_s"] for r in mine]))
    upd = float(np.median([r["updates_per_s"] for r in mine]))
    whole = float(np.median([r["run_s"] for r in mine]))
    out.append(
      f"| {name} | {env:.1f} | {env / ref_env:.2f}x | {upd:.2f} | {upd / ref_upd:.2f}x | "
      f"{whole:.0f} |"
    )
  return "\n".join(out)


def _main(spec: str) -> None:
  """The timed process: run the config saved at ``spec``."""
  driver.run(config_lib.from_dict(RunConfig, io.read_json(spec)))


if __name__ == "__main__":
  _main(sys.argv[1])
