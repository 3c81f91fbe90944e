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

from jaxprune import config, io, theory  # noqa: E402


@dataclass(frozen=True)
class ScalingConfig:
  """Teacher-student pruning curves: simulation (max-margin students) and replica theory."""

  n: int = field(default=200, metadata={"help": "input dimension N of the simulations"})
  seeds: int = field(default=4, metadata={"help": "simulated students per point"})
  alphas: str = field(default="0.5,1,2,4,8", metadata={"help": "alpha_prune of the simulations"})
  fractions: str = field(default="1,0.6,0.4,0.2", metadata={"help": "f of the plotted curves"})
  theta_deg: float = field(default=10.0, metadata={"help": "probe angle of the imperfect panel"})
  theory_points: int = field(default=20, metadata={"help": "alpha_prune grid of the theory"})
  envelope_fractions: int = field(default=12, metadata={"help": "f grid of the envelope"})
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
  env_f = {(0.0, "hard"): np.geomspace(0.01, 1.0, cfg.envelope_fractions + 2),
           (theta1, "hard"): np.geomspace(0.02, 1.0, cfg.envelope_fractions - 2)}
  env_f[(0.0, "easy")] = env_f[(theta1, "easy")] = np.geomspace(0.02, 1.0, 6)

  # every theory setting in one call: curves (theta, mode, f) and the envelope's f grid
  curves = [(0.0, m, f) for m in theory.MODES for f in fracs if not (m == "easy" and f == 1)]
  curves += [(theta1, "hard", f) for f in fracs if f < 1]
  env = [(th_, m, f) for th_ in (0.0, theta1) for m in theory.MODES for f in env_f[(th_, m)]]
  spec = curves + env
  TH, MO, FR = (np.array([s[i] for s in spec])[:, None] for i in range(3))
  AP = np.broadcast_to(th_alpha, (len(spec), th_alpha.size))
  print(f"theory: {AP.size} settings ...", flush=True)
  t0 = time.time()
  th_res = theory.theory(alpha_tot=AP / FR, f=FR, theta=TH, mode=MO)
  print(f"theory: {time.time() - t0:.0f} s, converged {th_res.converged.mean():.1%} "
        f"(max |grad| {th_res.grad_norm.max():.1e}, max |residual| {np.abs(th_res.residual).max():.1e})")
  # a point whose solve did not converge (very small f at very large alpha_tot) is left out
  err = np.where(th_res.converged, th_res.error, np.nan)
  curve_err = {s: err[i] for i, s in enumerate(curves)}
  env_err = {}
  for th_ in (0.0, theta1):
    rows = [i for i, s in enumerate(spec) if s in env and s[0] == th_]
    env_err[th_] = np.nanmin(err[rows], 0)

  # simulations: the same curves at the simulated alphas, all in one call
  s_TH, s_MO, s_FR = (np.array([s[i] for s in curves])[:, None] for i in range(3))
  s_AP = np.broadcast_to(sim_alpha, (len(curves), sim_alpha.size))
  print(f"simulation: {s_AP.size} settings x {cfg.seeds} seeds, N = {cfg.n} ...", flush=True)
  t0 = time.time()
  sim = theory.simulate(jax.random.key(cfg.seed), n=cfg.n, alpha_tot=s_AP / s_FR, f=s_FR,
                        theta=s_TH, mode=s_MO, seeds=cfg.seeds, progress=True)
  print(f"simulation: {time.time() - t0:.0f} s, max margin gap {sim.gap.max():.1e}, "
        f"max interior-point steps {sim.n_iter.max()}")
  sim_mean, sim_sem = sim.error.mean(-1), sim.error.std(-1, ddof=1) / np.sqrt(cfg.seeds) \
      if cfg.seeds > 1 else np.zeros_like(sim.error[..., 0])
  th_at_sim = theory.theory(alpha_tot=s_AP / s_FR, f=s_FR, theta=s_TH, mode=s_MO).error

  # CSV of every point
  cols = {k: [] for k in ("kind", "theta", "mode", "f", "alpha_prune", "alpha_tot", "error",
                          "error_sem", "theory_error", "seeds", "converged")}

  def add(kind, th_, mode, f, ap, e, sem, te, seeds, conv):
    for k, v in zip(cols, (kind, th_, mode, f, ap, ap / f, e, sem, te, seeds, conv)):
      cols[k].append(v)

  for i, (th_, m, f) in enumerate(spec):
    for j, ap in enumerate(th_alpha):
      add("theory", th_, m, f, ap, th_res.error[i, j], 0.0, th_res.error[i, j], 0,
          bool(th_res.converged[i, j]))
  for i, (th_, m, f) in enumerate(curves):
    for j, ap in enumerate(sim_alpha):
      add("simulation", th_, m, f, ap, sim_mean[i, j], sim_sem[i, j], th_at_sim[i, j], cfg.seeds,
          bool(sim.gap[i, j].max() < 1e-6))
  for th_ in (0.0, theta1):
    for j, ap in enumerate(th_alpha):
      add("envelope", th_, "best", 1.0, ap, env_err[th_][j], 0.0, env_err[th_][j], 0, True)
  io.save_csv(os.path.join(cfg.workdir, "points.csv"), cols)

  # exponents
  big = th_alpha >= 3.0  # past the keep-hard transition near alpha_prune = 2
  nu_th, _ = _fit(np.log(th_alpha[big]), np.log(curve_err[(0.0, "hard", 1.0)][big]))
  sb = sim_alpha >= 3.0
  nu_sim, _ = _fit(np.log(sim_alpha[sb]), np.log(sim_mean[curves.index((0.0, "hard", 1.0))][sb])) \
      if sb.sum() >= 2 else (float("nan"), 0.0)
  e0 = env_err[0.0]
  pw, pw_res = _fit(np.log(th_alpha[big]), np.log(e0[big]))
  ex, ex_res = _fit(th_alpha[big], np.log(e0[big]))
  local = np.gradient(np.log(e0), np.log(th_alpha))
  e1 = env_err[theta1]
  pw1, pw1_res = _fit(np.log(th_alpha[big]), np.log(e1[big]))
  ex1, ex1_res = _fit(th_alpha[big], np.log(e1[big]))
  summary = [
      f"f = 1 (no pruning), alpha >= 3: error ~ alpha^{nu_th:.3f} (theory), "
      f"alpha^{nu_sim:.3f} (simulation, N = {cfg.n}); large-alpha asymptote 0.50 / alpha",
      f"envelope over f (theta = 0), alpha_prune in [3, {cfg.alpha_max:g}]: power-law fit slope "
      f"{pw:.2f} (rms log residual {pw_res:.3f}) vs exponential fit rate {ex:.3f} per unit alpha "
      f"(rms {ex_res:.3f}) -> {'exponential' if ex_res < pw_res else 'power law'} fits better",
      "  local log-log slope of the envelope at alpha_prune = "
      + ", ".join(f"{th_alpha[j]:.1f}: {local[j]:.2f}" for j in
                  sorted({int(np.argmin(np.abs(th_alpha - a))) for a in (1, 2, 4, 6, 8, 10)}))
      + " (a power law has a constant slope)",
      f"envelope over f (theta = {cfg.theta_deg:g} deg): power-law slope {pw1:.2f} "
      f"(rms {pw1_res:.3f}) vs exponential rate {ex1:.3f} (rms {ex1_res:.3f}) -> "
      f"{'exponential' if ex1_res < pw1_res else 'power law'} fits better",
      f"simulation vs theory: median |log(sim / theory)| = "
      f"{np.median(np.abs(np.log(sim_mean / th_at_sim))):.3f}",
  ]
  print("\n".join(summary))

  _plot(cfg, th_alpha, curve_err, env_err, curves, sim_alpha, sim_mean, sim_sem, theta1, fracs)
  print(f"done in {time.time() - t_start:.0f} s; outputs in {cfg.workdir} "
        "(scaling.png, points.csv, config.json)")


