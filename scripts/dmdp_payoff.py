r"""Issue 29's agent-level evidence from per-seed evaluations: (1) the device loop against the
dm_control loop on the same config (walker_walk noiseless, Dreamer), (2) the payoff table,
Denoised MDP vs Dreamer x noiseless vs video background, with bootstrap verdicts.

  python scripts/dmdp_payoff.py --runs_dir runs/i29 --out docs/dmdp_payoff_issue29
  python scripts/dmdp_payoff.py --from_csv docs/dmdp_payoff_issue29/evals.csv \
      --out docs/dmdp_payoff_issue29          # regenerate tables, figure and verdicts

Reads runs/i29/jax_<model>_<variant> (3 seeds vmapped) and runs/i29/host_dreamer_noiseless_s<k>,
writes evals.csv (one row per seed and evaluation, the episode returns), table.md, verdicts.json
and curves.png (atomically). Final return of a seed: its episodes of the last ``--last``
evaluations; intervals: ``--level`` percentile, resampling seeds, then episodes in each seed.
"""

import csv
import dataclasses
import glob
import io as _io
import os

import numpy as np

from jaxprune.core import io
from jaxprune.core.config import parse
from jaxprune.core.run import cli
from jaxprune.dmdp import payoff

MODELS = ("dmdp", "dreamer")
VARIANTS = ("noiseless", "video_background")


@dataclasses.dataclass(frozen=True)
class Config:
  """Where the runs are and what to decide."""

  runs_dir: str = "runs/i29"
  """the runs' parent folder (ignored with from_csv)"""
  from_csv: str | None = None
  """regenerate from a committed evals.csv instead of the runs"""
  out: str = "docs/dmdp_payoff_issue29"
  """output folder"""
  last: int = 2
  """evaluations per seed in its final return"""
  level: float = 0.9
  """interval level"""
  resamples: int = 4000
  """bootstrap draws per cell"""
  seed: int = 0
  """bootstrap seed"""
  up_to: int | None = None
  """decide at this budget (env steps per seed; default the last one); outputs get _<up_to>"""


def _collect(runs_dir: str) -> list[dict]:
  rows = []
  for m in MODELS:
    for v in VARIANTS:
      w = os.path.join(runs_dir, f"jax_{m}_{v}")
      if os.path.exists(os.path.join(w, "metrics.jsonl")):
        rows += payoff.read_evals(w, backend="jax", model=m, variant=v)
  for w in sorted(glob.glob(os.path.join(runs_dir, "host_dreamer_noiseless_s*", ""))):
    rows += payoff.read_evals(w, backend="host", model="dreamer", variant="noiseless")
  if not rows:
    raise FileNotFoundError(f"no runs with eval records under {runs_dir}")
  return rows


def _to_csv(rows) -> str:
  buf = _io.StringIO()
  w = csv.writer(buf)
  w.writerow(["backend", "model", "variant", "seed", "env_steps", "return_mean", "returns"])
  for r in rows:
    w.writerow(
      [r["backend"], r["model"], r["variant"], r["seed"], r["env_steps"], f"{r['return_mean']:.6f}"]
      + [" ".join(f"{x:.6f}" for x in r["returns"])]
    )
  return buf.getvalue()


def _from_csv(path: str) -> list[dict]:
  with open(path) as f:
    return [
      {
        "backend": r["backend"],
        "model": r["model"],
        "variant": r["variant"],
        "seed": int(r["seed"]),
        "env_steps": int(r["env_steps"]),
        "return_mean": float(r["return_mean"]),
        "returns": [float(x) for x in r["returns"].split()],
      }
      for r in csv.DictReader(f)
    ]


def _fmt(x, ci):
  return f"{x:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]"


