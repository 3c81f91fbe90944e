"""Classifier ensembles (vmapped over models, through the shared loop): trained on a subset
(:func:`train_classifiers`), or on all data with the supervised scores EL2N, GraNd and forgetting
recorded (:func:`supervised_metrics`).

One run gives all three scores (Paul et al. 2021's protocol): S models train on the full
training set while a tracker records, for every example, correct -> incorrect transitions each
time the example is drawn, over the whole run (forgetting, Toneva et al.; correctness is judged
on the un-augmented image just before the update); EL2N is taken from the S models early in the
run (``score_at``, 10% by default: epoch 20 of 200 on CIFAR-10), GraNd at their initialisations
(or with EL2N's models).

Compilation: the jitted init and step of an ensemble come from :func:`classifier_ensemble_fns`,
memoised on values (classifier config, classes, image shape, N, batch size, tracking, mesh), and
``fit`` memoises its dispatch on the step: a pruning curve compiles once per subset size.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxprune.core.cache import memoize
from jaxprune.core.config import require
from jaxprune.core.loop import (
  DeviceData,
  TrainState,
  create_state,
  epoch_batch_indices,
  make_data_step,
  make_update,
  steps_per_epoch,
  to_device,
)
from jaxprune.core.run import Run, fit
from jaxprune.models.classifier import Classifier, ClassifierConfig, build
from jaxprune.pruning import scores as scores_lib


class Tracked(struct.PyTreeNode):
  """A train state plus per-example forgetting statistics (N = dataset size)."""

  train: TrainState
  prev_correct: jax.Array  # N bool: correct at the example's last presentation
  forgets: jax.Array  # N int32: correct -> incorrect transitions
  learned: jax.Array  # N bool: ever correct

  @property
  def step(self):
    return self.train.step


def track(state: TrainState, n: int) -> Tracked:
  return Tracked(state, jnp.zeros(n, bool), jnp.zeros(n, jnp.int32), jnp.zeros(n, bool))


def make_tracked_step(
  step: Callable, apply_fn: Callable, *, batch_size: int, preprocess_eval: Callable
) -> Callable:
  """Wrap a data step (see :func:`jaxprune.core.loop.make_data_step`) with forgetting
  statistics."""

  def tracked(t: Tracked, data: DeviceData):
    n = data.labels.shape[0]
    idx = epoch_batch_indices(t.train.key, t.train.step, n=n, batch_size=batch_size)
    logits = apply_fn(t.train.params, preprocess_eval(data.images[idx]))
    correct = jnp.argmax(logits, -1) == data.labels[idx]
    forgot = t.prev_correct[idx] & ~correct
    train, metrics = step(t.train, data)
    return Tracked(
      train,
      t.prev_correct.at[idx].set(correct),
      t.forgets.at[idx].add(forgot.astype(jnp.int32)),
      t.learned.at[idx].max(correct),
    ), metrics

  return tracked


def ensemble_fns(
  clf: Classifier, *, n: int, batch_size: int, track_forgetting: bool = True, mesh=None
) -> tuple[Callable, Callable]:
  """``(init_S, step_S)`` of an ensemble of ``clf`` on ``n`` examples: ``init_S(keys_S)`` (jitted)
  gives the stacked states (:class:`Tracked` with ``track_forgetting``), ``step_S`` is the
  vmapped data step. Not memoised: jobs use :func:`classifier_ensemble_fns`."""

  def init_one(key):
    k_init, k_run = jax.random.split(key)
    state = create_state(clf.init_fn(k_init), clf.optimizer, k_run)
    return track(state, n) if track_forgetting else state

  step = make_data_step(
    make_update(clf.loss_fn, clf.optimizer),
    batch_size=batch_size,
    preprocess=clf.preprocess,
    mesh=mesh,
  )
  if track_forgetting:
    step = make_tracked_step(
      step, clf.apply_fn, batch_size=batch_size, preprocess_eval=clf.preprocess_eval
    )
  return jax.jit(jax.vmap(init_one)), jax.vmap(step, in_axes=(0, None))


@memoize
def classifier_ensemble_fns(
  cfg: ClassifierConfig,
  num_classes: int,
  image_shape: tuple,
  n: int,
  batch_size: int,
  track_forgetting: bool,
  mesh=None,
) -> tuple[Classifier, Callable, Callable]:
  """``(clf, init_S, step_S)`` for a classifier config (:func:`ensemble_fns`), memoised on these
  values: repeated trainings of the same model and shapes (a pruning curve) compile once."""
  clf = build(cfg, num_classes=num_classes, image_shape=image_shape)
  return (
    clf,
    *ensemble_fns(clf, n=n, batch_size=batch_size, track_forgetting=track_forgetting, mesh=mesh),
  )


def model_keys(key: jax.Array, num_models: int) -> jax.Array:
  """The S keys of an ensemble: model i gets ``fold_in(key, i)`` (so model i is the same model
  whatever S)."""
  if num_models < 1:
    raise ValueError(f"num_models must be >= 1, got {num_models}")
  return jnp.stack([jax.random.fold_in(key, i) for i in range(num_models)])


def fit_ensemble(
  init_S: Callable,
  step_S: Callable,
  data: DeviceData,
  *,
  key: jax.Array,
  num_models: int,
  num_steps: int,
  run: Run | None = None,
  steps_per_dispatch: int = 10,
  progress: bool = True,
  mesh=None,
):
  """Train ``num_models`` models side by side (vmapped) for ``num_steps`` steps; resumable under
  ``run``. Returns the stacked states."""
  states, _ = fit(
    step_S,
    init_S(model_keys(key, num_models)),
    data,
    num_steps=num_steps,
    run=run,
    steps_per_dispatch=steps_per_dispatch,
    log_every=max(1, num_steps // 20),
    ckpt_every=max(1, num_steps // 4),
    progress=progress,
    desc=f"ensemble of {num_models}",
    mesh=mesh,
  )
  return states


def train_classifiers(
  cfg: ClassifierConfig,
  images,
  labels,
  *,
  num_classes: int,
  key: jax.Array,
  num_models: int,
  run: Run | None = None,
  progress: bool = False,
  mesh=None,
) -> tuple[Classifier, object]:
  """Train ``num_models`` classifiers side by side for ``cfg.steps`` steps (batches sharded over
  ``mesh`` when given); resumable under ``run``. Returns ``(classifier, stacked params)``."""
  bs = min(cfg.batch_size, len(labels))
  clf, init_S, step_S = classifier_ensemble_fns(
    cfg, int(num_classes), tuple(images.shape[1:]), len(labels), bs, False, mesh
  )
  states = fit_ensemble(
    init_S,
    step_S,
    to_device(images, labels, mesh),
    key=key,
    num_models=num_models,
    num_steps=cfg.steps,
    run=run,
    steps_per_dispatch=cfg.steps_per_dispatch,
    progress=progress,
    mesh=mesh,
  )
  return clf, states.params


GRAND_AT = ("init", "score_at")


def check_scoring_fields(cfg) -> None:
  """Validate a config's scoring fields (``score_epochs``, ``score_at``, ``grand_at``), shared
  by the prune and curve configs."""
  require(
    cfg.score_epochs is None or cfg.score_epochs >= 1,
    f"score_epochs must be >= 1 (or None), got {cfg.score_epochs}",
  )
  require(0.0 < cfg.score_at <= 1.0, f"score_at must be in (0, 1], got {cfg.score_at}")
  require(cfg.grand_at in GRAND_AT, f"grand_at must be one of {GRAND_AT}, got {cfg.grand_at!r}")


def scoring_kwargs(cfg) -> dict:
  """The :func:`supervised_metrics` arguments a config's scoring fields set (``score_models``,
  ``score_epochs``, ``score_at``, ``grand_at``), shared by the prune and curve jobs."""
  return dict(
    num_models=cfg.score_models,
    epochs=cfg.score_epochs,
    score_at=cfg.score_at,
    grand_at=cfg.grand_at,
  )


def scoring_steps(cfg: ClassifierConfig, n: int, epochs: int | None) -> int:
  """Length of the scoring run: ``epochs`` epochs of ``n`` examples, or (``None``) as many steps
  as one training run of ``cfg`` (``cfg.steps``)."""
  if epochs is None:
    return cfg.steps
  if epochs < 1:
    raise ValueError(f"epochs must be >= 1, got {epochs}")
  return epochs * steps_per_epoch(n, min(cfg.batch_size, n))


def score_step(total: int, score_at: float) -> int:
  """The step EL2N is taken at: ``round(score_at * total)``, at least 1."""
  if not 0.0 < score_at <= 1.0:
    raise ValueError(f"score_at must be a fraction of the scoring run in (0, 1], got {score_at}")
  return max(1, int(round(score_at * total)))


def supervised_metrics(
  cfg: ClassifierConfig,
  images,
  labels,
  *,
  num_classes: int,
  key: jax.Array,
  num_models: int,
  epochs: int | None = None,
  score_at: float = 0.1,
  grand_at: str = "init",
  which: tuple[str, ...] = ("el2n", "grand", "forgetting"),
  progress: bool = False,
) -> dict[str, np.ndarray]:
  """EL2N, GraNd and forgetting of every training example, by Paul et al. (2021)'s protocol:
  ``num_models`` models (vmapped) train on all of it for the scoring run (``epochs``, or
  ``None``: ``cfg.steps`` steps);

  * EL2N from the models at ``score_at`` of the run (Paul et al.: epoch 20 of 200, 0.1);
  * GraNd at the models' initialisations (``grand_at="init"``: the expected gradient norm over
    the ``num_models`` initialisations), or with EL2N's models (``"score_at"``);
  * forgetting counted over the whole run.

  ``which`` names the scores returned (GraNd costs one gradient per example and model: leave it
  out when it is not wanted).
  """
  if grand_at not in GRAND_AT:
    raise ValueError(f"grand_at must be one of {GRAND_AT}, got {grand_at!r}")
  unknown = set(which) - {"el2n", "grand", "forgetting"}
  if unknown or not which:
    raise ValueError(f"which must name some of el2n, grand, forgetting; got {which}")
  bs = min(cfg.batch_size, len(labels))
  total = scoring_steps(cfg, len(labels), epochs)
  at = score_step(total, score_at)
  clf, init_S, step_S = classifier_ensemble_fns(
    cfg, int(num_classes), tuple(images.shape[1:]), len(labels), bs, True, None
  )
  data = to_device(images, labels)
  images_eval = clf.preprocess_eval(data.images)
  ens = init_S(model_keys(key, num_models))
  out = {}
  if "grand" in which and grand_at == "init":
    out["grand"] = grand_of(ens.train.params, clf.apply_fn, images_eval, data.labels)
  # two legs of one run: to the scoring step, then on to the end (the scores are taken
  # between the legs)
  for stop in sorted({at, total}):
    ens, _ = fit(
      step_S,
      ens,
      data,
      num_steps=stop,
      steps_per_dispatch=cfg.steps_per_dispatch,
      log_every=max(1, total // 20),
      progress=progress,
      desc=f"scoring ensemble of {num_models}",
    )
    if stop == at:
      params = ens.train.params
      out["el2n"] = np.asarray(
        scores_lib.el2n(clf.apply_fn, params, images_eval, data.labels, num_classes=num_classes)
      )
      if "grand" in which and grand_at == "score_at":
        out["grand"] = grand_of(params, clf.apply_fn, images_eval, data.labels)
  out["forgetting"] = np.asarray(
    scores_lib.forgetting(np.asarray(ens.forgets).mean(0), np.asarray(ens.learned).all(0))
  )
  return {k: out[k] for k in which}


def grand_of(params_S, apply_fn: Callable, images, labels, chunk: int = 32) -> np.ndarray:
  """GraNd of every example (float images, preprocessed) under the S stacked models: the mean
  over the models of the per-example gradient norm of the cross-entropy."""

  def loss_single(p, x, y):
    logits = apply_fn(p, x[None])[0]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)

  return np.asarray(scores_lib.grand(loss_single, params_S, images, labels, chunk_size=chunk))


def supervised_scores(
  ensemble: Tracked,
  apply_fn: Callable,
  data: DeviceData,
  *,
  num_classes: int,
  preprocess_eval: Callable,
  grand_chunk: int = 32,
) -> dict[str, np.ndarray]:
  """``{"el2n", "grand", "forgetting"}``: one float per training example, higher = harder."""
  images = preprocess_eval(data.images)
  labels = np.asarray(data.labels)
  params = ensemble.train.params

  forgets = np.asarray(ensemble.forgets).mean(0)  # averaged over the S runs
  learned = np.asarray(ensemble.learned).all(0)
  return {
    "el2n": np.asarray(scores_lib.el2n(apply_fn, params, images, labels, num_classes=num_classes)),
    "grand": grand_of(params, apply_fn, images, labels, grand_chunk),
    "forgetting": np.asarray(scores_lib.forgetting(forgets, learned)),
  }
