"""The representation claims decided from per-seed R^2 (jaxprune.dmdp.disentangle_claims): hand-made
tables with a known verdict per claim, and degenerate inputs that must not pass."""

import json

import numpy as np
import pytest

from jaxprune.core import io
from jaxprune.dmdp import disentangle_claims as dc

TASK, VARIANT = "walker_walk", "video_background"
NOISE = "background_intensity"


def row(model, factor, target, r2, probe="ridge", updates=400):
  return {
    "task": TASK,
    "variant": VARIANT,
    "model": model,
    "updates": updates,
    "factor": factor,
    "probe": probe,
    "target": target,
    "r2": [float(v) for v in r2],
  }


def around(mean, spread=0.02, n=5, seed=0):
  """``n`` per-seed values with the given mean and a small spread."""
  noise = np.random.default_rng(seed).normal(size=n)
  noise = (noise - noise.mean()) / noise.std() if n > 1 else 0 * noise
  return mean + spread * noise


def table(
  x_q,
  dr_q,
  x_n,
  y_n,
  *,
  pixels=0.9,
  state=0.95,
  z_n=None,
  dreamer_all=0.5,
  joints_ceiling=0.6,
  n=5,
):
  rows = [
    row("state", "qpos_qvel", "qpos", [state] * n),
    row("pixels", "image", NOISE, [pixels] * n),
    row("pixels", "image", "qpos", [joints_ceiling] * n),
    row("dmdp", "x", "qpos", x_q),
    row("dmdp", "x", NOISE, x_n),
    row("dmdp", "y", NOISE, y_n),
    row("dmdp", "all", NOISE, np.maximum(x_n, y_n)),
    row("dreamer", "x", "qpos", dr_q),
    row("dreamer", "all", NOISE, around(dreamer_all, n=n, seed=9)),
  ]
  if z_n is not None:
    rows.append(row("dmdp", "z", NOISE, z_n))
  return rows


def by_claim(checks):
  return {(c["claim"], c["model"], c["target"]): c for c in checks}


def test_the_paper_holding_gives_holds():
  checks = dc.check(table(around(0.5), around(0.1, seed=1), around(0.02, seed=2), around(0.8)))
  got = by_claim(checks)
  joints = got[("joints_in_x", "dmdp", "qpos")]
  assert joints["verdict"] == "holds"
  assert {k: p["verdict"] for k, p in joints["parts"].items()} == {
    "above_zero": "holds",
    "vs_dreamer": "holds",
  }
  assert joints["parts"]["above_zero"]["seeds_clearing"] == 5
  assert joints["state"] == pytest.approx(0.95)  # reported, not a ceiling: it reads the joints
  assert joints["ceiling"] == pytest.approx(0.6) and joints["ceiling_source"] == "pixels"
  noise = got[("noise_out_of_x", "dmdp", NOISE)]
  assert noise["verdict"] == "holds"
  assert noise["ceiling"] == pytest.approx(0.9) and noise["ceiling_source"] == "pixels"
  assert noise["parts"]["in_y_or_z"]["bound"] == pytest.approx(0.45)
  assert noise["parts"]["not_in_x"]["bound"] == pytest.approx(0.225)
  assert len(checks) == 2  # dmdp_2c is absent: no claim on it
  assert dc.tally(checks)["all"] == {"holds": 2, "fails": 0, "undecided": 0}


