"""The perceptron theory of data pruning: reproduce Fig. 1 of Sorscher et al. (2022).

  python scripts/scaling.py                          # N = 200, a few minutes on 2 CPU cores
  python scripts/scaling.py --seeds 8 --alphas 0.5,1,2,3,4,6,8,10 --workdir runs/scaling_big

Writes to --workdir: scaling.png (panels: keep-hard, keep-easy, imperfect probe, scaling of the
envelope), points.csv (every theory and simulation point) and config.json; prints the fitted
exponents.
"""
import os
import sys
import time
from dataclasses import dataclass, field

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxprune import config  # noqa: E402
from jaxprune.core import io  # noqa: E402
from jaxprune.theory import perceptron as theory  # noqa: E402


@dataclass(frozen=True)
class ScalingConfig:
  """Teacher-student pruning curves: simulation (max-margin students) and replica theory."""

  n: int = field(default=200, metadata={"help": "input dimension N of the simulations"})
  seeds: int = field(default=4, metadata={"help": "simulated students per point"})
  alphas: str = field(default="0.5,1,2,4,8", metadata={"help": "alpha_prune of the simulations"})
  fractions: str = field(default="1,0.6,0.4,0.2", metadata={"help": "f of the plotted curves"})
  theta_deg: float = field(default=10.0, metadata={"help": "probe angle of the imperfect panel"})
  theory_points: int = field(default=20, metadata={"help": "alpha_prune grid of the theory"})
  envelope_fractions: int = field(default=13, metadata={"help": "f grid of the perfect-probe envelope (1e-6 .. 1)"})
  budgets: str = field(default="100,1e4,1e6",
                       metadata={"help": "data budgets alpha_tot <= A of the perfect-probe envelopes"})
  alpha_max: float = 10.0
  seed: int = 0
  workdir: str = "runs/scaling"


def _floats(s):
  return [float(v) for v in s.split(",") if v.strip()]


def _fit(x, y):
  """Least squares y = a + b x: slope b and RMS residual."""
  b, a = np.polyfit(x, y, 1)
  return b, float(np.sqrt(np.mean((a + b * x - y) ** 2)))


