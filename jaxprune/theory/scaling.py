"""Fig. 1 of Sorscher et al. (2022): test error vs alpha_prune, replica theory and simulations.

:func:`run` solves the theory on a grid of alpha_prune for every curve (theta, mode, f), the
envelope over f (within data budgets ``alpha_tot <= A``) and pool curves (a fixed pool pruned
down), simulates the curves' max-margin students, and writes ``scaling.png``, ``points.csv`` and
``config.json`` to ``cfg.workdir``.
"""

from __future__ import annotations

import os
import time
from typing import Callable, NamedTuple

import jax
import numpy as np

from jaxprune.core import io
from jaxprune.core.config import to_dict
from jaxprune.theory import plots
from jaxprune.theory.model import MODES
from jaxprune.theory.replica import TheoryResult, theory
from jaxprune.theory.scaling_config import THEORY_ALPHA_MIN, ScalingConfig
from jaxprune.theory.simulation import SimResult, simulate

# fold_in salts of the config's key, one per independent stream of simulated examples
CURVES_SALT = 1
POOL_SALT = 2

FIT_FROM = 3.0  # exponents are fitted at alpha_prune >= 3, past the transition near 2
MARKS = (1, 1.5, 2, 2.5, 3, 10)  # alpha_prune values the summary quotes the envelopes at


class TheorySweep(NamedTuple):
  """Theory on the grid ``alpha`` (A): curves, envelopes over f, pool curves."""

  alpha: np.ndarray  # A
  curves: list  # the plotted curves, (theta, mode, f)
  spec: list  # every solved row, (theta, mode, f); f < 0 marks a pool of alpha_tot = -f
  f: np.ndarray  # rows x A, the f actually solved
  result: TheoryResult  # rows x A
  curve_err: dict  # curve -> A, NaN where the solve did not converge
  env_err: dict  # (theta, budget) -> A, best f and mode within alpha_tot <= budget
  pool_err: dict  # (mode, pool) -> A


class Simulations(NamedTuple):
  """Simulated curves (curves x alphas) and the pool simulation (alphas)."""

  alpha: np.ndarray
  curves: SimResult
  mean: np.ndarray
  sem: np.ndarray
  theory: np.ndarray  # the theory at the simulated points
  pool: float
  pool_f: np.ndarray
  pool_sim: SimResult
  pool_mean: np.ndarray
  pool_sem: np.ndarray
  pool_theory: np.ndarray


def _theory_sweep(cfg: ScalingConfig, log: Callable[[str], None]) -> TheorySweep:
  """Every theory setting in one call: curves, the envelope's f grid and pool curves."""
  theta1 = np.deg2rad(cfg.theta_deg)
  fracs = list(cfg.fractions)
  alpha = np.geomspace(THEORY_ALPHA_MIN, cfg.alpha_max, cfg.theory_points)
  # the envelope's f grid: keep-hard with a perfect probe needs very small f at large alpha
  env_f = {
    (0.0, "hard"): np.geomspace(1e-6, 1.0, cfg.envelope_fractions),
    (theta1, "hard"): np.geomspace(0.02, 1.0, 10),
  }
  env_f[(0.0, "easy")] = env_f[(theta1, "easy")] = np.geomspace(0.02, 1.0, 6)
  curves = [(0.0, m, f) for m in MODES for f in fracs if not (m == "easy" and f == 1)]
  curves += [(theta1, "hard", f) for f in fracs if f < 1]
  env = [(th, m, f) for th in (0.0, theta1) for m in MODES for f in env_f[(th, m)]]
  budgets = list(cfg.budgets)
  # pool curves: pruning a fixed pool alpha_tot = A down to alpha_prune (f = alpha_prune / A)
  pools = [(0.0, m, -b) for b in budgets for m in MODES]  # f < 0 marks "f = alpha / A"
  spec = curves + env + pools
  TH, MO, FR = (np.array([s[i] for s in spec])[:, None] for i in range(3))
  AP = np.broadcast_to(alpha, (len(spec), alpha.size))
  FR = np.where(FR < 0, np.minimum(AP / -FR, 1.0), FR)
  log(f"theory: {AP.size} settings ...")
  t0 = time.time()
  res = theory(alpha_tot=AP / FR, f=FR, theta=TH, mode=MO, margin=cfg.margin)
  log(
    f"theory: {time.time() - t0:.0f} s, converged {res.converged.mean():.1%} "
    f"(max |grad| {res.grad_norm.max():.1e}, max |residual| {np.abs(res.residual).max():.1e})"
  )
  # a point whose solve did not converge (very small f at very large alpha_tot) is left out
  err = np.where(res.converged, res.error, np.nan)
  curve_err = {s: err[i] for i, s in enumerate(curves)}
  # envelope over f (and mode) at each alpha_prune, within a data budget alpha_tot <= A:
  # the perfect probe for every budget, the imperfect one without a budget
  env_err = {}
  for th, bud in [(0.0, b) for b in budgets] + [(theta1, np.inf)]:
    rows = [
      i for i, s in enumerate(spec) if (s in env and s[0] == th) or (s in pools and s[2] == -bud)
    ]
    within = AP[rows] / FR[rows] <= bud * (1 + 1e-9)
    env_err[(th, bud)] = np.nanmin(np.where(within, err[rows], np.nan), 0)
  pool_err = {(m, -f): err[i] for i, (_, m, f) in enumerate(spec) if (0.0, m, f) in pools}
  return TheorySweep(alpha, curves, spec, FR, res, curve_err, env_err, pool_err)


