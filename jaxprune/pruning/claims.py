"""Deciding the pruning claims from per-seed results: a hierarchical bootstrap over every seed
source, percentile intervals, and a verdict that says "supported" only when the interval
excludes the alternative.

Host-side numpy, pure functions of a per-seed table (no JAX).

The per-seed schema (one row per trained classifier; what an experiment writes to CSV / JSONL):

==================  =======  ==================================================================
column              type     meaning
==================  =======  ==================================================================
``pool``            int      examples in the pool the subset is pruned from
``score``           str      the pruning metric (``"el2n"``, ``"ssl_prototypes"``, ...);
                             ``"random"`` for the random baseline, ``"full"`` for the whole pool
``mode``            str      ``"hard"`` / ``"easy"`` (which end is kept), ``"random"``, ``"full"``
``fraction``        float    fraction of the pool kept, in (0, 1]; 1 for ``"full"``
``n_kept``          int      examples kept (the same for every mode at one pool and fraction)
``pool_seed``       int      the pool draw
``scorer_seed``     int      the scorer's seed (SimCLR encoder, k-means, score ensemble)
``classifier_seed`` int      the classifier's seed (init and data order)
``acc``             float    test accuracy in [0, 1]
==================  =======  ==================================================================

A seed of ``-1`` means "this source does not apply": random and full rows have no scorer, and
the whole training set is a single pool draw. A source that applies with one seed only (seed
``0`` everywhere) makes every statistic on it "undecided": one seed says nothing about that
source's noise. A cell (pool, score, mode, fraction) holds every combination of its seeds
exactly once.

The bootstrap (:func:`bootstrap`) is a cluster bootstrap over the seed hierarchy: draw the pool
draws with replacement, then, within each drawn pool draw, the scorer seeds with replacement,
then, within each drawn scorer seed, the classifier seeds with replacement. The draws are by
position (the i-th pool seed of every cell), and the same draws serve every cell, so statistics
that compare cells are paired exactly as the experiment pairs them (the nested pools of one draw,
the hard and easy ends of one scorer's scores, the same classifier seeds on every subset). The
scorer level sits inside the pool level because a scorer is fitted to one pool; the classifier
level innermost because a classifier is trained on one scored subset. Cells of different
shapes share the draws by slot too: a whole-split cell (one pool seed, -1) uses pool slot 0's
scorer draws, so its resamples are slightly correlated with pool draw 0's cells (a small
coupling in statistics across pools, such as crossings and exponents). Each resample is a weight
per (pool seed, scorer seed, classifier seed) combination, so every cell's resampled means are
one matrix product (:func:`resample_weights`).

Calibration: resampling every level counts the inner levels' noise again at each outer level,
so the intervals are conservative when classifier noise dominates (a known crossing was covered
by 96% of 90% intervals with 4 pool draws x 3 scorers x 5 classifiers); with few pool draws
and a large pool-draw effect they are a little narrow (84%), as any bootstrap over few clusters.

Statistics, each an :class:`Interval` (estimate from the plain seed means, percentile interval
from the resamples, ``level`` 0.9 by default):

* :func:`differences`: per (pool, score, fraction), keep-hard minus random, keep-hard minus
  keep-easy and keep-easy minus random, at the same number kept;
* :func:`crossings`: per (score, fraction), the pool where keep-hard minus keep-easy first goes
  from <= 0 to > 0 (log-interpolated); resamples without one are counted (``censored``);
* :func:`exponents`: per (score, mode, fraction), the power-law exponent of test error against
  examples kept over the pools, and its difference from the full pool's exponent;
* :func:`best_fractions`: at a fixed number kept (or per pool), the bootstrap distribution of the
  winning fraction, and the trend of the winning fraction (log-log slope).

:func:`verdict` turns an interval and a claim ("> 0") into "supported" / "contradicted" /
"undecided".
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re

import numpy as np

SEED_SOURCES = ("pool_seed", "scorer_seed", "classifier_seed")
COLUMNS = ("pool", "score", "mode", "fraction", "n_kept", *SEED_SOURCES, "acc")
MODES = ("hard", "easy", "random", "full")
NOT_APPLICABLE = -1
SUPPORTED, CONTRADICTED, UNDECIDED = "supported", "contradicted", "undecided"
_ALTERNATIVE = re.compile(r"^\s*([<>])\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


# ---------------------------------------------------------------------------------------------
# intervals and verdicts


@dataclasses.dataclass(frozen=True)
class Interval:
  """A bootstrap percentile interval.

  ``seeds``: per seed source, the fewest seeds any cell behind the statistic has (None where
  the source does not apply). ``degenerate``: the resamples do not vary because the data do
  not (every seed gave the same accuracy, or the interval has zero width). ``censored``: the
  share of resamples where the statistic does not exist (a crossing that does not happen),
  split into ``below`` (-inf: below the smallest pool) and ``above`` (+inf: beyond the largest
  pool); ``lo`` / ``hi`` may then be infinite.
  """

  estimate: float
  lo: float
  hi: float
  level: float
  num_resamples: int
  seeds: tuple = ()
  censored: float = 0.0
  below: float = 0.0
  above: float = 0.0
  degenerate: bool = False

  @property
  def fewest_seeds(self) -> int | None:
    """The fewest seeds of any source that applies (None when none applies)."""
    counts = [n for _, n in self.seeds if n is not None]
    return min(counts) if counts else None

  @property
  def decidable(self) -> bool:
    """Two or more seeds of every source that applies, and a non-degenerate interval."""
    n = self.fewest_seeds
    return (
      n is not None
      and n >= 2
      and not self.degenerate
      and not (math.isnan(self.lo) or math.isnan(self.hi))
    )

  def describe(self, scale: float = 1.0, fmt: str = "+.2f") -> str:
    """'+2.31 [90%: +0.52, +4.10]', with the censored share when there is one."""

    def num(v):
      if v is None or math.isnan(v):
        return "n/a"
      if math.isinf(v):
        return "-inf" if v < 0 else "+inf"
      return format(scale * v, fmt)

    text = f"{num(self.estimate)} [{100 * self.level:g}%: {num(self.lo)}, {num(self.hi)}]"
    if self.censored > 0:

      def pct(x):
        return "<1%" if 0 < x < 0.005 else f"{100 * x:.0f}%"

      text += (
        f"; no crossing in {pct(self.censored)} of resamples ({pct(self.above)} above "
        f"the largest pool, {pct(self.below)} below the smallest)"
      )
    if not self.decidable:
      text += f"; undecidable (seeds {dict(self.seeds)})"
    return text

  def as_dict(self) -> dict:
    """JSON-ready (infinities as the strings 'inf' / '-inf', NaN as None)."""

    def plain(v):
      if isinstance(v, float) and math.isnan(v):
        return None
      return str(v) if isinstance(v, float) and math.isinf(v) else v

    out = {k: plain(v) for k, v in dataclasses.asdict(self).items()}
    out["seeds"] = dict(self.seeds)
    out["decidable"] = self.decidable
    return out


def verdict(interval: Interval, *, alternative: str) -> str:
  """Decide the claim ``alternative`` (e.g. ``"> 0"``: keep-hard minus random is positive;
  ``"< 1000"``: the crossing is below a pool of 1,000) from a bootstrap interval.

  "supported" when the whole interval lies on the claim's side of the threshold, "contradicted"
  when it lies wholly on the other side, else "undecided". An interval with fewer than two seeds
  of a source that applies, or of zero width, is always "undecided".
  """
  if not isinstance(interval, Interval):
    raise TypeError(
      f"verdict needs an Interval from jaxprune.pruning.claims (differences, crossings, "
      f"exponents, best_fractions), got {type(interval).__name__}: a bare (lo, hi) carries no "
      "seed counts to check"
    )
  m = _ALTERNATIVE.match(alternative) if isinstance(alternative, str) else None
  if m is None:
    raise ValueError(
      f"alternative {alternative!r} is not a strict inequality: write the claim as '> x' or "
      "'< x' (e.g. '> 0' for 'keep-hard beats random')"
    )
  side, threshold = m.group(1), float(m.group(2))
  if not interval.decidable:
    return UNDECIDED
  lo, hi = interval.lo, interval.hi
  if side == "<":
    lo, hi, threshold = -hi, -lo, -threshold
  if lo > threshold:
    return SUPPORTED
  if hi < threshold:
    return CONTRADICTED
  return UNDECIDED


def interval(
  samples,
  estimate: float,
  *,
  level: float = 0.9,
  seeds: tuple = (),
  below: float = 0.0,
  above: float = 0.0,
  degenerate: bool | None = None,
) -> Interval:
  """The percentile interval of ``samples`` (order statistics, outward: ``lower`` / ``higher``
  quantiles, so infinite samples give infinite bounds and never NaN). ``degenerate`` defaults
  to a zero width (up to rounding); a discrete statistic (a winning fraction) passes whether
  its data vary instead, since a certain winner has zero width without being degenerate."""
  if not 0.0 < level < 1.0:
    raise ValueError(f"level {level} must be in (0, 1), e.g. 0.9 for a 90% interval")
  v = np.asarray(samples, float)
  v = v[~np.isnan(v)]
  if v.size == 0:
    lo = hi = float("nan")
  else:
    a = (1.0 - level) / 2
    # np.quantile's "lower" / "higher" order statistics, without its per-call overhead
    v = np.sort(v)
    lo = float(v[math.floor(a * (v.size - 1))])
    hi = float(v[math.ceil((1.0 - a) * (v.size - 1))])
  if degenerate is None:
    finite = math.isfinite(lo) and math.isfinite(hi)
    degenerate = finite and hi - lo <= 1e-9 * (1.0 + abs(lo) + abs(hi))
  return Interval(
    estimate=float(estimate),
    lo=lo,
    hi=hi,
    level=float(level),
    num_resamples=int(np.asarray(samples).size),
    seeds=tuple(seeds),
    censored=float(below + above),
    below=float(below),
    above=float(above),
    degenerate=bool(degenerate),
  )


# ---------------------------------------------------------------------------------------------
# rows


def read_rows(path: str) -> list[dict]:
  """Per-seed rows from a ``.csv`` (header: :data:`COLUMNS`) or ``.jsonl`` file, typed."""
  if path.endswith(".jsonl"):
    with open(path) as f:
      raw = [json.loads(line) for line in f if line.strip()]
  elif path.endswith(".csv"):
    with open(path, newline="") as f:
      raw = list(csv.DictReader(f))
  else:
    raise ValueError(f"{path}: per-seed rows are read from .csv or .jsonl files")
  rows = []
  for i, r in enumerate(raw):
    missing = [c for c in COLUMNS if c not in r]
    if missing:
      raise ValueError(f"{path}: row {i + 1} lacks the columns {missing} (see claims.COLUMNS)")
    rows.append(
      {
        "pool": int(r["pool"]),
        "score": str(r["score"]),
        "mode": str(r["mode"]),
        "fraction": float(r["fraction"]),
        "n_kept": int(r["n_kept"]),
        **{s: int(r[s]) for s in SEED_SOURCES},
        "acc": float(r["acc"]),
      }
    )
  return rows


def from_curve_rows(rows: list[dict]) -> list[dict]:
  """Per-seed rows from :mod:`jaxprune.pruning.curve`'s ``results.jsonl`` rows (``pool_draw``,
  ``scorer`` seeds, ``acc_seeds`` per classifier seed). ``pool_seed`` is the row's
  ``pool_draw`` (0 for rows written before the curve had pool draws: with one draw a statistic
  over it is undecidable), or -1 for the whole split (``pool_size`` 0, or absent: rows of the
  curve from before its pool axis)."""
  out = []
  for r in rows:
    mode = {"-": "full"}.get(r["mode"], r["mode"])
    score_free = mode in ("random", "full")
    for c, acc in enumerate(r["acc_seeds"]):
      out.append(
        {
          "pool": int(r["pool"]),
          "score": r["score"],
          "mode": mode,
          "fraction": float(r["fraction"]),
          "n_kept": int(r["n_kept"]),
          "pool_seed": NOT_APPLICABLE if r.get("pool_size", 0) == 0 else int(r.get("pool_draw", 0)),
          "scorer_seed": NOT_APPLICABLE if score_free else int(r.get("scorer", 0)),
          "classifier_seed": c,
          "acc": float(acc),
        }
      )
  return out


def as_columns(rows) -> dict:
  """The per-seed table as ``{column: array}``, from a list of row dicts, a dict of columns, a
  numpy structured array or a pandas DataFrame."""
  if isinstance(rows, np.ndarray) and rows.dtype.names:
    cols = {c: rows[c] for c in rows.dtype.names}
  elif isinstance(rows, dict):
    cols = {c: np.asarray(v) for c, v in rows.items()}
  elif hasattr(rows, "columns") and hasattr(rows, "to_numpy"):
    cols = {c: rows[c].to_numpy() for c in rows.columns}
  else:
    rows = list(rows)
    need = set(COLUMNS)
    for i, r in enumerate(rows):
      if not need <= r.keys():
        missing = [c for c in COLUMNS if c not in r]
        raise ValueError(f"row {i}: missing columns {missing}; every row needs {list(COLUMNS)}")
    cols = {c: np.array([r[c] for r in rows]) for c in COLUMNS}
  missing = [c for c in COLUMNS if c not in cols]
  if missing:
    raise ValueError(f"missing columns {missing}; the per-seed table needs {list(COLUMNS)}")
  sizes = {len(cols[c]) for c in COLUMNS}
  if len(sizes) != 1:
    raise ValueError(f"columns of different lengths {sorted(sizes)}; one entry per row")
  return {
    "pool": cols["pool"].astype(np.int64),
    "score": cols["score"].astype(str),
    "mode": cols["mode"].astype(str),
    "fraction": cols["fraction"].astype(float),
    "n_kept": cols["n_kept"].astype(np.int64),
    **{s: cols[s].astype(np.int64) for s in SEED_SOURCES},
    "acc": cols["acc"].astype(float),
  }


def check_rows(rows) -> dict:
  """Host-side checks of a per-seed table (any form :func:`as_columns` takes); raises
  ValueError naming the first bad row and its field; returns the columns."""
  cols = as_columns(rows)
  if len(cols["acc"]) == 0:
    raise ValueError("no per-seed rows: pass the experiment's rows (see claims.COLUMNS)")
  f, acc = cols["fraction"], cols["acc"]
  bad = [
    (~np.isin(cols["mode"], MODES), "mode", f"is not one of {MODES}"),
    (~((f > 0) & (f <= 1)), "fraction", "must be in (0, 1]"),
    ((cols["mode"] == "full") & (f != 1.0), "fraction", "of a full-pool row must be 1"),
    (~((acc >= 0) & (acc <= 1)), "acc", "is not an accuracy in [0, 1] (NaN or percent?)"),
    *[
      (cols[s] < NOT_APPLICABLE, s, "is negative; use -1 for 'does not apply'")
      for s in SEED_SOURCES
    ],
  ]
  for mask, field, what in bad:
    if mask.any():
      i = int(np.argmax(mask))
      raise ValueError(f"row {i}: {field} {cols[field][i].item()!r} {what}")
  return cols


def _factorize(x: np.ndarray) -> np.ndarray:
  """Integer codes of ``x``'s values (strings by comparing with each of their few distinct
  values: np.unique sorts strings slowly)."""
  if x.dtype.kind in "US":
    codes = np.empty(len(x), np.int64)
    for i, v in enumerate(sorted(set(x.tolist()))):
      codes[x == v] = i
    return codes
  return np.unique(x, return_inverse=True)[1].ravel()


def _cells(rows) -> dict:
  """``{(pool, score, mode, fraction): (acc_DxSxC, n_kept, applies: 3 bools)}``; every cell must
  hold every combination of its seeds exactly once."""
  cols = check_rows(rows)
  fraction = np.round(cols["fraction"], 12)
  codes = [_factorize(cols[c]) for c in ("pool", "score", "mode")] + [_factorize(fraction)]
  code = np.zeros(len(fraction), np.int64)
  for c in codes:
    code = code * (int(c.max()) + 1) + c
  _, inverse = np.unique(code, return_inverse=True)
  order = np.argsort(inverse, kind="stable")
  starts = np.flatnonzero(np.diff(inverse[order], prepend=-1))
  cells = {}
  for idx in np.split(order, starts[1:]):
    i0 = idx[0]
    key = (
      int(cols["pool"][i0]),
      str(cols["score"][i0]),
      str(cols["mode"][i0]),
      float(fraction[i0]),
    )
    ids, pos = zip(*(np.unique(cols[s][idx], return_inverse=True) for s in SEED_SOURCES))
    for s, v in zip(SEED_SOURCES, ids):
      if NOT_APPLICABLE in v and len(v) > 1:
        raise ValueError(f"cell {key}: {s} mixes -1 ('does not apply') with seeds {v.tolist()}")
    shape = tuple(len(v) for v in ids)
    flat = (pos[0] * shape[1] + pos[1]) * shape[2] + pos[2]
    count = np.bincount(flat, minlength=int(np.prod(shape)))
    if count.max() > 1:
      j = int(np.argmax(count))
      raise ValueError(
        f"cell {key}: seeds {np.unravel_index(j, shape)} appear twice; one row per trained "
        "classifier"
      )
    if count.min() == 0:
      raise ValueError(
        f"cell {key}: {int((count == 0).sum())} of the {count.size} (pool seed, scorer seed, "
        f"classifier seed) combinations of {[v.tolist() for v in ids]} are missing; run them or "
        "drop the cell"
      )
    acc = np.empty(count.size)
    acc[flat] = cols["acc"][idx]
    kept = np.unique(cols["n_kept"][idx])
    if len(kept) != 1:
      raise ValueError(f"cell {key}: n_kept differs between seeds: {kept.tolist()}")
    applies = tuple(v.tolist() != [NOT_APPLICABLE] for v in ids)
    cells[key] = (acc.reshape(shape), int(kept[0]), applies)
  return cells


# ---------------------------------------------------------------------------------------------
# the bootstrap


def resample_weights(uniforms: tuple, shape: tuple) -> np.ndarray:
  """``[B, D * S * C]`` counts: how often each (pool seed, scorer seed, classifier seed) is drawn
  by the hierarchical resample ``b``, for a cell of ``shape = (D, S, C)`` seeds.

  ``uniforms`` are ``(U_BxDm, U_BxDmxSm, U_BxDmxSmxCm)`` in [0, 1) with ``Dm >= D`` etc.; a cell
  uses the first ``D`` / ``S`` / ``C`` slots, so cells of any shape share the same draws."""
  ud, us, uc = uniforms
  d_, s_, c_ = shape
  b = ud.shape[0]
  d = np.floor(ud[:, :d_] * d_).astype(np.int64)
  s = np.floor(us[:, :d_, :s_] * s_).astype(np.int64)
  c = np.floor(uc[:, :d_, :s_, :c_] * c_).astype(np.int64)
  flat = (d[:, :, None, None] * s_ + s[:, :, :, None]) * c_ + c
  flat = flat + (np.arange(b) * (d_ * s_ * c_))[:, None, None, None]
  return np.bincount(flat.ravel(), minlength=b * d_ * s_ * c_).reshape(b, d_ * s_ * c_)


@dataclasses.dataclass(frozen=True)
class Bootstrap:
  """Per cell ``(pool, score, mode, fraction)``: the seed-mean accuracy (``estimate``), its
  ``[B]`` resampled means (``samples``), ``n_kept`` and the seed counts (``seeds``: per source,
  the count or None where the source does not apply)."""

  estimate: dict
  samples: dict
  n_kept: dict
  seeds: dict
  num_resamples: int

  def seeds_of(self, *keys) -> tuple:
    """Per source, the fewest seeds among ``keys``' cells (None where it applies to none)."""
    out = []
    for i, s in enumerate(SEED_SOURCES):
      counts = [self.seeds[k][i] for k in keys if self.seeds[k][i] is not None]
      out.append((s, min(counts) if counts else None))
    return tuple(out)

  def constant(self, *keys) -> bool:
    """Whether no resample moves any of ``keys``' means (every seed gave one accuracy)."""
    return all(np.ptp(self.samples[k]) <= 1e-12 for k in keys)


