"""The four claims of Sorscher et al. (2022) decided from a per-seed table
(:mod:`jaxprune.pruning.claims`), as tables, figures and JSON.

1. **Crossover**: keep-easy beats keep-hard at the smallest pool and keep-hard beats keep-easy
   at the largest. Per (score, fraction): "supported" when keep-hard minus keep-easy is decided
   "< 0" at the smallest pool and "> 0" at the largest pool where it is decidable;
   "contradicted" when keep-easy is decided better at that largest pool; else "undecided" (keep-
   hard ahead already at the smallest pool is a crossing below the range, not a
   contradiction). The crossing pool's interval is reported beside.
2. **Pruning beats random** with a large pool: keep-hard minus random at the same count, at the
   largest pool, decided "> 0" per (score, fraction); beside it (2b), whether keep-hard's test
   error falls faster with the number kept than random's at the same fraction (the power-law
   exponent over the same pools, so the same counts, keep-hard minus random, decided "< 0").
3. **The best fraction falls as the pool grows**: at a fixed number kept, the winning
   fraction's log-log trend against that number (keep-hard; only the counts where every
   fraction, the full pool's 1 included, competes: at smaller counts only the small fractions
   exist, which would bias the trend up), decided "< 0" per score.
4. **SSL prototypes are competitive with the supervised metrics**: at the largest pool and each
   fraction, SSL keep-hard minus each supervised metric's keep-hard, decided "> -margin"
   (``margin`` = 1 point unless set: "competitive" means not worse by more than a point).

Each cell is shown with its 90% interval. A claim's overall verdict re-decides its m cells at
the Bonferroni level ``1 - 0.1 / m`` and is "supported" when some cell is supported there and
none contradicted, "contradicted" when some is contradicted and none supported, else
"undecided" (``mixed`` says when the cells at 90% went both ways). Without the correction, 20
cells with no effect would give a "supported" about a quarter of the time. Claim 4 needs every
cell: supported when all are at 90% (an intersection-union test needs no correction),
contradicted when any is at the Bonferroni level.
"""

from __future__ import annotations

import math
import os

import numpy as np

from jaxprune.core import io
from jaxprune.pruning import claims

SUPERVISED = ("supervised_prototypes", "el2n", "grand", "forgetting")


def overall(verdicts: list[str], *, every: bool = False) -> dict:
  """The claim's verdict over its cells' verdicts (see the module docstring); ``every``: the
  claim needs every cell ("competitive with each supervised metric"): supported only when all
  cells are, contradicted when any is."""
  n_sup = verdicts.count(claims.SUPPORTED)
  n_con = verdicts.count(claims.CONTRADICTED)
  if every:
    v = (
      claims.CONTRADICTED
      if n_con
      else claims.SUPPORTED
      if verdicts and n_sup == len(verdicts)
      else claims.UNDECIDED
    )
  elif n_sup and not n_con:
    v = claims.SUPPORTED
  elif n_con and not n_sup:
    v = claims.CONTRADICTED
  elif not every:
    v = claims.UNDECIDED
  return {
    "verdict": v,
    "supported": n_sup,
    "contradicted": n_con,
    "undecided": len(verdicts) - n_sup - n_con,
    "mixed": bool(n_sup and n_con),
  }


def _pools(boot: claims.Bootstrap, score: str, f: float) -> list[int]:
  keys = boot.estimate
  return sorted(
    k[0]
    for k in keys
    if k[1:] == (score, "hard", f) and claims._key(k[0], score, "easy", f) in keys
  )


