"""Compare agent runs: evaluation-return curves in one figure, the imagined values in another
(divergence shows there), and a table of the last evaluations.

Each run is a work directory of ``scripts/train_dmdp.py``; its ``config.json`` names the model,
the variant and the seed, its ``metrics.jsonl`` holds the evaluations and the training losses.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from jaxprune.core import io


@dataclass(frozen=True)
class CompareConfig:
  """Evaluation curves and a last-evaluations table of several train_dmdp runs."""

  runs: tuple[str, ...] = ()
  """work directories of scripts/train_dmdp.py"""
  out: str = "runs/compare"
  """where compare.png, compare.md and compare.json go"""
  last: int = 3
  """evaluations averaged at the end of each run"""
  up_to: int | None = None
  """only evaluations at or before this many env steps (compare runs at an equal budget)"""

  def __post_init__(self):
    if not self.runs:
      raise ValueError("give the runs to compare: --runs DIR [DIR ...]")
    if self.last < 1:
      raise ValueError(f"last must be >= 1, got {self.last}")
    seen: dict[str, str] = {}
    for w in self.runs:  # one run twice would count twice in the mean over seeds
      key = os.path.realpath(w)
      if key in seen:
        raise ValueError(
          f"runs holds a duplicate: {w!r} is the run {seen[key]!r} given before; give each run once"
        )
      seen[key] = w


class WorkdirKindError(ValueError):
  """A directory given to compare is not a train_dmdp run with evaluations."""


# what load_run reads, said in every WorkdirKindError
_EXPECTED = (
  "compare_dmdp reads scripts/train_dmdp.py work directories: config.json with model, "
  "variant, env, seed and world_model, and metrics.jsonl with 'kind' / 'env_steps' records, at "
  "least one of kind 'eval' (with its return_mean)"
)
_CONFIG_KEYS = ("model", "variant", "env", "seed", "world_model")


def _wrong(workdir: str, found: str, todo: str = "") -> WorkdirKindError:
  todo = todo or "give the work directory of a train_dmdp run (--runs DIR ...)"
  return WorkdirKindError(f"{workdir}: {found}; {_EXPECTED}; {todo}")


def _read_config(workdir: str) -> dict:
  """The run's config.json, checked to be a train_dmdp config."""
  if not os.path.isdir(workdir):
    what = "is a file" if os.path.exists(workdir) else "does not exist"
    raise _wrong(workdir, f"the work directory {what}")
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise _wrong(workdir, "holds no config.json: not a train_dmdp work directory")
  try:
    with open(path) as f:
      cfg = json.load(f)
  except (OSError, ValueError) as e:
    raise _wrong(workdir, f"its config.json cannot be read ({type(e).__name__}: {e})") from e
  if not isinstance(cfg, dict):
    raise _wrong(workdir, f"its config.json is not a JSON object (a {type(cfg).__name__})")
  missing = [k for k in _CONFIG_KEYS if k not in cfg]
  if missing or not isinstance(cfg["world_model"], dict):
    keys = ", ".join(sorted(cfg)[:8]) + (", ..." if len(cfg) > 8 else "")
    raise _wrong(
      workdir,
      f"its config.json lacks {', '.join(missing) or 'a world_model object'} (it holds {keys}): "
      "the config of another job",
    )
  if cfg["model"] != "dreamer" and "beta_y" not in cfg["world_model"]:
    raise _wrong(workdir, f"its config.json has no world_model.beta_y for model {cfg['model']!r}")
  return cfg


