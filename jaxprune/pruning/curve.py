"""Prune-then-train curves: test accuracy against the fraction of training data kept, for every
score, keep-hard and keep-easy, over several models (vmapped), with a random baseline and the
full-data reference.

Seed sources: classifier seeds (``seeds`` models per subset, vmapped; the same seeds on every
subset), scorer seeds (``scorer_seeds`` of the prototype scores, ``supervised_scorer_seeds`` of
the el2n / grand / forgetting ensemble) and pool draws (``pool_draws``, each its own nested
pools). The random baseline draws one random subset per (pool draw, pool, fraction), shared by
every scorer seed, so its per-seed rows carry scorer seed -1 (as the full-pool rows).
``per_seed.csv`` holds one row per trained classifier in :mod:`jaxprune.pruning.claims`'
schema, and ``scaling.json`` the bootstrap intervals over every seed source.

Steps per training run (``steps_rule``): ``fixed``, ``classifier.steps`` whatever the subset
(equal compute), or ``epochs``, ``ceil(epochs * n_kept / batch)`` (:func:`train_steps`: equal
passes over every subset).

Resumable: scores are cached in the work directory (``scores_<score>.npy``) and every finished
(pool draw, pool, score, mode, fraction, scorer seed) row is appended to ``results.jsonl``
(rows without ``pool_draw``, from before the pool draws, are draw 0); a restarted run skips
what is done.
A workdir holding results of another config (other than the fractions, modes and scores, which
a rerun may extend) stops with a :class:`jaxprune.core.run.ConfigMismatchError`; ``overwrite``
discards them instead: they are moved aside and deleted once the new run has stored the first
pool's scores (a run that fails before gives them back).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxprune.core import io
from jaxprune.core.config import field_defaults, to_dict
from jaxprune.core.run import ConfigMismatchError, Run, config_diff
from jaxprune.models.classifier import accuracy
from jaxprune.pruning import claims, keys, pool_scaling
from jaxprune.pruning import data as data_lib
from jaxprune.pruning.curve_config import CurveConfig
from jaxprune.pruning.embeddings import ssl_embeddings
from jaxprune.pruning.kmeans import check_embeddings, check_k
from jaxprune.pruning.kmeans_config import resolve_k
from jaxprune.pruning.scores import self_supervised_prototypes, supervised_prototypes
from jaxprune.pruning.select import select
from jaxprune.pruning.supervised import scoring_kwargs, supervised_metrics, train_classifiers

SUPERVISED = ("el2n", "grand", "forgetting")
# fields a rerun may change: it adds the rows it lacks, and the stored rows stay valid
MAY_CHANGE = (
  "fractions",
  "modes",
  "scores",
  "pool_sizes",
  "scorer_seeds",
  "supervised_scorer_seeds",
  "pool_draws",
  "progress",
  "overwrite",
  "workdir",
  "data_dir",
)


PROTOTYPES = ("ssl_prototypes", "supervised_prototypes")


def _score_path(workdir: str, score: str, pool: int = 0, scorer: int = 0, draw: int = 0) -> str:
  """Cached scores of one (pool draw, pool, score, scorer seed); pool 0 is the whole train
  split (draw 0 keeps the names of a single-draw job)."""
  tag = (f"pool{pool}_" if pool else "") + (f"d{draw}_" if draw else "")
  return os.path.join(workdir, f"scores_{tag}{score}" + (f"_s{scorer}" if scorer else "") + ".npy")


def _stored_results(workdir: str) -> list[str]:
  return [
    p
    for p in [os.path.join(workdir, "results.jsonl")] + glob.glob(_score_path(workdir, "*"))
    if os.path.exists(p)
  ]


def _check_resume(cfg: CurveConfig) -> None:
  """Stop before any work when the workdir's results come from another config."""
  path = os.path.join(cfg.workdir, "config.json")
  if not _stored_results(cfg.workdir) or not os.path.exists(path):
    return
  with open(path) as f:
    old = json.load(f)
  diff = config_diff(old, to_dict(cfg), MAY_CHANGE, defaults=field_defaults(cfg))
  if diff:
    raise ConfigMismatchError(
      f"{cfg.workdir} holds curve results of a run with a different config:\n  "
      + "\n  ".join(diff)
      + "\nUse a new workdir, or overwrite=True (--overwrite true on the command line) to "
      "discard them "
      f"(fields that may change on a rerun: {', '.join(MAY_CHANGE)})"
    )