def _claim_cells(boot: claims.Bootstrap, level: float, margin: float) -> dict:
  """Every claim's cells, each with its interval(s) and verdict at ``level``."""
  kw = dict(level=level)
  diffs = claims.differences(boot, **kw)
  cross = claims.crossings(boot, **kw)
  expo = claims.exponents(boot, **kw)
  best = claims.best_fractions(boot, mode="hard", by="count", complete=True, **kw)
  scores = sorted({k[1] for k in boot.estimate if k[2] == "hard"})
  fractions = sorted({k[3] for k in boot.estimate if k[2] == "hard"})
  diff_at = {(r["pool"], r["score"], r["fraction"]): r for r in diffs}

  c1 = []
  for score in scores:
    for f in fractions:
      pools = _pools(boot, score, f)
      # the largest pool where keep-hard minus keep-easy has a seed source to decide on (the
      # whole split of a deterministic score, say, has none)
      big = [p for p in pools if diff_at[p, score, f]["hard_minus_easy"].decidable]
      if len(pools) < 2 or not big or big[-1] == pools[0]:
        continue
      small = diff_at[pools[0], score, f]["hard_minus_easy"]
      large = diff_at[big[-1], score, f]["hard_minus_easy"]
      v_small = claims.verdict(small, alternative="< 0")
      v_large = claims.verdict(large, alternative="> 0")
      if v_small == claims.SUPPORTED and v_large == claims.SUPPORTED:
        v = claims.SUPPORTED
      elif v_large == claims.CONTRADICTED:
        v = claims.CONTRADICTED  # keep-easy still wins at the largest pool
      else:
        v = claims.UNDECIDED  # incl. keep-hard ahead already at the smallest: a crossing below
      c1.append(
        {
          "score": score,
          "fraction": f,
          "smallest_pool": pools[0],
          "largest_pool": big[-1],
          "hard_minus_easy_smallest": small,
          "hard_minus_easy_largest": large,
          "crossing": cross.get((score, f)),
          "verdict": v,
        }
      )

  c2, c2_exp = [], []
  for score in scores:
    for f in fractions:
      pools = _pools(boot, score, f)
      if not pools:
        continue
      r = diff_at[pools[-1], score, f]
      if r["hard_minus_random"] is not None:
        c2.append(
          {
            "score": score,
            "fraction": f,
            "pool": pools[-1],
            "n_kept": r["n_kept"],
            "hard_minus_random": r["hard_minus_random"],
            "verdict": claims.verdict(r["hard_minus_random"], alternative="> 0"),
          }
        )
      # the exponents of keep-hard and random at the same f, over the same pools (the same
      # counts), paired by the shared resamples
      both = [p for p in pools if claims._key(p, "random", "random", f) in boot.estimate]
      if len(both) < 2:
        continue
      kh = [claims._key(p, score, "hard", f) for p in both]
      kr = [claims._key(p, "random", "random", f) for p in both]
      n = [boot.n_kept[k] for k in kh]

      def fit(ks):  # (the seed means' exponent, the resamples' exponents)
        est = claims.power_law_slopes(n, [boot.estimate[k] for k in ks])
        return float(est), claims.power_law_slopes(n, np.stack([boot.samples[k] for k in ks], 1))

      (est_h, smp_h), (est_r, smp_r) = fit(kh), fit(kr)
      iv = claims.interval(smp_h - smp_r, est_h - est_r, level=level, seeds=boot.seeds_of(*kh, *kr))
      c2_exp.append(
        {
          "score": score,
          "fraction": f,
          "exponent": expo[score, "hard", f]["exponent"],
          "random_exponent": expo["random", "random", f]["exponent"],
          "minus_random": iv,
          "verdict": claims.verdict(iv, alternative="< 0"),
        }
      )

  c3 = [
    {
      "score": score,
      "trend": v["trend"],
      "points": v["points"],
      "verdict": claims.UNDECIDED
      if v["trend"] is None
      else claims.verdict(v["trend"], alternative="< 0"),
    }
    for score, v in best.items()
  ]

  c4 = []
  if "ssl_prototypes" in scores:
    for f in fractions:
      pools = _pools(boot, "ssl_prototypes", f)
      if not pools:
        continue
      pool = pools[-1]
      for other in SUPERVISED:
        if claims._key(pool, other, "hard", f) not in boot.estimate:
          continue
        iv = claims.contrast(
          boot, (pool, "ssl_prototypes", "hard", f), (pool, other, "hard", f), **kw
        )
        c4.append(
          {
            "fraction": f,
            "pool": pool,
            "versus": other,
            "ssl_minus_other": iv,
            "verdict": claims.verdict(iv, alternative=f"> {-margin}"),
          }
        )
  return {
    "diffs": diffs,
    "1_crossover": c1,
    "2_beats_random": c2,
    "2_faster_than_power_law": c2_exp,
    "3_best_fraction_falls": c3,
    "4_ssl_competitive": c4,
  }