def test_every_r2_negative_is_not_a_pass():
  # x -0.37 vs Dreamer -0.81 (the lenient check's "holds"): nothing decodes the joints
  checks = dc.check(table(around(-0.37), around(-0.81, seed=1), around(0.0), around(0.8)))
  joints = by_claim(checks)[("joints_in_x", "dmdp", "qpos")]
  assert joints["parts"]["above_zero"]["verdict"] == "fails"
  assert joints["parts"]["vs_dreamer"]["verdict"] == "undecided"
  assert "nothing decodes the joints" in joints["parts"]["vs_dreamer"]["reason"]
  assert joints["verdict"] == "fails"
  # when not even the images decode the joints (reacher at 32 px), x failing says nothing
  joints = by_claim(
    dc.check(table(around(-0.37), around(-0.81), around(0.0), around(0.8), joints_ceiling=-0.1))
  )[("joints_in_x", "dmdp", "qpos")]
  assert {p["verdict"] for p in joints["parts"].values()} == {"undecided"}
  assert "nothing decodes the joints from the images" in joints["parts"]["above_zero"]["reason"]
  # ... while an x that does decode them holds, however low the ceiling of the others
  joints = by_claim(
    dc.check(table(around(0.15), around(-0.1), around(0.0), around(0.8), joints_ceiling=0.1))
  )[("joints_in_x", "dmdp", "qpos")]
  assert joints["parts"]["above_zero"]["verdict"] == "holds"
  # every noise R^2 negative too, ceiling included: undecided, never held
  rows = table(
    around(-0.3), around(-0.8), around(-0.4), around(-0.2), pixels=-0.1, dreamer_all=-0.3
  )
  noise = by_claim(dc.check(rows))[("noise_out_of_x", "dmdp", NOISE)]
  assert noise["verdict"] == "undecided"
  assert all("min_ceiling" in p["reason"] for p in noise["parts"].values())


def test_a_collapsed_x_probe_is_no_evidence():
  # x's probe at about -3 (walker noisy sensor: -4.43 / -1.40 / -1.54): "not in x" is undecided
  x_n = np.array([-4.43, -1.40, -1.54, -3.0, -2.5])
  noise = by_claim(dc.check(table(around(0.5), around(0.1), x_n, around(0.8))))[
    ("noise_out_of_x", "dmdp", NOISE)
  ]
  assert noise["parts"]["in_y_or_z"]["verdict"] == "holds"
  assert noise["parts"]["not_in_x"]["verdict"] == "undecided"
  assert "collapsed" in noise["parts"]["not_in_x"]["reason"]
  assert noise["parts"]["not_in_x"]["seeds_clearing"] == 5  # every seed "below", still no pass
  assert noise["verdict"] == "undecided"


def test_x_and_y_equal_within_noise():
  # the noise as much in x as in y: "x keeps it out" fails whatever y holds
  noise = by_claim(dc.check(table(around(0.5), around(0.1), around(0.6), around(0.6, seed=3))))[
    ("noise_out_of_x", "dmdp", NOISE)
  ]
  assert noise["parts"]["in_y_or_z"]["verdict"] == "holds"
  assert noise["parts"]["not_in_x"]["verdict"] == "fails"
  assert noise["verdict"] == "fails"
  # x equal to Dreamer within noise on the joints: the comparison is undecided
  joints = by_claim(
    dc.check(table(around(0.4, 0.1), around(0.4, 0.1, seed=5), around(0), around(0.8)))
  )[("joints_in_x", "dmdp", "qpos")]
  assert joints["parts"]["above_zero"]["verdict"] == "holds"
  assert joints["parts"]["vs_dreamer"]["verdict"] == "undecided"
  assert joints["parts"]["vs_dreamer"]["reason"] == ""  # decided by its interval, not a rule
  assert joints["verdict"] == "undecided"


def test_noise_in_neither_factor_fails_and_z_counts():
  # y holds too little: fails; the same noise in z (2c) instead: holds
  rows = table(around(0.5), around(0.1), around(0.0), around(0.2))
  assert by_claim(dc.check(rows))[("noise_out_of_x", "dmdp", NOISE)]["verdict"] == "fails"
  rows = table(around(0.5), around(0.1), around(0.0), around(0.2), z_n=around(0.85))
  noise = by_claim(dc.check(rows))[("noise_out_of_x", "dmdp", NOISE)]
  assert noise["parts"]["in_y_or_z"]["verdict"] == "holds" and noise["verdict"] == "holds"


