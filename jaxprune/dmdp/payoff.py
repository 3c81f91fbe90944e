"""Per-seed evaluation returns of agent runs, hierarchical bootstrap intervals, and the
Denoised-MDP-vs-Dreamer verdicts (issue 29's agent-level check and payoff table).

A *cell* is (backend, model, variant); its runs hold ``eval`` records (one per seed and
evaluation, each with the episode ``returns``). The final return of a seed is the mean over the
episodes of its last ``last`` evaluations. Intervals resample both sources of seed noise: the
seeds of a cell, then the episodes within each drawn seed (percentile intervals).
"""

from __future__ import annotations

import os

import numpy as np

from jaxprune.core import io


def read_evals(workdir: str, *, backend: str, model: str, variant: str) -> list[dict]:
  """The eval records of a run (``metrics.jsonl``), one row per (seed, evaluation)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    raise FileNotFoundError(f"no metrics.jsonl in {workdir}: not a run's workdir")
  seed = io.read_json(os.path.join(workdir, "config.json"))["seed"]
  rows = []
  for r in io.read_jsonl(path):
    if r.get("kind") != "eval":
      continue
    rows.append(
      {
        "backend": backend,
        "model": model,
        "variant": variant,
        "seed": int(r.get("seed", seed)),
        "env_steps": int(r["env_steps"]),
        "return_mean": float(r["return_mean"]),
        "returns": [float(x) for x in r["returns"]],
      }
    )
  return rows


def finals(rows: list[dict], *, last: int = 2, up_to: int | None = None) -> dict:
  """{(backend, model, variant): {seed: episode returns of its last ``last`` evaluations at or
  before ``up_to`` env steps}}."""
  out: dict = {}
  for r in rows:
    if up_to is not None and r["env_steps"] > up_to:
      continue
    out.setdefault((r["backend"], r["model"], r["variant"]), {}).setdefault(r["seed"], []).append(r)
  res = {}
  for cell, seeds in out.items():
    res[cell] = {}
    for s, evs in seeds.items():
      evs = sorted(evs, key=lambda e: e["env_steps"])[-last:]
      res[cell][s] = np.concatenate([np.asarray(e["returns"]) for e in evs])
  return res


def resample_means(per_seed: dict, rng: np.random.Generator, n: int) -> np.ndarray:
  """``n`` bootstrap draws of a cell's mean final return: seeds with replacement, then episodes
  with replacement within each drawn seed."""
  seeds = list(per_seed.values())
  out = np.empty(n)
  for i in range(n):
    pick = rng.integers(0, len(seeds), len(seeds))
    out[i] = np.mean([rng.choice(seeds[j], len(seeds[j])).mean() for j in pick])
  return out


def interval(draws: np.ndarray, level: float = 0.9) -> tuple[float, float]:
  a = (1 - level) / 2
  return float(np.quantile(draws, a)), float(np.quantile(draws, 1 - a))


def verdict(lo: float, hi: float) -> str:
  """supported when the interval of (the claim's quantity) lies above 0, contradicted when it
  lies below, else undecided."""
  if lo > 0:
    return "supported"
  if hi < 0:
    return "contradicted"
  return "undecided"
