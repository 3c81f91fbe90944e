"""The pool-size axis of a pruning curve (Sorscher et al. 2022, Figs. 3-4 analogue): how test
error scales with the number of examples kept, and how the best pruning strategy changes with
the amount of data.

From the aggregated curve rows (one per pool, score, mode, fraction; see
:func:`jaxprune.pruning.curve.aggregate`):

* :func:`exponents`: per score and fraction kept, the least-squares slope of log(test error)
  against log(examples kept) over the pools (keep-hard; the full data is ``f = 1``);
* :func:`hard_minus_easy`: keep-hard minus keep-easy accuracy per pool (the paper: negative for
  small pools, positive for large ones, so it crosses zero as the pool grows);
* :func:`best_fraction`: at a fixed number of examples kept ``K``, the fraction (of a pool of
  ``K / f``) with the lowest error (the paper: it falls as ``K`` grows). With pools and
  fractions on powers of two, many ``K`` are reached by several (pool, fraction) pairs.

:func:`write` saves ``scaling_error.png``, ``scaling_strategy.png`` and ``scaling.json``.

These are point estimates from the seed means. Given the per-seed rows
(:mod:`jaxprune.pruning.claims`' schema), :func:`intervals` adds bootstrap intervals over every
seed source to each of them (``summary`` / ``write`` with ``per_seed=``).
"""

from __future__ import annotations

import os

import numpy as np

from jaxprune.core import io
from jaxprune.pruning import claims

METRICS_EXCLUDED = ("full", "random")


def _metrics(rows: list[dict]) -> list[str]:
  return sorted({r["score"] for r in rows} - set(METRICS_EXCLUDED))


def _curve(rows: list[dict], score: str, mode: str, fraction: float) -> list[dict]:
  """Rows of one (score, mode, fraction) over the pools, by pool; ``fraction == 1`` gives the
  full-data rows."""
  if fraction >= 1.0:
    pick = [r for r in rows if r["score"] == "full"]
  else:
    pick = [
      r
      for r in rows
      if r["score"] == score and r["mode"] == mode and abs(r["fraction"] - fraction) < 1e-9
    ]
  return sorted(pick, key=lambda r: r["pool"])


def power_law_slope(n, err) -> float | None:
  """Least-squares slope of log(err) on log(n); None with fewer than two points of err > 0."""
  n, err = np.asarray(n, float), np.asarray(err, float)
  ok = err > 0
  if ok.sum() < 2:
    return None
  return float(np.polyfit(np.log(n[ok]), np.log(err[ok]), 1)[0])


def fractions(rows: list[dict]) -> list[float]:
  return sorted({r["fraction"] for r in rows if r["score"] not in METRICS_EXCLUDED} | {1.0})


def exponents(rows: list[dict], mode: str = "hard") -> dict:
  """``{score: {fraction: slope}}`` of test error vs examples kept over the pools."""
  out = {}
  for score in _metrics(rows):
    out[score] = {}
    for f in fractions(rows):
      c = _curve(rows, score, mode, f)
      out[score][f] = power_law_slope([r["n_kept"] for r in c], [1 - r["acc_mean"] for r in c])
  return out


def hard_minus_easy(rows: list[dict]) -> dict:
  """``{score: {fraction: [(pool, hard acc - easy acc, combined std)]}}`` for f < 1."""
  out = {}
  for score in _metrics(rows):
    out[score] = {}
    for f in fractions(rows):
      if f >= 1.0:
        continue
      hard = {r["pool"]: r for r in _curve(rows, score, "hard", f)}
      easy = {r["pool"]: r for r in _curve(rows, score, "easy", f)}
      out[score][f] = [
        (
          p,
          hard[p]["acc_mean"] - easy[p]["acc_mean"],
          float(np.hypot(hard[p]["acc_std"], easy[p]["acc_std"])),
        )
        for p in sorted(set(hard) & set(easy))
      ]
  return out


def crossing(points: list[tuple]) -> float | None:
  """The pool size where hard - easy first goes from <= 0 to > 0 (log-interpolated); None if it
  never does."""
  if len(points) < 2:
    return None
  pools, diffs = [p[0] for p in points], [p[1] for p in points]
  x, has = claims.first_crossing(pools, diffs)  # the one rule, vectorised there for resamples
  return float(x) if has else None


