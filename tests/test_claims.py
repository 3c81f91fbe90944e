"""Claim statistics (jaxprune.pruning.claims): the hierarchical bootstrap against an enumerable
case, interval coverage of a known crossing on noisy non-monotone curves, a flat curve left
undecided, clear effects supported / contradicted, too few seeds never supported, a power-law
exponent recovered, the winning fraction's distribution, and the schema's checks."""

import csv
import itertools
import json

import numpy as np
import pytest

from jaxprune.pruning import claims

POOLS = (100, 200, 400, 800, 1600, 3200)


def _table(means, *, seeds=(4, 3, 5), sd=(0.003, 0.003, 0.01), rng=None):
  """Per-seed rows: ``means`` maps (pool, score, mode, fraction) to the true accuracy; noise is
  a pool-draw, a scorer and a classifier effect (random / full rows have no scorer: -1)."""
  rng = rng or np.random.default_rng(0)
  d_, s_, c_ = seeds
  rows = []
  for (pool, score, mode, f), mean in means.items():
    free = mode in ("random", "full")
    scorers = [-1] if free else range(s_)
    pool_eff = rng.normal(0, sd[0], d_)
    for d in range(d_):
      for s in scorers:
        scorer_eff = 0.0 if free else rng.normal(0, sd[1])
        for c in range(c_):
          acc = mean + pool_eff[d] + scorer_eff + rng.normal(0, sd[2])
          rows.append(
            dict(
              pool=pool,
              score=score,
              mode=mode,
              fraction=f,
              n_kept=int(round(pool * f)),
              pool_seed=d,
              scorer_seed=s,
              classifier_seed=c,
              acc=float(acc),
            )
          )
  return rows


def _hard_easy(diff, f=0.25, base=0.7, random=None):
  means = {}
  for pool, d in zip(POOLS, diff):
    means[pool, "el2n", "hard", f] = base + d / 2
    means[pool, "el2n", "easy", f] = base - d / 2
    if random is not None:
      means[pool, "random", "random", f] = random
  return means


def test_resample_weights_by_hand():
  # pool slots draw seeds 0 and 1; slot 0 draws classifier 1 twice, slot 1 draws 0 then 1
  ud = np.array([[0.1, 0.9]])
  us = np.zeros((1, 2, 1))
  uc = np.array([[[[0.6, 0.6]], [[0.2, 0.7]]]])
  w = claims.resample_weights((ud, us, uc), (2, 1, 2))
  np.testing.assert_array_equal(w, [[0, 2, 1, 1]])  # (d, c) = (0,0) (0,1) (1,0) (1,1)
  # a cell with fewer seeds uses the first slots only
  np.testing.assert_array_equal(claims.resample_weights((ud, us, uc), (1, 1, 2)), [[0, 2]])


def test_bootstrap_matches_the_enumerated_resamples_of_two_seeds():
  acc = np.array([[0.1, 0.2], [0.4, 0.8]])  # [pool seed, classifier seed]
  rows = [
    dict(
      pool=10,
      score="random",
      mode="random",
      fraction=0.5,
      n_kept=5,
      pool_seed=d,
      scorer_seed=-1,
      classifier_seed=c,
      acc=float(acc[d, c]),
    )
    for d in range(2)
    for c in range(2)
  ]
  # every resample: two pool draws, then two classifier draws within each: 4 * 4 * 4 = 64
  exact: dict = {}
  for d1, d2 in itertools.product(range(2), repeat=2):
    for c in itertools.product(range(2), repeat=4):
      m = round((acc[d1, c[0]] + acc[d1, c[1]] + acc[d2, c[2]] + acc[d2, c[3]]) / 4, 9)
      exact[m] = exact.get(m, 0) + 1 / 64
  b = 20000
  boot = claims.bootstrap(rows, num_resamples=b, seed=1)
  key = (10, "random", "random", 0.5)
  got = np.round(boot.samples[key], 9)
  assert set(got) <= set(exact)
  for m, p in exact.items():
    assert abs(np.mean(got == m) - p) < 4.5 * np.sqrt(p * (1 - p) / b), m
  assert boot.estimate[key] == pytest.approx(acc.mean())
  assert boot.seeds[key] == (2, None, 2)


