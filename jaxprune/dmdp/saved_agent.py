"""A trained agent from a ``scripts/train_dmdp.py`` work directory, used as a data policy.

:func:`load` reads the run's ``config.json`` and its latest checkpoint (read only: nothing in the
work directory changes); :func:`policy` turns it into the ``policy(obs, t, state) -> (action,
state)`` callable of :func:`jaxprune.envs.ground_truth.collect`: posterior filtering on every
observation and the policy's mode (``tanh(mean)``, no exploration noise), as in evaluation.
"""

from __future__ import annotations

import json
import os
from typing import Callable, NamedTuple

import jax
import numpy as np

from jaxprune.core.checkpoint import Checkpointer, CheckpointError
from jaxprune.core.config import from_dict
from jaxprune.dmdp import agent as agent_lib
from jaxprune.dmdp.agent_state import batch_mesh, init_state
from jaxprune.dmdp.run_config import RunConfig


class SavedAgent(NamedTuple):
  config: RunConfig
  params: dict  # {"model", "actor", "value"}
  step: int  # the checkpoint's update step


def load(workdir: str) -> SavedAgent:
  """The agent of the latest checkpoint in ``workdir`` (a train_dmdp work directory)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{workdir} holds no config.json: not a train_dmdp work directory")
  with open(path) as f:
    cfg = from_dict(RunConfig, json.load(f))
  ckpt_dir = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(ckpt_dir):
    raise CheckpointError(f"{workdir} holds no checkpoint (no checkpoints/): train the agent first")
  like = init_state(cfg, batch_mesh(cfg.batch))
  ckpt = Checkpointer(ckpt_dir)
  try:
    restored = ckpt.restore_latest(like)
    step = ckpt.latest_step()
  finally:
    ckpt.close()
  if restored is None:
    raise CheckpointError(f"{ckpt_dir} holds no complete checkpoint")
  return SavedAgent(cfg, restored[0].params, int(step))


def policy(agent: SavedAgent, key: jax.Array) -> Callable:
  """``policy(obs_HxWx3, t, state) -> (action, state)``: the agent's mode action after filtering
  ``obs``; ``state`` is None at an episode's start (then the zero latent and action)."""
  wm_cfg, ag_cfg = agent.config.world_model, agent.config.agent

  def act(obs, t, state):
    pstate = agent_lib.initial_policy_state(wm_cfg) if state is None else state
    k = jax.random.fold_in(key, t)
    action, pstate = agent_lib.policy_step(
      wm_cfg, ag_cfg, agent.params, pstate, np.asarray(obs), k, explore=False
    )
    return np.asarray(action, np.float32), pstate

  return act