def _simulations(
  cfg: ScalingConfig, curves: list, key: jax.Array, log: Callable[[str], None]
) -> Simulations:
  """The curves at the simulated alphas in one call, and keep-hard from the first budget's pool."""
  alpha = np.array(cfg.alphas, dtype=np.float64)
  TH, MO, FR = (np.array([s[i] for s in curves])[:, None] for i in range(3))
  AP = np.broadcast_to(alpha, (len(curves), alpha.size))
  log(f"simulation: {AP.size} settings x {cfg.seeds} seeds, N = {cfg.n} ...")
  t0 = time.time()
  sim = simulate(
    jax.random.fold_in(key, CURVES_SALT),
    n=cfg.n,
    alpha_tot=AP / FR,
    f=FR,
    theta=TH,
    mode=MO,
    margin=cfg.margin,
    seeds=cfg.seeds,
    progress=True,
  )
  log(
    f"simulation: {time.time() - t0:.0f} s, max margin gap {sim.gap.max():.1e}, "
    f"max interior-point steps {sim.n_iter.max()}"
  )
  th_at_sim = theory(alpha_tot=AP / FR, f=FR, theta=TH, mode=MO, margin=cfg.margin).error
  # the envelope's own simulation: keep-hard, perfect probe, from a pool of alpha_tot = A
  pool = cfg.budgets[0]
  pool_f = alpha / pool
  log(
    f"simulation: envelope within alpha_tot = {pool:g} (f = {pool_f.min():.3g}..{pool_f.max():.3g})"
  )
  psim = simulate(
    jax.random.fold_in(key, POOL_SALT),
    n=cfg.n,
    alpha_tot=pool,
    f=pool_f,
    mode="hard",
    seeds=cfg.seeds,
  )
  pool_th = theory(alpha_tot=pool, f=pool_f, mode="hard").error
  return Simulations(
    alpha,
    sim,
    sim.error.mean(-1),
    _sem(sim.error),
    th_at_sim,
    pool,
    pool_f,
    psim,
    psim.error.mean(-1),
    _sem(psim.error),
    pool_th,
  )


def _sem(e):
  """Standard error of the mean over the last axis (seeds); 0 for one seed."""
  n = e.shape[-1]
  return e.std(-1, ddof=1) / np.sqrt(n) if n > 1 else 0 * e[..., 0]


def _fit(x, y):
  """Least squares y = a + b x: slope b and RMS residual."""
  b, a = np.polyfit(x, y, 1)
  return b, float(np.sqrt(np.mean((a + b * x - y) ** 2)))


def _save_points(path: str, cfg: ScalingConfig, th: TheorySweep, sim: Simulations) -> None:
  """Every theory, simulation and envelope point as one CSV row."""
  cols = {
    k: []
    for k in (
      "kind",
      "theta",
      "mode",
      "f",
      "alpha_prune",
      "alpha_tot",
      "error",
      "error_sem",
      "theory_error",
      "seeds",
      "converged",
    )
  }

  def add(kind, theta, mode, f, ap, e, sem, te, seeds, conv):
    for k, v in zip(cols, (kind, theta, mode, f, ap, ap / f, e, sem, te, seeds, conv)):
      cols[k].append(v)

  res = th.result
  for i, (theta, m, _) in enumerate(th.spec):
    for j, ap in enumerate(th.alpha):
      add(
        "theory",
        theta,
        m,
        th.f[i, j],
        ap,
        res.error[i, j],
        0.0,
        res.error[i, j],
        0,
        bool(res.converged[i, j]),
      )
  for i, (theta, m, f) in enumerate(th.curves):
    for j, ap in enumerate(sim.alpha):
      add(
        "simulation",
        theta,
        m,
        f,
        ap,
        sim.mean[i, j],
        sim.sem[i, j],
        sim.theory[i, j],
        cfg.seeds,
        bool(sim.curves.gap[i, j].max() < 1e-6),
      )
  for j, ap in enumerate(sim.alpha):
    add(
      "simulation_pool",
      0.0,
      "hard",
      sim.pool_f[j],
      ap,
      sim.pool_mean[j],
      sim.pool_sem[j],
      sim.pool_theory[j],
      cfg.seeds,
      bool(sim.pool_sim.gap[j].max() < 1e-6),
    )
  for (theta, bud), e in th.env_err.items():
    for j, ap in enumerate(th.alpha):  # alpha_tot column = the budget (inf: none)
      add(
        f"envelope_budget_{bud:g}",
        theta,
        "best",
        ap / bud if np.isfinite(bud) else np.nan,
        ap,
        e[j],
        0.0,
        e[j],
        0,
        True,
      )
  io.save_csv(path, cols)


