"""SimCLR (Chen et al., 2020): encoder with a projection head, NT-Xent loss, features.

The backbone representation (not the projection) is what k-means sees downstream.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.models.augment import simclr_augment
from jaxprune.models.classifier import ConvBackbone, LossFn
from jaxprune.models.images import check_images


class SimCLREncoder(nn.Module):
  """:class:`ConvBackbone` (representation ``N x 4*width``) + 2-layer MLP projection head.

  ``__call__(x, project=True)`` returns the projection ``N x embed_dim``; ``project=False`` the
  backbone representation. Initialise with ``project=True`` so the head's parameters exist.
  """

  embed_dim: int = 64
  width: int = 32

  @nn.compact
  def __call__(self, x, train: bool = False, project: bool = True):
    h = ConvBackbone(self.width, name="backbone")(x, train)
    if not project:
      return h
    z = nn.relu(nn.Dense(h.shape[-1], name="proj_hidden")(h))
    return nn.Dense(self.embed_dim, name="proj_out")(z)


def _nt_xent_terms(z1_NxE, z2_NxE, temperature):
  """Per-anchor loss (2N) and whether each anchor's most similar other sample is its positive."""
  n = z1_NxE.shape[0]
  z = jnp.concatenate([z1_NxE, z2_NxE]).astype(jnp.float32)
  z = z / jnp.maximum(jnp.linalg.norm(z, axis=1, keepdims=True), 1e-12)
  sim = (z @ z.T) / temperature
  sim = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, sim)  # an anchor is not its own pair
  pos_2N = (jnp.arange(2 * n) + n) % (2 * n)
  pos_sim = sim[jnp.arange(2 * n), pos_2N]
  loss_2N = jax.nn.logsumexp(sim, axis=1) - pos_sim
  hit_2N = jnp.max(sim, axis=1) <= pos_sim
  return loss_2N, hit_2N


def _check_pair(z1, z2, temperature):
  s1, s2 = getattr(z1, "shape", None), getattr(z2, "shape", None)
  if s1 is None or len(s1) != 2 or s1 != s2:
    raise ValueError(f"z1 and z2 must be 2-D arrays of the same shape (N, E), got {s1} and {s2}")
  if s1[0] < 1:
    raise ValueError("z1 and z2 must hold at least one row")
  if not temperature > 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")


def nt_xent(z1, z2, *, temperature: float = 0.2) -> jax.Array:
  """NT-Xent loss of two views ``z1_NxE``, ``z2_NxE`` (row i of each: the same image). Scalar.

  Rows are L2-normalised; each of the 2N anchors is scored against the 2N - 1 others by cosine
  similarity / temperature, with the other view of its image as the positive.
  """
  _check_pair(z1, z2, temperature)
  loss_2N, _ = _nt_xent_terms(z1, z2, temperature)
  return jnp.mean(loss_2N)


def simclr_loss(
  encoder: SimCLREncoder,
  *,
  temperature: float = 0.2,
  augment: Callable[[jax.Array, jax.Array], jax.Array] = simclr_augment,
) -> LossFn:
  """Pure ``loss_fn(params, batch, key) -> (loss, {"ssl_accuracy"})`` for SimCLR.

  ``batch = {"image": float32 N x H x W x C in [0, 1]}``. Two views per image from
  ``augment(k, images)`` with independent keys; loss :func:`nt_xent` of their projections.
  ``ssl_accuracy``: fraction of the 2N anchors whose most similar other sample is the positive.
  """
  if not isinstance(encoder, nn.Module):
    raise ValueError(f"encoder must be a flax.linen Module, got {type(encoder).__name__}")
  if not temperature > 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")

  def loss_fn(params, batch, key):
    images = batch["image"]
    check_images(images, name='batch["image"]')
    n = images.shape[0]
    if n < 2:
      raise ValueError(f"SimCLR needs at least 2 images per batch, got {n}")
    key1, key2 = jax.random.split(key)
    views = jnp.concatenate([augment(key1, images), augment(key2, images)])
    # One forward pass for both views: there is no batch normalisation to mix them.
    z = encoder.apply({"params": params}, views, train=True, project=True)
    loss_2N, hit_2N = _nt_xent_terms(z[:n], z[n:], temperature)
    return jnp.mean(loss_2N), {"ssl_accuracy": jnp.mean(hit_2N.astype(jnp.float32))}

  return loss_fn


@partial(jax.jit, static_argnames=("encoder",))
def _represent(encoder, params, x_BxHxWxC):
  return encoder.apply({"params": params}, x_BxHxWxC, train=False, project=False)


def simclr_features(
  encoder: SimCLREncoder, params, images_float, *, batch_size: int = 512
) -> np.ndarray:
  """Backbone representations (no projection head) of ``images_NxHxWxC``: float32 N x D numpy.

  Runs in batches of ``batch_size`` (the last one padded, so one compilation).
  """
  check_images(images_float)
  if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
  n = images_float.shape[0]
  if n == 0:
    raise ValueError("images must hold at least one image")
  b = min(batch_size, n)
  outs = []
  for start in range(0, n, b):
    x = jnp.asarray(images_float[start : start + b], jnp.float32)
    if x.shape[0] < b:
      x = jnp.concatenate([x, jnp.zeros((b - x.shape[0],) + x.shape[1:], x.dtype)])
    outs.append(_represent(encoder, params, x))  # dispatched; fetched after the loop
  return np.concatenate([np.asarray(o) for o in outs])[:n].astype(np.float32)