def bootstrap(rows, *, num_resamples: int = 2000, seed: int = 0) -> Bootstrap:
  """The hierarchical bootstrap of every cell's mean accuracy (see the module docstring);
  deterministic in ``seed``. ``rows``: the per-seed table in any form :func:`as_columns`
  takes."""
  if num_resamples < 1:
    raise ValueError(f"num_resamples {num_resamples} must be >= 1 (2000 is the default)")
  cells = _cells(rows)
  dm, sm, cm = (max(acc.shape[i] for acc, _, _ in cells.values()) for i in range(3))
  rng = np.random.default_rng(seed)
  uniforms = (
    rng.random((num_resamples, dm)),
    rng.random((num_resamples, dm, sm)),
    rng.random((num_resamples, dm, sm, cm)),
  )
  by_shape: dict = {}
  for key, (acc, _, _) in cells.items():
    by_shape.setdefault(acc.shape, []).append(key)
  samples = {}
  for shape, keys in by_shape.items():
    w = resample_weights(uniforms, shape)
    acc = np.stack([cells[k][0].ravel() for k in keys], axis=1)  # [DSC, K]
    means = (w @ acc) / acc.shape[0]
    for j, k in enumerate(keys):
      samples[k] = means[:, j]
  return Bootstrap(
    estimate={k: float(acc.mean()) for k, (acc, _, _) in cells.items()},
    samples=samples,
    n_kept={k: n for k, (_, n, _) in cells.items()},
    seeds={
      k: tuple(n if a else None for n, a in zip(acc.shape, applies))
      for k, (acc, _, applies) in cells.items()
    },
    num_resamples=num_resamples,
  )