def scorers(cfg: CurveConfig, score: str) -> range:
  """The scorer seeds of a score: ``scorer_seeds`` for the prototype scores, else
  ``supervised_scorer_seeds``."""
  return range(cfg.scorer_seeds if score in PROTOTYPES else cfg.supervised_scorer_seeds)


def train_steps(cfg: CurveConfig, n_kept: int) -> int:
  """Optimizer steps of one training run on ``n_kept`` examples: ``classifier.steps`` under
  ``steps_rule`` fixed; under epochs ``ceil(epochs * n_kept / batch)`` with ``batch =
  min(classifier.batch_size, n_kept)`` (the batch a run uses), at least
  ``classifier.steps_per_dispatch``."""
  clf = cfg.classifier
  if cfg.steps_rule == "fixed":
    return clf.steps
  batch = min(clf.batch_size, n_kept)
  return max(clf.steps_per_dispatch, math.ceil(cfg.epochs * n_kept / batch))


def steps_text(cfg: CurveConfig) -> str:
  """The step rule in words, for titles."""
  if cfg.steps_rule == "fixed":
    return f"{cfg.classifier.steps} steps per run"
  return f"{cfg.epochs:g} epochs per run (ceil(epochs n / batch) steps)"


def _embeddings(cfg: CurveConfig, train: data_lib.Dataset, scorer: int) -> np.ndarray:
  """The prototype scores' embedding of the whole train split for one scorer seed (the SimCLR
  encoder sees no labels, so one encoder serves every pool)."""
  if cfg.embedding == "pixels":
    return data_lib.pixel_embeddings(train.images)
  return ssl_embeddings(
    train.images,
    cfg=cfg.ssl,
    seed=cfg.seed + scorer,
    workdir=cfg.workdir if scorer == 0 else os.path.join(cfg.workdir, f"scorer{scorer}"),
    overwrite=cfg.overwrite,
    progress=cfg.progress,
  )


def compute_all_scores(
  cfg: CurveConfig,
  train: data_lib.Dataset,
  pool: np.ndarray | None = None,
  pool_size: int = 0,
  embeddings: dict | None = None,
  draw: int = 0,
) -> dict:
  """Every score of ``cfg.scores`` on the examples ``pool`` of the training set (all when
  None), cached as ``scores_[pool<n>_][d<draw>_]<score>[_s<scorer>].npy``: ``{(score, scorer):
  scores}``. ``embeddings`` (scorer seed -> the whole split's embeddings) is filled and reused
  across pools and draws, so each scorer's encoder embeds the split once per job."""
  pool = np.arange(train.size) if pool is None else pool
  wanted = [(sc, s) for sc in cfg.scores for s in scorers(cfg, sc)]
  path = lambda sc, s: _score_path(cfg.workdir, sc, pool_size, s, draw)
  out = {
    (sc, s): data_lib.load_npy(path(sc, s), what="cached scores file")
    for sc, s in wanted
    if os.path.exists(path(sc, s))
  }
  todo = [w for w in wanted if w not in out]
  labels = train.labels[pool]
  num_classes = int(train.labels.max()) + 1
  embeddings = {} if embeddings is None else embeddings
  for s in sorted({s for sc, s in todo if sc in PROTOTYPES}):
    if s not in embeddings:
      embeddings[s] = _embeddings(cfg, train, s)
    emb = embeddings[s][pool]
    check_embeddings(emb, distance=cfg.kmeans.distance)  # the values, before the work
    if ("ssl_prototypes", s) in todo:
      out["ssl_prototypes", s] = np.asarray(
        self_supervised_prototypes(
          emb,
          k=resolve_k(cfg.kmeans.k, n=len(pool), num_classes=num_classes),
          key=jax.random.fold_in(keys.job_key(cfg.seed, keys.KMEANS), s),
          **cfg.kmeans.kwargs(),
        )[0]
      )
    if ("supervised_prototypes", s) in todo:
      out["supervised_prototypes", s] = np.asarray(
        supervised_prototypes(emb, labels, distance=cfg.kmeans.distance, num_classes=num_classes)
      )
  for s in sorted({s for sc, s in todo if sc in SUPERVISED}):
    key = keys.job_key(cfg.seed, keys.SCORE_MODELS)  # scorer seed 0: the single-seed key
    sup = supervised_metrics(
      cfg.classifier,
      train.images[pool],
      labels,
      num_classes=num_classes,
      key=jax.random.fold_in(key, s) if s else key,
      **scoring_kwargs(cfg),
      which=tuple(sc for sc in SUPERVISED if (sc, s) in todo),
      progress=cfg.progress,
    )
    out.update({(sc, s): sup[sc] for sc in sup})
  for w in todo:
    io.save_npy(path(*w), out[w])
  return {w: out[w] for w in wanted}


