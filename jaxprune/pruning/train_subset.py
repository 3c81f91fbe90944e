"""``scripts/train.py``: train classifiers on a pruned subset (or all) of a dataset's training
split, through the shared loop, and report test accuracy. Resumable from its work directory."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import jax
import numpy as np

from jaxprune.pruning import classifiers as classify
from jaxprune.pruning import data as data_lib
from jaxprune.core import io
from jaxprune.core.sharding import data_mesh, initialize_distributed


@dataclass(frozen=True)
class TrainConfig:
  """Train a classifier on the examples kept by scripts/prune.py and report test accuracy."""

  data: str = field(default="digits", metadata={"help": "digits | a TFDS name (train/test)"})
  data_dir: str | None = None
  max_examples: int | None = None
  kept: str | None = field(default=None, metadata={
      "help": "kept_indices.npy written by scripts/prune.py (rows of the train split); "
              "default: the full training split"})
  model: str = "cnn"
  steps: int = 300
  batch_size: int = 64
  lr: float = 3e-3
  weight_decay: float = 1e-4
  optimizer: str = "adamw"
  augment: bool = False
  seed: int = 0
  seeds: int = field(default=1, metadata={"help": "models trained side by side (vmapped)"})
  steps_per_dispatch: int = 25
  shard: bool = field(default=True, metadata={"help": "shard batches over all local devices"})
  distributed: bool = field(default=False, metadata={
      "help": "call jax.distributed.initialize() first (multi-host)"})
  workdir: str = "runs/train"
  progress: bool = True


def run(cfg: TrainConfig) -> dict:
  initialize_distributed(cfg.distributed)
  os.makedirs(cfg.workdir, exist_ok=True)
  io.save_json(os.path.join(cfg.workdir, "config.json"), cfg)
  train, test = data_lib.load_train_test(cfg.data, data_dir=cfg.data_dir,
                                         max_examples=cfg.max_examples, progress=cfg.progress)
  kept = np.arange(train.size)
  if cfg.kept is not None:
    if not os.path.exists(cfg.kept):
      raise FileNotFoundError(f"kept indices file not found: {cfg.kept}")
    kept = np.load(cfg.kept)
    if kept.ndim != 1 or len(kept) == 0 or kept.min() < 0 or kept.max() >= train.size:
      raise ValueError(f"{cfg.kept} must hold row indices into the {train.size}-example "
                       f"training split of {cfg.data}; got {len(kept)} values in "
                       f"[{kept.min() if len(kept) else '-'}, {kept.max() if len(kept) else '-'}]")
  mesh = data_mesh() if cfg.shard and jax.device_count() > 1 else None
  clf_cfg = classify.ClassifierConfig(model=cfg.model, steps=cfg.steps, batch_size=cfg.batch_size,
                                      lr=cfg.lr, weight_decay=cfg.weight_decay,
                                      optimizer=cfg.optimizer, augment=cfg.augment,
                                      steps_per_dispatch=cfg.steps_per_dispatch)
  num_classes = int(train.labels.max()) + 1
  clf, params = classify.train(clf_cfg, train.images[kept], train.labels[kept],
                               num_classes=num_classes,
                               seeds=range(cfg.seed, cfg.seed + cfg.seeds),
                               workdir=cfg.workdir, progress=cfg.progress, mesh=mesh)
  acc = classify.accuracy(clf, params, test.images, test.labels)
  result = {"data": cfg.data, "n_train": int(len(kept)), "n_train_full": train.size,
            "n_test": test.size, "test_accuracy_mean": float(acc.mean()),
            "test_accuracy_std": float(acc.std()), "test_accuracy": [float(a) for a in acc]}
  io.save_json(os.path.join(cfg.workdir, "result.json"), result)
  _plot_curves(cfg.workdir)
  return result


def _plot_curves(workdir: str) -> None:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  rows = io.read_jsonl(path)
  if not rows:
    return
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
  steps = [r["step"] for r in rows]
  for ax, key in zip(axes, ("loss", "accuracy")):
    if key in rows[0]:
      ax.plot(steps, [r[key] for r in rows], lw=1)
      ax.set_xlabel("step")
      ax.set_ylabel(f"train {key}")
      ax.grid(alpha=0.3)
  fig.tight_layout()
  io.save_figure(os.path.join(workdir, "training_curves.png"), fig)
  plt.close(fig)
