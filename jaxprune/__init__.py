"""jaxprune: data pruning with self-supervised prototypes, and Denoised MDPs, in JAX.

The public API, re-exported here.
"""
from jaxprune.data import Dataset, load, load_digits, load_embeddings, load_tfds, pixel_embeddings
from jaxprune.kmeans import KMeansResult, assign, inertia, kmeans, kmeans_plusplus
from jaxprune.kmeans_stream import kmeans_streamed
from jaxprune.pruning import PruneConfig, run as run_prune
from jaxprune.scores import random_scores, self_supervised_prototypes, supervised_prototypes
from jaxprune.select import num_kept, select
from jaxprune.sharding import data_mesh

__all__ = [
    "Dataset", "KMeansResult", "PruneConfig", "assign", "data_mesh", "inertia", "kmeans", "kmeans_plusplus",
    "kmeans_streamed", "load", "load_digits", "load_embeddings", "load_tfds", "num_kept",
    "pixel_embeddings", "random_scores", "run_prune", "select", "self_supervised_prototypes",
    "supervised_prototypes",
]
