"""The two distances of k-means and the prototype scores, as objects chosen once at the entry.

A :class:`Distance` is a NamedTuple of pure functions (hashable: a static argument under
``jit``). Public functions take ``distance="euclidean" | "cosine"`` and turn it into one with
:func:`get`; everything below passes the object down. One name per quantity:

* ``score`` (K x C): ranks the centroids for each point; its minimum over K is the nearest one.
  Euclidean ``|c|^2 - 2 c.x``, cosine ``-c.x`` (both cheaper than the distance itself).
* ``sqdist``: the k-means cost of a point w.r.t. a centroid, what :func:`kmeans.assign` returns
  and the inertia sums. Euclidean: the squared distance ``|x - c|^2``; cosine: ``1 - cos``,
  half the squared chord ``|x/|x| - c|^2`` between unit vectors.
* ``metric_sq``: the square of a true metric, which obeys the triangle inequality (Hamerly's
  bounds use its square root): euclidean ``|x - c|^2``, cosine the squared chord ``2 (1 - cos)``.
* ``hardness``: the prototype score from ``sqdist``: the euclidean distance ``sqrt(sqdist)``, or
  ``1 - cos`` itself.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

NAMES = ("euclidean", "cosine")


class Distance(NamedTuple):
  """Pure functions of one distance. ``xp`` are prepared points (:attr:`prepare`)."""

  name: str
  unit: bool  # prepared points and centroids lie on the unit sphere (their norm bound is 1)
  prepare: Callable  # x_CxD -> xp_CxD: float32 (and unit rows for cosine)
  project: Callable  # c_KxD -> c_KxD on the distance's domain (unit rows for cosine)
  scores: Callable  # (xp_CxD, c_KxD) -> score_KxC
  sqdist_from_score: Callable  # (score_C, xp_CxD) -> sqdist_C >= 0
  sqdist: Callable  # (xp_CxD, c_CxD) -> sqdist_C: each point to its own centroid (row by row)
  sqdist_matrix: Callable  # (x_NxD raw float32, xsq_N = |x|^2, c_MxD) -> sqdist_MxN >= 0
  metric_sq_from_score: Callable  # (score_C, xsq_C = |xp|^2) -> metric_sq_C (not clamped)
  sq_norms: Callable  # xp_CxD -> |xp|^2 per row
  hardness: Callable  # sqdist -> the prototype score


def normalise(v: jax.Array) -> jax.Array:
  """Rows scaled to unit norm (a zero row stays zero)."""
  norm = jnp.linalg.norm(v, axis=-1, keepdims=True)
  return v / jnp.where(norm > 0, norm, 1.0)


def _dot_KxC(xp_CxD, c_KxD):
  # K x C layout: the reduction over K then runs across rows, which vectorises over C
  return c_KxD @ xp_CxD.T


def _euclidean_scores(xp_CxD, c_KxD):
  return jnp.sum(c_KxD * c_KxD, axis=1)[:, None] - 2.0 * _dot_KxC(xp_CxD, c_KxD)


def _euclidean_sqdist_matrix(x_NxD, xsq_N, c_MxD):
  d = xsq_N[None, :] - 2.0 * (c_MxD @ x_NxD.T) + jnp.sum(c_MxD * c_MxD, axis=1)[:, None]
  return jnp.maximum(d, 0.0)


def _cosine_sqdist_matrix(x_NxD, xsq_N, c_MxD):
  d = 1.0 - (c_MxD @ x_NxD.T) * lax.rsqrt(jnp.maximum(xsq_N, 1e-30))[None, :]
  return jnp.maximum(d, 0.0)


def _as_float32(x):
  return x.astype(jnp.float32)


EUCLIDEAN = Distance(
  name="euclidean",
  unit=False,
  prepare=_as_float32,
  project=lambda c: c,
  scores=_euclidean_scores,
  sqdist_from_score=lambda s, xp: jnp.maximum(s + jnp.sum(xp * xp, axis=1), 0.0),
  sqdist=lambda xp, c: jnp.sum((xp - c) ** 2, axis=1),
  sqdist_matrix=_euclidean_sqdist_matrix,
  metric_sq_from_score=lambda s, xsq: s + xsq,
  sq_norms=lambda xp: jnp.sum(xp * xp, axis=1),
  hardness=jnp.sqrt,
)

COSINE = Distance(
  name="cosine",
  unit=True,
  prepare=lambda x: normalise(_as_float32(x)),
  project=normalise,
  scores=lambda xp, c: -_dot_KxC(xp, c),
  sqdist_from_score=lambda s, xp: jnp.maximum(1.0 + s, 0.0),
  sqdist=lambda xp, c: jnp.maximum(1.0 - jnp.sum(xp * c, axis=1), 0.0),
  sqdist_matrix=_cosine_sqdist_matrix,
  metric_sq_from_score=lambda s, xsq: 2.0 + 2.0 * s,
  sq_norms=lambda xp: jnp.ones(xp.shape[:1], jnp.float32),
  hardness=lambda sqdist: sqdist,
)

_BY_NAME = {d.name: d for d in (EUCLIDEAN, COSINE)}


def get(distance: str | Distance) -> Distance:
  """The :class:`Distance` named ``distance`` (one of :data:`NAMES`), or ``distance`` itself."""
  if isinstance(distance, Distance):
    return distance
  if distance not in _BY_NAME:
    raise ValueError(f"distance must be one of {NAMES}, got {distance!r}")
  return _BY_NAME[distance]
