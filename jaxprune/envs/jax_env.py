"""The noisy DMC tasks as pure JAX environments: MJX physics, the JAX renderer and the
distractors, jittable and vmappable, for the agent's loop on the device.

>>> env, params = make("walker_walk", "video_background", seed=0)
>>> state, obs = env.reset(params, key)                          # obs uint8 64 x 64 x 3
>>> state, obs, reward, clean = env.step(params, state, action)  # action in [-1, 1]^A
>>> jax.vmap(env.step, in_axes=(None, 0, 0))(params, states, actions)   # N environments

``make`` takes :func:`jaxprune.envs.make`'s arguments for the DMC tasks and builds the same task:
the physics of :mod:`jaxprune.envs.mjx_physics` (dm_control's model files in the same scene, the
tasks' resets and rewards), rendered by :mod:`jaxprune.envs.jax_render` from camera 0, composited
and shifted by :mod:`jaxprune.envs.jax_distractors`; an agent step is ``action_repeat``
dm_control steps, the rewards summed, one render after the last. The background clip is the host
environment's of the same seed (same ``SeedSequence`` draw, same generator), held in
``params.clip``; the start frame, the jitter walk and the initial states come from ``jax.random``
keys, so episodes are not the host environment's draws (their distributions are).

What differs from :class:`jaxprune.envs.dmc.NoisyDMCEnv` beyond the random streams: actions are
clipped to [-1, 1] instead of checked (a host-side check cannot run in jit); ``jitter="crop"`` is
not offered; the image is the JAX renderer's, whose agreement with MuJoCo's is measured in
docs/results.md (silhouette IoU, pixel difference); the physics is MJX's (agreement over short
horizons in the same place).

``params`` (:class:`EnvParams`) is a pytree: ``jax.vmap`` over seeds with
:func:`params_axes` (only the clip differs between seeds).
"""

from __future__ import annotations

import dataclasses
import types
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxprune.envs import dmc, mjx_physics
from jaxprune.envs import jax_distractors as dis
from jaxprune.envs import jax_render as jr


class EnvParams(struct.PyTreeNode):
  """The arrays an environment reads: ``physics`` (MJX model and static facts), ``scene`` (the
  renderer's) and ``clip`` (uint8 T x S x S background; 1 x S x S zeros when noiseless)."""

  physics: mjx_physics.PhysicsModel
  scene: jr.RenderScene
  clip: jax.Array


class EnvState(NamedTuple):
  """An environment's state: physics, distractor (clip frame, walk) and its key."""

  phys: mjx_physics.PhysState
  distractor: dis.Distractor
  key: jax.Array


def params_axes(params: EnvParams, axis: int | None = 0) -> EnvParams:
  """``in_axes`` for :class:`EnvParams` stacked over seeds: ``axis`` for the clip, None for the
  shared physics and scene."""
  del params
  return EnvParams(physics=None, scene=None, clip=axis)