def best_fraction(rows: list[dict], mode: str = "hard") -> dict:
  """``{score: [(K, best f, {f: error})]}``: for every number of examples kept ``K`` reached by
  two or more (pool, fraction) pairs, the fraction with the lowest test error."""
  out = {}
  for score in _metrics(rows):
    by_k: dict = {}
    for f in fractions(rows):
      for r in _curve(rows, score, mode, f):
        by_k.setdefault(r["n_kept"], {})[f] = 1 - r["acc_mean"]
    out[score] = [
      (k, min(errs, key=errs.get), errs) for k, errs in sorted(by_k.items()) if len(errs) >= 2
    ]
  return out


def intervals(per_seed, *, level: float = 0.9, num_resamples: int = 2000, seed: int = 0) -> dict:
  """Bootstrap intervals (:mod:`jaxprune.pruning.claims`, over every seed source) of keep-hard
  minus random / keep-easy, keep-easy minus random, the crossing pool, the exponents and the
  best fraction at a fixed number kept, JSON-ready (fraction keys as strings). ``per_seed``:
  the per-seed table in any form :func:`claims.as_columns` takes."""
  boot = claims.bootstrap(per_seed, num_resamples=num_resamples, seed=seed)
  kw = dict(level=level)

  def plain(v):
    return None if v is None else v.as_dict()

  names = ("hard_minus_random", "hard_minus_easy", "easy_minus_random")
  exps: dict = {}
  for (score, mode, f), rec in claims.exponents(boot, **kw).items():
    exps.setdefault(score, {}).setdefault(mode, {})[str(f)] = {k: plain(v) for k, v in rec.items()}
  crossings: dict = {}
  for (score, f), iv in claims.crossings(boot, **kw).items():
    crossings.setdefault(score, {})[str(f)] = iv.as_dict()
  best = {
    score: {
      "points": [
        {
          "n_kept": p["at"],
          "best": p["best"],
          "shares": {str(f): s for f, s in p["shares"].items()},
          "fraction": p["fraction"].as_dict(),
        }
        for p in v["points"]
      ],
      "trend": plain(v["trend"]),
    }
    for score, v in claims.best_fractions(boot, mode="hard", by="count", **kw).items()
  }
  return {
    "level": level,
    "num_resamples": num_resamples,
    "seed": seed,
    "differences": [
      {
        **{k: r[k] for k in ("pool", "score", "fraction", "n_kept")},
        **{n: plain(r[n]) for n in names},
      }
      for r in claims.differences(boot, **kw)
    ],
    "crossing_pool": crossings,
    "exponents": exps,
    "best_fraction_keep_hard": best,
  }


def summary(rows: list[dict], *, per_seed=None, level: float = 0.9) -> dict:
  """Everything :func:`write` reports, JSON-ready (fraction keys as strings); with the per-seed
  rows, ``"intervals"`` too (:func:`intervals`)."""
  hme = hard_minus_easy(rows)
  out = {
    "exponents_keep_hard": {
      s: {str(f): v for f, v in d.items()} for s, d in exponents(rows, "hard").items()
    },
    "exponents_keep_easy": {
      s: {str(f): v for f, v in d.items()} for s, d in exponents(rows, "easy").items()
    },
    "hard_minus_easy": {
      s: {str(f): [list(p) for p in pts] for f, pts in d.items()} for s, d in hme.items()
    },
    "crossing_pool": {s: {str(f): crossing(pts) for f, pts in d.items()} for s, d in hme.items()},
    "best_fraction_keep_hard": {
      s: [{"n_kept": k, "best": b, "errors": {str(f): e for f, e in es.items()}} for k, b, es in v]
      for s, v in best_fraction(rows, "hard").items()
    },
  }
  if per_seed is not None:
    out["intervals"] = intervals(per_seed, level=level)
  return out


def _plain_ticks(ax, axis: str, values) -> None:
  """Label a log axis at ``values`` in plain numbers (no 2x10^2 minor labels)."""
  from matplotlib.ticker import NullFormatter

  values = sorted({float(v) for v in values})
  if not values:
    return
  label = [f"{v:,.0f}" if v >= 1 else f"{v:g}" for v in values]
  getattr(ax, f"set_{axis}ticks")(values, label, fontsize=7)
  getattr(ax, f"{axis}axis").set_minor_formatter(NullFormatter())


