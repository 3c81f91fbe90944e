"""jaxprune: data pruning with self-supervised prototypes, and Denoised MDPs, in JAX.

The public API, re-exported here. The Denoised MDP world model lives in ``jaxprune.dmdp``
(re-exported there: ``from jaxprune import dmdp``); episode replay in ``jaxprune.replay``.
"""
from jaxprune import dmdp
from jaxprune.dmdp import replay
from jaxprune.core.checkpoint import CheckpointError, Checkpointer
from jaxprune.pruning.classifiers import ClassifierConfig, accuracy, supervised_metrics
from jaxprune.pruning.classifiers import train as train_classifiers
from jaxprune.pruning.curve import CurveConfig
from jaxprune.pruning.data import (Dataset, load, load_digits, load_embeddings, load_tfds,
                           load_train_test, pixel_embeddings)
from jaxprune.pruning.embeddings import SSLConfig, ssl_embeddings
from jaxprune.pruning.kmeans import KMeansResult, assign, inertia, kmeans, kmeans_plusplus
from jaxprune.pruning.kmeans_streamed import kmeans_streamed
from jaxprune.pruning.prune import PruneConfig, run as run_prune
from jaxprune.dmdp.replay import ReplayBuffer
from jaxprune.pruning.scores import (el2n, forgetting, grand, random_scores, self_supervised_prototypes,
                             supervised_prototypes)
from jaxprune.pruning.select import num_kept, select
from jaxprune.core.sharding import data_mesh, initialize_distributed
from jaxprune.pruning.supervised import Tracked, make_tracked_step, supervised_scores, train_ensemble
from jaxprune.core.loop import (DeviceData, TrainState, create_state, make_data_step,
                                make_update, run_steps, to_device)
from jaxprune.core.run import (ConfigMismatchError, NonFiniteError, Run, WorkdirInUseError,
                               fit)
from jaxprune.pruning.train_subset import TrainConfig

__all__ = [
    "dmdp",
    "replay",
    "CheckpointError",
    "ConfigMismatchError",
    "Run",
    "WorkdirInUseError",
    "Checkpointer",
    "ClassifierConfig",
    "CurveConfig",
    "Dataset",
    "DeviceData",
    "KMeansResult",
    "NonFiniteError",
    "PruneConfig",
    "ReplayBuffer",
    "SSLConfig",
    "Tracked",
    "TrainConfig",
    "TrainState",
    "accuracy",
    "assign",
    "create_state",
    "data_mesh",
    "el2n",
    "fit",
    "forgetting",
    "grand",
    "inertia",
    "initialize_distributed",
    "kmeans",
    "kmeans_plusplus",
    "kmeans_streamed",
    "load",
    "load_digits",
    "load_embeddings",
    "load_tfds",
    "load_train_test",
    "make_data_step",
    "make_tracked_step",
    "make_update",
    "num_kept",
    "pixel_embeddings",
    "random_scores",
    "run_prune",
    "run_steps",
    "select",
    "self_supervised_prototypes",
    "ssl_embeddings",
    "supervised_metrics",
    "supervised_prototypes",
    "supervised_scores",
    "to_device",
    "train_classifiers",
    "train_ensemble",
]
