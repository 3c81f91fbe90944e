"""RSSM building blocks: a fused GRU cell, Gaussian heads, latent state and statistics.

Std of every Gaussian is ``softplus(raw) + min_std``. Absent factors are ``None`` (an empty
pytree), so Dreamer (x only) carries no y or z arrays and has no y or z parameters.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp


class Gauss(NamedTuple):
  """Diagonal Gaussian: mean and std, ... x D."""

  mean: jax.Array
  std: jax.Array


class Latent(NamedTuple):
  """One time step of the factored state: deterministic ``h`` and stochastic ``s`` per factor
  (B x deter, B x stoch); ``None`` for absent factors."""

  hx: jax.Array
  sx: jax.Array
  hy: Optional[jax.Array] = None
  sy: Optional[jax.Array] = None
  hz: Optional[jax.Array] = None
  sz: Optional[jax.Array] = None

  def features(self, factor: str) -> jax.Array:
    """``[h, s]`` of one factor, ... x (deter + stoch)."""
    return jnp.concatenate([getattr(self, "h" + factor), getattr(self, "s" + factor)], -1)


class StepStats(NamedTuple):
  """Per-factor priors and posteriors of one step: dicts ``{"x": Gauss, ...}``; ``post`` is
  ``None`` in open-loop (prior) steps."""

  prior: dict
  post: Optional[dict]


class GRU(nn.Module):
  """GRU cell with PyTorch's ``GRUCell`` equations, gates fused into two matmuls.

  r, u = sigmoid(Wi x + Wh h); n = tanh(Wi_n x + r * (Wh_n h)); h' = (1 - u) n + u h.
  """

  features: int

  @nn.compact
  def __call__(self, x_BxI, h_BxH):
    f = self.features
    gi = nn.Dense(3 * f, name="input")(x_BxI)
    gh = nn.Dense(3 * f, name="hidden")(h_BxH)
    r = jax.nn.sigmoid(gi[:, :f] + gh[:, :f])
    u = jax.nn.sigmoid(gi[:, f : 2 * f] + gh[:, f : 2 * f])
    n = jnp.tanh(gi[:, 2 * f :] + r * gh[:, 2 * f :])
    return (1.0 - u) * n + u * h_BxH


def gauss_from(raw_BxD2, min_std: float) -> Gauss:
  mean, raw = jnp.split(raw_BxD2, 2, axis=-1)
  return Gauss(mean, jax.nn.softplus(raw) + min_std)


class GaussHead(nn.Module):
  """MLP ``input -> hidden (ELU) -> Gaussian of size ``stoch``."""

  hidden: int
  stoch: int
  min_std: float

  @nn.compact
  def __call__(self, x_BxI):
    h = nn.elu(nn.Dense(self.hidden, name="hidden")(x_BxI))
    return gauss_from(nn.Dense(2 * self.stoch, name="out")(h), self.min_std)


class MLP(nn.Module):
  """``layers`` ELU hidden layers of width ``hidden`` and a linear output of width ``out``."""

  hidden: int
  layers: int
  out: int

  @nn.compact
  def __call__(self, x):
    for i in range(self.layers):
      x = nn.elu(nn.Dense(self.hidden, name=f"hidden{i}")(x))
    return nn.Dense(self.out, name="out")(x)


def sample(g: Gauss, key: jax.Array) -> jax.Array:
  """Reparameterised sample ``mean + std * eps``."""
  return g.mean + g.std * jax.random.normal(key, g.mean.shape, g.mean.dtype)


def kl_gauss(q: Gauss, p: Gauss) -> jax.Array:
  """KL(q || p) of diagonal Gaussians, summed over the last axis: ... x D -> ..."""
  var_ratio = (q.std / p.std) ** 2
  t = ((q.mean - p.mean) / p.std) ** 2
  return 0.5 * jnp.sum(var_ratio + t - 1.0 - jnp.log(var_ratio), axis=-1)