def _read_records(workdir: str, up_to: int | None) -> list[dict]:
  """metrics.jsonl's records (up to ``up_to`` env steps), each checked to be the agent's."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    raise _wrong(
      workdir, "holds no metrics.jsonl", "run it (scripts/train_dmdp.py) to its first evaluation"
    )
  rows = io.read_jsonl(path)
  for i, r in enumerate(rows, 1):
    if not isinstance(r, dict):
      raise _wrong(workdir, f"{path}: record {i} is not a JSON object: {str(r)[:80]}")
    for key in ("kind", "env_steps"):
      if key not in r:
        raise _wrong(workdir, f"{path}: record {i} has no {key!r} ({str(r)[:80]})")
    if not isinstance(r["env_steps"], (int, float)) or isinstance(r["env_steps"], bool):
      raise _wrong(workdir, f"{path}: record {i} has env_steps {r['env_steps']!r}, not a number")
    if r["kind"] == "eval" and not isinstance(r.get("return_mean"), (int, float)):
      raise _wrong(workdir, f"{path}: record {i}, of kind 'eval', has no number 'return_mean'")
  if up_to is not None:
    rows = [r for r in rows if r["env_steps"] <= up_to]
  if not any(r["kind"] == "eval" for r in rows):
    budget = "" if up_to is None else f" at or before up_to = {up_to} env steps"
    raise _wrong(
      workdir,
      f"{path} holds no evaluation{budget} (records: {len(rows)})",
      "let the run reach its first evaluation (eval_every env steps)"
      + ("" if up_to is None else ", raise --up_to")
      + " or leave this run out",
    )
  return rows


def load_run(workdir: str, up_to: int | None = None) -> dict:
  """Config, evaluations (up to ``up_to`` env steps) and the largest value loss of one run;
  :class:`WorkdirKindError` naming the directory when it is not a train_dmdp run with at least
  one evaluation."""
  cfg = _read_config(workdir)
  rows = _read_records(workdir, up_to)
  evals = [r for r in rows if r["kind"] == "eval"]
  train = [r for r in rows if r["kind"] == "train"]
  agent = cfg.get("agent", {})
  lrs = tuple(agent.get(k) for k in ("model_lr", "actor_lr", "value_lr"))
  return {
    "workdir": workdir,
    "model": cfg["model"],
    "variant": cfg["variant"],
    "env": cfg["env"],
    "seed": cfg["seed"],
    # Dreamer has no y or z: its beta weighs nothing
    "beta": None if cfg["model"] == "dreamer" else cfg["world_model"]["beta_y"],
    "eval_steps": [r["env_steps"] for r in evals],
    "eval_return": [r["return_mean"] for r in evals],
    "env_steps": max([r["env_steps"] for r in rows], default=0),
    "max_value_loss": max([r.get("value_loss", 0.0) for r in train], default=float("nan")),
    # "model/actor/value" learning rates ("?" when the config does not say) and the target net
    "lr": "/".join("?" if v is None else f"{v:g}" for v in lrs),
    "target_every": agent.get("target_every", 0),
    "train_steps": [r["env_steps"] for r in train if "imag_value" in r],
    "imag_value": [r["imag_value"] for r in train if "imag_value" in r],
    # no return exceeds this: rewards in [0, 1] per env step
    "max_return": cfg.get("action_repeat", 2) / (1.0 - agent.get("gamma", 0.99)),
  }


def summarize(runs: list[dict], last: int) -> list[dict]:
  """Per run: mean of the last ``last`` evaluation returns (and how many there were)."""
  out = []
  for r in runs:
    tail = r["eval_return"][-last:]
    out.append(
      {
        **{k: r[k] for k in ("model", "variant", "seed", "beta", "env_steps", "lr")},
        "target_every": r["target_every"],
        "last_mean": float(np.mean(tail)) if tail else float("nan"),
        "n_last": len(tail),
        "first": r["eval_return"][0] if tail else float("nan"),
        "max_value_loss": r["max_value_loss"],
        "workdir": r["workdir"],
      }
    )
  return out


def _beta(b) -> str:
  return "-" if b is None else f"{b:g}"


def _setting(r: dict) -> str:
  """Learning rates (model/actor/value), and the target net when there is one."""
  return r["lr"] + (f", target every {r['target_every']}" if r["target_every"] else "")


def table(rows: list[dict]) -> str:
  """Markdown: one line per run, then the mean over seeds per (model, variant)."""
  lines = [
    "| model | variant | seed | beta | lr (model/actor/value) | env steps | first eval | "
    "mean of last evals | max value loss |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ]
  for r in sorted(rows, key=lambda r: (r["variant"], r["model"], r["lr"], r["seed"])):
    lines.append(
      f"| {r['model']} | {r['variant']} | {r['seed']} | {_beta(r['beta'])} | {_setting(r)} | "
      f"{r['env_steps']:,} | {r['first']:.1f} | {r['last_mean']:.1f} "
      f"(last {r['n_last']}) | {r['max_value_loss']:.3g} |"
    )
  groups: dict = {}
  for r in rows:
    groups.setdefault((r["variant"], r["model"], _setting(r)), []).append(r["last_mean"])
  lines += [
    "",
    "| variant | model | lr (model/actor/value) | seeds | mean of last evals, over seeds |",
    "| --- | --- | --- | --- | --- |",
  ]
  for (variant, model, setting), v in sorted(groups.items()):
    lines.append(
      f"| {variant} | {model} | {setting} | {len(v)} | {np.mean(v):.1f} "
      f"({', '.join(f'{x:.1f}' for x in v)}) |"
    )
  return "\n".join(lines)


def _label(r: dict, runs: list[dict]) -> str:
  settings = {_setting(x) for x in runs}
  lr = f", lr {_setting(r)}" if len(settings) > 1 else ""
  return f"{r['model']} (beta {_beta(r['beta'])}{lr}) seed {r['seed']}"


def _variant_panels(runs: list[dict], ylabel: str, plot_variant, legend_size: int):
  """One panel per variant (shared y axis): ``plot_variant(ax, variant_runs)`` draws the runs
  of that variant, then the panel gets its title, axis labels, grid and legend."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  variants = sorted({r["variant"] for r in runs})
  fig, axes = plt.subplots(
    1, len(variants), figsize=(5.5 * len(variants), 3.8), squeeze=False, sharey=True
  )
  for ax, variant in zip(axes[0], variants):
    plot_variant(ax, [r for r in runs if r["variant"] == variant])
    ax.set(title=f"{runs[0]['env']}, {variant}", xlabel="env steps", ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
  fig.tight_layout()
  return fig


def values_figure(runs: list[dict]):
  """The mean imagined value of each training phase against env steps (symlog), one panel per
  variant, with the largest return any policy can reach: a curve far above it has diverged."""

  def plot(ax, these):
    these = sorted(these, key=lambda r: (r["model"], _setting(r), r["seed"]))
    for i, r in enumerate(these):
      ax.plot(r["train_steps"], r["imag_value"], lw=1.0, color=f"C{i}", label=_label(r, runs))
    ax.axhline(max(r["max_return"] for r in these), color="k", ls=":", lw=1, label="largest return")
    ax.set_yscale("symlog", linthresh=10)

  return _variant_panels(runs, "mean imagined value (symlog)", plot, legend_size=6)


def figure(runs: list[dict]):
  """Evaluation return against env steps; one panel per variant, one colour per model."""
  colours = {"dmdp": "C0", "dmdp_2c": "C2", "dreamer": "C3"}

  def plot(ax, these):
    for r in sorted(these, key=lambda r: (r["model"], r["seed"])):
      ax.plot(
        r["eval_steps"],
        r["eval_return"],
        marker="o",
        ms=3,
        lw=1.2,
        color=colours.get(r["model"], "k"),
        ls="-" if r["seed"] % 2 == 0 else "--",
        label=_label(r, runs),
      )

  return _variant_panels(runs, "evaluation return (policy mode)", plot, legend_size=7)


def compare(cfg: CompareConfig) -> list[dict]:
  """Load the runs, write ``compare.png`` / ``values.png`` / ``compare.md`` / ``compare.json``;
  returns the rows."""
  import matplotlib.pyplot as plt

  runs = [load_run(w, cfg.up_to) for w in cfg.runs]  # every run checked before any output
  rows = summarize(runs, cfg.last)
  os.makedirs(cfg.out, exist_ok=True)
  for name, make in (("compare.png", figure), ("values.png", values_figure)):
    fig = make(runs)
    io.save_figure(os.path.join(cfg.out, name), fig)
    plt.close(fig)
  io.save_text(os.path.join(cfg.out, "compare.md"), table(rows) + "\n")
  io.save_json(os.path.join(cfg.out, "compare.json"), rows)
  return rows
