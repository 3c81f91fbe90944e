"""The Denoised MDP variational objective, a ``loss_fn`` for ``jaxprune.core.loop.make_update``.

Per time step (summed over pixels / latent dims), averaged over T x B:

  L = -log N(o; Dec, I) - log N(r; f_x + f_y, 1)
      + alpha * b_fn * max(KL_x, free_nats) + alpha * (beta_x - b_fn) * KL_x
      + alpha * beta_y * KL_y + alpha * beta_z * KL_z

with KL_f = KL(q(f_t | ...) || p(f_t | h^f_t)) and b_fn = ``beta_free_nats_x`` (None: beta_x, so
the unclamped KL_x term vanishes; beta_x defaults to 1), as the release's ``KLLoss``. The
free-nats clamp is per step and on x only.
The Gaussian NLLs include their constants (0.5 log 2 pi per dimension), so they are true NLLs.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from jaxprune.dmdp import model as wm
from jaxprune.dmdp.config import WorldModelConfig
from jaxprune.dmdp.rssm import StepStats, kl_gauss

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def kl_terms(cfg: WorldModelConfig, stats: StepStats) -> dict:
  """Mean KLs per factor (``kl_x``, ``kl_y``, ``kl_z``; 0 for absent factors) and the weighted
  KL part of the objective (``kl_loss``), from posterior stats with any leading shape (B x T as
  :func:`~jaxprune.dmdp.model.observe` returns them): every KL is a mean over all of it."""
  kl = {f: kl_gauss(stats.post[f], stats.prior[f]) for f in stats.post}  # each B x T
  kl_x = jnp.mean(jnp.maximum(kl["x"], cfg.free_nats))
  zero = jnp.zeros(())
  kl_y = jnp.mean(kl["y"]) if "y" in kl else zero
  kl_z = jnp.mean(kl["z"]) if "z" in kl else zero
  b_fn = cfg.beta_x if cfg.beta_free_nats_x is None else cfg.beta_free_nats_x
  kl_part = b_fn * kl_x + cfg.beta_y * kl_y + cfg.beta_z * kl_z
  if b_fn < cfg.beta_x:  # the release's extra term: the rest of beta_x without free nats
    kl_part = kl_part + (cfg.beta_x - b_fn) * jnp.mean(kl["x"])
  loss = cfg.alpha * kl_part
  return {
    "kl_x": jnp.mean(kl["x"]),
    "kl_x_clamped": kl_x,
    "kl_y": kl_y,
    "kl_z": kl_z,
    "kl_loss": loss,
  }


def check_batch(cfg: WorldModelConfig, batch: dict) -> tuple[int, int]:
  """Validate ``{"image": B x T x H x W x C, "action": B x T x A, "reward": B x T}``."""
  for k in ("image", "action", "reward"):
    if k not in batch:
      raise ValueError(f"batch needs 'image', 'action' and 'reward'; missing {k!r}")
  img = batch["image"]
  if img.ndim != 5 or img.shape[2:] != (cfg.image_size, cfg.image_size, cfg.channels):
    raise ValueError(
      f"image must be B x T x {cfg.image_size} x {cfg.image_size} x {cfg.channels}, got {img.shape}"
    )
  b, t = img.shape[:2]
  if batch["action"].shape != (b, t, cfg.action_dim):
    raise ValueError(
      f"action must be B x T x A = {(b, t, cfg.action_dim)}, got {batch['action'].shape}"
    )
  if batch["reward"].shape != (b, t):
    raise ValueError(f"reward must be B x T = {(b, t)}, got {batch['reward'].shape}")
  return b, t


def world_model_loss(cfg: WorldModelConfig, params, batch: dict, key: jax.Array):
  """``(loss, metrics)`` for a batch of sequences (see :func:`check_batch` for the layout;
  ``action[:, t]`` is a_{t-1}, ``reward[:, t]`` is r_t received with o_t)."""
  loss, metrics, _ = world_model_terms(cfg, params, batch, key)
  return loss, metrics


def world_model_terms(cfg: WorldModelConfig, params, batch: dict, key: jax.Array):
  """``(loss, metrics, latents)``: :func:`world_model_loss` plus the posterior samples it used
  (a ``Latent`` with leading B x T, as :func:`~jaxprune.dmdp.model.observe` returns it), e.g. as
  the start states of imagination."""
  b, t = check_batch(cfg, batch)
  image = wm.to_centered_float(batch["image"])
  e_BxTxE = wm.encode_images(cfg, params, image)
  a_BxTxA = jnp.asarray(batch["action"], jnp.float32)
  latents_BxT, stats_BxT = wm.observe(cfg, params, e_BxTxE, a_BxTxA, key)
  recon = wm.decode(cfg, params, latents_BxT)
  d = cfg.image_size**2 * cfg.channels
  nll_o = jnp.mean(0.5 * jnp.sum(jnp.square(recon - image), axis=(2, 3, 4))) + d * _HALF_LOG_2PI
  r_pred, r_denoised = wm.reward(cfg, params, latents_BxT)
  r = jnp.asarray(batch["reward"], jnp.float32)
  nll_r = jnp.mean(0.5 * jnp.square(r - r_pred)) + _HALF_LOG_2PI
  # the KL means summed in time-major order, as before observe was batch-major (same bits)
  kls = kl_terms(cfg, jax.tree.map(lambda v: jnp.swapaxes(v, 0, 1), stats_BxT))
  loss = nll_o + nll_r + kls["kl_loss"]
  metrics = {
    "recon_nll": nll_o,
    "reward_nll": nll_r,
    "reward_mse": jnp.mean(jnp.square(r - r_pred)),
    "denoised_reward_mse": jnp.mean(jnp.square(r - r_denoised)),
    **kls,
  }
  return loss, metrics, latents_BxT


def make_loss_fn(cfg: WorldModelConfig):
  """``loss_fn(params, batch, key) -> (loss, metrics)`` for ``core.loop.make_update``."""
  return lambda params, batch, key: world_model_loss(cfg, params, batch, key)


def make_optimizer(
  *, learning_rate: float = 6e-4, clip: float = 100.0, eps: float = 1e-7
) -> optax.GradientTransformation:
  """Adam (eps 1e-7) after global-norm clipping at 100: the release's world-model optimizer."""
  return optax.chain(optax.clip_by_global_norm(clip), optax.adam(learning_rate, eps=eps))
