"""Turn hardness scores into a kept subset.

``select(scores, fraction=f, mode=...)`` keeps ``round(f * N)`` examples (at least one):
``"hard"`` the highest scores, ``"easy"`` the lowest, ``"random"`` a uniform random subset.
Ties are broken by the example's index (lower index first), so the result is deterministic;
with ``tie_key`` they are broken by a permutation drawn from it instead (still deterministic),
so that the dataset's order cannot decide them: on a class-sorted dataset and an integer score
such as forgetting, lower-index-first hands every tie to the first classes.
With ``labels`` and ``class_balance = b`` in [0, 1], every class c first keeps
``floor(b * f * n_c)`` of its own best-ranked examples; the remaining budget goes to the best
ranked examples overall. Indices come back sorted, in the dataset's original order.

Two forms: :func:`select` on the host (checks the values: NaN scores, negative labels; returns a
numpy array) and :func:`select_indices` / :func:`select_mask`, pure and jittable (the fraction,
mode, class balance and number of classes static; returns a ``jax.Array``), which give the same
examples.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

MODES = ("hard", "easy", "random")


def num_kept(n: int, fraction: float) -> int:
  """Number of examples kept: ``round(fraction * n)``, at least 1."""
  check_fraction(fraction)
  return max(1, int(math.floor(fraction * n + 0.5)))


def check_label_shape(labels, n: int, *, name: str = "labels") -> None:
  """Static check (fine under ``jit``): one integer class id per example."""
  if not isinstance(labels, (np.ndarray, jax.Array)):
    labels = np.asarray(labels)
  if labels.ndim != 1 or labels.shape[0] != n:
    raise ValueError(
      f"{name} must be a 1-D array with one entry per example ({n}), got shape {labels.shape}"
    )
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f"{name} must be integers, got dtype {labels.dtype}")


def check_labels(labels, n: int, *, name: str = "labels") -> np.ndarray:
  """Validate one non-negative integer class id per example (host: reads the values); returns a
  numpy array."""
  labels = np.asarray(labels)
  check_label_shape(labels, n, name=name)
  if n and labels.min() < 0:
    raise ValueError(f"{name} must be non-negative class ids, got min {labels.min()}")
  return labels


def check_fraction(fraction) -> None:
  try:
    f = float(fraction)
  except (TypeError, ValueError):
    raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}") from None
  if not (0.0 < f <= 1.0):  # also rejects NaN
    raise ValueError(f"fraction must be in (0, 1], got {fraction}")


@partial(jax.jit, static_argnames=("n_keep", "num_classes"))
def _select(rank_key, labels, quota, ties, *, n_keep, num_classes):
  """Indices of the ``n_keep`` examples with the smallest ``rank_key`` under per-class quotas;
  ties go to the smaller ``ties`` value."""
  n = rank_key.shape[0]
  order = jnp.lexsort((ties, rank_key))  # by key, ties by ``ties``
  if num_classes:
    # rank of each example within its class, following the global order
    cls_sorted = labels[order]
    by_class = jnp.lexsort((jnp.arange(n), cls_sorted))  # stable: class, then global position
    first = jnp.searchsorted(cls_sorted[by_class], jnp.arange(num_classes))
    within = jnp.zeros(n, jnp.int32).at[by_class].set(jnp.arange(n) - first[cls_sorted[by_class]])
    forced = within < quota[cls_sorted]
    # forced examples first, then the rest, each in global order
    pos = jnp.lexsort((jnp.arange(n), (~forced).astype(jnp.int32)))
    order = order[pos]
  return jnp.sort(order[:n_keep])


def _check_static(scores, fraction, mode: str, class_balance: float) -> None:
  check_fraction(fraction)
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
  if scores.ndim != 1 or scores.shape[0] == 0:
    raise ValueError(f"scores must be a non-empty 1-D array, got shape {scores.shape}")
  if not 0.0 <= class_balance <= 1.0:
    raise ValueError(f"class_balance must be in [0, 1], got {class_balance}")


def select_indices(
  scores,
  *,
  fraction: float,
  mode: str = "hard",
  key: jax.Array | None = None,
  labels=None,
  num_classes: int | None = None,
  class_balance: float = 0.0,
  tie_key: jax.Array | None = None,
) -> jax.Array:
  """Indices (int32, sorted) of the ``round(fraction * N)`` examples kept: the module docstring's
  rule, as :func:`select`, in a pure function of arrays that runs under ``jit`` / ``vmap``.

  ``fraction``, ``mode``, ``class_balance`` and ``num_classes`` are static (Python values);
  ``scores`` (N), ``labels`` (N class ids in [0, num_classes), needed when ``class_balance > 0``)
  and the keys may be traced. Values are not checked (NaN scores rank arbitrarily): :func:`select`
  checks them on the host.
  """
  scores = jnp.asarray(scores)
  _check_static(scores, fraction, mode, class_balance)
  n = scores.shape[0]
  n_keep = num_kept(n, fraction)
  if mode == "random":
    if key is None:
      raise ValueError("mode='random' needs a key")
    rank_key = jax.random.permutation(key, n).astype(jnp.float32)
  else:
    rank_key = -scores if mode == "hard" else scores
  if class_balance > 0:
    if labels is None:
      raise ValueError("class_balance > 0 needs labels")
    if num_classes is None or num_classes < 1:
      raise ValueError(f"class_balance > 0 needs a static num_classes >= 1, got {num_classes}")
    check_label_shape(labels, n)
    labels = jnp.asarray(labels)
    counts = jnp.bincount(labels, length=num_classes)
    # floor(b f n_c) through a table made on the host in float64: the quotas of :func:`select`
    table = np.floor(class_balance * fraction * np.arange(n + 1)).astype(np.int32)
    quota = jnp.asarray(table)[counts]
  else:
    num_classes, quota, labels = 0, jnp.zeros((1,), jnp.int32), jnp.zeros(n, jnp.int32)
  ties = jnp.arange(n) if tie_key is None else jax.random.permutation(tie_key, n)
  return _select(rank_key, labels, quota, ties, n_keep=n_keep, num_classes=num_classes)


def select_mask(scores, **kw) -> jax.Array:
  """:func:`select_indices` as a boolean mask over the N examples (same keyword arguments)."""
  n = jnp.shape(scores)[0]
  return jnp.zeros(n, bool).at[select_indices(scores, **kw)].set(True)


def select(
  scores,
  *,
  fraction: float,
  mode: str = "hard",
  key: jax.Array | None = None,
  labels=None,
  class_balance: float = 0.0,
  tie_key: jax.Array | None = None,
) -> np.ndarray:
  """Indices (sorted, original order) of the examples kept. See the module docstring. On the
  host: checks the values first; the work is :func:`select_indices`."""
  scores = np.asarray(scores)
  _check_static(scores, fraction, mode, class_balance)
  if not np.isfinite(scores).all():
    raise ValueError(
      f"scores contain {int((~np.isfinite(scores)).sum())} NaN or inf values (first at index "
      f"{int(np.flatnonzero(~np.isfinite(scores))[0])}): check what they were computed from "
      "(embeddings: kmeans.check_embeddings names NaN and float32-overflowing rows; a diverged "
      "classifier: lower its learning rate)"
    )
  num_classes = None
  if labels is not None and class_balance > 0:
    labels = check_labels(labels, scores.shape[0])
    num_classes = int(labels.max()) + 1
  elif labels is None and class_balance > 0:
    raise ValueError("class_balance > 0 needs labels")
  else:
    labels = None
  return np.asarray(
    select_indices(
      scores,
      fraction=fraction,
      mode=mode,
      key=key,
      labels=labels,
      num_classes=num_classes,
      class_balance=class_balance,
      tie_key=tie_key,
    )
  )