def test_differences_are_paired_by_seed():
  # seeds differ a lot, but each seed's x beats its Dreamer by 0.1: paired, this is decided
  spread = np.array([0.1, 0.5, 0.3, 0.7, 0.2])
  joints = by_claim(dc.check(table(spread + 0.1, spread, around(0.0), around(0.8))))[
    ("joints_in_x", "dmdp", "qpos")
  ]
  d = joints["parts"]["vs_dreamer"]
  assert d["lo"] == pytest.approx(0.1) and d["hi"] == pytest.approx(0.1)
  assert d["verdict"] == "undecided"  # zero width: every seed gave the same difference
  jitter = np.array([0.01, -0.01, 0.005, 0.0, -0.005])
  joints = by_claim(dc.check(table(spread + 0.1 + jitter, spread, around(0.0), around(0.8))))[
    ("joints_in_x", "dmdp", "qpos")
  ]
  d = joints["parts"]["vs_dreamer"]
  assert 0.08 < d["lo"] <= d["estimate"] <= d["hi"] < 0.12 and d["verdict"] == "holds"


def test_interval_is_a_seed_bootstrap_of_the_mean():
  x = np.array([0.1, 0.4, 0.2, 0.6, 0.3])
  c = by_claim(dc.check(table(x, around(-0.5), around(0.0), around(0.8)), num_resamples=4000))
  p = c[("joints_in_x", "dmdp", "qpos")]["parts"]["above_zero"]
  # an independent bootstrap of the mean of 5 seeds (numpy's generator, another seed)
  rng = np.random.default_rng(123)
  means = x[rng.integers(0, 5, size=(20000, 5))].mean(axis=1)
  lo, hi = np.quantile(means, [0.05, 0.95])
  assert p["estimate"] == pytest.approx(x.mean())
  assert p["lo"] == pytest.approx(lo, abs=0.02) and p["hi"] == pytest.approx(hi, abs=0.02)


def test_few_seeds_missing_rows_and_bad_values_are_undecided():
  rows = table([0.5], [0.1], [0.0], [0.9], n=1)
  checks = dc.check(rows)
  assert {c["verdict"] for c in checks} == {"undecided"}
  # 3 seeds, one failing: [min, max] of 3 seeds is no interval to decide on
  rows = table([0.6, 0.55, -0.1], [0.1, 0.0, 0.05], around(0.0, n=3), around(0.8, n=3), n=3)
  joints = by_claim(dc.check(rows))[("joints_in_x", "dmdp", "qpos")]
  assert joints["verdict"] == "undecided"
  assert "3 seeds < min_seeds 5" in joints["parts"]["above_zero"]["reason"]
  decided = by_claim(dc.check(rows, min_seeds=3))[("joints_in_x", "dmdp", "qpos")]
  assert decided["parts"]["above_zero"]["reason"] == ""
  # no Dreamer row: the comparison is undecided, so the claim cannot hold on one part
  rows = [
    r for r in table(around(0.5), around(0.1), around(0.0), around(0.8)) if r["model"] != "dreamer"
  ]
  joints = by_claim(dc.check(rows))[("joints_in_x", "dmdp", "qpos")]
  assert joints["parts"]["above_zero"]["verdict"] == "holds"
  assert joints["parts"]["vs_dreamer"]["reason"] == "no Dreamer row to compare with"
  assert joints["verdict"] == "undecided"
  # an x that holds nothing (R^2 about 0 everywhere) keeps every noise out: no evidence
  rows = table(around(0.0), around(-0.1), around(0.0), around(0.8))
  noise = by_claim(dc.check(rows))[("noise_out_of_x", "dmdp", NOISE)]
  assert noise["parts"]["not_in_x"]["verdict"] == "undecided"
  assert "not shown to hold the joints" in noise["parts"]["not_in_x"]["reason"]
  # ... but an x that decodes the noise fails, whatever it holds of the joints (reacher's jitter)
  rows = table(around(0.0), around(-0.1), around(0.7), around(0.8))
  noise = by_claim(dc.check(rows))[("noise_out_of_x", "dmdp", NOISE)]
  assert noise["parts"]["not_in_x"]["verdict"] == "fails" and noise["verdict"] == "fails"
  # a NaN R^2 (a constant target on the test episodes) leaves its part undecided, named
  bad = table(around(0.5), around(0.1), around(0.0), around(0.8))
  next(r for r in bad if (r["model"], r["factor"], r["target"]) == ("dmdp", "x", "qpos"))["r2"][
    1
  ] = float("nan")
  joints = by_claim(dc.check(bad))[("joints_in_x", "dmdp", "qpos")]
  assert joints["parts"]["above_zero"]["verdict"] == "undecided"
  assert "non-finite R^2 from x" in joints["parts"]["above_zero"]["reason"]
  mixed = table(around(0.5), around(0.1), around(0.0), around(0.8))
  mixed[3]["r2"] = mixed[3]["r2"][:3]
  with pytest.raises(ValueError, match="different numbers of seeds"):
    dc.check(mixed)
  with pytest.raises(ValueError, match="no probe rows"):
    dc.check([])


