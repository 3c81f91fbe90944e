"""The Fig. 1 figure: error vs alpha_prune, theory lines and simulated points (2 x 2 panels)."""

from __future__ import annotations

import numpy as np

from jaxprune.core import io


def save_scaling_figure(path: str, cfg, th, sim) -> None:
  """Keep-hard, keep-easy and imperfect-probe panels, and the envelopes' scaling, to ``path``.

  ``cfg`` a :class:`~jaxprune.theory.scaling_config.ScalingConfig`; ``th`` and ``sim`` its
  ``TheorySweep`` and ``Simulations``.
  """
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  a, fracs, budgets = th.alpha, list(cfg.fractions), list(cfg.budgets)
  theta1 = np.deg2rad(cfg.theta_deg)
  colors = dict(zip(fracs, plt.cm.viridis(np.linspace(0.0, 0.85, len(fracs)))))
  fig, axes = plt.subplots(2, 2, figsize=(11, 9))
  panels = [
    (axes[0, 0], 0.0, "hard", "perfect probe, keep hard"),
    (axes[0, 1], 0.0, "easy", "perfect probe, keep easy"),
    (axes[1, 0], theta1, "hard", f"probe at {cfg.theta_deg:g} deg, keep hard"),
  ]
  for ax, theta, mode, title in panels:
    for f in fracs:
      key = (theta, mode, f) if f < 1 else (0.0, "hard", 1.0)  # f = 1 is the same in every panel
      if key not in th.curve_err:
        continue
      ax.plot(a, th.curve_err[key], color=colors[f], lw=1.5, label=f"f = {f:g}")
      i = th.curves.index(key)
      ax.errorbar(
        sim.alpha, sim.mean[i], yerr=sim.sem[i], fmt="o", ms=4, color=colors[f], capsize=2
      )
    bud = budgets[0] if theta == 0 else np.inf
    ax.plot(
      a,
      th.env_err[(theta, bud)],
      "k--",
      lw=1.2,
      label="envelope (best f and mode" + (f", alpha_tot <= {bud:g})" if theta == 0 else ")"),
    )
    ax.set(
      xscale="log",
      yscale="log",
      xlabel=r"$\alpha_{prune} = P_{kept} / N$",
      ylabel="test error",
      title=title,
    )
    ax.legend(fontsize=8)
  ax = axes[1, 1]
  ax.plot(a, th.curve_err[(0.0, "hard", 1.0)], color=colors[1.0], label="f = 1 (power law)")
  for bud, ls in zip(budgets, ["--", ":", "-"]):
    ax.plot(
      a,
      th.env_err[(0.0, bud)],
      "k",
      ls=ls,
      lw=1.2,
      label=f"envelope, perfect probe, alpha_tot <= {bud:g}",
    )
  ax.plot(
    a,
    th.pool_err[("hard", sim.pool)],
    color="0.6",
    lw=1,
    label=f"keep hard from a pool alpha_tot = {sim.pool:g}",
  )
  ax.errorbar(
    sim.alpha,
    sim.pool_mean,
    yerr=sim.pool_sem,
    fmt="s",
    color="0.4",
    ms=4,
    capsize=2,
    label="  simulation of it",
  )
  ax.plot(a, th.env_err[(theta1, np.inf)], "r-.", label=f"envelope, probe at {cfg.theta_deg:g} deg")
  ax.set(
    yscale="log",
    xlabel=r"$\alpha_{prune}$ (linear)",
    ylabel="test error",
    title="envelope over f: a cliff at alpha_prune ~ 2 (perfect probe)",
  )
  ax.legend(fontsize=7)
  fig.suptitle(
    f"Teacher-student perceptron, max-margin student: lines = replica theory, "
    f"points = simulation (N = {cfg.n}, {cfg.seeds} seeds, mean +- s.e.m.)",
    fontsize=10,
  )
  fig.tight_layout()
  io.save_figure(path, fig)
  plt.close(fig)
