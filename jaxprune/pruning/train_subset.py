"""Train classifiers on a pruned subset (or all) of a dataset's training split, through the shared
loop, and report test accuracy (``scripts/train.py``).

The job runs under one :class:`jaxprune.core.run.Run` on its workdir: resumable from the latest
checkpoint, and a workdir that holds a run of another config (other settings, another kept
subset: its size and a hash of its indices are part of the stored config) stops with a
:class:`jaxprune.core.run.ConfigMismatchError` before any work.

Kept indices carry the identity of the data they are rows of (``kept_indices.json`` beside
``kept_indices.npy``, written by ``scripts/prune.py``: dataset and split, size N, a content
hash): indices made from other data (another split, another dataset, another ``max_examples``)
are refused before training, naming both. A kept file without that identity file (made by hand)
is used with a warning that it cannot be checked.
"""

from __future__ import annotations

import hashlib
import os
import warnings

import jax
import numpy as np

from jaxprune.core import io
from jaxprune.core.config import to_dict
from jaxprune.core.run import Run
from jaxprune.core.sharding import data_mesh, initialize_distributed
from jaxprune.models.classifier import accuracy
from jaxprune.pruning import data as data_lib
from jaxprune.pruning import keys
from jaxprune.pruning.supervised import train_classifiers
from jaxprune.pruning.train_subset_config import SubsetTrainConfig

# fields a resumed run may change: the length of training, how it is dispatched and shown, and
# where things are (the kept subset is identified by its content, ``kept_subset``)
MAY_CHANGE = (
  "classifier.steps",
  "classifier.steps_per_dispatch",
  "progress",
  "overwrite",
  "shard",
  "distributed",
  "workdir",
  "data_dir",
  "kept",
)


def kept_identity(kept: np.ndarray | None) -> dict | None:
  """What the stored config says of a kept subset: its size and a hash of its indices."""
  if kept is None:
    return None
  return {
    "n": int(len(kept)),
    "sha256": hashlib.sha256(np.asarray(kept, np.int64).tobytes()).hexdigest()[:16],
  }


def run(cfg: SubsetTrainConfig) -> dict:
  """Run (or resume) the job; returns the result dict (also written to ``result.json``)."""
  initialize_distributed(cfg.distributed)
  kept = identity = None
  if cfg.kept is not None:
    kept = data_lib.load_kept(cfg.kept)
    identity = data_lib.load_kept_identity(cfg.kept, kept)
  stored = {**to_dict(cfg), "kept_subset": kept_identity(kept)}
  with Run(cfg.workdir, config=stored, may_change=MAY_CHANGE, overwrite=cfg.overwrite) as job:
    train, test = data_lib.load_train_test(
      cfg.data, data_dir=cfg.data_dir, max_examples=cfg.max_examples, progress=cfg.progress
    )
    checked = None
    if kept is None:
      kept = np.arange(train.size)
    else:
      checked = data_lib.check_kept_identity(identity, train, path=cfg.kept)
      data_lib.check_kept(kept, train.size, path=cfg.kept, data=cfg.data)
      if not checked:
        warnings.warn(
          f"{cfg.kept} has no identity file ({data_lib.kept_sidecar(cfg.kept)}, which "
          f"scripts/prune.py writes beside kept_indices.npy): its indices are taken as rows of "
          f"{train.name} ({train.size} rows) without checking that they were made from that "
          "data",
          UserWarning,
          stacklevel=2,
        )
    _note_steps_change(job, cfg)
    io.save_json(os.path.join(cfg.workdir, "config.json"), stored)
    mesh = data_mesh() if cfg.shard and jax.device_count() > 1 else None
    clf, params = train_classifiers(
      cfg.classifier,
      train.images[kept],
      train.labels[kept],
      num_classes=int(train.labels.max()) + 1,
      key=keys.job_key(cfg.seed, keys.TRAIN_MODELS),
      num_models=cfg.seeds,
      run=job,
      progress=cfg.progress,
      mesh=mesh,
    )
    acc = accuracy(clf, params, test.images, test.labels)
    result = {
      "data": cfg.data,
      "n_train": int(len(kept)),
      "n_train_full": train.size,
      # kept indices: None (full split), True (identity checked), False (no identity file)
      "kept_identity_checked": checked,
      "n_test": test.size,
      "test_accuracy_mean": float(acc.mean()),
      "test_accuracy_std": float(acc.std()),
      "test_accuracy": [float(a) for a in acc],
    }
    io.save_json(os.path.join(cfg.workdir, "result.json"), result)
    _plot_curves(job)
  return result


def _note_steps_change(job: Run, cfg: SubsetTrainConfig) -> None:
  """Warn when a resumed run trains for another number of steps than it started with: the
  learning-rate schedule (cosine decay over ``classifier.steps``) changes at the resume point, so
  the model differs from a fresh run of this config (allowed, but said)."""
  path = os.path.join(cfg.workdir, "config.json")
  if not os.path.exists(path) or not job.checkpoint_steps():
    return
  try:
    before = io.read_json(path)["classifier"]["steps"]
  except (ValueError, KeyError, TypeError):  # the checkpoint's config was already checked
    return
  if before != cfg.classifier.steps:
    warnings.warn(
      f"{cfg.workdir}: resuming at step {max(job.checkpoint_steps())} a run started with "
      f"classifier.steps={before}, now {cfg.classifier.steps}: the learning-rate schedule "
      "(cosine decay over classifier.steps) changes from here, so the model will differ from a "
      f"fresh run with classifier.steps={cfg.classifier.steps} (use a new workdir for that)",
      UserWarning,
      stacklevel=3,
    )


def _plot_curves(job: Run) -> None:
  rows = job.records()
  if not rows:
    return
  from jaxprune.pruning import plots

  fig = plots.training_curves(rows)
  io.save_figure(os.path.join(job.workdir, "training_curves.png"), fig)
  plots.close(fig)
