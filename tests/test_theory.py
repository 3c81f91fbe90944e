"""Perceptron theory of pruning: the max-margin solver, the replica theory and the simulation."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.svm import SVC

from jaxprune import theory

# (alpha_tot, f, mode) shared by the theory and simulation fixtures (theta = 0)
POINTS = [
  (3.0, 1.0, "hard"),
  (1.0, 0.5, "hard"),
  (1.0, 0.5, "easy"),
  (16.0, 0.25, "hard"),
  (16.0, 0.25, "easy"),
  (200.0, 1.0, "hard"),
  (400.0, 1.0, "hard"),
]
N_SIM, SEEDS = 100, 8


@pytest.fixture(scope="module")
def th():
  a, f, m = (np.array(v) for v in zip(*POINTS))
  return theory.theory(alpha_tot=a, f=f, mode=m)


@pytest.fixture(scope="module")
def sim():
  a, f, m = (np.array(v) for v in zip(*POINTS[:5]))
  return theory.simulate(jax.random.key(0), n=N_SIM, alpha_tot=a, f=f, mode=m, seeds=SEEDS)


def _separable(p, n, seed):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((p, n))
  y = np.sign(x @ rng.standard_normal(n))
  return x, y


@pytest.mark.parametrize("p,n,seed", [(40, 20, 0), (150, 30, 1)])
def test_max_margin_matches_sklearn_svm(p, n, seed):
  x, y = _separable(p, n, seed)
  with jax.enable_x64(True):
    res = jax.jit(theory.max_margin)(jnp.asarray(y[:, None] * x))
  w, a = np.asarray(res.w), np.asarray(res.a)
  # scikit-learn's SVC has an intercept; on the mirrored set {(x, y), (-x, -y)} the max-margin
  # hyperplane is symmetric, so its intercept is 0 and it is the SVM through the origin
  svc = SVC(kernel="linear", C=1e6, tol=1e-10).fit(np.concatenate([x, -x]), np.concatenate([y, -y]))
  ref = svc.coef_.ravel()
  assert abs(svc.intercept_[0]) < 1e-6
  cos = w @ ref / np.linalg.norm(w) / np.linalg.norm(ref)
  assert cos > 1 - 1e-9
  np.testing.assert_allclose(np.linalg.norm(w), np.linalg.norm(ref), rtol=1e-4)
  g = y * (x @ w)
  assert g.min() >= 1 - 1e-9  # all margins >= 1
  assert (a >= 0).all()
  sv = a > 1e-6 * a.max()
  np.testing.assert_allclose(g[sv], 1.0, atol=1e-6)  # support vectors on the margin
  np.testing.assert_allclose(w, (a * y) @ x, rtol=1e-6, atol=1e-8)  # w = sum_i a_i y_i x_i
  assert float(res.gap) < 1e-9 and int(res.n_iter) < 100


def test_max_margin_padding_is_ignored():
  x, y = _separable(60, 20, 2)
  z = y[:, None] * x
  with jax.enable_x64(True):
    full = theory.max_margin(jnp.asarray(z))
    junk = np.random.default_rng(0).standard_normal((20, 20)) * 5
    padded = theory.max_margin(
      jnp.asarray(np.concatenate([z, junk])), jnp.asarray(np.arange(80) < 60)
    )
  np.testing.assert_allclose(np.asarray(padded.w), np.asarray(full.w), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("p,n,seed", [(40, 20, 0), (300, 50, 2), (1000, 100, 3)])
def test_max_margin_float32_default_tol_is_finite_and_close_to_float64(p, n, seed):
  # in float32 the old 1e-10 default drove the slacks into underflow and returned margin=nan
  x, y = _separable(p, n, seed)
  z = y[:, None] * x
  with jax.enable_x64(True):
    ref = theory.max_margin(jnp.asarray(z))
  res = jax.jit(theory.max_margin)(jnp.asarray(z, jnp.float32))
  assert res.w.dtype == jnp.float32
  assert np.isfinite(np.asarray(res.w)).all() and np.isfinite(float(res.margin))
  assert bool(res.converged) and float(res.gap) <= 1e-4
  np.testing.assert_allclose(float(res.margin), float(ref.margin), rtol=1e-4)
  # the margin is the real one of the returned w
  g = (np.asarray(z, np.float32) @ np.asarray(res.w)) / np.linalg.norm(np.asarray(res.w))
  np.testing.assert_allclose(g.min(), float(res.margin), rtol=1e-5)


def test_max_margin_float32_hard_target_stops_finite_not_nan():
  # a target float32 cannot certify on this problem: the solver stops at its last good iterate
  x, y = _separable(1000, 100, 3)
  z = jnp.asarray(y[:, None] * x, jnp.float32)
  res = theory.max_margin(z, tol=2e-6)
  assert np.isfinite(np.asarray(res.w)).all() and np.isfinite(float(res.margin))
  assert float(res.gap) > 2e-6 and not bool(res.converged)
  assert float(res.margin) > 0


def test_max_margin_tol_float32_cannot_reach_raises():
  x, y = _separable(40, 20, 0)
  z = jnp.asarray(y[:, None] * x, jnp.float32)
  with pytest.raises(ValueError, match="float64.*enable_x64|enable_x64"):
    theory.max_margin(z, tol=1e-10)
  with pytest.raises(ValueError, match="float32 or float64"):
    theory.max_margin(z.astype(jnp.bfloat16))


def test_theory_and_envs_are_attributes_of_the_package():
  code = "import jaxprune; jaxprune.theory.theory; jaxprune.envs.make; print('ok')"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_theory_converges_and_matches_the_asymptote(th):
  assert th.converged.all(), (th.grad_norm, th.residual)
  # optimal stability without pruning: error -> 0.50 / alpha (0.5005 / alpha in the literature)
  big = th.error[-2:] * np.array([200.0, 400.0])
  np.testing.assert_allclose(big, 0.5005, atol=0.003)
  # theta = 0: the probe is the teacher, so the student-probe overlap is R
  np.testing.assert_allclose(th.rho, th.R)


def test_threshold_keeps_fraction():
  rng = np.random.default_rng(0)
  t, u = rng.standard_normal((2, 400_000))
  for theta, mode, f in [
    (0.0, "hard", 0.3),
    (0.0, "easy", 0.3),
    (0.4, "hard", 0.2),
    (0.4, "easy", 0.6),
  ]:
    p = np.cos(theta) * t + np.sin(theta) * u
    for margin, m in (("signed", np.sign(t) * p), ("abs", np.abs(p))):
      gamma = theory.threshold(f, theta, mode, margin)
      kept = np.mean(m < gamma) if mode == "hard" else np.mean(m > gamma)
      assert abs(kept - f) < 3e-3, (margin, theta, mode)
  # theta = 0, hard: keep |t| < gamma with 2 Phi(gamma) - 1 = f
  from scipy.stats import norm

  np.testing.assert_allclose(theory.threshold(0.3, 0.0, "hard"), norm.ppf(0.65), atol=1e-8)


def test_keep_easy_wins_small_keep_hard_wins_large(th, sim):
  # theory: alpha_tot = 1 (points 1, 2) easy better; alpha_tot = 16 (points 3, 4) hard better
  assert th.error[2] < th.error[1] and th.error[3] < th.error[4]
  e = sim.error.mean(-1)
  sem = sim.error.std(-1, ddof=1) / np.sqrt(SEEDS)
  assert e[2] + 2 * np.hypot(sem[1], sem[2]) < e[1]
  assert e[3] + 2 * np.hypot(sem[3], sem[4]) < e[4]


def test_simulation_matches_theory(th, sim):
  # N = 100, 8 seeds: agreement within 3 standard errors plus 10% (finite-size effects)
  assert sim.gap.max() < 1e-8 and sim.n_iter.max() < 100
  np.testing.assert_array_equal(sim.n_total, [300, 100, 100, 1600, 1600])
  np.testing.assert_array_equal(sim.n_kept, [300, 50, 50, 400, 400])
  e = sim.error.mean(-1)
  sem = sim.error.std(-1, ddof=1) / np.sqrt(SEEDS)
  t = th.error[:5]
  assert np.all(np.abs(e - t) < 3 * sem + 0.1 * t), (e, sem, t)
  np.testing.assert_allclose(sim.kappa.mean(-1), th.kappa[:5], rtol=0.15)


def test_simulation_same_key_same_result():
  kw = dict(n=20, alpha_tot=np.array([2.0, 3.0]), f=0.5, mode="hard", seeds=2)
  a = theory.simulate(jax.random.key(3), **kw)
  b = theory.simulate(jax.random.key(3), **kw)
  np.testing.assert_array_equal(a.error, b.error)
  assert a.error.shape == (2, 2)


@pytest.mark.parametrize(
  "kw,msg",
  [
    (dict(alpha_tot=1.0, f=0.0), "f"),
    (dict(alpha_tot=1.0, f=1.5), "f"),
    (dict(alpha_tot=1.0, f=np.nan), "f"),
    (dict(alpha_tot=0.0), "alpha_tot"),
    (dict(alpha_tot=-2.0), "alpha_tot"),
    (dict(alpha_tot=1.0, mode="random"), "mode"),
    (dict(alpha_tot=1.0, theta=2.0), "theta"),
  ],
)
def test_bad_input(kw, msg):
  with pytest.raises(ValueError, match=msg):
    theory.theory(**kw)
  with pytest.raises(ValueError, match=msg):
    theory.simulate(jax.random.key(0), n=10, **kw)


def test_bad_simulation_sizes():
  with pytest.raises(ValueError, match="n"):
    theory.simulate(jax.random.key(0), n=2, alpha_tot=1.0)
  with pytest.raises(ValueError, match="seeds"):
    theory.simulate(jax.random.key(0), n=10, alpha_tot=1.0, seeds=0)


@pytest.mark.slow
def test_perfect_probe_solver_matches_the_two_angle_solver():
  # theta = 0 has its own scaled one-angle solver; the general (R, s) solver at a probe angle
  # of 1e-4 rad is an independent computation of (nearly) the same point
  a = np.array([1.0, 3.0, 16.0, 16.0, 50.0])
  f = np.array([0.5, 1.0, 0.25, 0.25, 0.1])
  m = np.array(["hard", "hard", "hard", "easy", "hard"])
  plane = theory.theory(alpha_tot=a, f=f, mode=m)
  for margin in ("abs", "signed"):  # at theta -> 0 both margins are |T.x|
    general = theory.theory(alpha_tot=a, f=f, mode=m, theta=1e-4, margin=margin)
    assert plane.converged.all() and general.converged.all()
    np.testing.assert_allclose(plane.error, general.error, rtol=1e-5)
    np.testing.assert_allclose(plane.kappa, general.kappa, rtol=1e-5)


def test_prune_order_by_either_margin_hand_checked():
  # at 60 degrees P.x = 0.5 t + 0.866 u = -0.37, 0.54, 0.19, -1.60
  t = jnp.array([1.0, -1.0, 0.2, 2.0])
  u = jnp.array([-1.0, 1.2, 0.1, -3.0])
  kw = dict(theta=jnp.pi / 3, hard=1.0, n_total=4)
  # |P.x| = 0.37, 0.54, 0.19, 1.60: hardest first 2, 0, 1, 3
  np.testing.assert_array_equal(theory.prune_order(t, u, margin="abs", **kw), [2, 0, 1, 3])
  # y P.x = -0.37, -0.54, 0.19, -1.60: the probe's worst mistakes first
  np.testing.assert_array_equal(theory.prune_order(t, u, margin="signed", **kw), [3, 1, 0, 2])
  easy = theory.prune_order(t, u, margin="abs", theta=jnp.pi / 3, hard=0.0, n_total=3)
  np.testing.assert_array_equal(easy, [1, 0, 2, 3])  # row 3 is padding: last
  with pytest.raises(ValueError, match="margin"):
    theory.prune_order(t, u, margin="y", **kw)


@pytest.mark.slow  # compiling the general (R, s) solver: ~4 CPU-minutes
@pytest.mark.parametrize("margin", ["abs", "signed"])
def test_imperfect_probe_simulation_matches_theory_for_either_margin(margin):
  # probe at 20 degrees: the two margins keep different examples, and each simulation follows
  # its own theory (N = 100, 8 seeds: within 3 standard errors plus 10%)
  a, f = np.array([4.0, 4.0, 16.0]), np.array([0.5, 0.5, 0.25])
  m = np.array(["hard", "easy", "hard"])
  theta = np.deg2rad(20.0)
  th = theory.theory(alpha_tot=a, f=f, theta=theta, mode=m, margin=margin)
  other = theory.theory(
    alpha_tot=a, f=f, theta=theta, mode=m, margin=({"abs", "signed"} - {margin}).pop()
  )
  assert th.converged.all(), (th.grad_norm, th.residual)
  assert np.abs(th.error - other.error).max() > 0.01  # the choice matters at theta > 0
  sim = theory.simulate(
    jax.random.key(1), n=N_SIM, alpha_tot=a, f=f, theta=theta, mode=m, margin=margin, seeds=SEEDS
  )
  e = sim.error.mean(-1)
  sem = sim.error.std(-1, ddof=1) / np.sqrt(SEEDS)
  assert np.all(np.abs(e - th.error) < 3 * sem + 0.1 * th.error), (e, sem, th.error)


def test_keep_hard_from_a_pool_reaches_the_full_pool_error():
  # a perfect probe keeps every support vector once alpha_prune is past ~2.5, so the pruned
  # student IS the full-pool student: error 0.50 / alpha_tot even at f = 1e-5 (the scaled
  # solver stays converged down there); below alpha_prune ~ 2 it is at chance
  pool = np.array([20.0, 1e3, 3e5])
  full = theory.theory(alpha_tot=pool).error
  pruned = theory.theory(alpha_tot=pool, f=4.0 / pool, mode="hard")
  assert pruned.converged.all()
  np.testing.assert_allclose(pruned.error, full, rtol=0.02)
  assert pruned.error[-1] < 2e-6
  chance = theory.theory(alpha_tot=pool, f=1.5 / pool, mode="hard").error
  assert np.all(chance[1:] > 0.45)


def test_simulated_pool_pruning_keeps_the_same_student():
  # common random numbers: f = 0.2 keeps a subset of the same examples as f = 1; when that
  # subset holds every support vector, the max-margin student is the same to solver precision
  res = theory.simulate(
    jax.random.key(5), n=100, alpha_tot=20.0, f=np.array([1.0, 0.2]), mode="hard", seeds=3
  )
  np.testing.assert_allclose(res.error[1], res.error[0], atol=1e-6)
  np.testing.assert_allclose(res.kappa[1], res.kappa[0], rtol=1e-6)


@pytest.mark.slow
def test_scaling_script_smoke(tmp_path, capsys):
  import csv
  import importlib.util
  import os

  spec = importlib.util.spec_from_file_location(
    "scaling_script", os.path.join(os.path.dirname(__file__), "..", "scripts", "scaling.py")
  )
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  mod.main(
    [
      "--n",
      "20",
      "--seeds",
      "2",
      "--alphas",
      "1",
      "4",
      "--fractions",
      "1",
      "0.4",
      "--theory_points",
      "4",
      "--envelope_fractions",
      "4",
      "--budgets",
      "100",
      "--workdir",
      str(tmp_path),
    ]
  )
  out = capsys.readouterr().out
  assert "alpha^" in out and "envelope within alpha_tot <= 100" in out
  for name in ("scaling.png", "points.csv", "config.json"):
    assert os.path.getsize(tmp_path / name) > 0
  rows = list(csv.DictReader(open(tmp_path / "points.csv")))
  kinds = {r["kind"] for r in rows}
  assert {"theory", "simulation", "simulation_pool", "envelope_budget_100"} <= kinds
  sim = [r for r in rows if r["kind"] == "simulation"]
  assert len(sim) == 2 * 4  # curves (f = 1, hard 0.4, easy 0.4, theta 0.4) x 2 alphas
  assert all(0.0 <= float(r["error"]) <= 0.5 for r in sim)


@pytest.mark.parametrize(
  "kw,msg",
  [
    (dict(seeds=0), "seeds"),
    (dict(n=2), "n"),
    (dict(fractions=(0.5, 0.2)), "fractions"),
    (dict(fractions=(1.0, 1.5)), "fractions"),
    (dict(alphas=(0.0, 1.0)), "alphas"),
    (dict(alphas=(200.0,)), "budgets"),
    (dict(theta_deg=float("nan")), "theta_deg"),
  ],
)
def test_scaling_config_rejects_bad_values(kw, msg):
  with pytest.raises(ValueError, match=msg):
    theory.ScalingConfig(**kw)