def error_figure(rows: list[dict], *, title: str = ""):
  """Test error vs examples kept (log-log), keep-hard, one line per fraction kept, one panel per
  score; the legend gives each line's fitted power-law exponent."""
  from matplotlib.ticker import FormatStrFormatter

  from jaxprune.pruning.plots import plt

  metrics = _metrics(rows)
  fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
  slopes = exponents(rows, "hard")
  for ax, score in zip(axes[0], metrics):
    for i, f in enumerate(fractions(rows)):
      c = _curve(rows, score, "hard", f)
      if not c:
        continue
      k = [r["n_kept"] for r in c]
      err = [100 * (1 - r["acc_mean"]) for r in c]
      sd = [100 * r["acc_std"] for r in c]
      s = slopes[score][f]
      label = f"f = {f:g}" + (f" (slope {s:.2f})" if s is not None else "")
      style = dict(color="k", lw=2) if f >= 1 else dict(color=f"C{i}")
      ax.errorbar(k, err, yerr=sd, marker="o", ms=3, capsize=2, label=label, **style)
    ax.set(xscale="log", yscale="log", xlabel="examples kept", ylabel="test error (%)")
    _plain_ticks(ax, "x", [r["n_kept"] for r in rows if r["mode"] in ("hard", "-")])
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.set_title(f"{score}, keep hard")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
  fig.suptitle(title)
  fig.tight_layout()
  return fig


def strategy_figure(rows: list[dict], *, title: str = ""):
  """Left: the best fraction to keep (keep-hard) at a fixed number of examples kept, per score.
  Right: keep-hard minus keep-easy accuracy vs pool size, per score and fraction."""
  from jaxprune.pruning.plots import plt

  fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 4), width_ratios=(1, 1.3))
  best = best_fraction(rows, "hard")
  for i, (score, pts) in enumerate(best.items()):
    if pts:
      ax0.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=f"C{i}", label=score)
  ax0.set(xscale="log", yscale="log", xlabel="examples kept K", ylabel="best fraction f = K / pool")
  _plain_ticks(ax0, "x", [p[0] for pts in best.values() for p in pts])
  _plain_ticks(ax0, "y", [p[1] for pts in best.values() for p in pts])
  ax0.set_title("best fraction to keep (keep hard) at fixed K")
  ax0.grid(alpha=0.3, which="both")
  ax0.legend(fontsize=7)
  styles = ["-", "--", ":", "-."]
  for i, (score, d) in enumerate(hard_minus_easy(rows).items()):
    for j, (f, pts) in enumerate(sorted(d.items())):
      if pts:
        p, diff, sd = map(np.asarray, zip(*pts))
        ax1.errorbar(
          p,
          100 * diff,
          yerr=100 * sd,
          color=f"C{i}",
          ls=styles[j % len(styles)],
          marker="o",
          ms=3,
          capsize=2,
          label=f"{score}, f = {f:g}",
        )
  ax1.axhline(0, color="k", lw=1)
  ax1.set(xscale="log", xlabel="pool size", ylabel="keep-hard - keep-easy accuracy (points)")
  _plain_ticks(ax1, "x", [r["pool"] for r in rows])
  ax1.set_title("which end to keep: hard wins above 0")
  ax1.grid(alpha=0.3)
  ax1.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
  fig.suptitle(title)
  fig.tight_layout()
  return fig


def write(workdir: str, rows: list[dict], *, title: str = "", per_seed=None) -> dict:
  """Save the two figures and ``scaling.json`` (with bootstrap intervals given ``per_seed``
  rows); returns the summary."""
  from jaxprune.pruning import plots

  figures = (("scaling_error.png", error_figure), ("scaling_strategy.png", strategy_figure))
  for name, make in figures:
    fig = make(rows, title=title)
    io.save_figure(os.path.join(workdir, name), fig)
    plots.close(fig)
  out = summary(rows, per_seed=per_seed)
  io.save_json(os.path.join(workdir, "scaling.json"), out)
  return out
