"""Classifiers for the prune-then-train experiments: build, train (vmapped over seeds, through
the shared loop), evaluate."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxprune.models import ResNet18, SmallCNN, classifier_loss, random_crop_flip, to_float
from jaxprune.pruning.supervised import supervised_scores, train_ensemble
from jaxprune.core.loop import to_device

MODELS = ("cnn", "resnet18")


@dataclass(frozen=True)
class ClassifierConfig:
  """How a classifier is trained (the same for every subset of a pruning curve)."""

  model: str = "cnn"  # cnn | resnet18
  width: int = 32  # SmallCNN width
  steps: int = 300  # optimizer steps per training run (equal compute for every subset)
  batch_size: int = 64
  lr: float = 3e-3
  weight_decay: float = 1e-4
  optimizer: str = "adamw"  # adamw | sgd (momentum 0.9, the usual ResNet recipe)
  augment: bool = False  # random crop (pad 4) + flip, for CIFAR-style data
  steps_per_dispatch: int = 25


class Classifier(NamedTuple):
  init_fn: Callable  # key -> params
  apply_fn: Callable  # (params, images float) -> logits
  loss_fn: Callable  # (params, batch, key) -> (loss, metrics)
  optimizer: optax.GradientTransformation
  preprocess: Callable  # (uint8 images, key) -> float images (augmented)
  preprocess_eval: Callable  # uint8 images -> float images


def build(cfg: ClassifierConfig, *, num_classes: int, image_shape: tuple[int, ...]) -> Classifier:
  """The model's pure functions (cached: the same config gives the same function objects, so
  trainings that share it share compilations)."""
  return _build(cfg, int(num_classes), tuple(int(d) for d in image_shape))


@functools.lru_cache(maxsize=32)
def _build(cfg: ClassifierConfig, num_classes: int, image_shape: tuple[int, ...]) -> Classifier:
  if cfg.model not in MODELS:
    raise ValueError(f"model must be one of {MODELS}, got {cfg.model!r}")
  model = SmallCNN(num_classes, cfg.width) if cfg.model == "cnn" else ResNet18(num_classes)
  dummy = jnp.zeros((1,) + tuple(image_shape), jnp.float32)
  init_fn = lambda key: model.init(key, dummy)["params"]
  apply_fn = lambda params, x: model.apply({"params": params}, x)
  sched = optax.cosine_decay_schedule(cfg.lr, max(1, cfg.steps))
  if cfg.optimizer == "adamw":
    opt = optax.adamw(sched, weight_decay=cfg.weight_decay)
  elif cfg.optimizer == "sgd":
    opt = optax.chain(optax.add_decayed_weights(cfg.weight_decay), optax.sgd(sched, momentum=0.9))
  else:
    raise ValueError(f"optimizer must be adamw or sgd, got {cfg.optimizer!r}")

  def preprocess(images, key):
    x = to_float(images)
    return random_crop_flip(key, x) if cfg.augment else x

  return Classifier(init_fn, apply_fn, classifier_loss(model), opt, preprocess, to_float)


def train(cfg: ClassifierConfig, images, labels, *, num_classes: int, seeds,
          workdir: str | None = None, progress: bool = False, mesh=None):
  """Train ``len(seeds)`` classifiers side by side for ``cfg.steps`` steps (batches sharded over
  ``mesh`` when given); resumable with ``workdir``. Returns ``(classifier, stacked params)``."""
  clf = build(cfg, num_classes=num_classes, image_shape=images.shape[1:])
  data = to_device(images, labels, mesh)
  bs = min(cfg.batch_size, len(labels))
  states = train_ensemble(clf.init_fn, clf.apply_fn, clf.loss_fn, clf.optimizer, data,
                          seeds=seeds, epochs=0, num_steps=cfg.steps, batch_size=bs,
                          preprocess=clf.preprocess, preprocess_eval=clf.preprocess_eval,
                          steps_per_dispatch=cfg.steps_per_dispatch, workdir=workdir,
                          progress=progress, track_forgetting=False, mesh=mesh)
  return clf, states.params


def accuracy(clf: Classifier, params_S, images, labels, *, batch_size: int = 1000) -> np.ndarray:
  """Test accuracy of each of the S stacked models: an array of S floats."""
  labels = np.asarray(labels)
  correct = _correct_fn(clf)
  total = sum(np.asarray(correct(params_S, jnp.asarray(images[i:i + batch_size]),
                                 jnp.asarray(labels[i:i + batch_size])))
              for i in range(0, len(labels), batch_size))
  return total / len(labels)


@functools.lru_cache(maxsize=32)
def _correct_fn(clf: Classifier):
  def correct(params_S, x, y):
    logits = jax.vmap(clf.apply_fn, in_axes=(0, None))(params_S, clf.preprocess_eval(x))
    return jnp.sum(jnp.argmax(logits, -1) == y[None], axis=1)
  return jax.jit(correct)


def supervised_metrics(cfg: ClassifierConfig, images, labels, *, num_classes: int, seeds,
                       epochs: int, workdir: str | None = None,
                       progress: bool = False) -> dict[str, np.ndarray]:
  """EL2N, GraNd and forgetting scores of every training example from ``len(seeds)`` models
  trained ``epochs`` epochs on all of it (see :mod:`jaxprune.supervised`)."""
  clf = build(cfg, num_classes=num_classes, image_shape=images.shape[1:])
  data = to_device(images, labels)
  ens = train_ensemble(clf.init_fn, clf.apply_fn, clf.loss_fn, clf.optimizer, data,
                       seeds=seeds, epochs=epochs, batch_size=min(cfg.batch_size, len(labels)),
                       preprocess=clf.preprocess, preprocess_eval=clf.preprocess_eval,
                       steps_per_dispatch=cfg.steps_per_dispatch, workdir=workdir,
                       progress=progress)
  return supervised_scores(ens, clf.apply_fn, data, num_classes=num_classes,
                           preprocess_eval=clf.preprocess_eval)