def test_seeded_bootstrap_is_reproducible():
  rows = _table(_hard_easy([-0.02, 0.0, 0.01, 0.02, 0.03, 0.04], random=0.69))
  a = claims.bootstrap(rows, num_resamples=300, seed=3)
  b = claims.bootstrap(rows, num_resamples=300, seed=3)
  c = claims.bootstrap(rows, num_resamples=300, seed=4)
  for k in a.samples:
    np.testing.assert_array_equal(a.samples[k], b.samples[k])
  assert any(not np.array_equal(a.samples[k], c.samples[k]) for k in a.samples)
  assert claims.crossings(rows, seed=3, num_resamples=300) == claims.crossings(
    rows, seed=3, num_resamples=300
  )


def test_crossing_interval_covers_a_known_crossing_of_noisy_non_monotone_curves():
  # hard - easy: -3, -1, -2 (not monotone), +2, +1.5, +3 points: crosses between 400 and 800
  # halfway in log space
  diff = np.array([-3, -1, -2, 2, 1.5, 3]) / 100
  truth = np.sqrt(400 * 800)
  rng = np.random.default_rng(0)
  reps, covered, widths = 50, 0, []
  for _ in range(reps):
    rows = _table(_hard_easy(diff), rng=rng)
    x = claims.crossings(rows, num_resamples=500, seed=int(rng.integers(1 << 30)))["el2n", 0.25]
    covered += x.lo <= truth <= x.hi
    widths.append(np.log(x.hi / x.lo))
  assert 0.75 <= covered / reps <= 1.0  # nominal 0.9; 50 replications
  assert np.median(widths) < np.log(4)  # informative: within a factor of 4


def test_crossing_near_the_edge_is_censored():
  rows = _table(_hard_easy(np.array([-3, -2, -1, -0.6, -0.2, 0.2]) / 100))
  x = claims.crossings(rows, num_resamples=500)["el2n", 0.25]
  assert 1600 < x.estimate < 3200
  assert x.above > 0.1 and x.hi == np.inf and x.censored == x.above + x.below
  assert "no crossing in" in x.describe() and "above the largest pool" in x.describe()
  assert claims.verdict(x, alternative="< 500") == "contradicted"
  assert claims.verdict(x, alternative="< 3000") == "undecided"


def test_flat_curves_are_undecided():
  rows = _table(_hard_easy(np.zeros(6), random=0.7), rng=np.random.default_rng(5))
  boot = claims.bootstrap(rows, num_resamples=1000, seed=0)
  x = claims.crossings(boot)["el2n", 0.25]
  for threshold in (150, 400, 1000, 3000):
    for side in "<>":
      assert claims.verdict(x, alternative=f"{side} {threshold}") == "undecided"
  verdicts = [
    claims.verdict(r[name], alternative=side)
    for r in claims.differences(boot)
    for name in ("hard_minus_random", "hard_minus_easy", "easy_minus_random")
    for side in ("> 0", "< 0")
  ]
  assert len(verdicts) == 36
  assert verdicts.count("undecided") >= 0.8 * len(verdicts)


def test_a_clear_effect_is_supported_and_its_opposite_contradicted():
  means = {}
  for pool in (500, 1000):
    means[pool, "ssl_prototypes", "hard", 0.125] = 0.75
    means[pool, "ssl_prototypes", "easy", 0.125] = 0.65
    means[pool, "random", "random", 0.125] = 0.70
  out = claims.differences(_table(means), num_resamples=500)
  assert [(r["pool"], r["n_kept"]) for r in out] == [(500, 62), (1000, 125)]
  for r in out:
    assert r["hard_minus_random"].estimate == pytest.approx(0.05, abs=0.01)
    assert claims.verdict(r["hard_minus_random"], alternative="> 0") == "supported"
    assert claims.verdict(r["hard_minus_random"], alternative="<0") == "contradicted"
    assert claims.verdict(r["easy_minus_random"], alternative="> 0") == "contradicted"
    assert claims.verdict(r["hard_minus_easy"], alternative="> 0.05") == "supported"
    assert r["hard_minus_random"].seeds == (
      ("pool_seed", 4),
      ("scorer_seed", 3),
      ("classifier_seed", 5),
    )


