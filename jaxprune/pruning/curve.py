"""Prune-then-train curves: test accuracy against the fraction of training data kept, for every
score, keep-hard and keep-easy, over several models (vmapped), with a random baseline and the
full-data reference.

Resumable: scores are cached in the work directory (``scores_<score>.npy``) and every finished
(score, mode, fraction) row is appended to ``results.jsonl``; a restarted run skips what is done.
A workdir holding results of another config (other than the fractions, modes and scores, which
a rerun may extend) stops with a :class:`jaxprune.core.run.ConfigMismatchError`; ``overwrite``
discards them instead.
"""

from __future__ import annotations

import glob
import json
import os
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from jaxprune.core import io
from jaxprune.core.config import check_finite, require, to_dict
from jaxprune.core.run import ConfigMismatchError, Run, config_diff
from jaxprune.models.classifier import ClassifierConfig, accuracy
from jaxprune.pruning import data as data_lib
from jaxprune.pruning import keys
from jaxprune.pruning.embeddings import SSLConfig
from jaxprune.pruning.kmeans import check_k
from jaxprune.pruning.scores import self_supervised_prototypes, supervised_prototypes
from jaxprune.pruning.select import select
from jaxprune.pruning.supervised import supervised_metrics, train_classifiers

SCORES = ("ssl_prototypes", "supervised_prototypes", "el2n", "grand", "forgetting")
SUPERVISED = ("el2n", "grand", "forgetting")
MODES = ("hard", "easy")
# fields a rerun may change: it adds the rows it lacks, and the stored rows stay valid
MAY_CHANGE = ("fractions", "modes", "scores", "progress", "overwrite", "workdir", "data_dir")


@dataclass(frozen=True)
class CurveConfig:
  """Accuracy vs fraction kept, for fractions x modes x scores x models."""

  data: str = "digits"
  """digits (bundled, fixed train/test split) | a TFDS name (train/test splits)"""
  data_dir: str | None = None
  """TFDS data_dir"""
  max_examples: int | None = None
  """use at most this many examples of each split (TFDS)"""
  fractions: tuple[float, ...] = (0.1, 0.2, 0.4, 0.6, 0.8)
  """fractions kept, each in (0, 1] (1.0, the full data, is always run)"""
  modes: tuple[Literal["hard", "easy"], ...] = ("hard", "easy")
  """keep the hardest and / or the easiest"""
  scores: tuple[
    Literal["ssl_prototypes", "supervised_prototypes", "el2n", "grand", "forgetting"], ...
  ] = SCORES
  """pruning scores compared (the random baseline always runs)"""
  seeds: int = 3
  """models per point, vmapped"""
  classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
  """the model trained on every subset (and behind el2n / grand / forgetting)"""
  embedding: Literal["ssl", "pixels"] = "ssl"
  """embedding space of the prototype scores"""
  ssl: SSLConfig = field(default_factory=SSLConfig)
  """the SimCLR encoder of --embedding ssl"""
  distance: Literal["cosine", "euclidean"] = "cosine"
  """distance of the prototype scores"""
  k: int | None = None
  """k-means clusters; None: the number of classes"""
  score_epochs: int = 10
  """epochs the models behind el2n / grand / forgetting train"""
  score_models: int = 4
  """models (vmapped) averaged by el2n / grand / forgetting"""
  class_balance: float = 0.0
  """each class keeps at least this share of its proportional quota, in [0, 1]"""
  seed: int = 0
  """root of every key of the job (k-means, random subsets, SimCLR, models)"""
  workdir: str = "runs/curve"
  """output directory"""
  overwrite: bool = False
  """discard the results of another config stored in workdir instead of stopping"""
  progress: bool = True
  """show progress bars"""

  def __post_init__(self):
    check_finite(self)
    require(
      len(self.fractions) > 0 and all(0.0 < f <= 1.0 for f in self.fractions),
      f"fractions must be non-empty and each in (0, 1], got {self.fractions}",
    )
    require(
      len(self.modes) > 0 and all(m in MODES for m in self.modes),
      f"modes must be non-empty, each one of {MODES}, got {self.modes}",
    )
    require(
      all(s in SCORES for s in self.scores),
      f"scores must each be one of {SCORES}, got {self.scores}",
    )
    require(
      self.embedding in ("ssl", "pixels"),
      f"embedding must be ssl or pixels, got {self.embedding!r}",
    )
    require(
      self.distance in ("cosine", "euclidean"),
      f"distance must be cosine or euclidean, got {self.distance!r}",
    )
    for name in ("k", "max_examples"):
      v = getattr(self, name)
      require(v is None or v >= 1, f"{name} must be >= 1, got {v}")
    for name in ("seeds", "score_epochs", "score_models"):
      v = getattr(self, name)
      require(v >= 1, f"{name} must be >= 1, got {v}")
    require(
      0.0 <= self.class_balance <= 1.0, f"class_balance must be in [0, 1], got {self.class_balance}"
    )


