"""The online agent's train state on a mesh: the mesh an update runs on (:func:`batch_mesh`) and
the initial state (:func:`init_state`), compiled once per (configs, mesh). A saved agent
(:mod:`jaxprune.dmdp.saved_agent`) restores into the same structure."""

from __future__ import annotations

import warnings
from typing import Callable

import jax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxprune.core.cache import memoize
from jaxprune.core.loop import TrainState, create_state, jit_once
from jaxprune.core.sharding import data_mesh
from jaxprune.dmdp import agent as agent_lib
from jaxprune.dmdp.agent import AgentConfig
from jaxprune.dmdp.config import WorldModelConfig
from jaxprune.dmdp.run_config import RunConfig
from jaxprune.dmdp.salts import INIT_SALT, TRAIN_SALT


def batch_mesh(batch: int) -> Mesh:
  """The mesh the update runs on: the most devices that divide ``batch`` (all, when ``batch`` is
  a multiple of the device count; fewer, with a warning, otherwise)."""
  n = jax.device_count()
  use = max(d for d in range(1, n + 1) if batch % d == 0)
  if use < n:
    warnings.warn(
      f"batch {batch} is not a multiple of the {n} devices: the update runs on {use} "
      f"of them (choose a batch that is a multiple of {n} to use all)",
      stacklevel=2,
    )
  return data_mesh(use)


def init_state(cfg: RunConfig, mesh: Mesh) -> TrainState:
  """The agent's train state (params, optimizer state, step, key), replicated over ``mesh``."""
  return _init_fn(cfg.world_model, cfg.agent, mesh)(jax.random.key(cfg.seed))


@memoize
def _init_fn(wm_cfg: WorldModelConfig, ag_cfg: AgentConfig, mesh: Mesh) -> Callable:
  # one jitted program: initialising op by op compiles every small op on its own (~30 s on CPU)
  def init(key):
    params = agent_lib.init_agent(wm_cfg, ag_cfg, jax.random.fold_in(key, INIT_SALT))
    return create_state(
      params, agent_lib.agent_optimizer(ag_cfg), jax.random.fold_in(key, TRAIN_SALT)
    )

  return jit_once(init, out_shardings=NamedSharding(mesh, P()))
