"""Image classifiers (flax.linen), their pure loss, and the classifier a job trains: the config,
:func:`build` (the model's pure functions, memoised) and :func:`accuracy`.

Inputs are float32 image batches ``x_NxHxWxC``; outputs are logits ``N x num_classes``.
No BatchNorm anywhere: models have no mutable state, so a step is a pure function of
``(params, batch, key)`` and can be vmapped over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxprune.core.cache import memoize
from jaxprune.core.config import check_finite, require
from jaxprune.models.augment import random_crop_flip
from jaxprune.models.images import check_images, to_unit_float
from jaxprune.models.layers import PatchConv

LossFn = Callable[[dict, dict, jax.Array], tuple[jax.Array, dict]]
MODELS = ("cnn", "resnet18")
OPTIMIZERS = ("adamw", "sgd")


class ConvBackbone(nn.Module):
  """Three 3x3 conv + relu layers (strides 1, 2, 2), global average pooling.

  ``x_NxHxWxC -> N x 4*width``. Works for any H, W >= 1 (8x8 digits, 28x28, 32x32).
  """

  width: int = 32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # no dropout / normalisation statistics
    check_images(x)
    for features, stride in ((self.width, 1), (2 * self.width, 2), (4 * self.width, 2)):
      x = nn.relu(PatchConv(features, 3, stride)(x))  # = nn.Conv(..., "SAME"), fast in scan
    return jnp.mean(x, axis=(1, 2))


class SmallCNN(nn.Module):
  """Small CNN classifier: :class:`ConvBackbone` + a dense head. ``x_NxHxWxC -> N x classes``."""

  num_classes: int
  width: int = 32

  @nn.compact
  def __call__(self, x, train: bool = False):
    h = ConvBackbone(self.width, name="backbone")(x, train)
    return nn.Dense(self.num_classes, name="head")(h)


class BasicBlock(nn.Module):
  """ResNet basic block: two 3x3 convs with GroupNorm, identity or 1x1-conv shortcut."""

  features: int
  stride: int = 1
  groups: int = 32

  @nn.compact
  def __call__(self, x):
    y = nn.Conv(self.features, (3, 3), strides=self.stride, padding="SAME", use_bias=False)(x)
    y = nn.relu(nn.GroupNorm(num_groups=self.groups)(y))
    y = nn.Conv(self.features, (3, 3), padding="SAME", use_bias=False)(y)
    y = nn.GroupNorm(num_groups=self.groups)(y)
    if self.stride != 1 or x.shape[-1] != self.features:
      x = nn.Conv(self.features, (1, 1), strides=self.stride, use_bias=False)(x)
      x = nn.GroupNorm(num_groups=self.groups)(x)
    return nn.relu(x + y)


class ResNet18(nn.Module):
  """CIFAR-style ResNet-18: 3x3 stem, no max-pool, 4 stages x 2 blocks (64/128/256/512).

  GroupNorm (32 groups) replaces BatchNorm, so the model has no mutable state (no
  ``batch_stats``) and trains through a pure ``loss_fn(params, batch, key)``; same parameter
  count as the BatchNorm version (about 11.17M for 10 classes). ``x_NxHxWxC -> N x classes``.
  """

  num_classes: int = 10
  groups: int = 32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # GroupNorm behaves the same in training and evaluation
    check_images(x)
    x = nn.Conv(64, (3, 3), padding="SAME", use_bias=False, name="stem")(x)
    x = nn.relu(nn.GroupNorm(num_groups=self.groups)(x))
    for features, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
      x = BasicBlock(features, stride, self.groups)(x)
      x = BasicBlock(features, 1, self.groups)(x)
    return nn.Dense(self.num_classes, name="head")(jnp.mean(x, axis=(1, 2)))


def classifier_loss(
  model: nn.Module, *, augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None
) -> LossFn:
  """Pure ``loss_fn(params, batch, key) -> (loss, {"accuracy"})`` for a classifier.

  ``batch = {"image": float32 N x H x W x C, "label": int N}``; ``params`` is
  ``variables["params"]``. Loss: mean softmax cross-entropy. ``augment(key, images)``, if given,
  is applied to the images first (e.g. :func:`jaxprune.models.random_crop_flip`); otherwise
  ``key`` is unused.
  """
  if not isinstance(model, nn.Module):
    raise ValueError(f"model must be a flax.linen Module, got {type(model).__name__}")

  def loss_fn(params, batch, key):
    images, labels = batch["image"], batch["label"]
    check_images(images, name='batch["image"]')
    if labels.shape != images.shape[:1]:
      raise ValueError(
        f'batch["label"] must have shape (N,) = {images.shape[:1]}, got {labels.shape}'
      )
    if augment is not None:
      images = augment(key, images)
    logits = model.apply({"params": params}, images, train=True)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
    return loss, {"accuracy": accuracy}

  return loss_fn


# ---------------------------------------------------------------------------------------------
# the classifier a job trains


@dataclass(frozen=True)
class ClassifierConfig:
  """How a classifier is trained (the same for every subset of a pruning curve)."""

  model: Literal["cnn", "resnet18"] = "cnn"
  """cnn (SmallCNN) or resnet18 (CIFAR ResNet-18, GroupNorm)"""
  width: int = 32
  """SmallCNN width (channels of its first layer)"""
  steps: int = 300
  """optimizer steps per training run (equal compute for every subset); the cosine decay length"""
  batch_size: int = 64
  """examples per step (capped at the training set's size)"""
  lr: float = 3e-3
  """peak learning rate (cosine decay to 0 over steps)"""
  weight_decay: float = 1e-4
  """decoupled weight decay"""
  optimizer: Literal["adamw", "sgd"] = "adamw"
  """adamw, or sgd (momentum 0.9, the usual ResNet recipe)"""
  augment: bool = False
  """random crop (pad 4) + flip, for CIFAR-style data"""
  steps_per_dispatch: int = 25
  """optimizer steps per jitted dispatch (lax.scan)"""

  def __post_init__(self):
    check_finite(self)
    require(self.model in MODELS, f"classifier.model must be one of {MODELS}, got {self.model!r}")
    require(
      self.optimizer in OPTIMIZERS,
      f"classifier.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}",
    )
    require(self.width >= 1, f"classifier.width must be >= 1, got {self.width}")
    require(self.steps >= 1, f"classifier.steps must be >= 1, got {self.steps}")
    require(self.batch_size >= 1, f"classifier.batch_size must be >= 1, got {self.batch_size}")
    require(self.lr > 0, f"classifier.lr must be > 0, got {self.lr}")
    require(
      self.weight_decay >= 0, f"classifier.weight_decay must be >= 0, got {self.weight_decay}"
    )
    require(
      self.steps_per_dispatch >= 1,
      f"classifier.steps_per_dispatch must be >= 1, got {self.steps_per_dispatch}",
    )


class Classifier(NamedTuple):
  """A classifier's pure functions."""

  init_fn: Callable  # key -> params
  apply_fn: Callable  # (params, images float) -> logits
  loss_fn: Callable  # (params, batch, key) -> (loss, metrics)
  optimizer: optax.GradientTransformation
  preprocess: Callable  # (uint8 images, key) -> float images (augmented)
  preprocess_eval: Callable  # uint8 images -> float images


def build(cfg: ClassifierConfig, *, num_classes: int, image_shape: tuple[int, ...]) -> Classifier:
  """The model's pure functions. Memoised: the same (config, classes, image shape) gives the
  very same function objects, so trainings that share them share compilations."""
  return _build(cfg, int(num_classes), tuple(int(d) for d in image_shape))


@memoize
def _build(cfg: ClassifierConfig, num_classes: int, image_shape: tuple[int, ...]) -> Classifier:
  model = SmallCNN(num_classes, cfg.width) if cfg.model == "cnn" else ResNet18(num_classes)
  dummy = jnp.zeros((1,) + image_shape, jnp.float32)
  init_fn = lambda key: model.init(key, dummy)["params"]
  apply_fn = lambda params, x: model.apply({"params": params}, x)
  sched = optax.cosine_decay_schedule(cfg.lr, cfg.steps)
  if cfg.optimizer == "adamw":
    opt = optax.adamw(sched, weight_decay=cfg.weight_decay)
  else:
    opt = optax.chain(optax.add_decayed_weights(cfg.weight_decay), optax.sgd(sched, momentum=0.9))

  def preprocess(images, key):
    x = to_unit_float(images)
    return random_crop_flip(key, x) if cfg.augment else x

  return Classifier(init_fn, apply_fn, classifier_loss(model), opt, preprocess, to_unit_float)


def accuracy(clf: Classifier, params_S, images, labels, *, batch_size: int = 1000) -> np.ndarray:
  """Test accuracy of each of the S stacked models (``params_S``): an array of S floats."""
  labels = np.asarray(labels)
  correct = _correct_fn(clf)
  total = sum(
    np.asarray(
      correct(
        params_S, jnp.asarray(images[i : i + batch_size]), jnp.asarray(labels[i : i + batch_size])
      )
    )
    for i in range(0, len(labels), batch_size)
  )
  return total / len(labels)


@memoize
def _correct_fn(clf: Classifier) -> Callable:
  """Jitted ``(params_S, uint8 x_BxHxWxC, y_B) -> correct_S``; ``clf`` comes from the memoised
  :func:`build`, so its identity is a value and one test set compiles once per classifier."""

  def correct(params_S, x, y):
    logits = jax.vmap(clf.apply_fn, in_axes=(0, None))(params_S, clf.preprocess_eval(x))
    return jnp.sum(jnp.argmax(logits, -1) == y[None], axis=1)

  return jax.jit(correct)
