"""Hardness scores. Every function returns one float per example (higher = harder).

Self-supervised prototypes (Sorscher et al. 2022): k-means in embedding space, hardness = distance
to the nearest centroid. Supervised prototypes: distance to the example's own class centroid.
Random: i.i.d. uniform scores (the baseline).

Distances: ``"cosine"`` gives ``1 - cos`` (the paper's choice, the default); ``"euclidean"`` gives
the euclidean distance (the square root of the k-means objective's ``sqdist``): the
``hardness`` of :mod:`distances`.

Every score is a ``jax.Array``. The prototype scores are jittable (``k`` / ``num_classes``
static; not ``streamed=True``, which reads a host array); their values are checked on the host by
:func:`kmeans.check_embeddings` before the work.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxprune.pruning import distances
from jaxprune.pruning.distances import Distance
from jaxprune.pruning.kmeans import KMeansResult, assign, check_shape, kmeans
from jaxprune.pruning.kmeans_streamed import kmeans_streamed
from jaxprune.pruning.select import check_label_shape, check_labels


def self_supervised_prototypes(
  x,
  *,
  k: int,
  key: jax.Array,
  distance: str | Distance = "cosine",
  n_init: int = 1,
  max_iter: int = 100,
  tol: float = 1e-4,
  chunk_size: int = 512,
  mesh=None,
  streamed: bool = False,
  init_sample: int | None = None,
  progress: bool = False,
  algorithm: str = "auto",
) -> tuple[jax.Array, jax.Array, KMeansResult]:
  """Hardness = distance to the nearest k-means centroid of the embeddings ``x`` (N x D).
  ``algorithm``: k-means with bounds (``"auto"``, ``"yinyang"``, ``"hamerly"``) or plain
  ``"lloyd"``: the same centroids and labels either way (:func:`kmeans.kmeans`).

  Returns ``(scores_N, cluster_N, result)``, jax arrays. Jittable (``k`` static). ``streamed=True``
  keeps ``x`` on the host (a memory map, say) and streams it in blocks: memory stays bounded for
  embeddings larger than RAM (a host function, not jittable).
  """
  distance = distances.get(distance)
  if streamed:
    result, labels, sqdist = kmeans_streamed(
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
    return distance.hardness(jnp.asarray(sqdist)), jnp.asarray(labels), result
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
  labels, sqdist = assign(x, result.centroids, distance=distance, chunk_size=chunk_size, mesh=mesh)
  return distance.hardness(sqdist), labels, result


@partial(jax.jit, static_argnames=("num_classes", "distance"))
def _supervised(x, labels, *, num_classes, distance):
  xp = distance.prepare(x)
  sums = jax.ops.segment_sum(xp, labels, num_classes)
  counts = jax.ops.segment_sum(jnp.ones(labels.shape, jnp.float32), labels, num_classes)
  centroids = distance.project(sums / jnp.maximum(counts, 1.0)[:, None])
  return distance.hardness(distance.sqdist(xp, centroids[labels]))


def supervised_prototypes(
  x, labels, *, distance: str | Distance = "cosine", num_classes: int | None = None
) -> jax.Array:
  """Hardness = distance of each example of ``x`` (N x D) to the centroid of its own class
  (``labels``: N class ids). Jittable with a static ``num_classes``; without it the number of
  classes is read from the labels (on the host)."""
  distance = distances.get(distance)
  check_shape(x)
  if num_classes is None:
    labels = check_labels(labels, x.shape[0])
    num_classes = int(labels.max()) + 1
  else:
    check_label_shape(labels, x.shape[0])
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
