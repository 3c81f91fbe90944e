"""The factored world model: x (controllable, reward-relevant), y (uncontrollable), z (2c only).

Graph (per step t, action a_{t-1}, embedding e_t of o_t), as in the refs:

  h^x_t = GRU(ELU(Dense[s^x_{t-1}, a_{t-1}]), h^x_{t-1})       prior p(x_t | h^x_t)   (action)
  h^y_t = GRU(ELU(Dense[s^y_{t-1}]), h^y_{t-1})                 prior p(y_t | h^y_t)   (no a, no x)
  q(x_t, y_t | h^x_t, h^y_t, h^z_{t-1}, z_{t-1}, e_t)           one joint MLP
  h^z_t = GRU(MLP[h^x_t, x_t, h^y_t, y_t, z_{t-1}, a_{t-1}], h^z_{t-1})   prior p(z_t | h^z_t)
          (``z_prior_uses_y=False`` drops h^y_t, y_t here: the appendix variant)
  q(z_t | h^x_t, x_t, h^y_t, y_t, h^z_t, e_t)
  o_t ~ N(Dec[x, y, z features], I);  r_t ~ N(f_x(h^x, x) + f_y(h^y, y), 1)

:meth:`WorldModel.step` is the ONE step: :func:`observe` scans it with embeddings (posterior),
:func:`open_loop` without (all priors), :func:`imagine` without and with ``x_only`` (the policy's
rollout on the x prior alone). The first layer of each posterior MLP is split into a part on
``e_t`` (computed for all T x B at once before the scan) and a part on the states: the same
function as one dense layer on the concatenation, with fewer small matmuls inside the scan.
Parameters are initialised as ``cfg.init`` says (see :mod:`jaxprune.dmdp.rssm`).

Layout: every public sequence function is batch-major, like the replay's batches: inputs and
outputs of :func:`observe`, :func:`open_loop`, :func:`imagine` and :func:`encode_images` have a
leading B x T (B x H for imagination); the scans over time transpose inside.
"""

from __future__ import annotations

from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxprune.dmdp.config import WorldModelConfig, feature_dims
from jaxprune.dmdp.conv import PixelDecoder, PixelEncoder
from jaxprune.dmdp.rssm import (
  GRU,
  MLP,
  Gauss,
  GaussHead,
  Latent,
  StepStats,
  dense,
  gauss_from,
  sample,
)


