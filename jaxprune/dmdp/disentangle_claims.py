"""The Denoised MDP paper's representation claims, decided from per-seed probe R^2 with bootstrap
intervals over world-model seeds.

Host-side numpy, pure functions of the rows :mod:`jaxprune.dmdp.disentangle` writes (one per
task, variant, model, updates, factor, probe, target, with ``r2``: one R^2 per world-model seed;
or the same table read back from ``r2.csv`` by :func:`read_csv`).

Per condition (task, variant), budget (updates) and probe, for each Denoised MDP model (``dmdp``,
``dmdp_2c``), two claims, each the conjunction of two parts; a part is an interval (the
percentile bootstrap of the mean over seeds, resampling seeds with replacement; one set of draws
serves every statistic, so differences are paired by seed) against a bound:

* **joints in x** (``joints_in_x``): x decodes the joint positions
  - ``above_zero``: x's R^2 on ``qpos`` is above 0; a "fails" becomes undecided when the
    joints' ceiling is below ``min_ceiling`` (if nothing decodes them from the images, x not
    decoding them says nothing about the model);
  - ``vs_dreamer``: x's R^2 minus Dreamer's (its ``x``), paired by seed, is above 0 (x equal to
    Dreamer within the noise is undecided, not held). Decided only where something decodes the
    joints (x's or Dreamer's interval above 0): two failed probes compared say nothing,
    whichever is less negative; undecided without a Dreamer row.
* **noise out of x** (``noise_out_of_x``), per noise target (anything but ``qpos`` / ``qvel``):
  - ``in_y_or_z``: the better of y and z (per seed) decodes it above ``noise_floor`` x ceiling;
  - ``not_in_x``: x decodes it below ``noise_x_ceiling`` x ceiling. It holds only when x's probe
    has not collapsed (its interval stays above ``collapse_r2``: a collapsed probe is no
    evidence that x lacks the noise) and x holds the joints (``above_zero`` holds: a factor that
    holds nothing keeps every noise out); otherwise a "holds" becomes undecided. It fails
    whenever x's interval lies above the bound.
  Both parts are undecided when the target's ceiling is below ``min_ceiling`` (nothing decodes it).

The **ceiling** of a target (per condition, budget, probe; :func:`ceilings`) is what is decodable
from the images at all: the best mean R^2 of the pixel probe (model ``pixels``: the images
themselves) and every model's ``all`` factor. The probe from the true state (model ``state``) is
reported beside it (:func:`state_references`), not used as a ceiling: it reads the joints
themselves.

A part "holds" when its interval lies wholly on the claim's side of the bound, "fails" when it
lies wholly on the other side, else "undecided" (and always "undecided" with fewer than 2 seeds
or an interval of zero width). A claim holds when both parts hold, fails when either fails, and
is otherwise undecided. Each part also counts the seeds whose own value clears the bound. With
fewer than ``min_seeds`` world-model seeds (5 by default) every part is undecided; a non-finite
R^2 (a constant target on the test episodes, a diverged probe) makes its part undecided.
"""

from __future__ import annotations

import csv
import math

import numpy as np

from jaxprune.pruning import claims as stats

HOLDS, FAILS, UNDECIDED = "holds", "fails", "undecided"
DMDP_MODELS = ("dmdp", "dmdp_2c")
DREAMER = "dreamer"
PIXELS, STATE = "pixels", "state"  # the reference probes (jaxprune.dmdp.disentangle)
STATE_TARGETS = ("qpos", "qvel")


def read_csv(path: str) -> list[dict]:
  """The rows of an ``r2.csv`` (``r2_seed0``, ``r2_seed1``, ... gathered into ``r2``)."""
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    seed_cols = sorted(
      (c for c in reader.fieldnames or () if c.startswith("r2_seed")), key=lambda c: int(c[7:])
    )
    if not seed_cols:
      raise ValueError(f"{path}: no r2_seed<i> columns (is it a disentangle r2.csv?)")
    rows = []
    for r in reader:
      rows.append(
        {
          "task": r["task"],
          "variant": r["variant"],
          "model": r["model"],
          "updates": int(r["updates"]),
          "factor": r["factor"],
          "probe": r["probe"],
          "target": r["target"],
          "mean": float(r["r2_mean"]),
          "r2": [float(r[c]) for c in seed_cols],
        }
      )
  return rows


def _index(rows) -> dict:
  out = {}
  for r in rows:
    key = (r["task"], r["variant"], r["updates"], r["probe"], r["model"], r["factor"], r["target"])
    if key in out:
      raise ValueError(f"two rows for {key}")
    out[key] = np.asarray(r["r2"], np.float64)
  return out


