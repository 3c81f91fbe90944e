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


def check_labels(labels, n: int, *, name: str = "labels") -> np.ndarray:
  """Validate one non-negative integer class id per example; returns a numpy array."""
  labels = np.asarray(labels)
  if labels.ndim != 1 or labels.shape[0] != n:
    raise ValueError(
      f"{name} must be a 1-D array with one entry per example ({n}), got shape {labels.shape}"
    )
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{name} must be integers, got dtype {labels.dtype}")
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
  """Indices (sorted, original order) of the examples kept. See the module docstring."""
  check_fraction(fraction)
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
  scores = np.asarray(scores)
  if scores.ndim != 1 or scores.shape[0] == 0:
    raise ValueError(f"scores must be a non-empty 1-D array, got shape {scores.shape}")
  if not np.isfinite(scores).all():
    raise ValueError(f"scores contain {int((~np.isfinite(scores)).sum())} NaN or inf values")
  if not 0.0 <= class_balance <= 1.0:
    raise ValueError(f"class_balance must be in [0, 1], got {class_balance}")
  n = scores.shape[0]
  n_keep = num_kept(n, fraction)
  if mode == "random":
    if key is None:
      raise ValueError("mode='random' needs a key")
    rank_key = jax.random.permutation(key, n).astype(jnp.float32)
  else:
    rank_key = -scores if mode == "hard" else scores
  num_classes, quota = 0, jnp.zeros((1,), jnp.int32)
  if labels is not None and class_balance > 0:
    labels = check_labels(labels, n)
    counts = np.bincount(labels)
    num_classes = len(counts)
    quota = jnp.asarray(np.floor(class_balance * fraction * counts).astype(np.int32))
  elif labels is None and class_balance > 0:
    raise ValueError("class_balance > 0 needs labels")
  lab = jnp.asarray(labels if num_classes else np.zeros(n, np.int32))
  ties = jnp.arange(n) if tie_key is None else jax.random.permutation(tie_key, n)
  return np.asarray(
    _select(jnp.asarray(rank_key), lab, quota, ties, n_keep=n_keep, num_classes=num_classes)
  )