@dataclasses.dataclass(frozen=True)
class JaxEnv:
  """One task and variant (static; hashable). Build it with :func:`make`."""

  task: str
  variant: str
  image_size: int
  action_repeat: int
  episode_length: int
  mask_mode: str
  action_dim: int

  @property
  def episode_steps(self) -> int:
    return self.episode_length // self.action_repeat

  @property
  def observation_shape(self) -> tuple[int, int, int]:
    return (self.image_size, self.image_size, 3)

  def _observe(self, params: EnvParams, phys, distractor) -> jax.Array:
    d = phys.data
    view = types.SimpleNamespace(
      geom_xpos=d.geom_xpos,
      geom_xmat=d.geom_xmat,
      cam_xpos=d.cam_xpos,
      cam_xmat=d.cam_xmat,
      light_xpos=phys.light_xpos,
      light_xdir=phys.light_xdir,
    )
    rgb, _ = jr.render(params.scene, view)
    return dis.observe(
      rgb,
      params.clip,
      distractor,
      variant=self.variant,
      mask_mode=self.mask_mode,
      image_size=self.image_size,
    )

  def reset(self, params: EnvParams, key: jax.Array) -> tuple[EnvState, jax.Array]:
    """A new episode: ``(state, first observation)``."""
    k_phys, k_dis, k_next = jax.random.split(key, 3)
    phys = mjx_physics.reset(params.physics, k_phys)
    distractor = dis.distractor_reset(params.clip, k_dis, variant=self.variant)
    return EnvState(phys, distractor, k_next), self._observe(params, phys, distractor)

  def step(self, params: EnvParams, state: EnvState, action: jax.Array):
    """``(state, obs, reward, clean_reward)`` after ``action_repeat`` dm_control steps with
    ``action`` (clipped to [-1, 1]); ``reward`` reads the noisy sensor in that variant."""
    ctrl = jnp.clip(jnp.asarray(action, jnp.float32), -1.0, 1.0)
    noisy = self.variant == "video_background_noisy_sensor"
    phys, distractor = state.phys, state.distractor
    keys = jax.random.split(state.key, self.action_repeat + 1)
    reward = clean = jnp.zeros((), jnp.float32)
    for i in range(self.action_repeat):  # static and small: unrolled
      noise = dis.frame_noise(params.clip, distractor) if noisy else 0.0
      phys, r, c = mjx_physics.step(params.physics, phys, ctrl, noise)
      reward, clean = reward + r, clean + c
      distractor = dis.distractor_physics_step(distractor, keys[i], variant=self.variant)
    obs = self._observe(params, phys, distractor)
    return EnvState(phys, distractor, keys[-1]), obs, reward, clean


def make(
  task: str,
  variant: str = "noiseless",
  *,
  seed: int,
  image_size: int = 64,
  action_repeat: int = 2,
  episode_length: int = 1000,
  video_dir: str | None = None,
  num_background_frames: int = 1000,
  scene: str | None = None,
  jitter: str = "shift",
  mask: str | None = None,
  shadows: bool = True,
  reflections: bool = True,
  supersample: int = 1,
) -> tuple[JaxEnv, EnvParams]:
  """``(env, params)`` of ``task`` and ``variant``; the arguments are :func:`jaxprune.envs.make`'s
  (checked the same way) plus the renderer's ``shadows``, ``reflections`` and ``supersample``."""
  dmc._check_args(
    task,
    variant,
    seed=seed,
    image_size=image_size,
    action_repeat=action_repeat,
    episode_length=episode_length,
    num_background_frames=num_background_frames,
    scene_name=scene,
    jitter=jitter,
    mask=mask,
  )
  dis.check_variant(variant, jitter)
  scene_name = scene if scene is not None else dmc.DEFAULT_SCENES[variant]
  physics, mj_model = mjx_physics.load(task, scene=scene_name)
  render_scene = jr.make_scene(
    mj_model,
    camera_id=dmc.CAMERA_ID,
    size=image_size,
    supersample=supersample,
    shadows=shadows,
    reflections=reflections,
  )
  if not np.array_equal(mj_model.actuator_ctrlrange, np.tile([-1.0, 1.0], (mj_model.nu, 1))):
    raise ValueError(f"{task}'s actuators must have ctrlrange [-1, 1] (actions are controls)")
  clip = np.zeros((1, image_size, image_size), np.uint8)
  if variant != "noiseless":
    clip = dmc.background_clip(
      seed, size=image_size, num_frames=num_background_frames, video_dir=video_dir
    )
  env = JaxEnv(
    task=task,
    variant=variant,
    image_size=int(image_size),
    action_repeat=int(action_repeat),
    episode_length=int(episode_length),
    mask_mode=mask if mask is not None else dmc.MASK_MODES[task],
    action_dim=int(mj_model.nu),
  )
  return env, EnvParams(physics=physics, scene=render_scene, clip=jnp.asarray(clip))
