"""The three tasks' rewards with a noisy sensor, rebuilt from dm_control's own constants.

Each reward reads one physical quantity to which ``scale * noise`` is added (noise from
:func:`jaxprune.envs.compositing.sensor_noise`, in [-0.5, 0.5]):

* cheetah_run: torso speed ``+= 10 * noise`` (``cheetah._RUN_SPEED``);
* walker_walk: torso height ``+= 1.2 * noise`` (``walker._STAND_HEIGHT``);
* reacher_easy: finger-to-target distance ``+= r * noise`` where ``r`` is the success radius the
  reward uses, target radius + finger radius (0.05 + 0.01), as in the authors' release.

With ``noise=0`` each function returns exactly the task's own ``get_reward(physics)``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from dm_control.suite import cheetah, walker
from dm_control.utils import rewards


def cheetah_run_reward(physics, task, noise: float = 0.0) -> float:
  """``tolerance(speed + 10 noise, bounds=(10, inf), margin=10, linear)``."""
  del task
  speed = physics.speed() + cheetah._RUN_SPEED * noise
  return rewards.tolerance(
    speed,
    bounds=(cheetah._RUN_SPEED, float("inf")),
    margin=cheetah._RUN_SPEED,
    value_at_margin=0,
    sigmoid="linear",
  )


def walker_walk_reward(physics, task, noise: float = 0.0) -> float:
  """PlanarWalker's reward with the torso height read as ``height + 1.2 noise``."""
  height = physics.torso_height() + walker._STAND_HEIGHT * noise
  standing = rewards.tolerance(
    height, bounds=(walker._STAND_HEIGHT, float("inf")), margin=walker._STAND_HEIGHT / 2
  )
  upright = (1 + physics.torso_upright()) / 2
  stand_reward = (3 * standing + upright) / 4
  move_speed = task._move_speed
  if move_speed == 0:
    return stand_reward
  move_reward = rewards.tolerance(
    physics.horizontal_velocity(),
    bounds=(move_speed, float("inf")),
    margin=move_speed / 2,
    value_at_margin=0.5,
    sigmoid="linear",
  )
  return stand_reward * (5 * move_reward + 1) / 6


def reacher_easy_reward(physics, task, noise: float = 0.0) -> float:
  """``tolerance(dist + r noise, (0, r))`` with ``r`` = target radius + finger radius."""
  del task
  radii = physics.named.model.geom_size[["target", "finger"], 0].sum()
  dist = physics.finger_to_target_dist() + radii * noise
  return rewards.tolerance(dist, (0, radii))


NOISY_REWARDS: dict[str, Callable[..., float]] = {
  "cheetah_run": cheetah_run_reward,
  "walker_walk": walker_walk_reward,
  "reacher_easy": reacher_easy_reward,
}


def noisy_reward(task_name: str, physics, task, noise: float) -> float:
  """The reward of ``task_name`` (a key of ``NOISY_REWARDS``) with sensor noise ``noise``."""
  if task_name not in NOISY_REWARDS:
    raise ValueError(f"no noisy-sensor reward for {task_name!r}; known: {sorted(NOISY_REWARDS)}")
  if not np.isfinite(noise):
    raise ValueError(f"noise must be finite, got {noise}")
  return float(NOISY_REWARDS[task_name](physics, task, noise))