def test_ceilings_and_csv_round_trip(tmp_path):
  rows = table(around(0.5), around(0.1), around(0.0), around(0.8), pixels=0.3)
  # the best "all" (dmdp: max(x, y) = 0.8) beats the pixels (0.3) for the noise target
  ceil = dc.ceilings(rows)
  assert ceil[(TASK, VARIANT, 400, "ridge", NOISE)][1] == "dmdp all"
  assert ceil[(TASK, VARIANT, 400, "ridge", NOISE)][0] == pytest.approx(0.8, abs=0.03)
  assert ceil[(TASK, VARIANT, 400, "ridge", "qpos")] == (pytest.approx(0.6), "pixels")
  assert dc.state_references(rows) == {(TASK, VARIANT, "ridge", "qpos"): pytest.approx(0.95)}
  keys = ("task", "variant", "model", "updates", "factor", "probe", "target")
  cols = {k: [r[k] for r in rows] for k in keys}
  cols["r2_mean"] = [float(np.mean(r["r2"])) for r in rows]
  for s in range(5):
    cols[f"r2_seed{s}"] = [r["r2"][s] for r in rows]
  path = str(tmp_path / "r2.csv")
  io.save_csv(path, cols)
  back = dc.read_csv(path)
  np.testing.assert_allclose([r["r2"] for r in back], [r["r2"] for r in rows], rtol=1e-12)
  assert json.dumps(dc.check(back), sort_keys=True) == json.dumps(dc.check(rows), sort_keys=True)
  text = dc.markdown(dc.check(back))
  assert "| ridge | joints_in_x | dmdp | qpos | 0.60 (pixels); state 0.95 |" in text


def test_report_script_rewrites_the_claims_from_r2_csv(tmp_path):
  import importlib.util
  import os

  script = os.path.join(os.path.dirname(__file__), "..", "scripts", "disentangle_claims.py")
  spec = importlib.util.spec_from_file_location("disentangle_claims_script", script)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  rows = table(around(0.5), around(0.1, seed=1), around(0.02, seed=2), around(0.8))
  keys = ("task", "variant", "model", "updates", "factor", "probe", "target")
  cols = {k: [r[k] for r in rows] for k in keys}
  cols["r2_mean"] = [float(np.mean(r["r2"])) for r in rows]
  for s in range(5):
    cols[f"r2_seed{s}"] = [r["r2"][s] for r in rows]
  d = tmp_path / "run"
  io.save_csv(str(d / "r2.csv"), cols)
  # the run's bounds are read back: a floor of 0.95 x 0.9 puts y's 0.8 below it
  io.save_json(str(d / "summary.json"), {"config": {"updates": 400, "noise_floor": 0.95}})
  mod.main(["--dirs", str(d)])
  saved = json.load(open(d / "claims.json"))["checks"]
  noise = by_claim(saved)[("noise_out_of_x", "dmdp", NOISE)]
  assert noise["parts"]["in_y_or_z"]["bound"] == pytest.approx(0.95 * 0.9)
  assert noise["verdict"] == "fails"
  assert "| ridge | joints_in_x | dmdp | qpos |" in open(d / "claims.md").read()
  assert os.path.getsize(d / "claims.png") > 0
  # a run from before the bounds (other targets) is refused, its folder left as it was
  old = tmp_path / "old"
  io.save_csv(str(old / "r2.csv"), cols)
  io.save_json(str(old / "summary.json"), {"config": {"updates": 400}})
  with pytest.raises(ValueError, match="records no claim bounds"):
    mod.main(["--dirs", str(old)])
  assert sorted(os.listdir(old)) == ["r2.csv", "summary.json"]