def _boot(data, num_resamples: int, seed: int) -> Bootstrap:
  if isinstance(data, Bootstrap):
    return data
  return bootstrap(data, num_resamples=num_resamples, seed=seed)


def _key(pool, score, mode, fraction) -> tuple:
  return (int(pool), str(score), str(mode), float(np.round(float(fraction), 12)))


# ---------------------------------------------------------------------------------------------
# statistics


def differences(
  data, *, level: float = 0.9, num_resamples: int = 2000, seed: int = 0
) -> list[dict]:
  """Per (pool, score, fraction < 1): ``hard_minus_random``, ``hard_minus_easy`` and
  ``easy_minus_random`` accuracy (an :class:`Interval` each, None where a mode is missing), at
  the same number kept. ``data``: per-seed rows or a :class:`Bootstrap`."""
  boot = _boot(data, num_resamples, seed)
  keys = boot.estimate
  out = []
  points = sorted({(k[0], k[1], k[3]) for k in keys if k[2] in ("hard", "easy")})
  for pool, score, f in points:
    cell = {m: _key(pool, score, m, f) for m in ("hard", "easy")}
    cell["random"] = _key(pool, "random", "random", f)
    have = {m: k for m, k in cell.items() if k in keys}
    kept = {boot.n_kept[k] for k in have.values()}
    if len(kept) > 1:
      raise ValueError(
        f"pool {pool}, {score}, fraction {f}: n_kept differs between modes "
        f"{ {m: boot.n_kept[k] for m, k in have.items()} }; differences need the same count"
      )
    row = {"pool": pool, "score": score, "fraction": f, "n_kept": kept.pop()}
    for name, (a, b) in (
      ("hard_minus_random", ("hard", "random")),
      ("hard_minus_easy", ("hard", "easy")),
      ("easy_minus_random", ("easy", "random")),
    ):
      if a in have and b in have:
        ka, kb = have[a], have[b]
        row[name] = interval(
          boot.samples[ka] - boot.samples[kb],
          boot.estimate[ka] - boot.estimate[kb],
          level=level,
          seeds=boot.seeds_of(ka, kb),
        )
      else:
        row[name] = None
    out.append(row)
  return out