def main(argv=None):
  cfg = config.parse(ScalingConfig, argv)
  os.makedirs(cfg.workdir, exist_ok=True)
  io.save_json(os.path.join(cfg.workdir, "config.json"), cfg)
  t_start = time.time()
  theta1 = np.deg2rad(cfg.theta_deg)
  fracs = _floats(cfg.fractions)
  sim_alpha = np.array(_floats(cfg.alphas))
  th_alpha = np.geomspace(0.3, cfg.alpha_max, cfg.theory_points)
  # the envelope's f grid: keep-hard with a perfect probe needs very small f at large alpha
  env_f = {(0.0, "hard"): np.geomspace(1e-6, 1.0, cfg.envelope_fractions),
           (theta1, "hard"): np.geomspace(0.02, 1.0, 10)}
  env_f[(0.0, "easy")] = env_f[(theta1, "easy")] = np.geomspace(0.02, 1.0, 6)

  # every theory setting in one call: curves (theta, mode, f) and the envelope's f grid
  curves = [(0.0, m, f) for m in theory.MODES for f in fracs if not (m == "easy" and f == 1)]
  curves += [(theta1, "hard", f) for f in fracs if f < 1]
  env = [(th_, m, f) for th_ in (0.0, theta1) for m in theory.MODES for f in env_f[(th_, m)]]
  budgets = _floats(cfg.budgets)
  # pool curves: pruning a fixed pool alpha_tot = A down to alpha_prune (f = alpha_prune / A)
  pools = [(0.0, m, -b) for b in budgets for m in theory.MODES]  # f < 0 marks "f = alpha / A"
  spec = curves + env + pools
  TH, MO, FR = (np.array([s[i] for s in spec])[:, None] for i in range(3))
  AP = np.broadcast_to(th_alpha, (len(spec), th_alpha.size))
  FR = np.where(FR < 0, np.minimum(AP / -FR, 1.0), FR)
  print(f"theory: {AP.size} settings ...", flush=True)
  t0 = time.time()
  th_res = theory.theory(alpha_tot=AP / FR, f=FR, theta=TH, mode=MO)
  print(f"theory: {time.time() - t0:.0f} s, converged {th_res.converged.mean():.1%} "
        f"(max |grad| {th_res.grad_norm.max():.1e}, max |residual| {np.abs(th_res.residual).max():.1e})")
  # a point whose solve did not converge (very small f at very large alpha_tot) is left out
  err = np.where(th_res.converged, th_res.error, np.nan)
  curve_err = {s: err[i] for i, s in enumerate(curves)}
  # envelope over f (and mode) at each alpha_prune, within a data budget alpha_tot <= A:
  # the perfect probe for every budget, the imperfect one without a budget
  env_err = {}
  for th_, bud in [(0.0, b) for b in budgets] + [(theta1, np.inf)]:
    rows = [i for i, s in enumerate(spec) if (s in env and s[0] == th_)
            or (s in pools and s[2] == -bud)]
    within = AP[rows] / FR[rows] <= bud * (1 + 1e-9)
    env_err[(th_, bud)] = np.nanmin(np.where(within, err[rows], np.nan), 0)
  pool_err = {(m, -f): err[i] for i, (_, m, f) in enumerate(spec) if (0.0, m, f) in pools}

  # simulations: the same curves at the simulated alphas, all in one call
  s_TH, s_MO, s_FR = (np.array([s[i] for s in curves])[:, None] for i in range(3))
  s_AP = np.broadcast_to(sim_alpha, (len(curves), sim_alpha.size))
  print(f"simulation: {s_AP.size} settings x {cfg.seeds} seeds, N = {cfg.n} ...", flush=True)
  t0 = time.time()
  sim = theory.simulate(jax.random.key(cfg.seed), n=cfg.n, alpha_tot=s_AP / s_FR, f=s_FR,
                        theta=s_TH, mode=s_MO, seeds=cfg.seeds, progress=True)
  print(f"simulation: {time.time() - t0:.0f} s, max margin gap {sim.gap.max():.1e}, "
        f"max interior-point steps {sim.n_iter.max()}")
  sem = lambda e: e.std(-1, ddof=1) / np.sqrt(cfg.seeds) if cfg.seeds > 1 else 0 * e[..., 0]
  sim_mean, sim_sem = sim.error.mean(-1), sem(sim.error)
  th_at_sim = theory.theory(alpha_tot=s_AP / s_FR, f=s_FR, theta=s_TH, mode=s_MO).error
  # the envelope's own simulation: keep-hard, perfect probe, from a pool of alpha_tot = A
  pool = budgets[0]
  b_f = sim_alpha / pool
  print(f"simulation: envelope within alpha_tot = {pool:g} (f = {b_f.min():.3g}..{b_f.max():.3g})")
  bsim = theory.simulate(jax.random.key(cfg.seed + 1), n=cfg.n, alpha_tot=pool, f=b_f,
                         mode="hard", seeds=cfg.seeds)
  bsim_mean, bsim_sem = bsim.error.mean(-1), sem(bsim.error)
  bsim_th = theory.theory(alpha_tot=pool, f=b_f, mode="hard").error

  # CSV of every point
  cols = {k: [] for k in ("kind", "theta", "mode", "f", "alpha_prune", "alpha_tot", "error",
                          "error_sem", "theory_error", "seeds", "converged")}

  def add(kind, th_, mode, f, ap, e, sem_, te, seeds, conv):
    for k, v in zip(cols, (kind, th_, mode, f, ap, ap / f, e, sem_, te, seeds, conv)):
      cols[k].append(v)

  for i, (th_, m, _) in enumerate(spec):
    for j, ap in enumerate(th_alpha):
      add("theory", th_, m, FR[i, j], ap, th_res.error[i, j], 0.0, th_res.error[i, j], 0,
          bool(th_res.converged[i, j]))
  for i, (th_, m, f) in enumerate(curves):
    for j, ap in enumerate(sim_alpha):
      add("simulation", th_, m, f, ap, sim_mean[i, j], sim_sem[i, j], th_at_sim[i, j], cfg.seeds,
          bool(sim.gap[i, j].max() < 1e-6))
  for j, ap in enumerate(sim_alpha):
    add("simulation_pool", 0.0, "hard", b_f[j], ap, bsim_mean[j], bsim_sem[j], bsim_th[j],
        cfg.seeds, bool(bsim.gap[j].max() < 1e-6))
  for (th_, bud), e in env_err.items():
    for j, ap in enumerate(th_alpha):  # alpha_tot column = the budget (inf: none)
      add(f"envelope_budget_{bud:g}", th_, "best", ap / bud if np.isfinite(bud) else np.nan, ap,
          e[j], 0.0, e[j], 0, True)
  io.save_csv(os.path.join(cfg.workdir, "points.csv"), cols)

  # exponents and the shape of the envelopes
  big = th_alpha >= 3.0  # past the keep-hard transition near alpha_prune = 2
  nu_th, _ = _fit(np.log(th_alpha[big]), np.log(curve_err[(0.0, "hard", 1.0)][big]))
  sb = sim_alpha >= 3.0
  nu_sim, _ = _fit(np.log(sim_alpha[sb]), np.log(sim_mean[curves.index((0.0, "hard", 1.0))][sb])) \
      if sb.sum() >= 2 else (float("nan"), 0.0)
  at = lambda e, a: e[int(np.argmin(np.abs(th_alpha - a)))]
  summary = [
      f"f = 1 (no pruning), alpha >= 3: error ~ alpha^{nu_th:.3f} (theory), "
      f"alpha^{nu_sim:.3f} (simulation, N = {cfg.n}); large-alpha asymptote 0.50 / alpha"]
  marks = (1, 1.5, 2, 2.5, 3, 10)
  for bud in budgets:
    e = env_err[(0.0, bud)]
    summary.append(
        f"perfect probe, envelope within alpha_tot <= {bud:g}: error at alpha_prune "
        + ", ".join(f"{a:g}: {at(e, a):.2e}" for a in marks)
        + f"; at alpha_prune >= 3 it is {np.nanmax(e[big] * bud):.4f} / A .. "
        f"{np.nanmin(e[big] * bud):.4f} / A (full-pool error 0.50 / A)")
  e0 = env_err[(0.0, budgets[-1])]
  summary.append(f"  drop across alpha_prune = 1.5 -> 2.5: x{at(e0, 1.5) / at(e0, 2.5):.3g} "
                 f"(f = 1: x{at(curve_err[(0.0, 'hard', 1.0)], 1.5) / at(curve_err[(0.0, 'hard', 1.0)], 2.5):.3g})")
  e1 = env_err[(theta1, np.inf)]
  pw1, pw1_res = _fit(np.log(th_alpha[big]), np.log(e1[big]))
  ex1, ex1_res = _fit(th_alpha[big], np.log(e1[big]))
  summary += [
      f"envelope over f (theta = {cfg.theta_deg:g} deg), alpha_prune >= 3: power-law slope "
      f"{pw1:.2f} (rms {pw1_res:.3f}) vs exponential rate {ex1:.3f} (rms {ex1_res:.3f}) -> "
      f"{'exponential' if ex1_res < pw1_res else 'power law'} fits better",
      f"simulation vs theory: median |log(sim / theory)| = "
      f"{np.median(np.abs(np.log(sim_mean / th_at_sim))):.3f}; pool of alpha_tot = {pool:g}: "
      + ", ".join(f"{a:g}: {m:.4f} (theory {t:.4f})" for a, m, t in zip(sim_alpha, bsim_mean, bsim_th)),
  ]
  print("\n".join(summary))

  _plot(cfg, th_alpha, curve_err, env_err, curves, sim_alpha, sim_mean, sim_sem, theta1, fracs,
        budgets, (pool, bsim_mean, bsim_sem, pool_err[("hard", pool)]))
  print(f"done in {time.time() - t_start:.0f} s; outputs in {cfg.workdir} "
        "(scaling.png, points.csv, config.json)")