class WorldModel(nn.Module):
  """Flax module holding every part; use the functions of this file to run it."""

  cfg: WorldModelConfig

  def setup(self):
    c, init = self.cfg, self.cfg.init
    self.encoder = PixelEncoder(c)
    self.decoder = PixelDecoder(c)
    self.x_in = dense(c.x_deter, c.x_stoch + c.action_dim, init)
    self.x_gru = GRU(c.x_deter, init)
    self.x_prior = GaussHead(c.x_deter, c.x_stoch, c.min_std, init)
    if c.has_y:
      self.y_in = dense(c.y_deter, c.y_stoch, init)
      self.y_gru = GRU(c.y_deter, init)
      self.y_prior = GaussHead(c.y_deter, c.y_stoch, c.min_std, init)
    # the posterior's first layer is one dense layer on [states, e_t] split in two parts: both
    # parts (and its bias) are initialised with the whole layer's fan-in
    hidden = c.x_deter + c.y_deter
    xy_fan_in = c.embed_size + c.x_deter + c.y_deter + c.z_deter + c.z_stoch
    self.xy_post_embed = dense(hidden, xy_fan_in, init)
    self.xy_post_state = dense(hidden, xy_fan_in, init, use_bias=False)
    self.xy_post_out = dense(2 * (c.x_stoch + c.y_stoch), hidden, init)
    if c.has_z:
      self.z_in = MLP(c.z_deter, 1, c.z_deter, init)  # two dense layers, ELU after each
      self.z_gru = GRU(c.z_deter, init)
      self.z_prior = GaussHead(c.z_deter, c.z_stoch, c.min_std, init)
      z_fan_in = c.embed_size + sum(feature_dims(c).values()) - c.z_stoch
      self.z_post_embed = dense(c.z_deter, z_fan_in, init)
      self.z_post_state = dense(c.z_deter, z_fan_in, init, use_bias=False)
      self.z_post_out = dense(2 * c.z_stoch, c.z_deter, init)
    self.reward_x = MLP(c.reward_hidden, c.reward_layers, 1, init)
    if c.has_y:
      self.reward_y = MLP(c.reward_hidden, c.reward_layers, 1, init)

  def encode(self, image_NxHxWxC):
    return self.encoder(image_NxHxWxC)

  def project(self, embed_NxE) -> dict:
    """The posteriors' first-layer terms on the embedding (batched over all time steps)."""
    out = {"xy": self.xy_post_embed(embed_NxE)}
    if self.cfg.has_z:
      out["z"] = self.z_post_embed(embed_NxE)
    return out

  def step(self, prev: Latent, action_BxA, obs: Optional[dict], key, x_only: bool = False):
    """One step: ``(Latent_{t-1}, a_{t-1}, projected e_t or None, key) -> (Latent_t, StepStats)``.

    ``obs=None`` samples every factor from its prior; ``x_only`` (open loop only) rolls x alone.
    """
    c = self.cfg
    if x_only and obs is not None:
      raise ValueError("x_only steps are open-loop (obs must be None)")
    kx, ky, kz = jax.random.split(key, 3)
    cat = lambda xs: jnp.concatenate(xs, axis=-1)
    hx = self.x_gru(nn.elu(self.x_in(cat([prev.sx, action_BxA]))), prev.hx)
    prior = {"x": self.x_prior(hx)}
    hy = sy = hz = sz = post = None
    y_on = c.has_y and not x_only
    if y_on:  # y's transition sees neither the action nor x
      hy = self.y_gru(nn.elu(self.y_in(prev.sy)), prev.hy)
      prior["y"] = self.y_prior(hy)
    if obs is None:
      sx = sample(prior["x"], kx)
      sy = sample(prior["y"], ky) if y_on else None
    else:
      state = [hx] + ([hy] if c.has_y else []) + ([prev.hz, prev.sz] if c.has_z else [])
      g = gauss_from(
        self.xy_post_out(nn.elu(obs["xy"] + self.xy_post_state(cat(state)))), c.min_std
      )
      post = {"x": Gauss(g.mean[:, : c.x_stoch], g.std[:, : c.x_stoch])}
      if c.has_y:
        post["y"] = Gauss(g.mean[:, c.x_stoch :], g.std[:, c.x_stoch :])
      s = sample(g, kx)
      sx = s[:, : c.x_stoch]
      sy = s[:, c.x_stoch :] if c.has_y else None
    if c.has_z and not x_only:
      xy = [hx, sx] + ([hy, sy] if c.has_y else [])
      xy_prior = [hx, sx] + ([hy, sy] if c.has_y and c.z_prior_uses_y else [])
      hz = self.z_gru(nn.elu(self.z_in(cat(xy_prior + [prev.sz, action_BxA]))), prev.hz)
      prior["z"] = self.z_prior(hz)
      if obs is None:
        sz = sample(prior["z"], kz)
      else:
        post["z"] = gauss_from(
          self.z_post_out(nn.elu(obs["z"] + self.z_post_state(cat(xy + [hz])))), c.min_std
        )
        sz = sample(post["z"], kz)
    return Latent(hx, sx, hy, sy, hz, sz), StepStats(prior, post)

  def decode(self, feat_NxF):
    return self.decoder(feat_NxF)

  def reward(self, latent: Latent):
    """``(f_x(h^x, x), f_y(h^y, y))``, each ...; f_y is 0 without y."""
    rx = self.reward_x(latent.features("x"))[..., 0]
    ry = self.reward_y(latent.features("y"))[..., 0] if self.cfg.has_y else jnp.zeros_like(rx)
    return rx, ry

  def init_all(self, image_NxHxWxC, action_NxA, key):
    """Touches every parameter (for ``init``)."""
    n = image_NxHxWxC.shape[0]
    obs = self.project(self.encode(image_NxHxWxC))
    latent, _ = self.step(initial_latent(self.cfg, n), action_NxA, obs, key)
    return self.decode(features(latent)), self.reward(latent)