def contrast(
  data, a: tuple, b: tuple, *, level: float = 0.9, num_resamples: int = 2000, seed: int = 0
) -> Interval:
  """Mean accuracy of cell ``a`` minus cell ``b`` (each ``(pool, score, mode, fraction)``), an
  :class:`Interval` paired by the shared resamples: e.g. SSL keep-hard minus EL2N keep-hard at
  the same pool and fraction. ``data``: per-seed rows or a :class:`Bootstrap`."""
  boot = _boot(data, num_resamples, seed)
  ka, kb = _key(*a), _key(*b)
  for k in (ka, kb):
    if k not in boot.estimate:
      raise KeyError(f"no cell {k} in the per-seed rows (pool, score, mode, fraction)")
  return interval(
    boot.samples[ka] - boot.samples[kb],
    boot.estimate[ka] - boot.estimate[kb],
    level=level,
    seeds=boot.seeds_of(ka, kb),
  )


def first_crossing(pools, diff) -> tuple[np.ndarray, np.ndarray]:
  """Vectorised over leading axes of ``diff`` (``[..., P]``): the pool where ``diff`` first goes
  from <= 0 to > 0, log-interpolated; ``+inf`` where it never does and ends <= 0 (beyond the
  largest pool), ``-inf`` where it is > 0 at every pool (below the smallest). Returns
  ``(crossing, has_crossing)``."""
  logp = np.log(np.asarray(pools, float))
  d = np.asarray(diff, float)
  d0, d1 = d[..., :-1], d[..., 1:]
  up = (d0 <= 0) & (d1 > 0)
  has = up.any(-1)
  j = np.argmax(up, -1)
  a = np.take_along_axis(d0, j[..., None], -1)[..., 0]
  b = np.take_along_axis(d1, j[..., None], -1)[..., 0]
  with np.errstate(divide="ignore", invalid="ignore"):
    t = np.where(has, -a / (b - a), 0.0)
  x = np.exp(logp[j] + t * (logp[np.minimum(j + 1, len(logp) - 1)] - logp[j]))
  never = np.where(d[..., -1] > 0, -np.inf, np.inf)
  return np.where(has, x, never), has


