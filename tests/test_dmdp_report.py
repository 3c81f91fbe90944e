"""scripts/compare_dmdp.py: curves and the last-evaluations table from train_dmdp work dirs."""

import json
import os
import subprocess
import sys

import pytest

from jaxprune.core import io
from jaxprune.dmdp.report import CompareConfig, WorkdirKindError, compare, load_run, table


def _fake_run(d, model, variant, seed, returns, value_loss=(1.0, 2.0), actor_lr=None):
  os.makedirs(d)
  cfg = {
    "model": model,
    "variant": variant,
    "env": "walker_walk",
    "seed": seed,
    "world_model": {"beta_y": 0.25},
  }
  if actor_lr is not None:
    cfg["agent"] = {"model_lr": 6e-4, "actor_lr": actor_lr, "value_lr": 8e-5, "gamma": 0.9}
  with open(os.path.join(d, "config.json"), "w") as f:
    json.dump(cfg, f)
  rows = [
    {"kind": "train", "env_steps": 100 * (i + 1), "value_loss": v, "imag_value": 2 * v}
    for i, v in enumerate(value_loss)
  ]
  rows += [
    {"kind": "eval", "env_steps": 1000 * (i + 1), "return_mean": r} for i, r in enumerate(returns)
  ]
  io.append_jsonl(os.path.join(d, "metrics.jsonl"), rows)
  return str(d)


def test_compare_table_by_hand(tmp_path):
  a = _fake_run(tmp_path / "a", "dmdp", "noiseless", 0, [1.0, 2.0, 3.0, 4.0, 5.0])
  b = _fake_run(tmp_path / "b", "dmdp", "noiseless", 1, [1.0, 6.0], value_loss=(3.0, 7.5))
  c = _fake_run(tmp_path / "c", "dreamer", "video_background", 0, [2.0, 2.0, 2.0])
  rows = compare(CompareConfig(runs=(a, b, c), out=str(tmp_path / "out"), last=3))
  by = {(r["model"], r["seed"], r["variant"]): r for r in rows}
  assert by[("dmdp", 0, "noiseless")]["last_mean"] == pytest.approx(4.0)  # (3 + 4 + 5) / 3
  assert by[("dmdp", 1, "noiseless")]["last_mean"] == pytest.approx(3.5)  # only 2 evaluations
  assert by[("dmdp", 1, "noiseless")]["n_last"] == 2
  assert by[("dmdp", 1, "noiseless")]["max_value_loss"] == 7.5
  md = open(tmp_path / "out" / "compare.md").read()
  assert "| noiseless | dmdp | ?/?/? | 2 | 3.8 (4.0, 3.5) |" in md  # mean over seeds
  for name in ("compare.png", "values.png"):
    assert os.path.getsize(tmp_path / "out" / name) > 1000
  assert load_run(c)["eval_steps"] == [1000, 2000, 3000]
  assert load_run(c)["beta"] is None and "| dreamer | video_background | 0 | - |" in md
  # an equal budget: evaluations after up_to env steps are left out
  rows = compare(CompareConfig(runs=(a,), out=str(tmp_path / "o2"), last=2, up_to=3000))
  assert rows[0]["last_mean"] == pytest.approx(2.5) and rows[0]["env_steps"] == 3000


def test_runs_with_other_learning_rates_are_told_apart(tmp_path):
  a = _fake_run(tmp_path / "a", "dmdp", "noiseless", 1, [1.0, 3.0], actor_lr=4e-4)
  b = _fake_run(tmp_path / "b", "dmdp", "noiseless", 1, [5.0, 7.0], actor_lr=8e-5)
  md = table(compare(CompareConfig(runs=(a, b), out=str(tmp_path / "out"), last=2)))
  assert "| noiseless | dmdp | 0.0006/0.0004/8e-05 | 1 | 2.0 (2.0) |" in md
  assert "| noiseless | dmdp | 0.0006/8e-05/8e-05 | 1 | 6.0 (6.0) |" in md
  run = load_run(a)
  assert run["imag_value"] == [2.0, 4.0] and run["train_steps"] == [100, 200]
  assert run["max_return"] == pytest.approx(2 / (1 - 0.9))  # action_repeat 2 by default


def test_compare_errors(tmp_path):
  with pytest.raises(ValueError, match="--runs"):
    CompareConfig(runs=())
  with pytest.raises(WorkdirKindError, match="not a train_dmdp work directory"):
    load_run(str(tmp_path))
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  r = subprocess.run(
    [sys.executable, "scripts/compare_dmdp.py", "--last", "0", "--runs", "x"],
    capture_output=True,
    text=True,
    cwd=root,
    env={**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])},
  )
  assert r.returncode != 0 and "last must be >= 1" in r.stderr
