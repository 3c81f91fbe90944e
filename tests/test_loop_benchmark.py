"""The agent-loop benchmark's arithmetic (jaxprune/dmdp/loop_benchmark.py), on hand-made
records; the timed runs themselves are scripts/bench_agent.py's."""

import pytest

from jaxprune.dmdp import loop_benchmark


def _train(env_steps, t, seed=None):
  r = {"kind": "train", "env_steps": env_steps, "process_s": t}
  if seed is not None:
    r["seed"] = seed
  return r


def test_steady_rates_use_the_second_to_the_last_phase():
  # phase 1 (compiling) took 50 s; then 100 env steps every 4 s
  recs = [{"kind": "episode", "env_steps": 200}] + [
    _train(400 + 100 * i, 50.0 + 4.0 * i) for i in range(6)
  ]
  got = loop_benchmark.steady_rates(recs, seeds=1, updates=20)
  assert got["window_env_steps"] == [500, 900]
  assert got["window_s"] == pytest.approx(16.0)
  assert got["env_steps_per_s"] == pytest.approx(400 / 16)
  assert got["updates_per_s"] == pytest.approx(4 * 20 / 16)


def test_steady_rates_count_every_seed_from_the_first_seeds_records():
  recs = []
  for i in range(4):
    recs += [_train(100 * i, 10.0 + 2.0 * i, seed=s) for s in (3, 4, 5)]
  got = loop_benchmark.steady_rates(recs, seeds=3, updates=10)
  assert got["env_steps_per_s"] == pytest.approx(3 * 200 / 4.0)
  assert got["updates_per_s"] == pytest.approx(3 * 2 * 10 / 4.0)


def test_too_few_phases_raise():
  with pytest.raises(ValueError, match="at least 3 training phases"):
    loop_benchmark.steady_rates([_train(100, 1.0), _train(200, 2.0)], seeds=1, updates=1)


def test_table_gives_ratios_to_the_host_loop():
  rows = [
    {
      "setting": "host (dm_control)",
      "env_backend": "dm_control",
      "env_steps_per_s": 20.0,
      "updates_per_s": 4.0,
      "run_s": 60.0,
    },
    {
      "setting": "jax N=1 x S=3",
      "env_backend": "jax",
      "env_steps_per_s": 50.0,
      "updates_per_s": 10.0,
      "run_s": 200.0,
    },
  ]
  text = loop_benchmark.table(rows)
  assert "| jax N=1 x S=3 | 50.0 | 2.50x | 10.00 | 2.50x | 200 |" in text
  assert "| host (dm_control) | 20.0 | 1.00x | 4.00 | 1.00x | 60 |" in text