def _load(cfg: CurveConfig):
  train, test = data_lib.load_train_test(
    cfg.data, data_dir=cfg.data_dir, max_examples=cfg.max_examples, progress=cfg.progress
  )
  if cfg.image_size is not None:
    train = train._replace(images=data_lib.downsample(train.images, cfg.image_size))
    test = test._replace(images=data_lib.downsample(test.images, cfg.image_size))
  return train, test


def pools(cfg: CurveConfig, n: int, draw: int = 0) -> list[tuple[int, np.ndarray | None]]:
  """``[(pool size, row indices)]`` of pool draw ``draw``: nested random pools (the first
  ``size`` of the draw's permutation, seeded by ``cfg.seed`` for draw 0 and by ``(cfg.seed,
  draw)`` for the others), or ``[(0, None)]`` for the whole train split."""
  if not cfg.pool_sizes:
    return [(0, None)]
  too_big = [p for p in cfg.pool_sizes if p > n]
  if too_big:
    raise ValueError(f"pool_sizes {too_big} exceed the train split's {n} examples")
  rng = np.random.default_rng(cfg.seed if draw == 0 else (cfg.seed, draw))
  perm = rng.permutation(n)
  return [(p, np.sort(perm[:p])) for p in sorted(cfg.pool_sizes)]


def run(cfg: CurveConfig) -> list[dict]:
  """Run (or resume) the whole curve (every pool draw and pool); returns the result rows, one
  per (pool draw, pool, score, mode, fraction, scorer seed), and writes the outputs
  (:func:`write_outputs`, ``per_seed.csv`` of this config's rows)."""
  # the lock (one job per workdir); overwrite moves the stored results aside until the first
  # pool's scores are stored (given back if the job fails before, see jaxprune.core.run)
  with Run(cfg.workdir, config=cfg, overwrite=cfg.overwrite) as job:
    _check_resume(cfg)
    train, test = _load(cfg)
    the_pools = pools(cfg, train.size)
    if "ssl_prototypes" in cfg.scores:
      n_min = min(len(p) if p is not None else train.size for _, p in the_pools)
      check_k(resolve_k(cfg.kmeans.k, n=n_min, num_classes=int(train.labels.max()) + 1), n_min)
    io.save_json(os.path.join(cfg.workdir, "config.json"), to_dict(cfg))
    rows, embeddings = [], {}
    for draw in range(cfg.pool_draws):
      for size, pool in pools(cfg, train.size, draw) if draw else the_pools:
        scores = compute_all_scores(cfg, train, pool, size, embeddings, draw)
        job.discard_replaced()  # the new run has stored work: the old run's results go
        rows = _run_points(cfg, train, test, scores, pool, size, draw)
    draws = f", {cfg.pool_draws} pool draws" if cfg.pool_draws > 1 else ""
    write_outputs(
      cfg.workdir,
      rows,
      title=f"{train.name}: {cfg.classifier.model}, {steps_text(cfg)}, {cfg.seeds} models" + draws,
      per_seed=per_seed_rows(rows, cfg),
    )
  return rows


