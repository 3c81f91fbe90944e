"""The k-means options of the pruning jobs in one place.

:class:`KMeansConfig` is a nested field (``--kmeans.k``, ``--kmeans.max_iter``, ...) of the prune
job's, the curve job's and the k-means benchmark's configs; :meth:`KMeansConfig.kwargs` hands its
options to :func:`jaxprune.pruning.kmeans.kmeans` and
:func:`jaxprune.pruning.scores.self_supervised_prototypes` as keyword arguments, and
:func:`resolve_k` is the one default-k rule (``k=None``) of every job. Imports nothing from the
jobs or the kernels.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

from jaxprune.core.config import check_finite, require

Distance = Literal["cosine", "euclidean"]
Algorithm = Literal["auto", "lloyd", "hamerly", "yinyang"]
DISTANCES: tuple[str, ...] = typing.get_args(Distance)
ALGORITHMS: tuple[str, ...] = typing.get_args(Algorithm)
UNLABELLED_K = 100  # k of the default-k rule for data without labels


def resolve_k(k: int | None, *, n: int, num_classes: int | None) -> int:
  """The clusters of a job: ``k`` when given; else (``k=None``) the default-k rule: the number
  of classes (``UNLABELLED_K`` = 100 for unlabelled data, ``num_classes=None``), capped at the
  ``n`` points clustered. An explicit ``k`` is returned as it is (larger than ``n`` is the
  kernel's error)."""
  if k is not None:
    return k
  return min(n, num_classes if num_classes is not None else UNLABELLED_K)


@dataclass(frozen=True)
class KMeansConfig:
  """k-means of the prototype scores (:func:`jaxprune.pruning.kmeans.kmeans`)."""

  k: int | None = 100
  """clusters (100: the choice of the k sweep {10, 30, 100} on the digits, docs/results.md);
  None: the default-k rule, the number of classes (100 for unlabelled data) capped at the number
  of examples clustered; an explicit k larger than the data is an error"""
  distance: Distance = "cosine"
  """cosine (1 - cos, the paper's) or euclidean; also the distance of the supervised prototypes"""
  n_init: int = 1
  """restarts (vmapped; the lowest inertia is kept)"""
  max_iter: int = 100
  """iterations at most"""
  tol: float = 1e-4
  """tolerance, relative to the mean feature variance (as scikit-learn's)"""
  algorithm: Algorithm = "auto"
  """with bounds (auto: Yinyang's group bounds per iteration, where they pay; yinyang: group
  bounds, G = K / 10, always; hamerly: one bound, always) or plain lloyd: the same result, the
  bounds skip distances that cannot change a label"""
  chunk_size: int = 512
  """points per chunk of the assignment"""

  def __post_init__(self):
    check_finite(self)
    require(self.k is None or self.k >= 1, f"k must be >= 1, got {self.k}")
    require(
      self.distance in DISTANCES, f"distance must be one of {DISTANCES}, got {self.distance!r}"
    )
    require(
      self.algorithm in ALGORITHMS,
      f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}",
    )
    for name in ("n_init", "max_iter", "chunk_size"):
      v = getattr(self, name)
      require(v >= 1, f"{name} must be >= 1, got {v}")
    require(self.tol >= 0, f"tol must be >= 0, got {self.tol}")

  def kwargs(self) -> dict:
    """Every option but ``k`` (see :func:`resolve_k`), as keyword arguments of ``kmeans`` and
    ``self_supervised_prototypes``."""
    return dict(
      distance=self.distance,
      n_init=self.n_init,
      max_iter=self.max_iter,
      tol=self.tol,
      algorithm=self.algorithm,
      chunk_size=self.chunk_size,
    )
