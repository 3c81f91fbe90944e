"""jaxprune.dmdp.payoff: final returns, the hierarchical bootstrap and the verdict rule."""

import numpy as np
import pytest

from jaxprune.dmdp import payoff


def _rows():
  rows = []
  for s, base in [(0, 10.0), (1, 20.0)]:
    for e, add in [(2000, 0.0), (4000, 1.0), (6000, 2.0)]:
      rets = [base + add - 1, base + add + 1]
      rows.append(
        {
          "backend": "jax",
          "model": "m",
          "variant": "v",
          "seed": s,
          "env_steps": e,
          "return_mean": float(np.mean(rets)),
          "returns": rets,
        }
      )
  return rows


def test_finals_take_the_last_evaluations_up_to_a_budget():
  f = payoff.finals(_rows(), last=2)[("jax", "m", "v")]
  np.testing.assert_allclose(f[0], [10, 12, 11, 13])  # evaluations at 4000 and 6000
  f = payoff.finals(_rows(), last=1, up_to=4000)[("jax", "m", "v")]
  np.testing.assert_allclose(f[1], [20, 22])


def test_bootstrap_draws_stay_in_the_seeds_range_and_centre_on_the_mean():
  per_seed = {0: np.array([10.0, 12.0]), 1: np.array([20.0, 22.0])}
  d = payoff.resample_means(per_seed, np.random.default_rng(0), 4000)
  assert d.min() >= 10.0 and d.max() <= 22.0
  assert np.mean(d) == pytest.approx(16.0, abs=0.2)
  # seeds are resampled: some draws hold only one of the two seeds
  assert (d < 13.0).mean() > 0.1 and (d > 19.0).mean() > 0.1
  lo, hi = payoff.interval(d, 0.9)
  assert lo < 16.0 < hi


def test_verdict_rule():
  assert payoff.verdict(0.5, 2.0) == "supported"
  assert payoff.verdict(-2.0, -0.1) == "contradicted"
  assert payoff.verdict(-1.0, 1.0) == "undecided"
