"""The agent's whole loop on the device: collect from N vmapped JAX environments with the policy,
store in an on-device replay, train; all in one jitted program, vmappable over seeds.

The environment is any pure JAX environment with the interface of
:class:`jaxprune.envs.jax_env.JaxEnv` (gymnax-style, parameters passed explicitly)::

  state, obs = env.reset(params, key)                          # obs uint8 S x S x C
  state, obs, reward, clean = env.step(params, state, action)  # one agent step
  env.action_dim, env.episode_steps, env.observation_shape     # static

All N environments of a loop start their episodes together and every episode has
``episode_steps`` agent steps (these tasks have no early termination), so the schedule is static:
the host knows when an episode ends and calls :func:`start_episodes`, and every shape is fixed.

Replay (:class:`DeviceReplay`): ``slots`` episodes of N environments, each ``L = episode_steps + 1``
rows aligned as :mod:`jaxprune.dmdp.replay` stores them (``action[t]`` is a_{t-1}, zeros at
``t = 0``; ``reward[t]`` is r_t, 0 at ``t = 0``). The episode being collected is never sampled;
a chunk of ``seq_len`` rows is drawn uniformly over (finished episode, environment, start), which
is :meth:`jaxprune.dmdp.replay.ReplayBuffer.sample`'s rule when all episodes have one length.

One iteration (:func:`iteration`) = ``collect_steps`` agent steps of the N environments (random
actions while prefilling, else :func:`jaxprune.dmdp.agent.policy_step` with exploration noise) then
``updates`` agent updates (:func:`jaxprune.core.loop.make_update` of the agent loss, scanned).
Everything is a pure function of the :class:`LoopState`; seeds are a leading axis of it, the
functions ``jax.vmap``-ed over it (:func:`seeds_fn`).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
from flax import struct

from jaxprune.core.loop import TrainState, create_state, make_update, run_steps
from jaxprune.dmdp import agent as agent_lib
from jaxprune.dmdp.agent import AgentConfig, PolicyState
from jaxprune.dmdp.config import WorldModelConfig
from jaxprune.dmdp.salts import INIT_SALT, TRAIN_SALT


class JaxEnvLike(Protocol):
  """What the loop needs of an environment (see the module docstring)."""

  action_dim: int
  episode_steps: int
  observation_shape: tuple[int, ...]

  def reset(self, params, key) -> tuple[Any, jax.Array]: ...

  def step(self, params, state, action) -> tuple[Any, jax.Array, jax.Array, jax.Array]: ...


class DeviceReplay(struct.PyTreeNode):
  """Episodes on the device: ``image`` E x N x L x S x S x C uint8, ``action`` E x N x L x A,
  ``reward`` E x N x L (float32), ``started`` the number of episodes begun (the current one is in
  slot ``(started - 1) % E``)."""

  image: jax.Array
  action: jax.Array
  reward: jax.Array
  started: jax.Array

  @property
  def slots(self) -> int:
    return self.image.shape[0]


def replay_init(slots: int, num_envs: int, episode_steps: int, obs_shape, action_dim: int):
  """An empty :class:`DeviceReplay`."""
  rows = episode_steps + 1
  return DeviceReplay(
    image=jnp.zeros((slots, num_envs, rows, *obs_shape), jnp.uint8),
    action=jnp.zeros((slots, num_envs, rows, action_dim), jnp.float32),
    reward=jnp.zeros((slots, num_envs, rows), jnp.float32),
    started=jnp.zeros((), jnp.int32),
  )


def replay_sample(replay: DeviceReplay, key, *, batch: int, length: int) -> dict:
  """``{"image": B x length x ..., "action", "reward"}``: chunks of finished episodes, uniform
  over (episode, environment, start). Needs at least one finished episode (the caller's
  schedule guarantees it); with none it reads the zero rows of an empty slot."""
  e, n, rows = replay.image.shape[:3]
  finished = jnp.clip(replay.started - 1, 1, e - 1)  # the current slot is never read
  k_ep, k_env, k_start = jax.random.split(key, 3)
  back = jax.random.randint(k_ep, (batch,), 0, finished)  # 0 = the newest finished episode
  slot = (replay.started - 2 - back) % e
  env = jax.random.randint(k_env, (batch,), 0, n)
  start = jax.random.randint(k_start, (batch,), 0, rows - length + 1)

  def chunk(x):
    take = lambda s, v, t0: jax.lax.dynamic_slice_in_dim(x[s, v], t0, length, axis=0)
    return jax.vmap(take)(slot, env, start)

  return {
    "image": chunk(replay.image),
    "action": chunk(replay.action),
    "reward": chunk(replay.reward),
  }


def _write_row(replay: DeviceReplay, t, image_N, action_N, reward_N) -> DeviceReplay:
  slot = (replay.started - 1) % replay.slots
  put = lambda buf, v: buf.at[slot, :, t].set(v.astype(buf.dtype))
  return replay.replace(
    image=put(replay.image, image_N),
    action=put(replay.action, action_N),
    reward=put(replay.reward, reward_N),
  )


class LoopState(struct.PyTreeNode):
  """Everything one seed's loop carries (a leading seed axis when vmapped over seeds).

  ``ret_N`` / ``clean_N``: the running episode's returns (the env's reward, the task's own);
  ``t``: agent steps into the episode; ``key``: the collection key (folded with the env step)."""

  train: TrainState
  env: Any
  policy: PolicyState
  obs: jax.Array
  replay: DeviceReplay
  ret_N: jax.Array
  clean_N: jax.Array
  t: jax.Array
  key: jax.Array


@struct.dataclass
class LoopSpec:
  """The static sizes of a loop (hashable; jitted functions close over it)."""

  wm_cfg: WorldModelConfig = struct.field(pytree_node=False)
  ag_cfg: AgentConfig = struct.field(pytree_node=False)
  num_envs: int = struct.field(pytree_node=False)
  collect_steps: int = struct.field(pytree_node=False)
  updates: int = struct.field(pytree_node=False)
  batch: int = struct.field(pytree_node=False)
  seq_len: int = struct.field(pytree_node=False)
  slots: int = struct.field(pytree_node=False)


def _vreset(env: JaxEnvLike, params, key, n: int):
  return jax.vmap(env.reset, in_axes=(None, 0))(params, jax.random.split(key, n))


def init_loop(spec: LoopSpec, env: JaxEnvLike, params, key) -> LoopState:
  """A seed's fresh loop from ``key``: the agent's init (the host driver's salts), an empty
  replay and the first episodes started."""
  agent_params = agent_lib.init_agent(spec.wm_cfg, spec.ag_cfg, jax.random.fold_in(key, INIT_SALT))
  train = create_state(
    agent_params, agent_lib.agent_optimizer(spec.ag_cfg), jax.random.fold_in(key, TRAIN_SALT)
  )
  n = spec.num_envs
  replay = replay_init(spec.slots, n, env.episode_steps, env.observation_shape, env.action_dim)
  state = LoopState(
    train=train,
    env=None,  # set by start_episodes
    policy=agent_lib.initial_policy_state(spec.wm_cfg, n),
    obs=jnp.zeros((n, *env.observation_shape), jnp.uint8),
    replay=replay,
    ret_N=jnp.zeros((n,)),
    clean_N=jnp.zeros((n,)),
    t=jnp.zeros((), jnp.int32),
    key=jax.random.fold_in(key, 0x5EED),
  )
  return start_episodes(spec, env, params, state)


def start_episodes(spec: LoopSpec, env: JaxEnvLike, params, state: LoopState) -> LoopState:
  """Reset the N environments (keys from the loop key and the episode count), write their first
  observations to a new replay slot, zero the policy state and the running returns."""
  replay = state.replay.replace(started=state.replay.started + 1)
  k = jax.random.fold_in(jax.random.fold_in(state.key, 1), replay.started)
  env_state, obs = _vreset(env, params, k, spec.num_envs)
  n, a = spec.num_envs, env.action_dim
  replay = _write_row(replay, 0, obs, jnp.zeros((n, a)), jnp.zeros((n,)))
  return state.replace(
    env=env_state,
    obs=obs,
    replay=replay,
    policy=agent_lib.initial_policy_state(spec.wm_cfg, n),
    ret_N=jnp.zeros((n,)),
    clean_N=jnp.zeros((n,)),
    t=jnp.zeros((), jnp.int32),
  )


def collect(spec: LoopSpec, env: JaxEnvLike, params, state: LoopState, *, random: bool):
  """``collect_steps`` agent steps of the N environments in one ``lax.scan``; ``random``
  (static): uniform actions (the prefill), else the policy with exploration noise."""

  def body(s: LoopState, _):
    k = jax.random.fold_in(jax.random.fold_in(s.key, 2), s.replay.started * 100_003 + s.t)
    if random:
      action = jax.random.uniform(k, (spec.num_envs, env.action_dim), minval=-1.0, maxval=1.0)
      policy = s.policy
    else:
      action, policy = agent_lib.policy_step(
        spec.wm_cfg, spec.ag_cfg, s.train.params, s.policy, s.obs, k, explore=True
      )
    step = jax.vmap(env.step, in_axes=(None, 0, 0))
    env_state, obs, reward, clean = step(params, s.env, action)
    t = s.t + 1
    replay = _write_row(s.replay, t, obs, action, reward)
    s = s.replace(
      env=env_state,
      obs=obs,
      policy=policy,
      replay=replay,
      ret_N=s.ret_N + reward,
      clean_N=s.clean_N + clean,
      t=t,
    )
    return s, None

  state, _ = jax.lax.scan(body, state, None, length=spec.collect_steps)
  return state


def train(spec: LoopSpec, state: LoopState) -> tuple[LoopState, dict]:
  """``updates`` agent updates on chunks sampled from the replay; metrics stacked per update."""
  update = make_update(
    agent_lib.agent_loss_fn(spec.wm_cfg, spec.ag_cfg), agent_lib.agent_optimizer(spec.ag_cfg)
  )

  def step(ts: TrainState, _):
    k = jax.random.fold_in(jax.random.fold_in(state.key, 3), ts.step)
    batch = replay_sample(state.replay, k, batch=spec.batch, length=spec.seq_len)
    return update(ts, batch)

  ts, metrics = run_steps(step, state.train, length=spec.updates)
  return state.replace(train=ts), metrics


def iteration(
  spec: LoopSpec, env: JaxEnvLike, params, state: LoopState, *, random: bool, learn: bool
):
  """One iteration: collect, then (``learn``) train. Returns ``(state, metrics)`` (metrics
  empty without ``learn``)."""
  state = collect(spec, env, params, state, random=random)
  if not learn:
    return state, {}
  return train(spec, state)


def evaluate(spec: LoopSpec, env: JaxEnvLike, params, agent_params, key, *, episodes: int):
  """``(return_E, clean_return_E)`` of ``episodes`` vmapped episodes with the policy's mode."""
  env_state, obs = _vreset(env, params, key, episodes)
  policy = agent_lib.initial_policy_state(spec.wm_cfg, episodes)

  def body(carry, t):
    env_state, obs, policy = carry
    action, policy = agent_lib.policy_step(
      spec.wm_cfg, spec.ag_cfg, agent_params, policy, obs, jax.random.fold_in(key, t), explore=False
    )
    env_state, obs, reward, clean = jax.vmap(env.step, in_axes=(None, 0, 0))(
      params, env_state, action
    )
    return (env_state, obs, policy), (reward, clean)

  _, (reward_TxE, clean_TxE) = jax.lax.scan(
    body, (env_state, obs, policy), jnp.arange(env.episode_steps)
  )
  return reward_TxE.sum(0), clean_TxE.sum(0)


def seeds_fn(fn: Callable, *, params_axis=None) -> Callable:
  """``fn(params, state, ...)`` vmapped over a leading seed axis of ``state`` (and of every
  further positional argument), the environment's ``params`` shared (``params_axis=None``)."""

  @functools.wraps(fn)
  def wrapped(params, state, *args):
    return jax.vmap(fn, in_axes=(params_axis, 0, *([0] * len(args))))(params, state, *args)

  return wrapped