def _plot(cfg, th_alpha, curve_err, env_err, curves, sim_alpha, sim_mean, sim_sem, theta1, fracs,
          budgets, pool_sim):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  colors = dict(zip(fracs, plt.cm.viridis(np.linspace(0.0, 0.85, len(fracs)))))
  fig, axes = plt.subplots(2, 2, figsize=(11, 9))
  panels = [(axes[0, 0], 0.0, "hard", "perfect probe, keep hard"),
            (axes[0, 1], 0.0, "easy", "perfect probe, keep easy"),
            (axes[1, 0], theta1, "hard", f"probe at {cfg.theta_deg:g} deg, keep hard")]
  for ax, th_, mode, title in panels:
    for f in fracs:
      key = (th_, mode, f) if f < 1 else (0.0, "hard", 1.0)
      if key not in curve_err:
        continue
      ax.plot(th_alpha, curve_err[key], color=colors[f], lw=1.5, label=f"f = {f:g}")
      i = curves.index(key)
      ax.errorbar(sim_alpha, sim_mean[i], yerr=sim_sem[i], fmt="o", ms=4, color=colors[f],
                  capsize=2)
    bud = budgets[0] if th_ == 0 else np.inf
    ax.plot(th_alpha, env_err[(th_, bud)], "k--", lw=1.2,
            label="envelope (best f and mode" + (f", alpha_tot <= {bud:g})" if th_ == 0 else ")"))
    ax.set(xscale="log", yscale="log", xlabel=r"$\alpha_{prune} = P_{kept} / N$",
           ylabel="test error", title=title)
    ax.legend(fontsize=8)
  ax = axes[1, 1]
  ax.plot(th_alpha, curve_err[(0.0, "hard", 1.0)], color=colors[1.0], label="f = 1 (power law)")
  for bud, ls in zip(budgets, ["--", ":", "-"]):
    ax.plot(th_alpha, env_err[(0.0, bud)], "k", ls=ls, lw=1.2,
            label=f"envelope, perfect probe, alpha_tot <= {bud:g}")
  pool, m, s, th_pool = pool_sim
  ax.plot(th_alpha, th_pool, color="0.6", lw=1, label=f"keep hard from a pool alpha_tot = {pool:g}")
  ax.errorbar(sim_alpha, m, yerr=s, fmt="s", color="0.4", ms=4, capsize=2,
              label=f"  simulation of it")
  ax.plot(th_alpha, env_err[(theta1, np.inf)], "r-.", label=f"envelope, probe at {cfg.theta_deg:g} deg")
  ax.set(yscale="log", xlabel=r"$\alpha_{prune}$ (linear)", ylabel="test error",
         title="envelope over f: a cliff at alpha_prune ~ 2 (perfect probe)")
  ax.legend(fontsize=7)
  fig.suptitle(f"Teacher-student perceptron, max-margin student: lines = replica theory, "
               f"points = simulation (N = {cfg.n}, {cfg.seeds} seeds, mean +- s.e.m.)", fontsize=10)
  fig.tight_layout()
  io.save_figure(os.path.join(cfg.workdir, "scaling.png"), fig)
  plt.close(fig)


if __name__ == "__main__":
  main()
