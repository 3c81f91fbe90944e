"""jaxprune: data pruning with self-supervised prototypes, and Denoised MDPs, in JAX.

The public API, re-exported here. Packages: ``jaxprune.core`` (the loop and its driver, shared),
``jaxprune.models``, ``jaxprune.pruning``, ``jaxprune.theory``, ``jaxprune.dmdp`` (the Denoised
MDP world model and agent; its episode replay is ``jaxprune.dmdp.replay``) and ``jaxprune.envs``.
``dmdp``, ``theory``, ``envs``, ``replay`` and ``ReplayBuffer`` are attributes imported on first
use (``import jaxprune`` stays fast; the agent's and the environments' dependencies load only
when used).
"""

import importlib

from jaxprune.core.checkpoint import Checkpointer, CheckpointError
from jaxprune.core.loop import (
  DeviceData,
  TrainState,
  create_state,
  make_data_step,
  make_update,
  run_steps,
  to_device,
)
from jaxprune.core.run import (
  ConfigMismatchError,
  NonFiniteError,
  Run,
  WorkdirError,
  WorkdirInUseError,
  fit,
)
from jaxprune.core.sharding import data_mesh, initialize_distributed
from jaxprune.models.classifier import Classifier, ClassifierConfig, accuracy
from jaxprune.models.classifier import build as build_classifier
from jaxprune.pruning import claims, claims_report
from jaxprune.pruning.claims import Interval, verdict
from jaxprune.pruning.curve import aggregate
from jaxprune.pruning.curve import run as run_curve
from jaxprune.pruning.curve_config import CurveConfig
from jaxprune.pruning.data import (
  Dataset,
  downsample,
  load,
  load_digits,
  load_embeddings,
  load_kept,
  load_tfds,
  load_train_test,
  pixel_embeddings,
)
from jaxprune.pruning.embeddings import SSLConfig, ssl_embeddings, train_simclr
from jaxprune.pruning.kmeans import (
  Assignment,
  KMeansResult,
  assign,
  check_centroids,
  check_embeddings,
  inertia,
  kmeans,
  kmeans_plusplus,
)
from jaxprune.pruning.kmeans_bounds import ALGORITHMS as KMEANS_ALGORITHMS
from jaxprune.pruning.kmeans_config import KMeansConfig, resolve_k
from jaxprune.pruning.kmeans_streamed import kmeans_streamed
from jaxprune.pruning.linear_readout import (
  Readout,
  ReadoutFit,
  check_readout_inputs,
  fit_readout,
  predict_readout,
  readout_accuracy,
  readout_logits,
  readout_loss,
)
from jaxprune.pruning.npm_data import fetch as fetch_npm_dataset
from jaxprune.pruning.pool_scaling import best_fraction, exponents, hard_minus_easy
from jaxprune.pruning.prune import run as run_prune
from jaxprune.pruning.prune_config import PruneConfig
from jaxprune.pruning.readout_grid import run as run_readout_grid
from jaxprune.pruning.readout_grid import whiten
from jaxprune.pruning.readout_grid_config import ReadoutGridConfig
from jaxprune.pruning.readout_scores import LinearScorers, linear_scores, train_linear_scorers
from jaxprune.pruning.scores import (
  el2n,
  forgetting,
  grand,
  random_scores,
  self_supervised_prototypes,
  supervised_prototypes,
)
from jaxprune.pruning.select import num_kept, select, select_indices, select_mask
from jaxprune.pruning.supervised import (
  Tracked,
  ensemble_fns,
  fit_ensemble,
  grand_of,
  make_tracked_step,
  supervised_metrics,
  supervised_scores,
  train_classifiers,
)
from jaxprune.pruning.train_subset import run as run_subset_train
from jaxprune.pruning.train_subset_config import SubsetTrainConfig

_LAZY = {
  "dmdp": ("jaxprune.dmdp", None),
  "envs": ("jaxprune.envs", None),
  "theory": ("jaxprune.theory", None),
  "replay": ("jaxprune.dmdp.replay", None),
  "ReplayBuffer": ("jaxprune.dmdp.replay", "ReplayBuffer"),
}


def __getattr__(name):
  if name in _LAZY:
    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    return value if attr is None else getattr(value, attr)
  raise AttributeError(f"module 'jaxprune' has no attribute {name!r}")


__all__ = [
  "aggregate",
  "claims",
  "claims_report",
  "Interval",
  "verdict",
  "best_fraction",
  "downsample",
  "exponents",
  "fetch_npm_dataset",
  "grand_of",
  "hard_minus_easy",
  "dmdp",
  "envs",
  "replay",
  "theory",
  "CheckpointError",
  "Checkpointer",
  "Classifier",
  "ClassifierConfig",
  "ConfigMismatchError",
  "CurveConfig",
  "Dataset",
  "DeviceData",
  "Assignment",
  "KMeansResult",
  "NonFiniteError",
  "PruneConfig",
  "ReplayBuffer",
  "Run",
  "SSLConfig",
  "SubsetTrainConfig",
  "Tracked",
  "TrainState",
  "WorkdirError",
  "WorkdirInUseError",
  "accuracy",
  "assign",
  "build_classifier",
  "check_centroids",
  "check_embeddings",
  "create_state",
  "data_mesh",
  "el2n",
  "ensemble_fns",
  "fit",
  "fit_ensemble",
  "forgetting",
  "grand",
  "inertia",
  "initialize_distributed",
  "kmeans",
  "KMEANS_ALGORITHMS",
  "KMeansConfig",
  "resolve_k",
  "kmeans_plusplus",
  "kmeans_streamed",
  "Readout",
  "ReadoutFit",
  "check_readout_inputs",
  "fit_readout",
  "run_readout_grid",
  "whiten",
  "ReadoutGridConfig",
  "LinearScorers",
  "linear_scores",
  "train_linear_scorers",
  "train_simclr",
  "predict_readout",
  "readout_accuracy",
  "readout_logits",
  "readout_loss",
  "load",
  "load_digits",
  "load_embeddings",
  "load_kept",
  "load_tfds",
  "load_train_test",
  "make_data_step",
  "make_tracked_step",
  "make_update",
  "num_kept",
  "pixel_embeddings",
  "random_scores",
  "run_curve",
  "run_prune",
  "run_steps",
  "run_subset_train",
  "select",
  "select_indices",
  "select_mask",
  "self_supervised_prototypes",
  "ssl_embeddings",
  "supervised_metrics",
  "supervised_prototypes",
  "supervised_scores",
  "to_device",
  "train_classifiers",
]