def ceilings(rows) -> dict:
  """``{(task, variant, updates, probe, target): (ceiling, source)}``: what is decodable from
  the images at all, the best mean R^2 of the pixel probe (model ``pixels``) and every model's
  ``all`` at the budget (the pixel probe has no world model: it counts at every budget).
  ``source`` names the winner. The state probe (model ``state``) is not a ceiling: it reads the
  joints themselves (R^2 about 1 by construction); :func:`state_references` reports it."""
  pix = {
    (r["task"], r["variant"], r["probe"], r["target"]): float(np.mean(r["r2"]))
    for r in rows
    if r["model"] == PIXELS
  }
  best: dict = {}
  for r in rows:
    if r["model"] in (PIXELS, STATE):
      continue
    key = (r["task"], r["variant"], r["updates"], r["probe"], r["target"])
    best.setdefault(key, (-math.inf, "none"))
    v = float(np.mean(r["r2"]))
    if r["factor"] == "all" and v > best[key][0]:
      best[key] = (v, f"{r['model']} all")
  for key in best:
    task, variant, _, probe, target = key
    p = pix.get((task, variant, probe, target))
    if p is not None and p >= best[key][0]:
      best[key] = (p, PIXELS)
    if best[key][1] == "none":
      best[key] = (float("nan"), "none")
  return best


def state_references(rows) -> dict:
  """``{(task, variant, probe, target): mean R^2}`` of the probe from the true state: about 1
  for the joints and velocities (the target is a stable function of the state on the test
  episodes), about 0 for what is not in the physics (the background, the camera's walk)."""
  return {
    (r["task"], r["variant"], r["probe"], r["target"]): float(np.mean(r["r2"]))
    for r in rows
    if r["model"] == STATE
  }


class _Boot:
  """Seed resamples shared by every statistic (paired by seed index)."""

  def __init__(self, num_seeds: int, num_resamples: int, seed: int, level: float):
    rng = np.random.default_rng(seed)
    self.idx = rng.integers(0, num_seeds, size=(num_resamples, num_seeds))
    self.level = level
    self.num_seeds = num_seeds

  def interval(self, per_seed: np.ndarray) -> stats.Interval:
    v = np.asarray(per_seed, np.float64)
    return stats.interval(
      v[self.idx].mean(axis=1),
      float(v.mean()),
      level=self.level,
      seeds=(("world_model_seed", int(v.size)),),
    )


def _part(iv: stats.Interval, per_seed, bound: float, side: str, reason: str = "") -> dict:
  """A part's record: ``side`` ">" (the claim is: the statistic is above ``bound``) or "<"."""
  per_seed = np.asarray(per_seed, np.float64)
  clearing = int(np.sum(per_seed > bound) if side == ">" else np.sum(per_seed < bound))
  if reason:
    verdict = UNDECIDED
  else:
    v = stats.verdict(iv, alternative=f"{side} {float(bound)!r}")
    verdict = {stats.SUPPORTED: HOLDS, stats.CONTRADICTED: FAILS}.get(v, UNDECIDED)
    if verdict == UNDECIDED and not iv.decidable:
      reason = f"not decidable (seeds {dict(iv.seeds)}, zero width: {iv.degenerate})"
  return {
    "estimate": iv.estimate,
    "lo": iv.lo,
    "hi": iv.hi,
    "bound": float(bound),
    "side": side,
    "seeds_clearing": clearing,
    "seeds": int(per_seed.size),
    "verdict": verdict,
    "reason": reason,
  }


def combine(verdicts) -> str:
  """A claim from its parts: holds when all hold, fails when any fails, else undecided."""
  verdicts = list(verdicts)
  if any(v == FAILS for v in verdicts):
    return FAILS
  if verdicts and all(v == HOLDS for v in verdicts):
    return HOLDS
  return UNDECIDED