def main(argv=None):
  cfg = parse(Config, argv, description=__doc__)
  rows = _from_csv(cfg.from_csv) if cfg.from_csv else _collect(cfg.runs_dir)
  rng = np.random.default_rng(cfg.seed)
  all_rows = rows
  if cfg.up_to is not None:
    rows = [r for r in rows if r["env_steps"] <= cfg.up_to]
  budgets = sorted({r["env_steps"] for r in rows})
  top = budgets[-1]
  # a cell counts only when every one of its seeds reached the last budget
  reached: dict = {}  # cell -> the last budget its slowest seed reached
  for r in rows:
    cell, s = (r["backend"], r["model"], r["variant"]), r["seed"]
    reached.setdefault(cell, {})[s] = max(reached.get(cell, {}).get(s, 0), r["env_steps"])
  done = {c for c, seeds in reached.items() if min(seeds.values()) == top}
  for c in sorted(set(reached) - done):
    print(f"left out, not finished at {top} env steps: {c}")
  rows = [r for r in rows if (r["backend"], r["model"], r["variant"]) in done]
  fin = payoff.finals(rows, last=cfg.last, up_to=top)
  draws = {c: payoff.resample_means(s, rng, cfg.resamples) for c, s in fin.items()}
  mean = {c: float(np.mean([x.mean() for x in s.values()])) for c, s in fin.items()}
  lines, verdicts = [], {"level": cfg.level, "last_evaluations": cfg.last, "env_steps": top}

  # (1) the device loop against the dm_control loop ---------------------------------------------
  a, b = ("jax", "dreamer", "noiseless"), ("host", "dreamer", "noiseless")
  if a in fin and b in fin:
    d = draws[a] - draws[b]
    lo, hi = payoff.interval(d, cfg.level)
    host_seeds = [x.mean() for x in fin[b].values()]
    jax_seeds = [x.mean() for x in fin[a].values()]
    inside = [min(host_seeds) <= x <= max(host_seeds) for x in jax_seeds]
    verdicts["device_vs_host"] = {
      "host_per_seed": host_seeds,
      "jax_per_seed": jax_seeds,
      "difference_ci": [lo, hi],
      "jax_seeds_inside_host_range": inside,
      "same_within_noise": bool(lo <= 0 <= hi),
    }
    lines += [
      f"### Device loop vs dm_control loop (Dreamer, walker_walk noiseless, {top} env steps)",
      "",
      "| loop | per-seed final return | mean [CI] |",
      "| --- | --- | --- |",
      f"| dm_control (host) | {', '.join(f'{x:.1f}' for x in host_seeds)} | "
      f"{_fmt(mean[b], payoff.interval(draws[b], cfg.level))} |",
      f"| jax (device) | {', '.join(f'{x:.1f}' for x in jax_seeds)} | "
      f"{_fmt(mean[a], payoff.interval(draws[a], cfg.level))} |",
      "",
      f"jax - host: {mean[a] - mean[b]:.1f}, {int(cfg.level * 100)}% CI [{lo:.1f}, {hi:.1f}]; "
      f"JAX seeds inside the host seeds' range: {sum(inside)} of {len(inside)}.",
      "",
    ]

  # (2) the payoff table ---------------------------------------------------------------------
  cells = [("jax", m, v) for m in MODELS for v in VARIANTS]
  if all(c in fin for c in cells):
    lines += [
      f"### Payoff: Denoised MDP vs Dreamer, walker_walk, device loop, {top} env steps",
      "",
      "| model | noiseless | video_background | drop (noiseless - video) |",
      "| --- | --- | --- | --- |",
    ]
    drops = {}
    for m in MODELS:
      n, v = ("jax", m, "noiseless"), ("jax", m, "video_background")
      drops[m] = draws[n] - draws[v]
      lines.append(
        f"| {m} | {_fmt(mean[n], payoff.interval(draws[n], cfg.level))} | "
        f"{_fmt(mean[v], payoff.interval(draws[v], cfg.level))} | "
        f"{_fmt(mean[n] - mean[v], payoff.interval(drops[m], cfg.level))} |"
      )
    claims = {
      "dreamer degrades under video (drop > 0)": drops["dreamer"],
      "denoised MDP degrades less than Dreamer (drop_dreamer - drop_dmdp > 0)": drops["dreamer"]
      - drops["dmdp"],
      "denoised MDP beats Dreamer under video (dmdp - dreamer > 0)": draws[
        ("jax", "dmdp", "video_background")
      ]
      - draws[("jax", "dreamer", "video_background")],
    }
    lines += ["", "| claim | estimate | CI | verdict |", "| --- | --- | --- | --- |"]
    verdicts["claims"] = {}
    for name, d in claims.items():
      lo, hi = payoff.interval(d, cfg.level)
      v = payoff.verdict(lo, hi)
      verdicts["claims"][name] = {"estimate": float(np.median(d)), "ci": [lo, hi], "verdict": v}
      lines.append(f"| {name} | {np.median(d):.1f} | [{lo:.1f}, {hi:.1f}] | **{v}** |")
    # the trend over budgets: the main claim at every evaluation budget
    lines += ["", "| budget (env steps) | drop_dreamer - drop_dmdp | CI | verdict |"]
    lines += ["| --- | --- | --- | --- |"]
    verdicts["trend"] = {}
    for e in budgets[1:]:
      f2 = payoff.finals(rows, last=cfg.last, up_to=e)
      dr = {c: payoff.resample_means(f2[c], rng, cfg.resamples) for c in cells}
      d = (dr[cells[2]] - dr[cells[3]]) - (dr[cells[0]] - dr[cells[1]])
      lo, hi = payoff.interval(d, cfg.level)
      verdicts["trend"][e] = {"estimate": float(np.median(d)), "ci": [lo, hi]}
      lines.append(
        f"| {e} | {np.median(d):.1f} | [{lo:.1f}, {hi:.1f}] | {payoff.verdict(lo, hi)} |"
      )
  os.makedirs(cfg.out, exist_ok=True)
  if not cfg.from_csv:
    io.save_text(os.path.join(cfg.out, "evals.csv"), _to_csv(all_rows))
  tag = "" if cfg.up_to is None else f"_{cfg.up_to}"
  io.save_text(os.path.join(cfg.out, f"table{tag}.md"), "\n".join(lines) + "\n")
  io.save_json(os.path.join(cfg.out, f"verdicts{tag}.json"), verdicts)
  _plot(all_rows, os.path.join(cfg.out, "curves.png"))
  print("\n".join(lines))