def _summary(cfg: ScalingConfig, th: TheorySweep, sim: Simulations) -> dict:
  """The exponents and the shape of the envelopes: numbers, and ``summary`` lines quoting them."""
  a = th.alpha
  big = a >= FIT_FROM
  full = th.curve_err[(0.0, "hard", 1.0)]
  nu_th, _ = _fit(np.log(a[big]), np.log(full[big]))
  sb = sim.alpha >= FIT_FROM
  full_sim = sim.mean[th.curves.index((0.0, "hard", 1.0))]
  nu_sim = _fit(np.log(sim.alpha[sb]), np.log(full_sim[sb]))[0] if sb.sum() >= 2 else float("nan")
  at = lambda e, x: float(e[int(np.argmin(np.abs(a - x)))])
  out = {"nu_theory": float(nu_th), "nu_simulation": float(nu_sim)}
  lines = [
    f"f = 1 (no pruning), alpha >= 3: error ~ alpha^{nu_th:.3f} (theory), "
    f"alpha^{nu_sim:.3f} (simulation, N = {cfg.n}); large-alpha asymptote 0.50 / alpha"
  ]
  for bud in cfg.budgets:
    e = th.env_err[(0.0, bud)]
    marks = {x: at(e, x) for x in MARKS}
    hi, lo = float(np.nanmax(e[big] * bud)), float(np.nanmin(e[big] * bud))
    out[f"envelope_{bud:g}"] = dict(at=marks, times_budget_max=hi, times_budget_min=lo)
    lines.append(
      f"perfect probe, envelope within alpha_tot <= {bud:g}: error at alpha_prune "
      + ", ".join(f"{x:g}: {v:.2e}" for x, v in marks.items())
      + f"; at alpha_prune >= 3 it is {hi:.4f} / A .. {lo:.4f} / A "
      "(full-pool error 0.50 / A)"
    )
  e0 = th.env_err[(0.0, cfg.budgets[-1])]
  out["envelope_drop_1.5_2.5"] = at(e0, 1.5) / at(e0, 2.5)
  out["full_drop_1.5_2.5"] = at(full, 1.5) / at(full, 2.5)
  lines.append(
    f"  drop across alpha_prune = 1.5 -> 2.5: x{out['envelope_drop_1.5_2.5']:.3g} "
    f"(f = 1: x{out['full_drop_1.5_2.5']:.3g})"
  )
  e1 = th.env_err[(np.deg2rad(cfg.theta_deg), np.inf)]
  pw1, pw1_res = _fit(np.log(a[big]), np.log(e1[big]))
  ex1, ex1_res = _fit(a[big], np.log(e1[big]))
  out.update(
    probe_power_slope=float(pw1),
    probe_power_rms=pw1_res,
    probe_exp_rate=float(ex1),
    probe_exp_rms=ex1_res,
  )
  out["median_abs_log_sim_over_theory"] = float(np.median(np.abs(np.log(sim.mean / sim.theory))))
  out["pool_simulation"] = sim.pool_mean.tolist()
  out["pool_theory"] = sim.pool_theory.tolist()
  lines += [
    f"envelope over f (theta = {cfg.theta_deg:g} deg), alpha_prune >= 3: power-law slope "
    f"{pw1:.2f} (rms {pw1_res:.3f}) vs exponential rate {ex1:.3f} (rms {ex1_res:.3f}) -> "
    f"{'exponential' if ex1_res < pw1_res else 'power law'} fits better",
    f"simulation vs theory: median |log(sim / theory)| = "
    f"{out['median_abs_log_sim_over_theory']:.3f}; pool of alpha_tot = {sim.pool:g}: "
    + ", ".join(
      f"{x:g}: {m:.4f} (theory {t:.4f})"
      for x, m, t in zip(sim.alpha, sim.pool_mean, sim.pool_theory)
    ),
  ]
  out["summary"] = lines
  return out


def _print(line: str) -> None:
  print(line, flush=True)  # progress lines show up while the solves run


def run(cfg: ScalingConfig, log: Callable[[str], None] = _print) -> dict:
  """Theory, simulations, ``points.csv``, ``scaling.png`` and ``config.json`` in ``cfg.workdir``.

  Returns the fitted exponents and envelope figures, with ``summary`` (lines quoting them) and
  ``seconds``; ``log`` receives progress lines.
  """
  t_start = time.time()
  os.makedirs(cfg.workdir, exist_ok=True)
  io.save_json(os.path.join(cfg.workdir, "config.json"), to_dict(cfg))
  key = jax.random.key(cfg.seed)
  th = _theory_sweep(cfg, log)
  sim = _simulations(cfg, th.curves, key, log)
  _save_points(os.path.join(cfg.workdir, "points.csv"), cfg, th, sim)
  out = _summary(cfg, th, sim)
  plots.save_scaling_figure(os.path.join(cfg.workdir, "scaling.png"), cfg, th, sim)
  out["seconds"] = time.time() - t_start
  return out
