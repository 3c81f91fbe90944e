"""Hardness scores. Every function returns one float per example (higher = harder).

Self-supervised prototypes (Sorscher et al. 2022): k-means in embedding space, hardness = distance
to the nearest centroid. Supervised prototypes: distance to the example's own class centroid.
Random: i.i.d. uniform scores (the baseline).

Distances: ``"cosine"`` gives ``1 - cos`` (the paper's choice, the default); ``"euclidean"`` gives
the euclidean distance (the square root of the k-means objective's term).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxprune.pruning.kmeans import assign, check_distance, check_points, kmeans, normalise, prepare
from jaxprune.pruning.kmeans_streamed import kmeans_streamed
from jaxprune.pruning.select import check_labels


def _hardness(dist, distance: str):
  """k-means' distance (squared for euclidean) -> the score (the distance itself)."""
  return jnp.sqrt(dist) if distance == "euclidean" else dist


def self_supervised_prototypes(
  x,
  *,
  k: int,
  key: jax.Array,
  distance: str = "cosine",
  n_init: int = 1,
  max_iter: int = 100,
  tol: float = 1e-4,
  chunk_size: int = 512,
  mesh=None,
  streamed: bool = False,
  init_sample: int | None = None,
  progress: bool = False,
  algorithm: str = "auto",
):
  """Hardness = distance to the nearest k-means centroid of the embeddings ``x`` (N x D).
  ``algorithm``: k-means with Hamerly's bounds (``"auto"``, ``"hamerly"``) or plain
  ``"lloyd"``: the same centroids and labels either way (:func:`kmeans.kmeans`).

  Returns ``(scores_N, cluster_N, result)``. ``streamed=True`` keeps ``x`` on the host (a memory
  map, say) and streams it in blocks: memory stays bounded for embeddings larger than RAM.
  """
  if streamed:
    result, labels, dist = kmeans_streamed(
      x,
      k=k,
      key=key,
      distance=distance,
      max_iter=max_iter,
      tol=tol,
      init_sample=init_sample,
      chunk_size=chunk_size,
      progress=progress,
      algorithm=algorithm,
    )
    return np.asarray(_hardness(jnp.asarray(dist), distance)), labels, result
  result = kmeans(
    x,
    k=k,
    key=key,
    distance=distance,
    n_init=n_init,
    max_iter=max_iter,
    tol=tol,
    chunk_size=chunk_size,
    mesh=mesh,
    algorithm=algorithm,
  )
  labels, dist = assign(x, result.centroids, distance=distance, chunk_size=chunk_size, mesh=mesh)
  return _hardness(dist, distance), labels, result


@partial(jax.jit, static_argnames=("num_classes", "distance"))
def _supervised(x, labels, *, num_classes, distance):
  xp = prepare(x, distance)
  sums = jax.ops.segment_sum(xp, labels, num_classes)
  counts = jax.ops.segment_sum(jnp.ones(labels.shape, jnp.float32), labels, num_classes)
  centroids = sums / jnp.maximum(counts, 1.0)[:, None]
  if distance == "cosine":
    centroids = normalise(centroids)
    return 1.0 - jnp.sum(xp * centroids[labels], axis=1)
  return jnp.linalg.norm(xp - centroids[labels], axis=1)


def supervised_prototypes(
  x, labels, *, distance: str = "cosine", num_classes: int | None = None
) -> jax.Array:
  """Hardness = distance of each example to the centroid of its own class."""
  check_distance(distance)
  check_points(x, distance=distance)
  labels = check_labels(labels, x.shape[0])
  num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
  return _supervised(
    jnp.asarray(x), jnp.asarray(labels), num_classes=num_classes, distance=distance
  )


def random_scores(n: int, *, key: jax.Array) -> jax.Array:
  """The random baseline: i.i.d. uniform scores in [0, 1)."""
  if n < 1:
    raise ValueError(f"n must be >= 1, got {n}")
  return jax.random.uniform(key, (n,))


# ---------------------------------------------------------------------------------------------
# supervised scores: pure functions of trained params (training: jaxprune/pruning/supervised.py)


def _check_images_labels(images, labels):
  if images.shape[0] == 0:
    raise ValueError("images are empty")
  return check_labels(labels, images.shape[0])


def el2n(apply_fn, params_S, images, labels, *, num_classes: int, batch_size: int = 512):
  """EL2N: ``|| softmax(f(x)) - onehot(y) ||_2`` averaged over S models (params stacked on a
  leading axis), computed in batches. ``apply_fn(params, images_float) -> logits``."""
  labels = _check_images_labels(images, labels)

  def batch(params_S, x, y):
    err = lambda p: jnp.linalg.norm(
      jax.nn.softmax(apply_fn(p, x)) - jax.nn.one_hot(y, num_classes), axis=-1
    )
    return jnp.mean(jax.vmap(err)(params_S), axis=0)

  return _map_batches(batch, params_S, images, labels, batch_size)


def grand(loss_single, params_S, images, labels, *, chunk_size: int = 32):
  """GraNd: ``|| grad_params loss(x, y) ||_2`` per example, averaged over S models.

  ``loss_single(params, image_HxWxC, label) -> scalar``. Gradients are formed for one chunk of
  ``chunk_size`` examples at a time and reduced to norms at once, so memory is bounded by
  chunk_size x parameters, never batch x parameters.
  """
  labels = _check_images_labels(images, labels)

  def norms(p, x, y):
    g = jax.vmap(jax.grad(loss_single), in_axes=(None, 0, 0))(p, x, y)
    sq = sum(jnp.sum(l.reshape(l.shape[0], -1) ** 2, axis=1) for l in jax.tree.leaves(g))
    return jnp.sqrt(sq)

  def chunk(params_S, x, y):  # models one after another: S x chunk x params is never held
    return lax.map(lambda p: norms(p, x, y), params_S).mean(0)

  return _map_batches(chunk, params_S, images, labels, chunk_size)


def forgetting(forgets_N, learned_N):
  """Forgetting score: number of correct -> incorrect transitions; examples never learned rank
  as hardest (one more than the most-forgotten example)."""
  forgets = jnp.asarray(forgets_N, jnp.float32)
  return jnp.where(jnp.asarray(learned_N), forgets, jnp.max(forgets) + 1.0)


def _map_batches(fn, params, x, y, batch_size: int):
  """``fn(params, x_batch, y_batch) -> per-example values`` over batches of ``x`` (lax.map)."""
  x, y = jnp.asarray(x), jnp.asarray(np.asarray(y, np.int32))
  b = min(batch_size, x.shape[0])

  @jax.jit
  def run(params, x, y):
    n_full = x.shape[0] // b
    xs = x[: n_full * b].reshape((n_full, b) + x.shape[1:])
    ys = y[: n_full * b].reshape(n_full, b)
    out = lax.map(lambda xy: fn(params, *xy), (xs, ys)).reshape(-1)
    if x.shape[0] % b:
      out = jnp.concatenate([out, fn(params, x[n_full * b :], y[n_full * b :])])
    return out

  return run(params, x, y)