def crossings(data, *, level: float = 0.9, num_resamples: int = 2000, seed: int = 0) -> dict:
  """``{(score, fraction): Interval}`` of the pool where keep-hard minus keep-easy first turns
  positive (over the pools where both exist; two or more pools). ``estimate`` is +-inf when the
  seed means do not cross; ``censored`` is the share of resamples without a crossing."""
  boot = _boot(data, num_resamples, seed)
  keys = boot.estimate
  out = {}
  for score, f in sorted({(k[1], k[3]) for k in keys if k[2] == "hard"}):
    pools = sorted(
      k[0] for k in keys if k[1:] == (score, "hard", f) and _key(k[0], score, "easy", f) in keys
    )
    if len(pools) < 2:
      continue
    hk = [_key(p, score, "hard", f) for p in pools]
    ek = [_key(p, score, "easy", f) for p in pools]
    est = np.array([boot.estimate[h] - boot.estimate[e] for h, e in zip(hk, ek)])
    smp = np.stack([boot.samples[h] - boot.samples[e] for h, e in zip(hk, ek)], axis=1)
    x0, _ = first_crossing(pools, est)
    x, _ = first_crossing(pools, smp)
    out[score, f] = interval(
      x,
      float(x0),
      level=level,
      seeds=boot.seeds_of(*hk, *ek),
      below=float(np.mean(x == -np.inf)),
      above=float(np.mean(x == np.inf)),
    )
  return out