CLAIMS = (
  "1_crossover",
  "2_beats_random",
  "2_faster_than_power_law",
  "3_best_fraction_falls",
  "4_ssl_competitive",
)


def decide(
  rows, *, level: float = 0.9, num_resamples: int = 2000, seed: int = 0, margin: float = 0.01
) -> dict:
  """Every statistic and the four claims' verdicts (Interval objects; :func:`as_json` makes it
  JSON-ready). ``rows``: the per-seed table in any form :func:`claims.as_columns` takes.

  Each cell is shown at ``level``; a claim's overall verdict re-decides its m cells at the
  Bonferroni level ``1 - (1 - level) / m`` (``cells_bonferroni``: the counts there), so that a
  claim with many cells is not called supported or contradicted by one cell's chance. Claim 4's
  "supported" needs every cell supported at ``level`` (an intersection-union test needs no
  correction); its "contradicted" any cell contradicted at the Bonferroni level."""
  boot = claims.bootstrap(rows, num_resamples=num_resamples, seed=seed)
  cells = _claim_cells(boot, level, margin)
  out = {}
  for name in CLAIMS:
    m = max(len(cells[name]), 1)
    lvl = 1 - (1 - level) / m
    strict = [c["verdict"] for c in _claim_cells(boot, lvl, margin)[name]]
    plain = [c["verdict"] for c in cells[name]]
    if name == "4_ssl_competitive":
      all_sup = bool(plain) and all(v == claims.SUPPORTED for v in plain)
      v = (
        claims.CONTRADICTED
        if claims.CONTRADICTED in strict
        else claims.SUPPORTED
        if all_sup
        else claims.UNDECIDED
      )
      res = {**overall(plain, every=True), "verdict": v}
    else:
      res = {**overall(plain), "verdict": overall(strict)["verdict"]}
    res["bonferroni_level"] = lvl
    res["cells_bonferroni"] = {
      k: strict.count(k) for k in (claims.SUPPORTED, claims.CONTRADICTED, claims.UNDECIDED)
    }
    out[name] = {"cells": cells[name], **res}
  return {
    "level": level,
    "num_resamples": num_resamples,
    "margin": margin,
    "estimate": {k: v for k, v in boot.estimate.items()},
    "n_kept": dict(boot.n_kept),
    "differences": cells["diffs"],
    "claims": out,
  }


def as_json(obj):
  """``decide``'s result with Intervals as dicts and tuple keys as strings."""
  if isinstance(obj, claims.Interval):
    return obj.as_dict()
  if isinstance(obj, dict):
    return {
      ("|".join(map(str, k)) if isinstance(k, tuple) else str(k)): as_json(v)
      for k, v in obj.items()
    }
  if isinstance(obj, list | tuple):
    return [as_json(v) for v in obj]
  if isinstance(obj, float) and math.isinf(obj):
    return str(obj)
  return obj


def _pts(iv: claims.Interval | None) -> str:
  """An accuracy-difference interval in points."""
  return "" if iv is None else iv.describe(scale=100, fmt="+.1f").split("; undecidable")[0]


def _frac(f: float) -> str:
  return f"1/{round(1 / f)}" if f < 1 and abs(1 / f - round(1 / f)) < 1e-9 else f"{f:g}"