def initial_latent(cfg: WorldModelConfig, batch: int) -> Latent:
  """Zeros for every present factor, B x size."""
  z = lambda d: jnp.zeros((batch, d), jnp.float32)
  return Latent(
    z(cfg.x_deter),
    z(cfg.x_stoch),
    z(cfg.y_deter) if cfg.has_y else None,
    z(cfg.y_stoch) if cfg.has_y else None,
    z(cfg.z_deter) if cfg.has_z else None,
    z(cfg.z_stoch) if cfg.has_z else None,
  )


def features(latent: Latent) -> jax.Array:
  """All present factors' ``[h, s]``, concatenated in the order x, y, z: ... x F."""
  parts = [latent.features(f) for f in "xyz" if getattr(latent, "s" + f) is not None]
  return jnp.concatenate(parts, axis=-1)


def to_centered_float(image):
  """uint8 pixels -> float32 in [-0.5, 0.5]; float input is taken as already scaled."""
  image = jnp.asarray(image)
  if image.dtype == jnp.uint8:
    return image.astype(jnp.float32) / 255.0 - 0.5
  return image.astype(jnp.float32)


def init(cfg: WorldModelConfig, key: jax.Array):
  """Parameters of the world model (a pytree)."""
  c = cfg
  image = jnp.zeros((1, c.image_size, c.image_size, c.channels), jnp.float32)
  action = jnp.zeros((1, c.action_dim), jnp.float32)
  k1, k2 = jax.random.split(key)
  return WorldModel(cfg).init(k1, image, action, k2, method=WorldModel.init_all)


def num_params(params) -> int:
  return sum(int(p.size) for p in jax.tree.leaves(params))


