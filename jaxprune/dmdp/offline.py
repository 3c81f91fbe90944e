"""World models trained on fixed episodes, several seeds at once; their factors' features.

* :func:`sequence_step` turns the shared loop's ``update`` into a step that draws its own batch of
  ``B`` sub-sequences of length ``L`` (episode and start uniform) from episodes held on the device,
  from ``fold_in(state.key, step)``: a resumed run draws the same batches as an uninterrupted one.
* :func:`train` runs that step for ``S`` seeds at once (``jax.vmap`` over a stack of
  :class:`jaxprune.core.loop.TrainState`: seed ``s`` initialises from ``fold_in(key(seed), s)``
  and draws its own batches) under :func:`jaxprune.core.run.fit` (checkpoints, resume, NaN guard,
  metrics.jsonl, progress) in a work directory.
* :func:`factor_features` filters held-out episodes through each seed's posterior and returns,
  per factor, the features ``[h_t, mean of q(s_t)]`` (the posterior mean, not a sample, so a
  probe reads the state and not the sampling noise), and ``all``: every factor's, concatenated.

Episodes are dicts of arrays with leading ``E x T``: ``image`` (uint8 ``H x W x C``), ``action``
(``action[:, t]`` = a_{t-1}, zeros at t = 0) and ``reward``, the layout of
:func:`jaxprune.envs.ground_truth.collect` and of the agent's replay.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxprune.core.cache import memoize
from jaxprune.core.loop import TrainState, create_state, jit_once, make_update
from jaxprune.core.run import fit
from jaxprune.dmdp import losses
from jaxprune.dmdp import model as wm
from jaxprune.dmdp.config import WorldModelConfig
from jaxprune.dmdp.salts import OFFLINE_BATCH_SALT as BATCH_SALT  # fold_in salts: salts.py
from jaxprune.dmdp.salts import OFFLINE_FEATURE_SALT as FEATURE_SALT
from jaxprune.dmdp.salts import OFFLINE_INIT_SALT as INIT_SALT
from jaxprune.dmdp.salts import OFFLINE_TRAIN_SALT as TRAIN_SALT

SEQUENCE_KEYS = ("image", "action", "reward")


def check_episodes(cfg: WorldModelConfig, episodes: dict, *, seq_len: int | None = None) -> None:
  """``ValueError`` unless ``episodes`` holds E x T image / action / reward arrays for ``cfg``."""
  for k in SEQUENCE_KEYS:
    if k not in episodes:
      raise ValueError(f"episodes need {SEQUENCE_KEYS}; missing {k!r}")
  img = np.asarray(episodes["image"])
  want = (cfg.image_size, cfg.image_size, cfg.channels)
  if img.ndim != 5 or img.shape[2:] != want or img.dtype != np.uint8:
    raise ValueError(f"image must be uint8 E x T x {want}, got {img.dtype} {img.shape}")
  e, t = img.shape[:2]
  if np.shape(episodes["action"]) != (e, t, cfg.action_dim):
    raise ValueError(
      f"action must be E x T x A = {(e, t, cfg.action_dim)}, got {np.shape(episodes['action'])}"
    )
  if np.shape(episodes["reward"]) != (e, t):
    raise ValueError(f"reward must be E x T = {(e, t)}, got {np.shape(episodes['reward'])}")
  if seq_len is not None and not 1 <= seq_len <= t:
    raise ValueError(f"seq_len must be in [1, T = {t}] (the episode length), got {seq_len}")


def sample_sequences(key: jax.Array, episodes: dict, *, batch: int, seq_len: int) -> dict:
  """``batch`` sub-sequences of length ``seq_len``: B x L x ... of every array of ``episodes``."""
  e, t = episodes["reward"].shape
  ke, ks = jax.random.split(key)
  ep = jax.random.randint(ke, (batch,), 0, e)
  start = jax.random.randint(ks, (batch,), 0, t - seq_len + 1)

  def take(x):
    return jax.vmap(lambda i, s: lax.dynamic_slice_in_dim(x[i], s, seq_len))(ep, start)

  return {k: take(episodes[k]) for k in SEQUENCE_KEYS}


@memoize
def sequence_step(cfg: WorldModelConfig, *, batch: int, seq_len: int, learning_rate: float):
  """``step(state, episodes) -> (state, metrics)``: one world-model update (the release's Adam,
  clip 100) on the batch drawn at ``state.step``. Memoised on its arguments."""
  update = make_update(losses.make_loss_fn(cfg), losses.make_optimizer(learning_rate=learning_rate))

  def step(state: TrainState, episodes: dict):
    key = jax.random.fold_in(jax.random.fold_in(state.key, BATCH_SALT), state.step)
    return update(state, sample_sequences(key, episodes, batch=batch, seq_len=seq_len))

  return step


@memoize
def seeds_step(cfg: WorldModelConfig, *, batch: int, seq_len: int, learning_rate: float):
  """:func:`sequence_step` vmapped over a stack of states (one per seed), episodes shared."""
  step = sequence_step(cfg, batch=batch, seq_len=seq_len, learning_rate=learning_rate)
  return jax.vmap(step, in_axes=(0, None))


@memoize
def _init_states(cfg: WorldModelConfig, num_seeds: int, learning_rate: float) -> Callable:
  opt = losses.make_optimizer(learning_rate=learning_rate)

  def init(key):
    def one(s):
      k = jax.random.fold_in(key, s)
      params = wm.init(cfg, jax.random.fold_in(k, INIT_SALT))
      return create_state(params, opt, jax.random.fold_in(k, TRAIN_SALT))

    return jax.vmap(one)(jnp.arange(num_seeds))

  return jit_once(init)


def train(
  cfg: WorldModelConfig,
  episodes: dict,
  *,
  seed: int,
  num_seeds: int,
  updates: int,
  batch: int,
  seq_len: int,
  learning_rate: float,
  workdir: str | None = None,
  config=None,
  progress: bool = True,
  desc: str = "world model",
  stop_at: int | None = None,
):
  """Train ``num_seeds`` world models on ``episodes`` for ``updates`` updates each (vmapped).

  Returns ``(states, records)``: a stack of ``TrainState`` (leading axis S) and the logged
  metrics (means over the seeds). With ``workdir`` the run is checkpointed and resumes (the
  number of updates may grow on resume); ``config`` is stored with it and checked on resume.
  """
  check_episodes(cfg, episodes, seq_len=seq_len)
  if num_seeds < 1 or updates < 0 or batch < 1:
    raise ValueError(
      f"need num_seeds >= 1, updates >= 0, batch >= 1; got {num_seeds}, {updates}, {batch}"
    )
  data = jax.device_put({k: np.asarray(episodes[k]) for k in SEQUENCE_KEYS})
  data["action"] = data["action"].astype(jnp.float32)
  data["reward"] = data["reward"].astype(jnp.float32)
  states = _init_states(cfg, num_seeds, learning_rate)(jax.random.key(seed))
  step = seeds_step(cfg, batch=batch, seq_len=seq_len, learning_rate=learning_rate)
  return fit(
    step,
    states,
    data,
    num_steps=updates,
    workdir=workdir,
    config=config,
    steps_per_dispatch=10,
    log_every=50,
    ckpt_every=max(updates // 4, 50),
    progress=progress,
    desc=desc,
    stop_at=stop_at,
  )


def factors_of(cfg: WorldModelConfig) -> tuple[str, ...]:
  """The latent factors a world model has, in order: ``("x",)``, ``("x", "y")`` or x, y, z."""
  return ("x",) + (("y",) if cfg.has_y else ()) + (("z",) if cfg.has_z else ())


@memoize
def _features_fn(cfg: WorldModelConfig) -> Callable:
  def one(params, image_ExTxHxWxC, action_ExTxA, key):
    e = wm.encode_images(cfg, params, image_ExTxHxWxC)
    latent, stats = wm.observe(cfg, params, e, action_ExTxA, key)  # E x T
    out = {}
    for f in factors_of(cfg):
      h = getattr(latent, "h" + f)
      out[f] = jnp.concatenate([h, stats.post[f].mean], axis=-1)
    out["all"] = jnp.concatenate([out[f] for f in factors_of(cfg)], axis=-1)
    return out

  return jax.jit(jax.vmap(one, in_axes=(0, None, None, 0)))


def factor_features(
  cfg: WorldModelConfig, params_stack, episodes: dict, *, key: jax.Array, chunk: int = 8
) -> dict[str, np.ndarray]:
  """Posterior features of every episode under each seed's parameters (leading axis S):
  ``{factor: S x E x T x F}`` for each factor of ``cfg`` and ``"all"``. Episodes go through in
  chunks of ``chunk`` (bounded memory)."""
  check_episodes(cfg, episodes)
  fn = _features_fn(cfg)
  n_seeds = jax.tree.leaves(params_stack)[0].shape[0]
  e = episodes["image"].shape[0]
  parts = []
  for i in range(0, e, chunk):
    keys = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, FEATURE_SALT), i), n_seeds)
    img = jnp.asarray(episodes["image"][i : i + chunk])
    act = jnp.asarray(episodes["action"][i : i + chunk], jnp.float32)
    parts.append(jax.device_get(fn(params_stack, img, act, keys)))
  return {f: np.concatenate([p[f] for p in parts], axis=1) for f in parts[0]}


def select_seed(tree, s: int):
  """Seed ``s`` of a stacked pytree (params or states)."""
  return jax.tree.map(lambda v: v[s], tree)