def _score_path(workdir: str, score: str) -> str:
  return os.path.join(workdir, f"scores_{score}.npy")


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
  diff = config_diff(old, to_dict(cfg), MAY_CHANGE)
  if diff:
    raise ConfigMismatchError(
      f"{cfg.workdir} holds curve results of a run with a different config:\n  "
      + "\n  ".join(diff)
      + "\nUse a new --workdir, or --overwrite true to discard them "
      f"(fields that may change on a rerun: {', '.join(MAY_CHANGE)})"
    )


def compute_all_scores(cfg: CurveConfig, train: data_lib.Dataset) -> dict:
  """Every score of ``cfg.scores`` on the training set, cached as ``scores_<score>.npy``."""
  out = {
    s: data_lib.load_npy(_score_path(cfg.workdir, s), what="cached scores file")
    for s in cfg.scores
    if os.path.exists(_score_path(cfg.workdir, s))
  }
  todo = [s for s in cfg.scores if s not in out]
  num_classes = int(train.labels.max()) + 1
  if {"ssl_prototypes", "supervised_prototypes"} & set(todo):
    if cfg.embedding == "ssl":
      from jaxprune.pruning.embeddings import ssl_embeddings

      emb = ssl_embeddings(
        train.images,
        cfg=cfg.ssl,
        seed=cfg.seed,
        workdir=cfg.workdir,
        overwrite=cfg.overwrite,
        progress=cfg.progress,
      )
    else:
      emb = data_lib.pixel_embeddings(train.images)
    if "ssl_prototypes" in todo:
      out["ssl_prototypes"] = np.asarray(
        self_supervised_prototypes(
          emb,
          k=cfg.k or num_classes,
          key=keys.job_key(cfg.seed, keys.KMEANS),
          distance=cfg.distance,
        )[0]
      )
    if "supervised_prototypes" in todo:
      out["supervised_prototypes"] = np.asarray(
        supervised_prototypes(emb, train.labels, distance=cfg.distance)
      )
  if set(SUPERVISED) & set(todo):
    sup = supervised_metrics(
      cfg.classifier,
      train.images,
      train.labels,
      num_classes=num_classes,
      key=keys.job_key(cfg.seed, keys.SCORE_MODELS),
      num_models=cfg.score_models,
      epochs=cfg.score_epochs,
      progress=cfg.progress,
    )
    out.update({s: v for s, v in sup.items() if s in todo})
  for s in todo:
    io.save_npy(_score_path(cfg.workdir, s), out[s])
  return {s: out[s] for s in cfg.scores}


def run(cfg: CurveConfig) -> list[dict]:
  """Run (or resume) the whole curve; returns the result rows."""
  # the lock (one job per workdir); overwrite applies to what this job stores, not to the
  # workdir's own checkpoints, which it never writes
  with Run(cfg.workdir, config=cfg):
    if cfg.overwrite:
      for p in _stored_results(cfg.workdir):
        os.remove(p)
    _check_resume(cfg)
    train, test = data_lib.load_train_test(
      cfg.data, data_dir=cfg.data_dir, max_examples=cfg.max_examples, progress=cfg.progress
    )
    if "ssl_prototypes" in cfg.scores:
      check_k(cfg.k or int(train.labels.max()) + 1, train.size)
    io.save_json(os.path.join(cfg.workdir, "config.json"), to_dict(cfg))
    rows = _run_points(cfg, train, test, compute_all_scores(cfg, train))
    write_outputs(
      cfg.workdir,
      rows,
      title=f"{train.name}: {cfg.classifier.model}, "
      f"{cfg.classifier.steps} steps, {cfg.seeds} models",
    )
  return rows