def check(
  rows,
  *,
  noise_floor: float = 0.5,
  noise_x_ceiling: float = 0.25,
  min_ceiling: float = 0.2,
  collapse_r2: float = -0.5,
  min_seeds: int = 5,
  level: float = 0.9,
  num_resamples: int = 2000,
  seed: int = 0,
) -> list[dict]:
  """Every claim on every (task, variant, updates, probe, Denoised MDP model): a list of
  records with the claim, model, target, ``verdict``, the target's ``ceiling`` and ``parts``
  (each: estimate, interval, bound, seeds clearing it, verdict, and the reason when a rule, not
  the interval, leaves it undecided). See the module docstring for the claims, bounds and
  rules; with fewer than ``min_seeds`` world-model seeds every part is undecided."""
  rows = list(rows)
  if not rows:
    raise ValueError("no probe rows to check")
  counts = {len(r["r2"]) for r in rows}
  if len(counts) != 1:
    raise ValueError(f"rows hold different numbers of seeds: {sorted(counts)}")
  num_seeds = counts.pop()
  boot = _Boot(num_seeds, num_resamples, seed, level)
  few = "" if num_seeds >= min_seeds else f"{num_seeds} seeds < min_seeds {min_seeds}"
  idx = _index(rows)
  ceil, state = ceilings(rows), state_references(rows)
  out = []
  conds = sorted({(r["task"], r["variant"], r["updates"], r["probe"]) for r in rows})
  for task, variant, updates, probe in conds:
    here = {k[4:]: v for k, v in idx.items() if k[:4] == (task, variant, updates, probe)}
    targets = list(dict.fromkeys(k[2] for k in here))
    ids = {"task": task, "variant": variant, "updates": updates, "probe": probe, "level": level}

    def part(per_seed, bound, side, reason="", names=()):
      bad = [n for n, v in names if not np.all(np.isfinite(v))]
      if bad:  # a constant target on the test split, or a diverged probe
        reason = reason or f"non-finite R^2 from {', '.join(bad)}"
      if reason or few:
        iv = boot.interval(np.nan_to_num(per_seed, nan=0.0, posinf=0.0, neginf=0.0))
        return _part(iv, per_seed, bound, side, reason or few)
      return _part(boot.interval(per_seed), per_seed, bound, side)

    for model in DMDP_MODELS:
      x_q = here.get((model, "x", "qpos"))
      joints_hold = False
      if x_q is not None:
        c, source = ceil.get((task, variant, updates, probe, "qpos"), (float("nan"), "none"))
        low = ""
        if not c >= min_ceiling:
          low = (
            f"nothing decodes the joints from the images: ceiling {c:.3f} ({source}) < "
            f"min_ceiling {min_ceiling}"
          )
        parts = {"above_zero": part(x_q, 0.0, ">", names=[("x", x_q)])}
        if low and parts["above_zero"]["verdict"] == FAILS:  # nothing else decodes them either
          parts["above_zero"].update(verdict=UNDECIDED, reason=low)
        dr_q = here.get((DREAMER, "x", "qpos"))
        if dr_q is None:
          reason = "no Dreamer row to compare with"
          parts["vs_dreamer"] = part(x_q, 0.0, ">", reason)
          parts["vs_dreamer"].update(estimate=float("nan"), lo=float("nan"), hi=float("nan"))
        else:
          reason = ""
          iv_x, iv_dr = boot.interval(x_q), boot.interval(dr_q)
          if not (iv_x.lo > 0 or iv_dr.lo > 0):
            reason = (
              f"nothing decodes the joints (x {iv_x.describe()}, Dreamer {iv_dr.describe()}): "
              "no comparison"
            )
          diff = x_q - dr_q
          parts["vs_dreamer"] = part(diff, 0.0, ">", reason, [("x", x_q), ("Dreamer", dr_q)])
          parts["vs_dreamer"]["dreamer"] = iv_dr.estimate
        joints_hold = parts["above_zero"]["verdict"] == HOLDS
        verdict = combine(p["verdict"] for p in parts.values())
        rec = {"claim": "joints_in_x", "model": model, "target": "qpos", "verdict": verdict}
        rec.update(
          ceiling=c, ceiling_source=source, state=state.get((task, variant, probe, "qpos"))
        )
        out.append({**ids, **rec, "parts": parts})
      for target in targets:
        if target in STATE_TARGETS:
          continue
        x_n = here.get((model, "x", target))
        yz = [here[(model, f, target)] for f in ("y", "z") if (model, f, target) in here]
        if x_n is None or not yz:
          continue
        c, source = ceil.get((task, variant, updates, probe, target), (float("nan"), "none"))
        low = "" if c >= min_ceiling else f"ceiling {c:.3f} ({source}) < min_ceiling {min_ceiling}"
        best_yz = np.max(np.stack(yz), axis=0)
        empty = collapsed = ""
        lo = boot.interval(x_n).lo if np.all(np.isfinite(x_n)) else np.nan
        if lo < collapse_r2:
          collapsed = f"x's probe collapsed (interval reaches {lo:.2f} < {collapse_r2})"
        if not joints_hold:  # an x that holds nothing keeps every noise out
          empty = "x is not shown to hold the joints (above_zero does not hold)"
        parts = {
          "in_y_or_z": part(best_yz, float(noise_floor * c), ">", low, [("y/z", best_yz)]),
          "not_in_x": part(x_n, float(noise_x_ceiling * c), "<", low, [("x", x_n)]),
        }
        # a collapsed probe or an x that holds nothing is no evidence that x keeps the noise
        # out, but an x that does decode the noise fails whatever else it holds
        if parts["not_in_x"]["verdict"] == HOLDS and (collapsed or empty):
          parts["not_in_x"].update(verdict=UNDECIDED, reason=collapsed or empty)
        verdict = combine(p["verdict"] for p in parts.values())
        rec = {"claim": "noise_out_of_x", "model": model, "target": target, "verdict": verdict}
        rec.update(
          ceiling=c, ceiling_source=source, state=state.get((task, variant, probe, target))
        )
        out.append({**ids, **rec, "parts": parts})
  return out