@pytest.mark.parametrize(
  "seeds,pool_seed,constant",
  [((4, 3, 1), None, False), ((1, 3, 5), None, False), ((4, 3, 5), None, True)],
)
def test_too_few_seeds_or_a_zero_width_interval_is_never_supported(seeds, pool_seed, constant):
  means = {(500, "el2n", "hard", 0.25): 0.8, (500, "random", "random", 0.25): 0.6}
  rows = _table(means, seeds=seeds, sd=(0.0, 0.0, 0.0) if constant else (0.003, 0.003, 0.01))
  r = claims.differences(rows, num_resamples=300)[0]["hard_minus_random"]
  assert r.estimate == pytest.approx(0.2, abs=0.02)
  assert not r.decidable
  assert claims.verdict(r, alternative="> 0") == "undecided"
  assert claims.verdict(r, alternative="< 0") == "undecided"


def test_a_source_that_does_not_apply_does_not_block_a_verdict():
  means = {(60000, "el2n", "hard", 0.25): 0.8, (60000, "random", "random", 0.25): 0.6}
  rows = _table(means, seeds=(1, 3, 5))
  for r in rows:
    r["pool_seed"] = -1  # the whole training set: one pool draw by construction
  r = claims.differences(rows, num_resamples=300)[0]["hard_minus_random"]
  assert r.seeds[0] == ("pool_seed", None)
  assert claims.verdict(r, alternative="> 0") == "supported"


def test_power_law_exponents_are_recovered_with_intervals():
  pools = (250, 500, 1000, 2000, 4000, 8000)
  means = {}
  for pool in pools:
    means[pool, "full", "full", 1.0] = 1 - 2.0 * pool**-0.4
    means[pool, "el2n", "hard", 0.25] = 1 - 2.0 * (0.25 * pool) ** -0.55
  out = claims.exponents(_table(means, sd=(0.002, 0.002, 0.005)), num_resamples=1000)
  full = out["full", "full", 1.0]["exponent"]
  hard = out["el2n", "hard", 0.25]
  assert full.lo <= -0.4 <= full.hi and full.hi - full.lo < 0.1
  assert hard["exponent"].lo <= -0.55 <= hard["exponent"].hi
  assert hard["minus_full"].lo <= -0.15 <= hard["minus_full"].hi
  assert claims.verdict(hard["minus_full"], alternative="< 0") == "supported"
  assert out["full", "full", 1.0]["minus_full"] is None
  np.testing.assert_allclose(claims.power_law_slopes([10, 100], [0.9, 0.99]), -1.0)


def test_best_fraction_distribution_at_a_fixed_count_and_its_trend_over_pools():
  # K = 100 from (100, f 1), (200, 1/2), (400, 1/4): errors 5, 4, 6 %
  means = {
    (100, "full", "full", 1.0): 0.95,
    (200, "el2n", "hard", 0.5): 0.96,
    (400, "el2n", "hard", 0.25): 0.94,
  }
  out = claims.best_fractions(_table(means), num_resamples=500)["el2n"]
  (p,) = out["points"]
  assert p["at"] == 100 and p["best"] == 0.5
  assert sum(p["shares"].values()) == pytest.approx(1.0) and p["shares"][0.5] > 0.9
  assert out["trend"] is None
  # per pool, the winning fraction falls: 1 at pool 100, 1/2 at 200 and 400, 1/4 at 800
  winner = {100: 1.0, 200: 0.5, 400: 0.5, 800: 0.25}
  means = {}
  for pool, w in winner.items():
    means[pool, "full", "full", 1.0] = 0.7 + 0.05 * (w == 1.0)
    for f in (0.25, 0.5):
      means[pool, "el2n", "hard", f] = 0.7 + 0.05 * (w == f)
  out = claims.best_fractions(_table(means), by="pool", num_resamples=500)["el2n"]
  assert [(q["at"], q["best"]) for q in out["points"]] == list(winner.items())
  assert claims.verdict(out["trend"], alternative="< 0") == "supported"