def _plot(rows, path):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
  colors = {("jax", "dmdp"): "C0", ("jax", "dreamer"): "C1", ("host", "dreamer"): "C2"}
  for ax, v in zip(axes, VARIANTS):
    for (be, m), col in colors.items():
      mine = [r for r in rows if (r["backend"], r["model"], r["variant"]) == (be, m, v)]
      if not mine:
        continue
      steps = sorted({r["env_steps"] for r in mine})
      for s in sorted({r["seed"] for r in mine}):
        ys = [
          r["return_mean"] for r in sorted(mine, key=lambda r: r["env_steps"]) if r["seed"] == s
        ]
        ax.plot(steps[: len(ys)], ys, color=col, alpha=0.3, lw=1)
      mean = [np.mean([r["return_mean"] for r in mine if r["env_steps"] == e]) for e in steps]
      ax.plot(
        steps,
        mean,
        color=col,
        lw=2.5,
        label=f"{m} ({'device' if be == 'jax' else 'dm_control'} loop)",
      )
    ax.axhline(12, color="grey", ls=":", lw=1, label="random actions (~12)")
    ax.set_title(f"walker_walk, {v}")
    ax.set_xlabel("env steps per seed")
  axes[0].set_ylabel("eval return (10 episodes; thin: seeds)")
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  io.save_figure(path, fig)
  plt.close(fig)


if __name__ == "__main__":
  cli(main)
