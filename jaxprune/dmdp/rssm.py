"""RSSM building blocks: a fused GRU cell, Gaussian heads, latent state and statistics, and the
two parameter initialisations.

Std of every Gaussian is ``softplus(raw) + min_std``. Absent factors are ``None`` (an empty
pytree), so Dreamer (x only) carries no y or z arrays and has no y or z parameters.

Initialisation (``init``): ``"torch"`` is PyTorch's default, which the authors' release uses for
every layer: weights and biases U(+-1/sqrt(fan_in)) (std bound/sqrt(3)); a GRU cell's weights and
biases U(+-1/sqrt(hidden)). ``"flax"`` is Flax's default: lecun_normal weights (std
1/sqrt(fan_in), ~1.7x the torch std), zero biases. Both give the same parameter tree.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

Init = Literal["torch", "flax"]
INITS: tuple[str, ...] = ("torch", "flax")


def uniform(bound: float) -> nn.initializers.Initializer:
  """U(-bound, bound) of any shape."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def kernel_init(init: Init, fan_in: int) -> nn.initializers.Initializer:
  """Weights: U(+-1/sqrt(fan_in)) (torch) or lecun_normal (flax, fan_in from the shape)."""
  if init == "torch":
    return uniform(1.0 / math.sqrt(fan_in))
  if init == "flax":
    return nn.initializers.lecun_normal()
  raise ValueError(f"init must be one of {INITS}, got {init!r}")


def bias_init(init: Init, fan_in: int) -> nn.initializers.Initializer:
  """Biases: U(+-1/sqrt(fan_in)) (torch) or zeros (flax)."""
  if init == "flax":
    return nn.initializers.zeros
  return kernel_init(init, fan_in)


def dense(
  features: int, fan_in: int, init: Init, *, use_bias: bool = True, name: str | None = None
) -> nn.Dense:
  """``nn.Dense`` with the ``init`` scheme for a layer of ``fan_in`` inputs (for a layer split
  into parts, e.g. the posterior's embedding and state parts, the whole layer's ``fan_in``)."""
  return nn.Dense(
    features,
    use_bias=use_bias,
    kernel_init=kernel_init(init, fan_in),
    bias_init=bias_init(init, fan_in),
    name=name,
  )


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
  ``init="torch"``: every weight and bias U(+-1/sqrt(features)), as PyTorch's ``GRUCell``.
  """

  features: int
  param_init: Init = "torch"

  @nn.compact
  def __call__(self, x_BxI, h_BxH):
    f = self.features
    # torch's GRUCell bounds every parameter by 1/sqrt(hidden), whatever the input width
    gi = dense(3 * f, f, self.param_init, name="input")(x_BxI)
    gh = dense(3 * f, f, self.param_init, name="hidden")(h_BxH)
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
  param_init: Init = "torch"

  @nn.compact
  def __call__(self, x_BxI):
    h = nn.elu(dense(self.hidden, x_BxI.shape[-1], self.param_init, name="hidden")(x_BxI))
    return gauss_from(
      dense(2 * self.stoch, self.hidden, self.param_init, name="out")(h), self.min_std
    )


class MLP(nn.Module):
  """``layers`` ELU hidden layers of width ``hidden`` and a linear output of width ``out``."""

  hidden: int
  layers: int
  out: int
  param_init: Init = "torch"

  @nn.compact
  def __call__(self, x):
    for i in range(self.layers):
      x = nn.elu(dense(self.hidden, x.shape[-1], self.param_init, name=f"hidden{i}")(x))
    return dense(self.out, x.shape[-1], self.param_init, name="out")(x)


def sample(g: Gauss, key: jax.Array) -> jax.Array:
  """Reparameterised sample ``mean + std * eps``."""
  return g.mean + g.std * jax.random.normal(key, g.mean.shape, g.mean.dtype)


def kl_gauss(q: Gauss, p: Gauss) -> jax.Array:
  """KL(q || p) of diagonal Gaussians, summed over the last axis: ... x D -> ..."""
  var_ratio = (q.std / p.std) ** 2
  t = ((q.mean - p.mean) / p.std) ** 2
  return 0.5 * jnp.sum(var_ratio + t - 1.0 - jnp.log(var_ratio), axis=-1)