def test_misuse_and_bad_rows_are_refused(tmp_path):
  with pytest.raises(TypeError, match="needs an Interval"):
    claims.verdict((0.1, 0.2), alternative="> 0")
  x = claims.interval([0.1, 0.2, 0.3], 0.2, seeds=(("classifier_seed", 3),))
  for bad in (">= 0", "0", "positive", "> zero"):
    with pytest.raises(ValueError, match="not a strict inequality"):
      claims.verdict(x, alternative=bad)
  with pytest.raises(ValueError, match="level 90"):
    claims.interval([0.1], 0.1, level=90)
  good = _table({(100, "el2n", "hard", 0.5): 0.8}, seeds=(2, 2, 2))
  cases = [
    ({"acc": 80.0}, "not an accuracy"),
    ({"mode": "-"}, "mode '-'"),
    ({"fraction": 0.0}, "fraction 0.0"),
    ({"scorer_seed": -2}, "scorer_seed -2 is negative"),
  ]
  for change, msg in cases:
    with pytest.raises(ValueError, match=msg):
      claims.bootstrap([{**good[0], **change}] + good[1:])
  with pytest.raises(ValueError, match="missing columns \\['acc'\\]"):
    claims.check_rows([{k: v for k, v in good[0].items() if k != "acc"}])
  with pytest.raises(ValueError, match="appear twice"):
    claims.bootstrap(good + good[:1])
  with pytest.raises(ValueError, match="1 of the 8 .* are missing"):
    claims.bootstrap(good[1:])
  with pytest.raises(ValueError, match="mixes -1"):
    claims.bootstrap([{**good[0], "pool_seed": -1}] + good[1:])
  other = _table({(100, "random", "random", 0.5): 0.7}, seeds=(2, 2, 2))
  with pytest.raises(ValueError, match="n_kept differs between modes"):
    claims.differences(good + [{**r, "n_kept": 49} for r in other], num_resamples=10)
  with pytest.raises(ValueError, match="by 'size' must be 'count'"):
    claims.best_fractions(good, by="size", num_resamples=10)
  with pytest.raises(ValueError, match="r.txt: per-seed rows are read from .csv or .jsonl"):
    claims.read_rows(str(tmp_path / "r.txt"))


def test_rows_round_trip_through_csv_and_jsonl_and_from_curve_rows(tmp_path):
  rows = _table({(100, "el2n", "hard", 0.5): 0.8, (100, "full", "full", 1.0): 0.9})
  with open(tmp_path / "r.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=claims.COLUMNS)
    w.writeheader()
    w.writerows(rows)
  with open(tmp_path / "r.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  assert claims.read_rows(str(tmp_path / "r.csv")) == rows
  assert claims.read_rows(str(tmp_path / "r.jsonl")) == rows
  curve = [
    dict(pool=200, pool_size=200, score="el2n", mode="hard", fraction=0.5, scorer=0, n_kept=100,
         acc_seeds=[0.8, 0.82]),
    dict(pool=200, pool_size=200, score="full", mode="-", fraction=1.0, scorer=0, n_kept=200,
         acc_seeds=[0.9, 0.91]),
  ]  # fmt: skip
  got = claims.from_curve_rows(curve)
  assert [(r["mode"], r["pool_seed"], r["scorer_seed"], r["classifier_seed"]) for r in got] == [
    ("hard", 0, 0, 0),
    ("hard", 0, 0, 1),
    ("full", 0, -1, 0),
    ("full", 0, -1, 1),
  ]
  claims.check_rows(got)


def test_columns_and_structured_arrays_give_the_same_bootstrap_and_the_api_is_exported():
  import jaxprune

  rows = _table(_hard_easy(np.linspace(-0.02, 0.03, 6), random=0.69), seeds=(2, 2, 3))
  cols = {c: np.array([r[c] for r in rows]) for c in claims.COLUMNS}
  table = np.array(
    [tuple(r[c] for c in claims.COLUMNS) for r in rows],
    dtype=[(c, cols[c].dtype) for c in claims.COLUMNS],
  )
  a = claims.bootstrap(rows[::-1], num_resamples=200)  # row order does not matter
  for other in (cols, table):
    b = claims.bootstrap(other, num_resamples=200)
    assert a.estimate.keys() == b.estimate.keys()
    for k in a.samples:
      np.testing.assert_array_equal(a.samples[k], b.samples[k])
  assert jaxprune.verdict is claims.verdict and jaxprune.claims.Interval is jaxprune.Interval
