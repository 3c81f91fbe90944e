"""The main job: score a dataset's examples, keep a fraction, and write the results.

``run(PruneConfig(...))`` loads the data, computes embeddings (given, standardised pixels, or a
SimCLR encoder's), scores every example, selects the kept subset, and writes to ``workdir``:

* ``scores.npz`` / ``scores.csv``: id, label, cluster, score and kept flag per example, in the
  dataset's original order;
* ``kept_indices.npy``: row indices of the kept examples (sorted);
* ``config.json``, ``summary.json``; ``hardness_hist.png``; ``extremes.png`` when there are images.

Every output, ``config.json`` included, is written after the work succeeded: a failed run leaves
an earlier run's files as they were. The job holds the workdir's lock while it runs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Literal

import jax
import numpy as np

from jaxprune.core import io
from jaxprune.core.config import check_finite, require, to_dict
from jaxprune.core.run import Run
from jaxprune.core.sharding import data_mesh
from jaxprune.models.classifier import ClassifierConfig
from jaxprune.pruning import data as data_lib
from jaxprune.pruning import keys
from jaxprune.pruning import scores as scores_lib
from jaxprune.pruning import supervised as supervised_lib
from jaxprune.pruning.embeddings import SSLConfig, ssl_embeddings
from jaxprune.pruning.kmeans import check_embeddings, check_k
from jaxprune.pruning.kmeans_config import KMeansConfig, resolve_k
from jaxprune.pruning.select import MODES, select
from jaxprune.pruning.supervised import check_scoring_fields, scoring_kwargs

SCORES = ("ssl_prototypes", "supervised_prototypes", "el2n", "grand", "forgetting", "random")
SUPERVISED = ("el2n", "grand", "forgetting")
EMBEDDINGS = ("pixels", "ssl")
DIGITS_SPLITS = ("train", "test", "all")


@dataclass(frozen=True)
class PruneConfig:
  """Score and prune a dataset with (self-)supervised prototypes or a supervised score."""

  data: str = "digits"
  """digits (bundled) | a TFDS name | a .npy/.npz embeddings file"""
  data_dir: str | None = None
  """TFDS data_dir (the dataset prepared there as ArrayRecord)"""
  split: str = "train"
  """dataset split (digits: train, test or all)"""
  max_examples: int | None = None
  """use at most this many examples (TFDS)"""
  embeddings: str | None = None
  """.npy/.npz embeddings, one row per example (overrides --embedding)"""
  embedding: Literal["pixels", "ssl"] = "ssl"
  """embeddings when none are given: ssl (the paper's method: a SimCLR encoder trained through
  the loop, in workdir/ssl; a rerun reuses it) or pixels (standardised)"""
  ssl: SSLConfig = field(default_factory=SSLConfig)
  """the SimCLR encoder of --embedding ssl"""
  score: Literal[
    "ssl_prototypes", "supervised_prototypes", "el2n", "grand", "forgetting", "random"
  ] = "ssl_prototypes"
  """the pruning score (hardness of each example)"""
  kmeans: KMeansConfig = field(default_factory=KMeansConfig)
  """k-means of ssl_prototypes (k, distance, n_init, max_iter, tol, algorithm, chunk_size);
  its distance is also that of supervised_prototypes"""
  fraction: float = 0.5
  """fraction of the examples kept, in (0, 1]"""
  mode: Literal["hard", "easy", "random"] = "hard"
  """keep the hardest, the easiest, or a random subset"""
  class_balance: float = 0.0
  """each class keeps at least this share of its proportional quota, in [0, 1]"""
  classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
  """the models behind el2n / grand / forgetting"""
  score_epochs: int | None = None
  """epochs of the scoring run behind el2n / grand / forgetting (forgetting counts over all of
  it); None: as many steps as one classifier training run (classifier.steps)"""
  score_models: int = 10
  """models (vmapped) averaged by el2n / grand / forgetting (Paul et al.: 10)"""
  score_at: float = 0.1
  """el2n is taken at this fraction of the scoring run, in (0, 1] (Paul et al.: epoch 20 of 200)"""
  grand_at: Literal["init", "score_at"] = "init"
  """grand at the models' initialisations (Paul et al.) or with el2n's models"""
  seed: int = 0
  """root of every key of the job (k-means, random subsets, SimCLR, score models)"""
  stream: bool | None = None
  """stream embeddings from disk; None: when the file is larger than 2 GiB"""
  init_sample: int | None = None
  """rows used for k-means++ seeding when streaming; None: 64 * k"""
  shard: bool = True
  """shard k-means over all local devices when there are several"""
  workdir: str = "runs/prune"
  """output directory"""
  overwrite: bool = False
  """discard a stored SimCLR encoder (workdir/ssl) of another config instead of stopping"""
  progress: bool = True
  """show progress bars and timings"""

  def __post_init__(self):
    check_finite(self)
    require(self.score in SCORES, f"score must be one of {SCORES}, got {self.score!r}")
    require(self.mode in MODES, f"mode must be one of {MODES}, got {self.mode!r}")
    require(
      self.embedding in EMBEDDINGS, f"embedding must be one of {EMBEDDINGS}, got {self.embedding!r}"
    )
    require(0.0 < self.fraction <= 1.0, f"fraction must be in (0, 1], got {self.fraction}")
    require(
      0.0 <= self.class_balance <= 1.0, f"class_balance must be in [0, 1], got {self.class_balance}"
    )
    require(
      self.data != data_lib.DEFAULT or self.split in DIGITS_SPLITS,
      f"digits splits are {DIGITS_SPLITS}; got split {self.split!r}",
    )
    for name in ("max_examples", "init_sample"):
      v = getattr(self, name)
      require(v is None or v >= 1, f"{name} must be >= 1, got {v}")
    require(self.score_models >= 1, f"score_models must be >= 1, got {self.score_models}")
    check_scoring_fields(self)


def _check_data(cfg: PruneConfig, ds: data_lib.Dataset) -> None:
  """What the config needs of the data, checked before any work (cheap)."""
  if cfg.score == "supervised_prototypes" and ds.labels is None:
    raise ValueError("score=supervised_prototypes needs labels, and this dataset has none")
  if cfg.score in SUPERVISED and (ds.labels is None or ds.images is None):
    raise ValueError(f"score={cfg.score} trains classifiers: it needs images and labels")
  if (
    cfg.score in ("ssl_prototypes", "supervised_prototypes")
    and cfg.embeddings is None
    and ds.embeddings is None
    and ds.images is None
  ):
    raise ValueError(f"{ds.name} has no images to embed; give --embeddings")
  if cfg.score == "ssl_prototypes":
    check_k(_num_clusters(cfg, ds), ds.size)


def _num_clusters(cfg: PruneConfig, ds: data_lib.Dataset) -> int:
  num_classes = int(ds.labels.max()) + 1 if ds.labels is not None else None
  return resolve_k(cfg.kmeans.k, n=ds.size, num_classes=num_classes)


def _embeddings(cfg: PruneConfig, ds: data_lib.Dataset):
  if cfg.embeddings is not None:
    emb_ds = data_lib.load_embeddings(cfg.embeddings)
    if emb_ds.size != ds.size:
      raise ValueError(f"{cfg.embeddings} has {emb_ds.size} rows but the dataset has {ds.size}")
    return emb_ds.embeddings
  if ds.embeddings is not None:
    return ds.embeddings
  if cfg.embedding == "ssl":
    return ssl_embeddings(
      ds.images,
      cfg=cfg.ssl,
      seed=cfg.seed,
      workdir=cfg.workdir,
      overwrite=cfg.overwrite,
      progress=cfg.progress,
    )
  return data_lib.pixel_embeddings(ds.images)


def _mesh(cfg: PruneConfig):
  if cfg.shard and jax.device_count() > 1:
    return data_mesh()
  return None


def compute_scores(cfg: PruneConfig, ds: data_lib.Dataset, emb):
  """``(scores_N, cluster_N or None, info)`` for the configured score."""
  n = ds.size
  if cfg.score == "random":
    key = keys.job_key(cfg.seed, keys.RANDOM_SCORES)
    return np.asarray(scores_lib.random_scores(n, key=key)), None, {}
  if cfg.score == "supervised_prototypes":
    check_embeddings(emb, distance=cfg.kmeans.distance)  # the values, before the work
    return (
      np.asarray(scores_lib.supervised_prototypes(emb, ds.labels, distance=cfg.kmeans.distance)),
      ds.labels,
      {},
    )
  if cfg.score in SUPERVISED:
    out = supervised_lib.supervised_metrics(
      cfg.classifier,
      ds.images,
      ds.labels,
      num_classes=int(ds.labels.max()) + 1,
      key=keys.job_key(cfg.seed, keys.SCORE_MODELS),
      **scoring_kwargs(cfg),
      which=(cfg.score,),
      progress=cfg.progress,
    )
    return (
      out[cfg.score],
      ds.labels,
      {
        "score_models": cfg.score_models,
        "score_epochs": cfg.score_epochs,
        "score_at": cfg.score_at,
        "grand_at": cfg.grand_at,
      },
    )
  k = _num_clusters(cfg, ds)
  stream = cfg.stream
  if stream is None:
    stream = isinstance(emb, np.memmap) and emb.nbytes > (2 << 30)
  init_sample = cfg.init_sample if cfg.init_sample is not None else 64 * k
  if not stream:  # the values, before the work (a streamed k-means checks them in its 1st pass)
    check_embeddings(emb, k=k, distance=cfg.kmeans.distance)
  t0 = time.perf_counter()
  if cfg.progress and not stream:
    print(
      f"k-means: N={n} D={emb.shape[1]} K={k} distance={cfg.kmeans.distance} (jitted, one dispatch)"
    )
  s, cluster, res = scores_lib.self_supervised_prototypes(
    emb,
    k=k,
    key=keys.job_key(cfg.seed, keys.KMEANS),
    mesh=None if stream else _mesh(cfg),
    streamed=stream,
    init_sample=init_sample if stream else None,
    progress=cfg.progress,
    **cfg.kmeans.kwargs(),
  )
  computed = np.asarray(res.computed)[: int(res.n_iter)]
  info = {
    "k": k,
    "kmeans_iterations": int(res.n_iter),
    "kmeans_converged": bool(res.converged),
    "kmeans_inertia": float(res.inertia),
    "kmeans_seconds": time.perf_counter() - t0,
    "kmeans_algorithm": cfg.kmeans.algorithm,
    "kmeans_skipped": float(1.0 - computed.mean()) if computed.size else 0.0,
    "streamed": bool(stream),
  }
  return np.asarray(s), np.asarray(cluster), info


def _class_table(labels, kept):
  if labels is None:
    return None
  before = np.bincount(labels)
  after = np.bincount(labels[kept], minlength=len(before))
  return {int(c): [int(b), int(a)] for c, (b, a) in enumerate(zip(before, after))}


def run(cfg: PruneConfig) -> dict:
  """Run the whole job; returns the summary dict (also written to ``summary.json``)."""
  # the lock (one job per workdir); overwrite applies to what this job stores, not to the
  # workdir's own checkpoints, which it never writes
  with Run(cfg.workdir, config=cfg):
    ds = data_lib.load(
      cfg.data,
      data_dir=cfg.data_dir,
      split=cfg.split,
      max_examples=cfg.max_examples,
      progress=cfg.progress,
    )
    _check_data(cfg, ds)
    needs_emb = cfg.score in ("ssl_prototypes", "supervised_prototypes")
    emb = _embeddings(cfg, ds) if needs_emb else None
    scores, cluster, info = compute_scores(cfg, ds, emb)
    kept = select(
      scores,
      fraction=cfg.fraction,
      mode=cfg.mode,
      key=keys.job_key(cfg.seed, keys.SELECT),
      labels=ds.labels if cfg.class_balance > 0 else None,
      class_balance=cfg.class_balance,
      tie_key=keys.job_key(cfg.seed, keys.TIES),
    )
    summary = _write_outputs(cfg, ds, scores, cluster, kept, info)
  return summary


def _write_outputs(cfg: PruneConfig, ds: data_lib.Dataset, scores, cluster, kept, info) -> dict:
  from jaxprune.pruning import plots  # matplotlib, loaded only when writing figures

  kept_mask = np.zeros(ds.size, bool)
  kept_mask[kept] = True
  cols = {"id": ds.ids}
  if ds.labels is not None:
    cols["label"] = ds.labels
  if cluster is not None and cfg.score == "ssl_prototypes":
    cols["cluster"] = cluster
  cols.update(score=scores, kept=kept_mask.astype(np.int8))
  io.save_json(os.path.join(cfg.workdir, "config.json"), to_dict(cfg))
  io.save_npz(os.path.join(cfg.workdir, "scores.npz"), **cols)
  io.save_csv(os.path.join(cfg.workdir, "scores.csv"), cols)
  io.save_npy(os.path.join(cfg.workdir, "kept_indices.npy"), kept.astype(np.int64))

  q = np.quantile(scores, [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
  summary = {
    "data": ds.name,
    "n": ds.size,
    "kept": int(len(kept)),
    "fraction": cfg.fraction,
    "mode": cfg.mode,
    "score": cfg.score,
    "distance": cfg.kmeans.distance if cfg.score.endswith("prototypes") else "-",
    "hardness_quantiles": dict(
      zip(["min", "q10", "q25", "median", "q75", "q90", "max"], map(float, q))
    ),
    "per_class_before_after": _class_table(ds.labels, kept),
    **info,
  }
  io.save_json(os.path.join(cfg.workdir, "summary.json"), summary)
  title = f"{ds.name}: {cfg.score}, keep {cfg.mode} {cfg.fraction:g}"
  figures = {"hardness_hist.png": plots.hardness_histogram(scores, kept, title=title)}
  if ds.images is not None:
    figures["extremes.png"] = plots.extremes_grid(ds.images, scores, ds.labels)
  for name, fig in figures.items():
    io.save_figure(os.path.join(cfg.workdir, name), fig)
    plots.close(fig)
  return summary


def format_summary(s: dict) -> str:
  lines = [
    f"{s['data']}: kept {s['kept']} of {s['n']} ({s['mode']}, {s['score']}, {s['distance']})"
  ]
  if "k" in s:
    lines.append(
      f"k-means: k={s['k']}, {s['kmeans_iterations']} iterations "
      f"(converged={s['kmeans_converged']}), {s['kmeans_seconds']:.2f} s, "
      f"{s['kmeans_algorithm']}: {s['kmeans_skipped']:.0%} of the distances skipped"
    )
  lines.append(
    "hardness quantiles: " + ", ".join(f"{k}={v:.4f}" for k, v in s["hardness_quantiles"].items())
  )
  if s["per_class_before_after"]:
    lines.append("class: before -> after")
    lines.extend(f"  {c:>4}: {b:>7} -> {a:>7}" for c, (b, a) in s["per_class_before_after"].items())
  return "\n".join(lines)