def _plot(cfg, th_alpha, curve_err, env_err, curves, sim_alpha, sim_mean, sim_sem, theta1, fracs):
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
    ax.plot(th_alpha, env_err[th_], "k--", lw=1.2, label="envelope (best f and mode)")
    ax.set(xscale="log", yscale="log", xlabel=r"$\alpha_{prune} = P_{kept} / N$",
           ylabel="test error", title=title)
    ax.legend(fontsize=8)
  ax = axes[1, 1]
  ax.plot(th_alpha, curve_err[(0.0, "hard", 1.0)], color=colors[1.0], label="f = 1 (power law)")
  ax.plot(th_alpha, env_err[0.0], "k--", label="envelope, perfect probe")
  ax.plot(th_alpha, env_err[theta1], "r-.", label=f"envelope, probe at {cfg.theta_deg:g} deg")
  ax.set(yscale="log", xlabel=r"$\alpha_{prune}$ (linear)", ylabel="test error",
         title="envelope: exponential (straight here) vs power law")
  ax.legend(fontsize=8)
  fig.suptitle(f"Teacher-student perceptron, max-margin student: lines = replica theory, "
               f"points = simulation (N = {cfg.n}, {cfg.seeds} seeds, mean +- s.e.m.)", fontsize=10)
  fig.tight_layout()
  io.save_figure(os.path.join(cfg.workdir, "scaling.png"), fig)
  plt.close(fig)


if __name__ == "__main__":
  main()
