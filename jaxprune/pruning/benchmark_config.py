"""The benchmarks' configs (:class:`BenchKMeansConfig`, :class:`BenchTrainConfig`, their checks)
and the names they choose from (:data:`PEERS`, :data:`DATASETS`); the benchmarks themselves are
:mod:`jaxprune.pruning.benchmark`."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Literal

from jaxprune.core.config import check_finite, require
from jaxprune.models.classifier import ClassifierConfig
from jaxprune.pruning.kmeans_config import KMeansConfig

Peer = Literal[
  "jaxprune-auto",
  "jaxprune-yinyang",
  "jaxprune-hamerly",
  "jaxprune-lloyd",
  "sklearn-lloyd",
  "sklearn-elkan",
  "faiss",
]
PEERS: tuple[str, ...] = typing.get_args(Peer)  # also the order they run in
BenchData = Literal["weak", "blobs", "digits-ssl"]
DATASETS: tuple[str, ...] = typing.get_args(BenchData)


@dataclass(frozen=True)
class BenchKMeansConfig:
  """Benchmark k-means: time to convergence (default) or one Lloyd iteration, jaxprune vs
  scikit-learn vs faiss; or ImageNet-sized scoring end to end."""

  mode: Literal["converge", "iteration", "ab"] = "converge"
  """converge: seconds to the Lloyd fixed point (tol 0, at most max_iter iterations);
  iteration: the marginal cost of one Lloyd iteration against a matmul roofline; ab: jaxprune's
  auto against its lloyd to the fixed point, interleaved in one process (``iters`` rounds)"""
  n: int = 100_000
  """points"""
  d: int = 256
  """dimensions"""
  kmeans: KMeansConfig = field(
    default_factory=lambda: KMeansConfig(k=1000, distance="euclidean", tol=0.0)
  )
  """jaxprune's k-means: k clusters (every peer), at most max_iter iterations (converge; every
  peer), tol (converge; scikit-learn's too: 0 runs to the Lloyd fixed point), chunk_size; converge
  takes each jaxprune peer's algorithm from its name, iteration times plain lloyd at tol 0; the
  ImageNet-sized run takes k, max_iter and algorithm, the rest as the prune job's defaults"""
  data: tuple[BenchData, ...] = DATASETS
  """converge: datasets (weak: weakly clustered Gaussian; blobs: well separated Gaussian
  blobs; digits-ssl: the prune job's SimCLR embeddings of the 1,797 digits, tiled to N x D)"""
  peers: tuple[Peer, ...] = PEERS
  """converge: the peers to time (faiss, which has no convergence test, runs as many iterations
  as jaxprune-lloyd needed; max_iter when jaxprune-lloyd is not among them)"""
  data_dir: str = "bench_data"
  """converge: where the data, initial centroids and cached digits embeddings are written"""
  out: str = "runs/bench_kmeans/converge.json"
  """converge: the raw per-peer results (JSON); the markdown table goes next to it (.md)"""
  iters: int = 10
  """iteration: timed Lloyd iterations (the marginal cost over a 2-iteration run)"""
  seed: int = 0
  """seed of the generated data and initial centroids"""
  only: (
    Literal[
      "jaxprune",
      "sklearn",
      "matmul",
      "prune",
      "prepare",
      "kernel-sklearn",
      "kernel-faiss",
      "evaluate",
    ]
    | Peer
    | None
  ) = None
  """(internal) run one peer (or prepare the converge data) in this process and print its JSON
  line"""
  dataset: BenchData = "weak"
  """(internal) the dataset of a converge child"""
  faiss_iter: int | None = None
  """(internal) the iterations of the faiss converge child"""
  blas: Literal["fastest", "env"] = "fastest"
  """converge: fastest: time each OpenBLAS peer (scikit-learn, faiss) with the kernel a short
  check finds fastest for it here (the environment as set, OPENBLAS_CORETYPE unset, or the CPU's
  best forced); env: the environment as set"""
  target_rel: float = 1e-3
  """converge: the target inertia, this much (relative) above jaxprune-lloyd's fixed point"""
  target_iter: int | None = None
  """(internal) a jaxprune converge child's second timed run: this many iterations"""
  centroids_out: str | None = None
  """(internal) where a converge child saves its final centroids"""
  evaluate: tuple[str, ...] = ()
  """(internal) the evaluate child: centroid files to score on the dataset"""
  render: str | None = None
  """rewrite the markdown table of a finished converge run from its JSON (this path) and print
  it; nothing is run"""
  imagenet: bool = False
  """score 1,281,167 x 2048 embeddings (K = 1000) end to end through the prune job, streamed"""
  path: str = "bench_data/in1k_embeddings.npy"
  """the ImageNet-sized embeddings file (written when missing)"""
  workdir: str = "runs/bench_in1k"
  """the ImageNet-sized prune job's output directory"""

  def __post_init__(self):
    for name in ("n", "d", "iters"):
      require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
    k = self.kmeans.k
    require(k is not None, "kmeans.k must be given (the benchmark has no labels)")
    require(k <= self.n, f"kmeans.k must be <= n, got kmeans.k={k} n={self.n}")
    require(
      self.kmeans.distance == "euclidean",
      "kmeans.distance must be euclidean: the peers (scikit-learn, faiss) have no other",
    )
    require(len(self.data) >= 1, "data must name at least one dataset")
    require(len(self.peers) >= 1, "peers must name at least one peer")
    require(self.target_rel > 0, f"target_rel must be > 0, got {self.target_rel}")
    require(
      self.faiss_iter is None or self.faiss_iter >= 1,
      f"faiss_iter must be >= 1, got {self.faiss_iter}",
    )


@dataclass(frozen=True)
class BenchTrainConfig:
  """Training throughput: the scanned loop against a per-step jitted Python loop."""

  data: str = "digits"
  """digits | a TFDS name (its train split)"""
  data_dir: str | None = None
  """TFDS data_dir"""
  classifier: ClassifierConfig = field(
    default_factory=lambda: ClassifierConfig(steps=400, steps_per_dispatch=50)
  )
  """the model; steps are timed, steps_per_dispatch is K of the scanned loop"""
  repeats: int = 3
  """timed repeats of each loop (the fastest is reported)"""
  seed: int = 0
  """seed of the model's initial parameters and data order"""

  def __post_init__(self):
    check_finite(self)
    require(self.repeats >= 1, f"repeats must be >= 1, got {self.repeats}")
    require(
      self.classifier.steps >= self.classifier.steps_per_dispatch,
      "classifier.steps must be >= classifier.steps_per_dispatch, got "
      f"{self.classifier.steps} < {self.classifier.steps_per_dispatch}",
    )