def in_chunks(fn: Callable, x_NxD, chunk: int):
  """``fn(x)`` on the leading axis in chunks of ``chunk`` rows (``lax.map``, each chunk under
  ``jax.checkpoint``: its intermediates are recomputed in the backward instead of kept); 0, or a
  chunk >= N, calls ``fn`` once. N need not divide: the last chunk is padded with zeros, whose
  rows are dropped. ``fn`` must treat rows independently."""
  n = x_NxD.shape[0]
  if chunk <= 0 or chunk >= n:
    return fn(x_NxD)
  k = -(-n // chunk)
  xp = jnp.pad(x_NxD, [(0, k * chunk - n)] + [(0, 0)] * (x_NxD.ndim - 1))
  out = lax.map(jax.checkpoint(fn), xp.reshape(k, chunk, *x_NxD.shape[1:]))
  return out.reshape(k * chunk, *out.shape[2:])[:n]


def encode_images(cfg: WorldModelConfig, params, image_BxTxHxWxC) -> jax.Array:
  """Encoder embeddings of a batch of sequences, B x T x E (uint8 or scaled float pixels);
  in chunks of ``cfg.pixel_chunk`` images when it is > 0."""
  b, t = image_BxTxHxWxC.shape[:2]
  x = to_centered_float(image_BxTxHxWxC).reshape(b * t, *image_BxTxHxWxC.shape[2:])
  enc = lambda x: WorldModel(cfg).apply(params, x, method=WorldModel.encode)
  return in_chunks(enc, x, cfg.pixel_chunk).reshape(b, t, -1)


def _swap_bt(tree):
  """B x T x ... <-> T x B x ... on every array of a pytree (None fields stay None)."""
  return jax.tree.map(lambda v: jnp.swapaxes(v, 0, 1), tree)


def _scan_steps(cfg, params, start: Latent, action_TxBxA, obs, key, x_only=False):
  model = WorldModel(cfg)
  keys = jax.random.split(key, action_TxBxA.shape[0])

  def body(latent, inp):
    a, o, k = inp
    latent, stats = model.apply(params, latent, a, o, k, x_only, method=WorldModel.step)
    return latent, (latent, stats)

  _, (latents, stats) = lax.scan(body, start, (action_TxBxA, obs, keys))
  return latents, stats


def observe(
  cfg: WorldModelConfig, params, embed_BxTxE, action_BxTxA, key, *, start: Latent | None = None
):
  """Posterior rollout over a batch of sequences (``lax.scan`` of :meth:`WorldModel.step`).

  Batch-major, like the replay's batches: ``embed`` B x T x E (from :func:`encode_images`),
  ``action`` B x T x A, where ``action[:, t]`` is a_{t-1}, the action taken before o_t (zeros at
  t = 0); ``start`` (B x ...) defaults to :func:`initial_latent`. Returns ``(Latent, StepStats)``
  with a leading B x T on every array.
  """
  b, t = embed_BxTxE.shape[:2]
  if action_BxTxA.shape != (b, t, cfg.action_dim):
    raise ValueError(
      f"actions must be B x T x {cfg.action_dim} = {(b, t, cfg.action_dim)} (batch-major, like "
      f"the embeddings), got {action_BxTxA.shape}"
    )
  # the scan runs over time: time-major inside
  embed_TxBxE, action_TxBxA = jnp.swapaxes(embed_BxTxE, 0, 1), jnp.swapaxes(action_BxTxA, 0, 1)
  obs = WorldModel(cfg).apply(params, embed_TxBxE.reshape(t * b, -1), method=WorldModel.project)
  obs = jax.tree.map(lambda o: o.reshape(t, b, -1), obs)
  start = initial_latent(cfg, b) if start is None else start
  return _swap_bt(_scan_steps(cfg, params, start, action_TxBxA, obs, key))


def open_loop(cfg: WorldModelConfig, params, start: Latent, action_BxTxA, key):
  """Prior rollout of every factor from ``start`` (B x ...) under the actions B x T x A:
  ``(Latent, StepStats)`` with a leading B x T."""
  action_TxBxA = jnp.swapaxes(jnp.asarray(action_BxTxA), 0, 1)
  return _swap_bt(_scan_steps(cfg, params, start, action_TxBxA, None, key))


def imagine(
  cfg: WorldModelConfig,
  params,
  start: Latent,
  key,
  *,
  actions=None,
  policy: Callable | None = None,
  horizon: int | None = None,
) -> Latent:
  """Open-loop rollout of x's prior alone (what the policy learns on); y and z are not run.

  From ``start`` (B x ...), either ``actions`` (B x H x A) or ``policy(feat_x_BxF, key) ->
  action_BxA`` with ``horizon``. Returns the x part of the Latent for steps 1..H, batch-major
  B x H x ... (y, z fields None).
  """
  x0 = Latent(start.hx, start.sx)
  model = WorldModel(cfg)
  if (actions is None) == (policy is None):
    raise ValueError("pass exactly one of actions= and policy=")
  if actions is not None:
    actions_HxBxA = jnp.swapaxes(jnp.asarray(actions), 0, 1)
    return _swap_bt(_scan_steps(cfg, params, x0, actions_HxBxA, None, key, x_only=True)[0])
  if horizon is None or horizon < 1:
    raise ValueError(f"policy rollouts need horizon >= 1, got {horizon}")

  def body(latent, k):
    ka, ks = jax.random.split(k)
    a = policy(latent.features("x"), ka)
    latent, _ = model.apply(params, latent, a, None, ks, True, method=WorldModel.step)
    return latent, latent

  return _swap_bt(lax.scan(body, x0, jax.random.split(key, horizon))[1])


def decode(cfg: WorldModelConfig, params, latent: Latent) -> jax.Array:
  """Mean image of every step of ``latent`` (leading dims ...): ... x H x W x C; in chunks of
  ``cfg.pixel_chunk`` images when it is > 0."""
  feat = features(latent)
  lead = feat.shape[:-1]
  dec = lambda f: WorldModel(cfg).apply(params, f, method=WorldModel.decode)
  img = in_chunks(dec, feat.reshape(-1, feat.shape[-1]), cfg.pixel_chunk)
  return img.reshape(*lead, *img.shape[1:])


def reward(cfg: WorldModelConfig, params, latent: Latent):
  """``(full, denoised)`` reward predictions: f_x + f_y and f_x alone, each ..."""
  rx, ry = WorldModel(cfg).apply(params, latent, method=WorldModel.reward)
  return rx + ry, rx


def denoised_reward(cfg: WorldModelConfig, params, latent: Latent) -> jax.Array:
  """f_x(h^x, x) alone (drives imagination); needs only the x fields of ``latent``."""
  return WorldModel(cfg).apply(params, latent, method=lambda m, l: m.reward_x(l.features("x")))[
    ..., 0
  ]