def tally(checks, *, updates: int | None = None) -> dict:
  """``{claim: {holds, fails, undecided}}`` counts (at ``updates`` when given), plus ``all``."""
  out: dict = {}
  for c in checks:
    if updates is not None and c["updates"] != updates:
      continue
    for name in (c["claim"], "all"):
      d = out.setdefault(name, {HOLDS: 0, FAILS: 0, UNDECIDED: 0})
      d[c["verdict"]] += 1
  if "all" in out:
    out["all"] = out.pop("all")  # last
  return out


def verdict_matrix(checks, *, updates: int | None = None) -> str:
  """A compact markdown table at ``updates`` (default the largest): a row per (condition,
  probe), a column per (model, claim target), each cell the claim's verdict with the seeds
  clearing each part's bound (e.g. ``holds 5/5, 5/5``)."""
  if not checks:
    return "no claims\n"
  u = max(c["updates"] for c in checks) if updates is None else updates
  sel = [c for c in checks if c["updates"] == u]
  cols = list(dict.fromkeys((c["model"], c["claim"], c["target"]) for c in sel))
  rows = list(dict.fromkeys((c["task"], c["variant"], c["probe"]) for c in sel))
  names = [f"{m}: {'joints' if cl == 'joints_in_x' else t}" for m, cl, t in cols]
  lines = [
    "| condition | probe | " + " | ".join(names) + " |",
    "|---|---|" + "---|" * len(cols),
  ]
  for task, variant, probe in rows:
    cells = []
    for model, claim, target in cols:
      c = next(
        (
          c
          for c in sel
          if (c["task"], c["variant"], c["probe"], c["model"], c["claim"], c["target"])
          == (task, variant, probe, model, claim, target)
        ),
        None,
      )
      if c is None:
        cells.append("-")
        continue
      counts = ", ".join(f"{p['seeds_clearing']}/{p['seeds']}" for p in c["parts"].values())
      cells.append(f"{c['verdict']} {counts}")
    lines.append(f"| {task} / {variant} | {probe} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _fmt(v: float) -> str:
  return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.2f}"


def markdown(checks, *, updates: int | None = None) -> str:
  """One table per condition (at ``updates``, default the largest): claim, model, target, each
  part as ``estimate [lo, hi] vs bound (k/S seeds): verdict``, and the claim's verdict."""
  if not checks:
    return "no claims\n"
  u = max(c["updates"] for c in checks) if updates is None else updates
  sel = [c for c in checks if c["updates"] == u]
  lines = []
  for task, variant in dict.fromkeys((c["task"], c["variant"]) for c in sel):
    lines += [
      f"\n**{task} / {variant}** ({u} updates; {100 * _level(sel):g}% bootstrap intervals over "
      "world-model seeds; parts: R^2 mean [interval] vs bound, seeds clearing it)\n",
      "| probe | claim | model | target | ceiling (from images); state probe | part 1 | part 2 "
      "| verdict |",
      "|---|---|---|---|---|---|---|---|",
    ]
    for c in (c for c in sel if (c["task"], c["variant"]) == (task, variant)):
      cells = []
      for name, p in c["parts"].items():
        text = (
          f"{name}: {_fmt(p['estimate'])} [{_fmt(p['lo'])}, {_fmt(p['hi'])}] {p['side']} "
          f"{p['bound']:.2f} ({p['seeds_clearing']}/{p['seeds']}): **{p['verdict']}**"
        )
        if p["reason"]:
          text += f" ({p['reason']})"
        cells.append(text)
      cells += [""] * (2 - len(cells))
      ceiling = f"{c['ceiling']:.2f} ({c['ceiling_source']})"
      if c.get("state") is not None:
        ceiling += f"; state {c['state']:.2f}"
      lines.append(
        f"| {c['probe']} | {c['claim']} | {c['model']} | {c['target']} | {ceiling} | "
        + " | ".join(cells)
        + f" | **{c['verdict']}** |"
      )
  return "\n".join(lines).strip() + "\n"


def _level(checks) -> float:
  return checks[0].get("level", 0.9) if checks else 0.9