def power_law_slopes(n_kept, acc) -> np.ndarray:
  """Least-squares slope of log(1 - acc) on log(n_kept) along the last axis of ``acc``
  (vectorised); NaN where an accuracy is 1."""
  x = np.log(np.asarray(n_kept, float))
  with np.errstate(divide="ignore", invalid="ignore"):
    y = np.log(1.0 - np.asarray(acc, float))
  y = np.where(np.isfinite(y), y, np.nan)
  xc = x - x.mean()
  return ((y - y.mean(-1, keepdims=True)) * xc).sum(-1) / (xc**2).sum()


def exponents(data, *, level: float = 0.9, num_resamples: int = 2000, seed: int = 0) -> dict:
  """``{(score, mode, fraction): {"exponent": Interval, "minus_full": Interval | None}}``: the
  power-law exponent of test error against examples kept over the pools (two or more distinct
  counts), and its difference from the full pool's exponent (``("full", "full", 1.0)``; over
  the full pool's own pools). A faster fall than the unpruned power law is ``minus_full < 0``."""
  boot = _boot(data, num_resamples, seed)
  keys = boot.estimate
  fits = {}
  for score, mode, f in sorted({k[1:] for k in keys}):
    ks = sorted((k for k in keys if k[1:] == (score, mode, f)), key=lambda k: boot.n_kept[k])
    n = [boot.n_kept[k] for k in ks]
    if len(set(n)) < 2:
      continue
    est = power_law_slopes(n, [boot.estimate[k] for k in ks])
    smp = power_law_slopes(n, np.stack([boot.samples[k] for k in ks], axis=1))
    fits[score, mode, f] = (float(est), smp, ks)
  full = fits.get(("full", "full", 1.0))
  out = {}
  for name, (est, smp, ks) in fits.items():
    rec = {"exponent": interval(smp, est, level=level, seeds=boot.seeds_of(*ks))}
    rec["minus_full"] = None
    if full is not None and name != ("full", "full", 1.0):
      rec["minus_full"] = interval(
        smp - full[1], est - full[0], level=level, seeds=boot.seeds_of(*ks, *full[2])
      )
    out[name] = rec
  return out


