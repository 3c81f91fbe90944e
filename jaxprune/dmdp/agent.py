"""Policy learning on the signal factor x, Dreamer-style (Hafner et al. 2020, as in the refs).

From every posterior state of the training batch (T x B of them, gradient stopped) the actor
rolls x's prior alone ``horizon`` steps forward (:func:`jaxprune.dmdp.imagine`), reading
``stop_gradient`` of each imagined state (as the release and Dreamer v1 do); the denoised reward
f_x and the value net score the imagined states; the actor maximises the discounted
lambda-returns by backpropagating through the (frozen) dynamics into its actions; the value net
regresses the returns.

One update trains all three parts through the shared loop::

  params = init_agent(cfg, agent_cfg, key)       # {"model": ..., "actor": ..., "value": ...}
  update = make_update(agent_loss_fn(cfg, agent_cfg), agent_optimizer(agent_cfg))

``agent_loss = world-model loss + actor loss + value loss``, with ``stop_gradient`` placed so that
each term moves only its own parameters (the actor loss sees the model and value parameters as
constants, the value loss sees stopped features and targets), and the optimizer clips and steps
each group on its own (``optax.multi_transform``): the combined step equals three separate ones.

Acting: :func:`policy_step` advances the posterior with one model step from the previous latent
and action, then picks the next action (explore: a sample plus Gaussian noise, clipped; eval: the
mode ``tanh(mean)``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxprune.core.config import check_finite, require
from jaxprune.dmdp import model as wm
from jaxprune.dmdp.config import WorldModelConfig
from jaxprune.dmdp.losses import world_model_terms
from jaxprune.dmdp.rssm import MLP, Init, Latent

_LOG2 = math.log(2.0)


@dataclass(frozen=True)
class AgentConfig:
  """Actor, value and imagination settings (the release's defaults for DMC)."""

  horizon: int = 15
  """imagined steps; returns are computed for steps 1..horizon-1"""
  lam: float = 0.95
  """lambda of the lambda-return"""
  gamma: float = 0.99
  """discount"""
  model_lr: float = 6e-4
  """world-model learning rate"""
  actor_lr: float = 8e-5
  """actor learning rate"""
  value_lr: float = 8e-5
  """value learning rate"""
  adam_eps: float = 1e-7
  """Adam epsilon (all groups)"""
  grad_clip: float = 100.0
  """global-norm clip, per parameter group"""
  explore_std: float = 0.3
  """Gaussian action noise while collecting data"""
  actor_hidden: int = 400
  """actor MLP width"""
  actor_layers: int = 4
  """actor MLP hidden layers"""
  value_hidden: int = 400
  """value MLP width"""
  value_layers: int = 3
  """value MLP hidden layers"""
  mean_scale: float = 5.0
  """mean = mean_scale * tanh(raw / mean_scale)"""
  init_std: float = 5.0
  """std at raw 0 (softplus(raw + log(exp(init_std) - 1)))"""
  min_std: float = 1e-4
  """lower bound of the actor's std"""
  target_every: int = 0
  """updates between copies of the value net into a slow target net, which the lambda-returns
  bootstrap from (Dreamer v2's slow target, slow_target_update = 100); 0 = no target net, the
  returns use the value net itself (the release and Dreamer v1)"""
  init: Literal["torch", "flax"] = "torch"
  """actor and value init: torch = the release's (PyTorch defaults, weights and biases
  U(+-1/sqrt(fan_in))); flax = lecun_normal weights, zero biases"""

  def __post_init__(self):
    check_finite(self)
    require(
      self.horizon >= 2,
      f"horizon must be >= 2 (the last imagined value bootstraps), got {self.horizon}",
    )
    require(
      0.0 <= self.lam <= 1.0 and 0.0 < self.gamma <= 1.0,
      f"need lam in [0, 1] and gamma in (0, 1], got {self.lam}, {self.gamma}",
    )
    for name in (
      "model_lr",
      "actor_lr",
      "value_lr",
      "adam_eps",
      "grad_clip",
      "mean_scale",
      "init_std",
      "min_std",
    ):
      require(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
    require(self.target_every >= 0, f"target_every must be >= 0 (0: off), got {self.target_every}")
    require(self.explore_std >= 0, f"explore_std must be >= 0, got {self.explore_std}")
    for name in ("actor_hidden", "actor_layers", "value_hidden", "value_layers"):
      require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
    require(self.init in ("torch", "flax"), f"init must be 'torch' or 'flax', got {self.init!r}")

  def replace(self, **kw) -> "AgentConfig":
    return dataclasses.replace(self, **kw)


# ---------------------------------------------------------------------------------------------
# networks and the tanh-Gaussian


class TanhGauss(NamedTuple):
  """Gaussian over pre-tanh actions (``... x A`` each); actions are ``tanh(u)``."""

  mean: jax.Array
  std: jax.Array


class Actor(nn.Module):
  """``layers`` x ``hidden`` ELU MLP on x features -> raw mean and raw std (2A)."""

  hidden: int
  layers: int
  action_dim: int
  param_init: Init = "torch"

  @nn.compact
  def __call__(self, feat_NxF):
    return MLP(self.hidden, self.layers, 2 * self.action_dim, self.param_init, name="mlp")(feat_NxF)


class Value(nn.Module):
  """``layers`` x ``hidden`` ELU MLP on x features -> scalar value (N)."""

  hidden: int
  layers: int
  param_init: Init = "torch"

  @nn.compact
  def __call__(self, feat_NxF):
    return MLP(self.hidden, self.layers, 1, self.param_init, name="mlp")(feat_NxF)[..., 0]


def _actor(cfg: WorldModelConfig, agent_cfg: AgentConfig) -> Actor:
  return Actor(agent_cfg.actor_hidden, agent_cfg.actor_layers, cfg.action_dim, agent_cfg.init)


def _value(agent_cfg: AgentConfig) -> Value:
  return Value(agent_cfg.value_hidden, agent_cfg.value_layers, agent_cfg.init)


def tanh_gauss_from(agent_cfg: AgentConfig, raw_Nx2A) -> TanhGauss:
  """Dreamer v1: mean = s tanh(raw_mean / s), std = softplus(raw_std + log(exp(init) - 1)) +
  min_std, with s = ``mean_scale``."""
  raw_mean, raw_std = jnp.split(raw_Nx2A, 2, axis=-1)
  s = agent_cfg.mean_scale
  mean = s * jnp.tanh(raw_mean / s)
  std = jax.nn.softplus(raw_std + math.log(math.expm1(agent_cfg.init_std))) + agent_cfg.min_std
  return TanhGauss(mean, std)


def actor_dist(cfg: WorldModelConfig, agent_cfg: AgentConfig, actor_params, feat_NxF) -> TanhGauss:
  """The actor's distribution at x features ``[h^x, s^x]`` (N x F)."""
  return tanh_gauss_from(agent_cfg, _actor(cfg, agent_cfg).apply(actor_params, feat_NxF))


def sample_action(dist: TanhGauss, key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Reparameterised ``(action, log_prob)``: a = tanh(mean + std eps) in (-1, 1), N x A, and its
  log-density (tanh change of variables included, summed over A), N."""
  eps = jax.random.normal(key, dist.mean.shape, dist.mean.dtype)
  u = dist.mean + dist.std * eps
  log_n = -0.5 * eps**2 - jnp.log(dist.std) - 0.5 * math.log(2 * math.pi)
  # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)): finite for every u
  log_det = 2.0 * (_LOG2 - u - jax.nn.softplus(-2.0 * u))
  return jnp.tanh(u), jnp.sum(log_n - log_det, axis=-1)


def mode_action(dist: TanhGauss) -> jax.Array:
  """The deterministic evaluation action ``tanh(mean)``, N x A."""
  return jnp.tanh(dist.mean)


def value_fn(agent_cfg: AgentConfig, value_params, feat_NxF) -> jax.Array:
  return _value(agent_cfg).apply(value_params, feat_NxF)


def init_agent(cfg: WorldModelConfig, agent_cfg: AgentConfig, key: jax.Array) -> dict:
  """``{"model": world-model params, "actor": ..., "value": ...}``, plus ``"value_target"`` (a
  copy of the value net's) when ``agent_cfg.target_every > 0``."""
  km, ka, kv = jax.random.split(key, 3)
  feat = jnp.zeros((1, cfg.x_deter + cfg.x_stoch), jnp.float32)
  params = {
    "model": wm.init(cfg, km),
    "actor": _actor(cfg, agent_cfg).init(ka, feat),
    "value": _value(agent_cfg).init(kv, feat),
  }
  if agent_cfg.target_every:
    params["value_target"] = jax.tree.map(jnp.copy, params["value"])
  return params


# ---------------------------------------------------------------------------------------------
# returns and losses


def lambda_return(reward_HxB, value_HxB, discount_HxB, bootstrap_B, *, lam: float) -> jax.Array:
  """TD(lambda) returns, H x B (Dreamer's ``lambda_return``), by a reverse ``lax.scan``::

    R_t = r_t + d_t ((1 - lam) v_{t+1} + lam R_{t+1}),   v_H = R_H = bootstrap

  ``value[t]`` is the value of the state that earned ``reward[t]``; ``discount[t]`` (gamma, or
  gamma times a continuation probability) discounts what follows step t.
  """
  reward_HxB, value_HxB, discount_HxB = map(jnp.asarray, (reward_HxB, value_HxB, discount_HxB))
  bootstrap_B = jnp.asarray(bootstrap_B)
  if not reward_HxB.shape == value_HxB.shape == discount_HxB.shape:
    raise ValueError(
      f"reward, value and discount must share a shape H x ..., got "
      f"{reward_HxB.shape}, {value_HxB.shape}, {discount_HxB.shape}"
    )
  if reward_HxB.ndim < 1 or bootstrap_B.shape != reward_HxB.shape[1:]:
    raise ValueError(
      f"bootstrap must have shape {reward_HxB.shape[1:]} (reward without its "
      f"leading H), got {bootstrap_B.shape}"
    )
  next_v = jnp.concatenate([value_HxB[1:], bootstrap_B[None]], axis=0)
  inputs = reward_HxB + discount_HxB * (1.0 - lam) * next_v

  def body(ret, inp):
    x, d = inp
    ret = x + d * lam * ret
    return ret, ret

  return lax.scan(body, bootstrap_B, (inputs, discount_HxB), reverse=True)[1]


def posterior_start(cfg: WorldModelConfig, model_params, batch: dict, key: jax.Array) -> Latent:
  """x part of every posterior state of ``batch`` (the same samples as the world-model loss with
  ``key``), flattened to N = T B and gradient-stopped: imagination's start states."""
  model_params = lax.stop_gradient(model_params)
  e_BxTxE = wm.encode_images(cfg, model_params, batch["image"])
  latent, _ = wm.observe(cfg, model_params, e_BxTxE, jnp.asarray(batch["action"], jnp.float32), key)
  return _flat_starts(latent)


def _flat_starts(latent_BxT: Latent) -> Latent:
  """x of B x T posterior states -> N = T B gradient-stopped starts, time-major (row t B + b):
  the order imagination's per-row noise has always been drawn in."""
  flat = lambda v: lax.stop_gradient(jnp.swapaxes(v, 0, 1).reshape(-1, v.shape[-1]))
  return Latent(flat(latent_BxT.hx), flat(latent_BxT.sx))


def imagination_losses(
  cfg: WorldModelConfig, agent_cfg: AgentConfig, params, start: Latent, key: jax.Array
) -> tuple[jax.Array, jax.Array, dict]:
  """``(actor_loss, value_loss, metrics)`` from x start states (N x ...).

  The actor loss is -mean of the discount-weighted lambda-returns; its gradient flows from the
  rewards and values of the imagined states back through the dynamics into the actions, and from
  there into the actor only (model and value parameters enter as constants). The actor reads
  ``stop_gradient`` of each imagined state, as in the release and Dreamer v1: no gradient runs
  from the actor's input back into earlier states and actions. The value loss is the weighted
  mean of 0.5 (v - stop_grad(R))^2 on stopped features, so it moves only the value parameters.
  With ``target_every > 0`` the returns bootstrap from the slow target net
  (``params["value_target"]``) instead of the value net.
  """
  h = agent_cfg.horizon
  model_p = lax.stop_gradient(params["model"])
  value_p = lax.stop_gradient(params["value_target" if agent_cfg.target_every else "value"])
  actor_p = params["actor"]

  def policy(feat_NxF, k):
    # the release's get_action(previous_latent_state.detach()); the next state is not detached
    feat_NxF = lax.stop_gradient(feat_NxF)
    return sample_action(actor_dist(cfg, agent_cfg, actor_p, feat_NxF), k)[0]

  x_NxH = wm.imagine(cfg, model_p, Latent(start.hx, start.sx), key, policy=policy, horizon=h)
  x = jax.tree.map(lambda v: jnp.swapaxes(v, 0, 1), x_NxH)  # the returns scan over time
  feat_HxNxF = x.features("x")
  reward_HxN = wm.denoised_reward(cfg, model_p, x)
  value_HxN = value_fn(agent_cfg, value_p, feat_HxNxF)
  disc_HxN = jnp.full_like(reward_HxN, agent_cfg.gamma)
  ret_H1xN = lambda_return(
    reward_HxN[:-1], value_HxN[:-1], disc_HxN[:-1], value_HxN[-1], lam=agent_cfg.lam
  )
  # weight of step t: the discount accumulated before it (1, gamma, gamma^2, ...)
  weight_H1xN = lax.stop_gradient(
    jnp.cumprod(jnp.concatenate([jnp.ones_like(disc_HxN[:1]), disc_HxN[:-2]], axis=0), axis=0)
  )
  actor_loss = -jnp.mean(weight_H1xN * ret_H1xN)
  v_pred = value_fn(agent_cfg, params["value"], lax.stop_gradient(feat_HxNxF[:-1]))
  value_loss = jnp.mean(weight_H1xN * 0.5 * jnp.square(v_pred - lax.stop_gradient(ret_H1xN)))
  metrics = {
    "actor_loss": actor_loss,
    "value_loss": value_loss,
    "imag_reward": jnp.mean(reward_HxN),
    "imag_return": jnp.mean(ret_H1xN),
    "imag_value": jnp.mean(v_pred),
  }
  return actor_loss, value_loss, metrics


def agent_loss(cfg: WorldModelConfig, agent_cfg: AgentConfig, params, batch: dict, key: jax.Array):
  """``(world-model loss + actor loss + value loss, metrics)``. The world-model term is exactly
  ``world_model_loss(cfg, params["model"], batch, k_model)`` with ``k_model, k_imag =
  split(key)``; imagination starts from that loss's posterior samples."""
  k_model, k_imag = jax.random.split(key)
  model_loss, metrics, latents_BxT = world_model_terms(cfg, params["model"], batch, k_model)
  start = _flat_starts(latents_BxT)
  actor_loss, value_loss, imag = imagination_losses(cfg, agent_cfg, params, start, k_imag)
  return model_loss + actor_loss + value_loss, {"model_loss": model_loss, **metrics, **imag}


def agent_loss_fn(cfg: WorldModelConfig, agent_cfg: AgentConfig):
  """``loss_fn(params, batch, key) -> (loss, metrics)`` for ``core.loop.make_update``."""
  return lambda params, batch, key: agent_loss(cfg, agent_cfg, params, batch, key)


def slow_target_update(every: int) -> optax.GradientTransformation:
  """Sets the update of ``params["value_target"]`` so that every ``every``-th step it becomes
  the value net's new parameters (``params["value"] + updates["value"]``) and stays otherwise.
  Goes after the transformation that computes the value update."""

  def init(params):
    del params
    return {"count": jnp.zeros([], jnp.int32)}

  def update(updates, state, params):
    count = state["count"] + 1
    new_value = optax.apply_updates(params["value"], updates["value"])
    copy = count % every == 0
    move = lambda new, old: jnp.where(copy, new - old, jnp.zeros_like(old))
    updates = {**updates, "value_target": jax.tree.map(move, new_value, params["value_target"])}
    return updates, {"count": count}

  return optax.GradientTransformation(init, update)


def agent_optimizer(agent_cfg: AgentConfig) -> optax.GradientTransformation:
  """Per group (model, actor, value): global-norm clip, then Adam at the group's rate; with
  ``target_every > 0`` the target net gets no gradient step, only :func:`slow_target_update`."""
  group = lambda lr: optax.chain(
    optax.clip_by_global_norm(agent_cfg.grad_clip), optax.adam(lr, eps=agent_cfg.adam_eps)
  )
  groups = {
    "model": group(agent_cfg.model_lr),
    "actor": group(agent_cfg.actor_lr),
    "value": group(agent_cfg.value_lr),
  }
  if agent_cfg.target_every:
    groups["value_target"] = optax.set_to_zero()
  by_group = optax.multi_transform(
    groups, lambda params: {k: jax.tree.map(lambda _: k, v) for k, v in params.items()}
  )
  if not agent_cfg.target_every:
    return by_group
  return optax.chain(by_group, slow_target_update(agent_cfg.target_every))


# ---------------------------------------------------------------------------------------------
# acting


class PolicyState(NamedTuple):
  """The agent's memory between environment steps: the posterior latent (B x ...) and the
  previous action (B x A; zeros after a reset, as in the training batches)."""

  latent: Latent
  action: jax.Array


def initial_policy_state(cfg: WorldModelConfig, batch: int | None = None) -> PolicyState:
  """State after a reset: zero latent and zero previous action; ``batch=None`` for a single
  environment (unbatched arrays, used with H x W x C observations)."""
  n = 1 if batch is None else batch
  state = PolicyState(wm.initial_latent(cfg, n), jnp.zeros((n, cfg.action_dim), jnp.float32))
  return state if batch is not None else jax.tree.map(lambda v: v[0], state)


@functools.partial(jax.jit, static_argnames=("cfg", "agent_cfg", "explore"))
def policy_step(
  cfg: WorldModelConfig,
  agent_cfg: AgentConfig,
  params,
  state: PolicyState,
  obs,
  key: jax.Array,
  explore: bool,
) -> tuple[jax.Array, PolicyState]:
  """``(action, new state)`` for observation ``obs`` (B x H x W x C, or H x W x C with an
  unbatched state; uint8). The posterior at ``obs`` comes from one model step on the previous
  latent and action; then explore: a sample plus N(0, explore_std^2) noise, clipped to [-1, 1];
  eval (``explore=False``): the mode ``tanh(mean)``."""
  obs = jnp.asarray(obs)
  single = obs.ndim == 3
  if single:
    obs = obs[None]
    state = jax.tree.map(lambda v: v[None], state)
  if obs.shape[1:] != (cfg.image_size, cfg.image_size, cfg.channels):
    raise ValueError(
      f"obs must be [B x] {cfg.image_size} x {cfg.image_size} x {cfg.channels}, got {obs.shape[1:]}"
    )
  if state.action.shape != (obs.shape[0], cfg.action_dim):
    raise ValueError(
      f"state holds {state.action.shape[0]} environments' actions of size "
      f"{state.action.shape[-1]}; obs batch is {obs.shape[0]}, action_dim "
      f"{cfg.action_dim}"
    )
  k_post, k_act, k_noise = jax.random.split(key, 3)
  model = wm.WorldModel(cfg)
  mp = params["model"]
  proj = model.apply(
    mp,
    model.apply(mp, wm.to_centered_float(obs), method=wm.WorldModel.encode),
    method=wm.WorldModel.project,
  )
  latent, _ = model.apply(mp, state.latent, state.action, proj, k_post, method=wm.WorldModel.step)
  dist = actor_dist(cfg, agent_cfg, params["actor"], latent.features("x"))
  if explore:
    action = sample_action(dist, k_act)[0]
    action = action + agent_cfg.explore_std * jax.random.normal(k_noise, action.shape)
    action = jnp.clip(action, -1.0, 1.0)
  else:
    action = mode_action(dist)
  new = PolicyState(latent, action)
  if single:
    return action[0], jax.tree.map(lambda v: v[0], new)
  return action, new
