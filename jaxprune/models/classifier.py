"""Image classifiers (flax.linen) and their pure loss.

Inputs are float32 image batches ``x_NxHxWxC``; outputs are logits ``N x num_classes``.
No BatchNorm anywhere: models have no mutable state, so a step is a pure function of
``(params, batch, key)`` and can be vmapped over seeds.
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxprune.models.layers import PatchConv

LossFn = Callable[[dict, dict, jax.Array], tuple[jax.Array, dict]]


def check_images(x, *, name: str = "images") -> None:
  """Raise ``ValueError`` unless ``x`` is a 4-D N x H x W x C floating-point array."""
  shape = getattr(x, "shape", None)
  if shape is None or len(shape) != 4:
    raise ValueError(f"{name} must be a 4-D array of shape (N, H, W, C), got shape {shape}")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"{name} must be floating point (e.g. float32 in [0, 1]), got {x.dtype}")


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


def classifier_loss(model: nn.Module, *,
                    augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None) -> LossFn:
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
      raise ValueError(f'batch["label"] must have shape (N,) = {images.shape[:1]}, '
                       f"got {labels.shape}")
    if augment is not None:
      images = augment(key, images)
    logits = model.apply({"params": params}, images, train=True)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
    return loss, {"accuracy": accuracy}

  return loss_fn