def best_fractions(
  data,
  *,
  mode: str = "hard",
  by: str = "count",
  complete: bool = False,
  level: float = 0.9,
  num_resamples: int = 2000,
  seed: int = 0,
) -> dict:
  """Per score: which fraction wins (lowest test error) at a fixed number kept (``by="count"``:
  every count reached by two or more (pool, fraction) pairs; the full pool is ``f = 1``) or at a
  fixed pool (``by="pool"``), with the bootstrap distribution of the winner.

  Returns ``{score: {"points": [{"at": K or pool, "best": f, "shares": {f: share of resamples
  won}, "fraction": Interval of the winning f}], "trend": Interval | None}}``; ``trend`` is the
  log-log slope of the winning fraction against ``at`` (three or more points; the paper's
  claim 3 is ``trend < 0``). ``complete``: only the points where every fraction of the score
  (the full pool's 1 included) competes; without it, small counts are reached from small
  fractions only (no pool is that small), which biases the trend upwards."""
  if by not in ("count", "pool"):
    raise ValueError(f"by {by!r} must be 'count' (a fixed number kept) or 'pool'")
  boot = _boot(data, num_resamples, seed)
  keys = boot.estimate
  full = {k[0]: k for k in keys if k[2] == "full"}
  out = {}
  for score in sorted({k[1] for k in keys if k[2] == mode}):
    groups: dict = {}
    for k in [k for k in keys if k[1] == score and k[2] == mode] + list(full.values()):
      at = boot.n_kept[k] if by == "count" else k[0]
      groups.setdefault(at, {})[k[3]] = k
    points, winners, ats = [], [], []
    every_f = {f for by_f in groups.values() for f in by_f}
    for at, by_f in sorted(groups.items()):
      if len(by_f) < 2 or (complete and set(by_f) != every_f):
        continue
      fs = np.array(sorted(by_f))
      ks = [by_f[f] for f in fs]
      est = np.array([boot.estimate[k] for k in ks])
      smp = np.stack([boot.samples[k] for k in ks], axis=1)
      win = fs[np.argmax(smp, axis=1)]  # the highest accuracy: the lowest error
      points.append(
        {
          "at": int(at),
          "best": float(fs[np.argmax(est)]),
          "shares": {float(f): float(np.mean(win == f)) for f in fs},
          "fraction": interval(
            win,
            fs[np.argmax(est)],
            level=level,
            seeds=boot.seeds_of(*ks),
            degenerate=boot.constant(*ks),
          ),
        }
      )
      winners.append((float(fs[np.argmax(est)]), win, ks))
      ats.append(at)
    trend = None
    if len(points) >= 3:
      x = np.log(np.asarray(ats, float))
      xc = x - x.mean()
      y0 = np.log([w[0] for w in winners])
      y = np.log(np.stack([w[1] for w in winners], axis=1))
      every = [k for w in winners for k in w[2]]
      trend = interval(
        ((y - y.mean(1, keepdims=True)) * xc).sum(1) / (xc**2).sum(),
        float(((y0 - y0.mean()) * xc).sum() / (xc**2).sum()),
        level=level,
        seeds=boot.seeds_of(*every),
        degenerate=boot.constant(*every),
      )
    out[score] = {"points": points, "trend": trend}
  return out
