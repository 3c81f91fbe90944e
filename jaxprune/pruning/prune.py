"""The main job: score a dataset's examples, keep a fraction, and write the results.

``run(PruneConfig(...))`` loads the data, computes embeddings (given, or standardised pixels),
scores every example, selects the kept subset, and writes to ``workdir``:

* ``scores.npz`` / ``scores.csv``: id, label, cluster, score and kept flag per example, in the
  dataset's original order;
* ``kept_indices.npy``: row indices of the kept examples (sorted);
* ``config.json``, ``summary.json``; ``hardness_hist.png``; ``extremes.png`` when there are images.
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field

import jax
import numpy as np

from jaxprune.pruning import data as data_lib
from jaxprune.core import io
from jaxprune.pruning import scores as scores_lib
from jaxprune.pruning.select import select
from jaxprune.core.sharding import data_mesh

SCORES = ("ssl_prototypes", "supervised_prototypes", "el2n", "grand", "forgetting", "random")
SUPERVISED = ("el2n", "grand", "forgetting")
EMBEDDINGS = ("pixels", "ssl")


@dataclass(frozen=True)
class PruneConfig:
  """Score and prune a dataset with (self-)supervised prototypes."""

  data: str = field(default="digits", metadata={"help": "digits | a TFDS name | a .npy/.npz file"})
  data_dir: str | None = field(default=None, metadata={"help": "TFDS data_dir"})
  split: str = "train"
  max_examples: int | None = None
  embeddings: str | None = field(default=None, metadata={
      "help": ".npy/.npz embeddings, one row per example (overrides --embedding)"})
  embedding: str = field(default="pixels", metadata={
      "help": "embeddings when none are given: pixels (standardised) | ssl (SimCLR encoder "
              "trained through the loop)"})
  ssl_steps: int = field(default=400, metadata={"help": "SimCLR training steps (--embedding ssl)"})
  score_epochs: int = field(default=10, metadata={
      "help": "epochs the models behind el2n / grand / forgetting train"})
  score_models: int = field(default=4, metadata={
      "help": "models (seeds, vmapped) averaged by el2n / grand / forgetting"})
  score: str = field(default="ssl_prototypes", metadata={"help": " | ".join(SCORES)})
  metric: str = field(default="cosine", metadata={"help": "cosine | euclidean"})
  k: int | None = field(default=None, metadata={
      "help": "clusters (default: number of classes, else 100)"})
  fraction: float = field(default=0.5, metadata={"help": "fraction kept, in (0, 1]"})
  mode: str = field(default="hard", metadata={"help": "hard | easy | random"})
  class_balance: float = field(default=0.0, metadata={
      "help": "each class keeps at least this share of its proportional quota"})
  seed: int = 0
  n_init: int = 1
  max_iter: int = 100
  tol: float = 1e-4
  chunk_size: int = 512
  stream: bool | None = field(default=None, metadata={
      "help": "stream embeddings from disk (default: when the file is larger than 2 GiB)"})
  init_sample: int | None = field(default=None, metadata={
      "help": "rows used for k-means++ seeding when streaming (default 64 * k)"})
  shard: bool = field(default=True, metadata={"help": "shard over all local devices if > 1"})
  workdir: str = "runs/prune"
  progress: bool = True


def _embeddings(cfg: PruneConfig, ds: data_lib.Dataset):
  if cfg.embeddings is not None:
    emb_ds = data_lib.load_embeddings(cfg.embeddings)
    if emb_ds.size != ds.size:
      raise ValueError(f"{cfg.embeddings} has {emb_ds.size} rows but the dataset has {ds.size}")
    return emb_ds.embeddings
  if ds.embeddings is not None:
    return ds.embeddings
  if cfg.embedding not in EMBEDDINGS:
    raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {cfg.embedding!r}")
  if ds.images is None:
    raise ValueError(f"{ds.name} has no images to embed; give --embeddings")
  if cfg.embedding == "ssl":
    from jaxprune.pruning.embeddings import SSLConfig, ssl_embeddings
    return ssl_embeddings(ds.images, cfg=SSLConfig(steps=cfg.ssl_steps), seed=cfg.seed,
                          workdir=cfg.workdir, progress=cfg.progress)
  return data_lib.pixel_embeddings(ds.images)


def _mesh(cfg: PruneConfig):
  if cfg.shard and jax.device_count() > 1:
    return data_mesh()
  return None


def compute_scores(cfg: PruneConfig, ds: data_lib.Dataset, emb):
  """``(scores_N, cluster_N or None, info)`` for the configured metric."""
  key = jax.random.key(cfg.seed)
  n = ds.size
  if cfg.score == "random":
    return np.asarray(scores_lib.random_scores(n, key=key)), None, {}
  if cfg.score == "supervised_prototypes":
    if ds.labels is None:
      raise ValueError("score=supervised_prototypes needs labels, and this dataset has none")
    return np.asarray(scores_lib.supervised_prototypes(emb, ds.labels, metric=cfg.metric)), \
        ds.labels, {}
  if cfg.score in SUPERVISED:
    if ds.labels is None or ds.images is None:
      raise ValueError(f"score={cfg.score} trains classifiers: it needs images and labels")
    from jaxprune.pruning.classifiers import ClassifierConfig, supervised_metrics
    out = supervised_metrics(ClassifierConfig(), ds.images, ds.labels,
                             num_classes=int(ds.labels.max()) + 1,
                             seeds=range(cfg.seed, cfg.seed + cfg.score_models),
                             epochs=cfg.score_epochs, progress=cfg.progress)
    return out[cfg.score], ds.labels, {"score_models": cfg.score_models,
                                        "score_epochs": cfg.score_epochs}
  if cfg.score != "ssl_prototypes":
    raise ValueError(f"score must be one of {SCORES}, got {cfg.score!r}")
  k = cfg.k
  if k is None:
    k = min(n, int(ds.labels.max()) + 1 if ds.labels is not None else 100)
  stream = cfg.stream
  if stream is None:
    stream = isinstance(emb, np.memmap) and emb.nbytes > (2 << 30)
  init_sample = cfg.init_sample if cfg.init_sample is not None else 64 * k
  t0 = time.perf_counter()
  if cfg.progress and not stream:
    print(f"k-means: N={n} D={emb.shape[1]} K={k} metric={cfg.metric} (jitted, one dispatch)")
  s, cluster, res = scores_lib.self_supervised_prototypes(
      emb, k=k, key=key, metric=cfg.metric, n_init=cfg.n_init, max_iter=cfg.max_iter,
      tol=cfg.tol, chunk_size=cfg.chunk_size, mesh=None if stream else _mesh(cfg),
      streamed=stream, init_sample=init_sample if stream else None, progress=cfg.progress)
  info = {"k": k, "kmeans_iterations": int(res.n_iter), "kmeans_converged": bool(res.converged),
          "kmeans_inertia": float(res.inertia), "kmeans_seconds": time.perf_counter() - t0,
          "streamed": bool(stream)}
  return np.asarray(s), np.asarray(cluster), info


def _class_table(labels, kept):
  if labels is None:
    return None
  before = np.bincount(labels)
  after = np.bincount(labels[kept], minlength=len(before))
  return {int(c): [int(b), int(a)] for c, (b, a) in enumerate(zip(before, after))}


def run(cfg: PruneConfig) -> dict:
  """Run the whole job; returns the summary dict (also written to ``summary.json``)."""
  from jaxprune.pruning import plots
  os.makedirs(cfg.workdir, exist_ok=True)
  io.save_json(os.path.join(cfg.workdir, "config.json"), cfg)
  ds = data_lib.load(cfg.data, data_dir=cfg.data_dir, split=cfg.split,
                     max_examples=cfg.max_examples, progress=cfg.progress)
  needs_emb = cfg.score in ("ssl_prototypes", "supervised_prototypes")
  emb = _embeddings(cfg, ds) if needs_emb else None
  scores, cluster, info = compute_scores(cfg, ds, emb)
  kept = select(scores, fraction=cfg.fraction, mode=cfg.mode,
                key=jax.random.fold_in(jax.random.key(cfg.seed), 1),
                labels=ds.labels if cfg.class_balance > 0 else None,
                class_balance=cfg.class_balance)
  kept_mask = np.zeros(ds.size, bool)
  kept_mask[kept] = True

  cols = {"id": ds.ids}
  if ds.labels is not None:
    cols["label"] = ds.labels
  if cluster is not None and cfg.score == "ssl_prototypes":
    cols["cluster"] = cluster
  cols.update(score=scores, kept=kept_mask.astype(np.int8))
  io.save_npz(os.path.join(cfg.workdir, "scores.npz"), **cols)
  io.save_csv(os.path.join(cfg.workdir, "scores.csv"), cols)
  io.save_npy(os.path.join(cfg.workdir, "kept_indices.npy"), kept.astype(np.int64))

  q = np.quantile(scores, [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
  summary = {"data": ds.name, "n": ds.size, "kept": int(len(kept)), "fraction": cfg.fraction,
             "mode": cfg.mode, "score": cfg.score,
             "metric": cfg.metric if cfg.score.endswith("prototypes") else "-",
             "hardness_quantiles": dict(zip(["min", "q10", "q25", "median", "q75", "q90", "max"],
                                            map(float, q))),
             "per_class_before_after": _class_table(ds.labels, kept), **info}
  io.save_json(os.path.join(cfg.workdir, "summary.json"), summary)
  title = f"{ds.name}: {cfg.score}, keep {cfg.mode} {cfg.fraction:g}"
  io.save_figure(os.path.join(cfg.workdir, "hardness_hist.png"),
                 plots.hardness_histogram(scores, kept, title=title))
  if ds.images is not None:
    io.save_figure(os.path.join(cfg.workdir, "extremes.png"),
                   plots.extremes_grid(ds.images, scores, ds.labels))
  return summary


def format_summary(s: dict) -> str:
  lines = [f"{s['data']}: kept {s['kept']} of {s['n']} ({s['mode']}, {s['score']}, {s['metric']})"]
  if "k" in s:
    lines.append(f"k-means: k={s['k']}, {s['kmeans_iterations']} iterations "
                 f"(converged={s['kmeans_converged']}), {s['kmeans_seconds']:.2f} s")
  lines.append("hardness quantiles: " + ", ".join(
      f"{k}={v:.4f}" for k, v in s["hardness_quantiles"].items()))
  if s["per_class_before_after"]:
    lines.append("class: before -> after")
    lines.extend(f"  {c:>4}: {b:>7} -> {a:>7}" for c, (b, a) in s["per_class_before_after"].items())
  return "\n".join(lines)