def _run_points(
  cfg: CurveConfig,
  train: data_lib.Dataset,
  test: data_lib.Dataset,
  scores: dict,
  pool: np.ndarray | None = None,
  pool_size: int = 0,
  draw: int = 0,
) -> list[dict]:
  """Train ``cfg.seeds`` models (:func:`train_steps` steps each) on every (score, mode,
  fraction, scorer) subset of pool draw ``draw``'s pool not done yet; returns all rows stored
  so far (every pool and draw)."""
  pool = np.arange(train.size) if pool is None else pool
  labels = train.labels[pool]
  fractions = sorted(set(cfg.fractions))
  points = [("full", "-", 1.0, 0)]
  for f in fractions:
    if f < 1.0:
      points += [(sc, mode, f, s) for (sc, s) in scores for mode in cfg.modes]
      points += [("random", "random", f, 0)]
  results_path = os.path.join(cfg.workdir, "results.jsonl")
  rows = io.read_jsonl(results_path)
  done = {_row_key(r) for r in rows}
  num_classes = int(train.labels.max()) + 1
  models_key = keys.job_key(cfg.seed, keys.TRAIN_MODELS)  # the same models for every subset
  select_key = keys.job_key(cfg.seed, keys.SELECT)  # the random subsets; folded per draw > 0
  select_key = jax.random.fold_in(select_key, draw) if draw else select_key
  desc = f"prune curve (pool {pool_size})" if pool_size else "prune curve"
  desc += f" draw {draw}" if draw else ""
  for score, mode, f, s in tqdm(points, desc=desc, unit="run", disable=not cfg.progress):
    if (pool_size, score, mode, f, s, draw) in done:
      continue
    t0 = time.perf_counter()
    if score == "full":
      kept = np.arange(len(pool))
    else:
      kept = select(
        np.zeros(len(pool)) if score == "random" else scores[score, s],
        fraction=f,
        mode=mode,
        key=select_key,
        labels=labels if cfg.class_balance > 0 else None,
        class_balance=cfg.class_balance,
        tie_key=keys.job_key(cfg.seed, keys.TIES),
      )
    steps = train_steps(cfg, len(kept))
    clf_cfg = cfg.classifier
    clf_cfg = clf_cfg if steps == clf_cfg.steps else dataclasses.replace(clf_cfg, steps=steps)
    clf, params = train_classifiers(
      clf_cfg,
      train.images[pool[kept]],
      labels[kept],
      num_classes=num_classes,
      key=models_key,
      num_models=cfg.seeds,
    )
    acc = accuracy(clf, params, test.images, test.labels)
    row = {
      "pool": int(len(pool)),
      "pool_size": int(pool_size),
      "pool_draw": int(draw),
      "score": score,
      "mode": mode,
      "fraction": f,
      "scorer": s,
      "n_kept": int(len(kept)),
      "steps": int(steps),
      "acc_mean": float(acc.mean()),
      "acc_std": float(acc.std()),
      "acc_seeds": [float(a) for a in acc],
      "seconds": time.perf_counter() - t0,
    }
    io.append_jsonl(results_path, [row])
    rows.append(row)
  return rows


def _row_key(r: dict) -> tuple:
  """(pool size as configured, 0 for the whole split; score, mode, fraction, scorer seed, pool
  draw: 0 for rows from before the pool draws)."""
  return (
    r.get("pool_size", 0),
    r["score"],
    r["mode"],
    r["fraction"],
    r.get("scorer", 0),
    r.get("pool_draw", 0),
  )


def per_seed_rows(rows: list[dict], cfg: CurveConfig | None = None) -> list[dict]:
  """The per-seed table (:data:`jaxprune.pruning.claims.COLUMNS`, one row per trained
  classifier) of ``results.jsonl`` rows: :func:`claims.from_curve_rows` with ``pool_seed`` the
  row's pool draw (-1 for the whole split). Random and full rows have scorer seed -1 (one random
  subset per pool draw, pool and fraction, shared by the scorer seeds). Given ``cfg``, only the
  rows of its pools, draws, scores, scorer seeds, modes and fractions (a workdir may hold more
  from an earlier config), so every cell holds every seed combination."""
  if cfg is not None:
    fracs = set(cfg.fractions) | {1.0}
    sizes = set(cfg.pool_sizes) or {0}

    def wanted(r):
      score = r["score"]
      return (
        r.get("pool_size", 0) in sizes
        and r.get("pool_draw", 0) < cfg.pool_draws
        and r["fraction"] in fracs
        and (
          score in ("full", "random")
          or score in cfg.scores
          and r["mode"] in cfg.modes
          and r.get("scorer", 0) in scorers(cfg, score)
        )
      )

    rows = [r for r in rows if wanted(r)]
  return claims.from_curve_rows(rows)


