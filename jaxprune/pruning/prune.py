"""The main job: score a dataset's examples, keep a fraction, and write the results.

``run(PruneConfig(...))`` loads the data, computes embeddings (given, standardised pixels, or a
SimCLR encoder's), scores every example, selects the kept subset, and writes to ``workdir``:

* ``scores.npz`` / ``scores.csv``: id, label, cluster, score and kept flag per example, in the
  dataset's original order;
* ``kept_indices.npy``: row indices of the kept examples (sorted), and beside it
  ``kept_indices.json``: the identity of the data they are rows of (dataset and split, size N, a
  content hash; :func:`data.kept_record`), which ``scripts/train.py`` checks against the split it
  trains on;
* ``config.json``, ``summary.json``; ``hardness_hist.png``; ``extremes.png`` when there are images
  (an ``extremes.png`` of an earlier job in the workdir is removed when this job has no images).

Every output, ``config.json`` included, is written after the work succeeded: a failed run leaves
an earlier run's files as they were. The job holds the workdir's lock while it runs.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np

from jaxprune.core import io
from jaxprune.core.config import to_dict
from jaxprune.core.run import Run
from jaxprune.core.sharding import data_mesh
from jaxprune.pruning import data as data_lib
from jaxprune.pruning import keys
from jaxprune.pruning import scores as scores_lib
from jaxprune.pruning import supervised as supervised_lib
from jaxprune.pruning.embeddings import ssl_embeddings
from jaxprune.pruning.kmeans import check_centroids, check_embeddings, check_k
from jaxprune.pruning.kmeans_config import resolve_k
from jaxprune.pruning.prune_config import PruneConfig
from jaxprune.pruning.select import select
from jaxprune.pruning.supervised import scoring_kwargs

SUPERVISED = ("el2n", "grand", "forgetting")
# outputs a job writes only for some data: one that does not write them removes an earlier job's
OPTIONAL_OUTPUTS = ("extremes.png",)


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
  # the values, before the work, streamed too (one extra read of the file): the streamed
  # k-means' own first-pass check sees float32 blocks, where a float64 overflow is just inf
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
  check_centroids(res.centroids, distance=cfg.kmeans.distance)  # what assign() scored against
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
  kept_path = os.path.join(cfg.workdir, "kept_indices.npy")
  io.save_npy(kept_path, kept.astype(np.int64))
  # the identity of the rows the indices select (scripts/train.py refuses them for other data)
  made_by = {"data": cfg.data, "split": cfg.split, "max_examples": cfg.max_examples}
  io.save_json(data_lib.kept_sidecar(kept_path), data_lib.kept_record(kept, ds, **made_by))

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
  for name in set(OPTIONAL_OUTPUTS) - set(figures):  # an earlier job's, of other data: stale
    path = os.path.join(cfg.workdir, name)
    if os.path.isfile(path):
      os.remove(path)
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