def _run_points(
  cfg: CurveConfig, train: data_lib.Dataset, test: data_lib.Dataset, scores: dict
) -> list[dict]:
  """Train ``cfg.seeds`` models on every (score, mode, fraction) subset not done yet."""
  fractions = sorted(set(cfg.fractions))
  points = [("full", "-", 1.0)]
  for f in fractions:
    if f < 1.0:
      points += [(s, mode, f) for s in scores for mode in cfg.modes] + [("random", "random", f)]
  results_path = os.path.join(cfg.workdir, "results.jsonl")
  rows = io.read_jsonl(results_path)
  done = {(r["score"], r["mode"], r["fraction"]) for r in rows}
  num_classes = int(train.labels.max()) + 1
  models_key = keys.job_key(cfg.seed, keys.TRAIN_MODELS)  # the same models for every subset
  for score, mode, f in tqdm(points, desc="prune curve", unit="run", disable=not cfg.progress):
    if (score, mode, f) in done:
      continue
    t0 = time.perf_counter()
    if score == "full":
      kept = np.arange(train.size)
    else:
      s = np.zeros(train.size) if score == "random" else scores[score]
      kept = select(
        s,
        fraction=f,
        mode=mode,
        key=keys.job_key(cfg.seed, keys.SELECT),
        labels=train.labels if cfg.class_balance > 0 else None,
        class_balance=cfg.class_balance,
      )
    clf, params = train_classifiers(
      cfg.classifier,
      train.images[kept],
      train.labels[kept],
      num_classes=num_classes,
      key=models_key,
      num_models=cfg.seeds,
    )
    acc = accuracy(clf, params, test.images, test.labels)
    row = {
      "score": score,
      "mode": mode,
      "fraction": f,
      "n_kept": int(len(kept)),
      "acc_mean": float(acc.mean()),
      "acc_std": float(acc.std()),
      "acc_seeds": [float(a) for a in acc],
      "seconds": time.perf_counter() - t0,
    }
    io.append_jsonl(results_path, [row])
    rows.append(row)
  return rows


def table(rows: list[dict]) -> str:
  """Rows (score, mode) x columns (fraction): 'mean +- std' test accuracy in percent."""
  fracs = sorted({r["fraction"] for r in rows})
  order = sorted({(r["score"], r["mode"]) for r in rows}, key=lambda k: (k[0] == "full", k))
  cell = {(r["score"], r["mode"], r["fraction"]): r for r in rows}
  head = f"{'score':<22}{'mode':<7}" + "".join(f"{f:>14g}" for f in fracs)
  lines = [head, "-" * len(head)]
  for s, mode in order:
    vals = []
    for f in fracs:
      r = cell.get((s, mode, f))
      vals.append(f"{100 * r['acc_mean']:6.2f}+-{100 * r['acc_std']:4.2f}" if r else "")
    lines.append(f"{s:<22}{mode:<7}" + "".join(f"{v:>14}" for v in vals))
  return "\n".join(lines)


def write_outputs(workdir: str, rows: list[dict], *, title: str = "") -> None:
  """``results.csv``, ``table.txt`` and ``accuracy_vs_fraction.png``."""
  from jaxprune.pruning import plots

  io.save_csv(
    os.path.join(workdir, "results.csv"),
    {
      k: [r[k] for r in rows]
      for k in ("score", "mode", "fraction", "n_kept", "acc_mean", "acc_std")
    },
  )
  io.save_text(os.path.join(workdir, "table.txt"), table(rows) + "\n")
  fig = plots.accuracy_vs_fraction(rows, title=title)
  io.save_figure(os.path.join(workdir, "accuracy_vs_fraction.png"), fig)
  plots.close(fig)
