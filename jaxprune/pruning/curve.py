"""Prune-then-train curves: test accuracy against the fraction of training data kept, for every
metric, keep-hard and keep-easy, over several seeds (vmapped), with a random baseline and the
full-data reference.

Resumable: scores are cached in the work directory and every finished (metric, mode, fraction)
row is appended to ``results.jsonl``; a restarted run skips what is done.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxprune.pruning import classifiers as classify
from jaxprune.pruning import data as data_lib
from jaxprune.core import io
from jaxprune.pruning.kmeans import check_k
from jaxprune.pruning.scores import self_supervised_prototypes, supervised_prototypes
from jaxprune.pruning.select import check_fraction, select

METRICS = ("ssl_prototypes", "supervised_prototypes", "el2n", "grand", "forgetting")


@dataclass(frozen=True)
class CurveConfig:
  """Accuracy vs fraction kept, for fractions x modes x metrics x seeds."""

  data: str = field(default="digits", metadata={"help": "digits | a TFDS name (train/test)"})
  data_dir: str | None = None
  max_examples: int | None = None
  fractions: str = field(default="0.1,0.2,0.4,0.6,0.8", metadata={
      "help": "comma-separated fractions kept (1.0, the full data, is always run)"})
  modes: str = "hard,easy"
  metrics: str = field(default=",".join(METRICS), metadata={
      "help": "comma-separated subset of " + ", ".join(METRICS) + " (random always runs)"})
  seeds: int = field(default=3, metadata={"help": "models per point, vmapped"})
  model: str = "cnn"
  steps: int = field(default=300, metadata={"help": "training steps per model (equal compute)"})
  batch_size: int = 64
  lr: float = 3e-3
  augment: bool = False
  embedding: str = field(default="ssl", metadata={
      "help": "embedding space of the prototype metrics: ssl | pixels"})
  ssl_steps: int = 400
  k: int | None = field(default=None, metadata={"help": "k-means clusters (default: classes)"})
  score_epochs: int = 10
  score_models: int = 4
  class_balance: float = 0.0
  workdir: str = "runs/curve"
  progress: bool = True


def _parse_list(s: str, cast=str):
  return [cast(v.strip()) for v in s.split(",") if v.strip()]


def compute_all_scores(cfg: CurveConfig, train: data_lib.Dataset, clf_cfg) -> dict:
  """Every metric's scores on the training set, cached as ``scores_<metric>.npy``."""
  metrics = _parse_list(cfg.metrics)
  bad = [m for m in metrics if m not in METRICS]
  if bad:
    raise ValueError(f"unknown metrics {bad}; choose from {METRICS}")
  path = lambda m: os.path.join(cfg.workdir, f"scores_{m}.npy")
  out = {m: np.load(path(m)) for m in metrics if os.path.exists(path(m))}
  todo = [m for m in metrics if m not in out]
  num_classes = int(train.labels.max()) + 1
  if {"ssl_prototypes", "supervised_prototypes"} & set(todo):
    if cfg.embedding == "ssl":
      from jaxprune.pruning.embeddings import SSLConfig, ssl_embeddings
      emb = ssl_embeddings(train.images, cfg=SSLConfig(steps=cfg.ssl_steps),
                           workdir=cfg.workdir, progress=cfg.progress)
    else:
      emb = data_lib.pixel_embeddings(train.images)
    if "ssl_prototypes" in todo:
      k = cfg.k or num_classes
      check_k(k, train.size)
      out["ssl_prototypes"] = np.asarray(self_supervised_prototypes(
          emb, k=k, key=jax.random.key(0))[0])
    if "supervised_prototypes" in todo:
      out["supervised_prototypes"] = np.asarray(supervised_prototypes(emb, train.labels))
  if {"el2n", "grand", "forgetting"} & set(todo):
    sup = classify.supervised_metrics(clf_cfg, train.images, train.labels,
                                      num_classes=num_classes, seeds=range(cfg.score_models),
                                      epochs=cfg.score_epochs, progress=cfg.progress)
    out.update({m: v for m, v in sup.items() if m in todo})
  for m in todo:
    io.save_npy(path(m), out[m])
  return out