def aggregate(rows: list[dict]) -> list[dict]:
  """One row per (pool, score, mode, fraction): accuracies of every classifier seed under every
  scorer seed and pool draw pooled (``acc_mean``, ``acc_std``); ``scorers`` and ``draws``, the
  scorer seeds and pool draws behind it, and ``scorer_std``, the spread of the per-(pool draw,
  scorer seed) means (0 with one of each)."""
  groups: dict = {}
  for r in rows:
    groups.setdefault((r.get("pool", 0), r["score"], r["mode"], r["fraction"]), []).append(r)
  out = []
  for (pool, score, mode, f), rs in sorted(groups.items(), key=lambda kv: str(kv[0])):
    accs = np.concatenate([r["acc_seeds"] for r in rs])
    out.append(
      {
        "pool": pool,
        "score": score,
        "mode": mode,
        "fraction": f,
        "n_kept": rs[0]["n_kept"],
        "scorers": len({r.get("scorer", 0) for r in rs}),
        "draws": len({r.get("pool_draw", 0) for r in rs}),
        "acc_mean": float(accs.mean()),
        "acc_std": float(accs.std()),
        "scorer_std": float(np.std([r["acc_mean"] for r in rs])),
      }
    )
  return out


def table(rows: list[dict]) -> str:
  """Per pool, rows (score, mode) x columns (fraction): 'mean +- std' test accuracy in percent
  over classifier seeds x scorer seeds x pool draws (``[spread]`` of the per-(draw, scorer)
  means too where there are several)."""
  agg = aggregate(rows)
  blocks = []
  for pool in sorted({r["pool"] for r in agg}):
    these = [r for r in agg if r["pool"] == pool]
    fracs = sorted({r["fraction"] for r in these})
    order = sorted({(r["score"], r["mode"]) for r in these}, key=lambda k: (k[0] == "full", k))
    cell = {(r["score"], r["mode"], r["fraction"]): r for r in these}
    head = f"{'score':<22}{'mode':<7}" + "".join(f"{f:>20g}" for f in fracs)
    lines = [f"pool of {pool} training examples", head, "-" * len(head)]
    for sc, mode in order:
      vals = []
      for f in fracs:
        r = cell.get((sc, mode, f))
        v = f"{100 * r['acc_mean']:6.2f}+-{100 * r['acc_std']:4.2f}" if r else ""
        if r and r["scorers"] * r.get("draws", 1) > 1:
          v += f" [{100 * r['scorer_std']:4.2f}]"
        vals.append(v)
      lines.append(f"{sc:<22}{mode:<7}" + "".join(f"{v:>20}" for v in vals))
    blocks.append("\n".join(lines))
  return "\n\n".join(blocks)


def write_outputs(
  workdir: str, rows: list[dict], *, title: str = "", per_seed: list[dict] | None = None
) -> None:
  """``results.csv`` (aggregated), ``table.txt`` (under ``title``: the run's step rule and
  seeds), ``accuracy_vs_fraction.png`` (the largest pool), given ``per_seed`` rows
  (:func:`per_seed_rows`) ``per_seed.csv`` and, with two or more pools, the scaling figures and
  ``scaling.json`` (:mod:`jaxprune.pruning.pool_scaling`; with bootstrap intervals over every
  seed source given ``per_seed``)."""
  from jaxprune.pruning import plots  # matplotlib, loaded only when writing figures

  agg = aggregate(rows)
  cols = ("pool", "score", "mode", "fraction", "n_kept", "scorers", "acc_mean", "acc_std")
  io.save_csv(
    os.path.join(workdir, "results.csv"),
    {k: [r[k] for r in agg] for k in cols + ("scorer_std", "draws")},
  )
  if per_seed is not None:
    io.save_csv(
      os.path.join(workdir, "per_seed.csv"), {c: [r[c] for r in per_seed] for c in claims.COLUMNS}
    )
  head = f"{title}\n\n" if title else ""  # the run's data, model, step rule and seeds
  io.save_text(os.path.join(workdir, "table.txt"), head + table(rows) + "\n")
  largest = max(r["pool"] for r in agg)
  fig = plots.accuracy_vs_fraction([r for r in agg if r["pool"] == largest], title=title)
  io.save_figure(os.path.join(workdir, "accuracy_vs_fraction.png"), fig)
  plots.close(fig)
  if len({r["pool"] for r in agg}) >= 2:
    pool_scaling.write(workdir, agg, title=title, per_seed=per_seed or None)