def markdown(result: dict, *, title: str = "") -> str:
  """The claims and every difference as markdown tables (accuracy differences in points)."""
  c = result["claims"]
  lvl = f"{100 * result['level']:g}%"
  out = [f"# {title}" if title else "# Pruning claims", ""]
  out.append(
    f"Intervals: {lvl} hierarchical bootstrap over every seed source "
    f"({result['num_resamples']} resamples); differences in accuracy points."
  )
  out += [
    "",
    "## Verdicts",
    "",
    "Overall: each claim's m cells re-decided at the Bonferroni level 1 - 0.1 / m (claim 4:"
    " supported only when every cell is at 90%).",
    "",
    "| claim | verdict | cells at 90%: supported / contradicted / undecided | at the Bonferroni"
    " level |",
    "|---|---|---|---|",
  ]
  names = {
    "1_crossover": "1. keep-easy wins small pools, keep-hard large ones",
    "2_beats_random": "2a. keep-hard beats random at the largest pool",
    "2_faster_than_power_law": "2b. keep-hard's error falls faster with examples kept than"
    " random's",
    "3_best_fraction_falls": "3. the best fraction falls as the number kept grows",
    "4_ssl_competitive": f"4. SSL keep-hard within {100 * result['margin']:g} pt of supervised",
  }
  for k, name in names.items():
    v = c[k]
    mixed = " (mixed)" if v["mixed"] else ""
    b = v["cells_bonferroni"]
    out.append(
      f"| {name} | **{v['verdict']}**{mixed} | {v['supported']} / {v['contradicted']} / "
      f"{v['undecided']} | {b[claims.SUPPORTED]} / {b[claims.CONTRADICTED]} / "
      f"{b[claims.UNDECIDED]} ({100 * v['bonferroni_level']:.2f}%) |"
    )
  out += ["", "## 1. Crossover (keep-hard minus keep-easy)", ""]
  out += [
    "| score | f | smallest pool | at it | largest pool | at it | crossing pool | verdict |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for r in c["1_crossover"]["cells"]:
    cr = r["crossing"]
    out.append(
      f"| {r['score']} | {_frac(r['fraction'])} | {r['smallest_pool']} | "
      f"{_pts(r['hard_minus_easy_smallest'])} | {r['largest_pool']} | "
      f"{_pts(r['hard_minus_easy_largest'])} | "
      f"{'' if cr is None else cr.describe(fmt='.0f')} | {r['verdict']} |"
    )
  out += ["", "## 2a. Keep-hard minus random at the largest pool", ""]
  out += [
    "| score | f | pool | kept | keep-hard minus random | verdict |",
    "|---|---|---|---|---|---|",
  ]
  for r in c["2_beats_random"]["cells"]:
    out.append(
      f"| {r['score']} | {_frac(r['fraction'])} | {r['pool']} | {r['n_kept']} | "
      f"{_pts(r['hard_minus_random'])} | {r['verdict']} |"
    )
  out += ["", "## 2b. Power-law exponent of test error vs examples kept, keep-hard vs random", ""]
  out += [
    "| score | f | keep-hard | random | keep-hard minus random | verdict |",
    "|---|---|---|---|---|---|",
  ]
  for r in c["2_faster_than_power_law"]["cells"]:
    out.append(
      f"| {r['score']} | {_frac(r['fraction'])} | {r['exponent'].describe(fmt='+.3f')} | "
      f"{r['random_exponent'].describe(fmt='+.3f')} | {r['minus_random'].describe(fmt='+.3f')} |"
      f" {r['verdict']} |"
    )
  out += [
    "",
    "## 3. Best fraction at a fixed number kept (keep-hard, full pool = 1; counts where every"
    " fraction competes)",
    "",
  ]
  out += ["| score | trend (log-log slope) | winners (kept: best f, share) | verdict |"]
  out.append("|---|---|---|---|")
  for r in c["3_best_fraction_falls"]["cells"]:
    pts = ", ".join(
      f"{p['at']}: {_frac(p['best'])} ({100 * p['shares'][p['best']]:.0f}%)" for p in r["points"]
    )
    trend = "" if r["trend"] is None else r["trend"].describe(fmt="+.2f")
    out.append(f"| {r['score']} | {trend} | {pts} | {r['verdict']} |")
  out += ["", "## 4. SSL prototypes' keep-hard minus each supervised metric's", ""]
  out += ["| f | pool | versus | SSL minus it | verdict |", "|---|---|---|---|---|"]
  for r in c["4_ssl_competitive"]["cells"]:
    out.append(
      f"| {_frac(r['fraction'])} | {r['pool']} | {r['versus']} | {_pts(r['ssl_minus_other'])} | "
      f"{r['verdict']} |"
    )
  out += ["", "## Every difference (same number kept)", ""]
  out += [
    "| pool | score | f | kept | hard - random | hard - easy | easy - random |",
    "|---|---|---|---|---|---|---|",
  ]
  for r in result["differences"]:
    out.append(
      f"| {r['pool']} | {r['score']} | {_frac(r['fraction'])} | {r['n_kept']} | "
      f"{_pts(r['hard_minus_random'])} | {_pts(r['hard_minus_easy'])} | "
      f"{_pts(r['easy_minus_random'])} |"
    )
  return "\n".join(out) + "\n"


def difference_figure(result: dict, which: str = "hard_minus_random", *, title: str = ""):
  """One panel per fraction: ``which`` (in points) against the pool, one line per score, its
  interval as a band; zero dashed."""
  import matplotlib.pyplot as plt

  from jaxprune.pruning import plots  # noqa: F401  (the Agg backend)

  diffs = [r for r in result["differences"] if r[which] is not None]
  fractions = sorted({r["fraction"] for r in diffs})
  scores = sorted({r["score"] for r in diffs})
  fig, axes = plt.subplots(1, len(fractions), figsize=(3.6 * len(fractions), 3.3), squeeze=False)
  for ax, f in zip(axes[0], fractions):
    for score in scores:
      rs = sorted(
        (r for r in diffs if r["fraction"] == f and r["score"] == score), key=lambda r: r["pool"]
      )
      if not rs:
        continue
      x = [r["pool"] for r in rs]
      est = [100 * r[which].estimate for r in rs]
      lo = [100 * r[which].lo for r in rs]
      hi = [100 * r[which].hi for r in rs]
      (line,) = ax.plot(x, est, "o-", ms=3, label=score)
      ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15)
    ax.axhline(0, color="k", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_title(f"f = {_frac(f)}")
    ax.set_xlabel("pool size")
  axes[0, 0].set_ylabel(which.replace("_", " ") + " (points)")
  axes[0, -1].legend(fontsize=7)
  fig.suptitle(title or which.replace("_", " "))
  fig.tight_layout()
  return fig


def error_figure(result: dict, *, title: str = ""):
  """Test error against examples kept (log-log): the full pools, random and each score's
  keep-hard at every fraction (seed means)."""
  import matplotlib.pyplot as plt

  from jaxprune.pruning import plots  # noqa: F401

  est, kept = result["estimate"], result["n_kept"]
  fractions = sorted({k[3] for k in est if k[2] == "hard"})
  series = sorted({(k[1], k[2]) for k in est if k[2] in ("hard", "random")})
  fig, axes = plt.subplots(1, len(fractions), figsize=(3.6 * len(fractions), 3.3), squeeze=False)
  full = sorted((kept[k], 1 - v) for k, v in est.items() if k[2] == "full")
  for ax, f in zip(axes[0], fractions):
    ax.plot(*zip(*full), "k-", lw=2, label="full pool")
    for score, mode in series:
      pts = sorted((kept[k], 1 - v) for k, v in est.items() if k[1:] == (score, mode, f))
      if pts:
        ax.plot(*zip(*pts), "o-" if mode == "hard" else "s--", ms=3, label=f"{score} {mode}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(f"f = {_frac(f)}")
    ax.set_xlabel("examples kept")
  axes[0, 0].set_ylabel("test error")
  axes[0, -1].legend(fontsize=6)
  fig.suptitle(title or "test error vs examples kept")
  fig.tight_layout()
  return fig


def write(outdir: str, rows, *, title: str = "", **kw) -> dict:
  """``claims.json``, ``claims.md``, ``hard_minus_random.png``, ``hard_minus_easy.png`` and
  ``error_vs_kept.png`` in ``outdir`` (atomically); returns :func:`decide`'s result."""
  from jaxprune.pruning import plots

  result = decide(rows, **kw)
  os.makedirs(outdir, exist_ok=True)
  io.save_json(os.path.join(outdir, "claims.json"), as_json(result))
  io.save_text(os.path.join(outdir, "claims.md"), markdown(result, title=title))
  for name, fig in (
    ("hard_minus_random", difference_figure(result, "hard_minus_random", title=title)),
    ("hard_minus_easy", difference_figure(result, "hard_minus_easy", title=title)),
    ("error_vs_kept", error_figure(result, title=title)),
  ):
    io.save_figure(os.path.join(outdir, f"{name}.png"), fig)
    plots.close(fig)
  return result


def headline(result: dict, *, score: str = "ssl_prototypes") -> list[str]:
  """One line per fraction: ``score``'s keep-hard minus random at the largest pool."""
  return [
    f"{score} f = {_frac(r['fraction'])} at {r['pool']}: keep-hard minus random "
    f"{_pts(r['hard_minus_random'])} points ({r['verdict']})"
    for r in result["claims"]["2_beats_random"]["cells"]
    if r["score"] == score
  ]