def run(cfg: CurveConfig) -> list[dict]:
  """Run (or resume) the whole curve; returns the result rows."""
  fractions = sorted(set(_parse_list(cfg.fractions, float)))
  for f in fractions:
    check_fraction(f)
  modes = _parse_list(cfg.modes)
  for m in modes:
    if m not in ("hard", "easy"):
      raise ValueError(f"modes must be hard and/or easy, got {m!r}")
  os.makedirs(cfg.workdir, exist_ok=True)
  io.save_json(os.path.join(cfg.workdir, "config.json"), cfg)
  train, test = data_lib.load_train_test(cfg.data, data_dir=cfg.data_dir,
                                         max_examples=cfg.max_examples, progress=cfg.progress)
  clf_cfg = classify.ClassifierConfig(model=cfg.model, steps=cfg.steps,
                                      batch_size=cfg.batch_size, lr=cfg.lr, augment=cfg.augment)
  scores = compute_all_scores(cfg, train, clf_cfg)
  num_classes = int(train.labels.max()) + 1

  jobs = [("full", "-", 1.0)]
  for f in fractions:
    if f < 1.0:
      jobs += [(m, mode, f) for m in scores for mode in modes] + [("random", "random", f)]
  results_path = os.path.join(cfg.workdir, "results.jsonl")
  rows = io.read_jsonl(results_path)
  done = {(r["metric"], r["mode"], r["fraction"]) for r in rows}
  seeds = list(range(cfg.seeds))
  for metric, mode, f in tqdm(jobs, desc="prune curve", unit="run", disable=not cfg.progress):
    if (metric, mode, f) in done:
      continue
    t0 = time.perf_counter()
    if metric == "full":
      kept = np.arange(train.size)
    else:
      s = np.zeros(train.size) if metric == "random" else scores[metric]
      kept = select(s, fraction=f, mode=mode, key=jax.random.key(1234),
                    labels=train.labels if cfg.class_balance > 0 else None,
                    class_balance=cfg.class_balance)
    clf, params = classify.train(clf_cfg, train.images[kept], train.labels[kept],
                                 num_classes=num_classes, seeds=seeds)
    acc = classify.accuracy(clf, params, test.images, test.labels)
    row = {"metric": metric, "mode": mode, "fraction": f, "n_kept": int(len(kept)),
           "acc_mean": float(acc.mean()), "acc_std": float(acc.std()),
           "acc_seeds": [float(a) for a in acc], "seconds": time.perf_counter() - t0}
    io.append_jsonl(results_path, [row])
    rows.append(row)
  write_outputs(cfg.workdir, rows, title=f"{train.name}: {cfg.model}, {cfg.steps} steps, "
                                         f"{cfg.seeds} seeds")
  return rows


def table(rows: list[dict]) -> str:
  """Rows (metric, mode) x columns (fraction): 'mean +- std' test accuracy in percent."""
  fracs = sorted({r["fraction"] for r in rows})
  keys = sorted({(r["metric"], r["mode"]) for r in rows}, key=lambda k: (k[0] == "full", k))
  cell = {(r["metric"], r["mode"], r["fraction"]): r for r in rows}
  head = f"{'metric':<22}{'mode':<7}" + "".join(f"{f:>14g}" for f in fracs)
  lines = [head, "-" * len(head)]
  for m, mode in keys:
    vals = []
    for f in fracs:
      r = cell.get((m, mode, f))
      vals.append(f"{100 * r['acc_mean']:6.2f}+-{100 * r['acc_std']:4.2f}" if r else "")
    lines.append(f"{m:<22}{mode:<7}" + "".join(f"{v:>14}" for v in vals))
  return "\n".join(lines)


def write_outputs(workdir: str, rows: list[dict], *, title: str = "") -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  io.save_csv(os.path.join(workdir, "results.csv"),
              {k: [r[k] for r in rows] for k in ("metric", "mode", "fraction", "n_kept",
                                                 "acc_mean", "acc_std")})
  with io.atomic_path(os.path.join(workdir, "table.txt")) as tmp, open(tmp, "w") as fh:
    fh.write(table(rows) + "\n")
  modes = sorted({r["mode"] for r in rows} - {"random", "-"})
  full = [r for r in rows if r["metric"] == "full"]
  fig, axes = plt.subplots(1, max(1, len(modes)), figsize=(6 * max(1, len(modes)), 4),
                           squeeze=False)
  for ax, mode in zip(axes[0], modes or ["hard"]):
    for metric in sorted({r["metric"] for r in rows if r["mode"] in (mode, "random")}):
      pts = sorted((r["fraction"], r["acc_mean"], r["acc_std"]) for r in rows
                   if r["metric"] == metric and r["mode"] in (mode, "random"))
      pts += [(1.0, full[0]["acc_mean"], full[0]["acc_std"])] if full else []
      f, m, s = map(np.asarray, zip(*pts))
      style = dict(color="k", ls="--") if metric == "random" else {}
      ax.errorbar(f, 100 * m, yerr=100 * s, marker="o", ms=3, capsize=2, label=metric, **style)
    ax.set_xlabel("fraction of training data kept")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"keep {mode}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle(title)
  fig.tight_layout()
  io.save_figure(os.path.join(workdir, "accuracy_vs_fraction.png"), fig)
  plt.close(fig)
