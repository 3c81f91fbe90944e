"""Episodes with the ground truth the env knows but the model never sees.

For the representation probes of the Denoised MDP: :func:`collect` runs episodes of a
``NoisyDMCEnv`` and records, next to every frame, the physics state it shows (``qpos``, ``qvel``)
and the noise in it (background frame and its sensor-patch intensity, the noise in the reward,
the camera offset). ``TARGETS`` names what a probe may regress onto; :func:`targets_for` says
which of them a variant makes meaningful. :func:`save` / :func:`load` store the episodes as one
``.npz`` file.

Arrays (``E`` episodes, ``T = episode_steps + 1`` frames each: the reset frame, then one per
agent step; ``S`` the image size, ``A`` the action dimension):

* ``image``: ``uint8 E x T x S x S x 3``, the observations.
* ``action``: ``float32 E x T x A``; ``action[:, t]`` is the action taken before frame ``t``
  (zeros at ``t = 0``).
* ``reward``, ``clean_reward``: ``float32 E x T``, the env's reward (noisy for the noisy-sensor
  variant) and the task's own, received with frame ``t`` (0 at ``t = 0``).
* ``qpos``: ``float32 E x T x nq``, ``qvel``: ``float32 E x T x nv``, the physics state the frame
  shows (``physics.data`` right after the frame was rendered).
* ``background_index``: ``int32 E x T``, the frame of the background clip shown (-1: noiseless).
* ``background_intensity``: ``float32 E x T``, the mean of the noisy-sensor patch
  (``compositing.sensor_noise``'s) of that background frame / 255, in [0, 1]
  (``sensor_noise(frame) + 0.5``; NaN when noiseless). With ``jitter="crop"`` the background clip
  is rendered wider than the image, and the patch is that of the whole clip frame, as the sensor's.
* ``sensor_noise``: ``float32 E x T``, ``info["sensor_noise"]``: the noise in the reward received
  with frame ``t`` (mean over the action repeats); NaN at ``t = 0`` and without the noisy sensor.
* ``jitter_offset``: ``float32 E x T x 2``, the camera offset ``(dy, dx)`` of frame ``t`` in
  pixels (zeros without camera jitter).
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from jaxprune.core import io
from jaxprune.envs import compositing, dmc

TARGETS = types.MappingProxyType(
  {
    "qpos": "joint positions (physics.data.qpos)",
    "qvel": "joint velocities (physics.data.qvel)",
    "background_intensity": "mean of the sensor patch of the background frame shown, in [0, 1]",
    "sensor_noise": "the noise in the reward received with the frame (mean over the repeats)",
    "reward_noise": "the reward received with the frame minus the task's own (what the noisy "
    "sensor put into the reward)",
    "jitter_offset": "the camera offset (dy, dx) of the frame, in pixels",
  }
)
_NOISE_TARGETS = {
  "noiseless": (),
  "video_background": ("background_intensity",),
  # not sensor_noise: it is background_intensity - 0.5 (averaged over the action repeats), an
  # affine copy; reward_noise is what the noisy sensor does to the reward, its own quantity
  "video_background_noisy_sensor": ("background_intensity", "reward_noise"),
  "video_background_camera_jitter": ("background_intensity", "jitter_offset"),
}
# key -> number of dimensions; every array starts with E x T
_NDIMS = {
  "image": 5,
  "action": 3,
  "reward": 2,
  "clean_reward": 2,
  "qpos": 3,
  "qvel": 3,
  "background_index": 2,
  "background_intensity": 2,
  "sensor_noise": 2,
  "jitter_offset": 3,
}
KEYS = tuple(_NDIMS)

Policy = Callable[[np.ndarray, int, Any], tuple[Any, Any]]


def targets_for(variant: str) -> tuple[str, ...]:
  """The ``TARGETS`` meaningful for ``variant``: ``qpos``, ``qvel`` and the variant's noise, no
  two of them affine copies of each other (``sensor_noise`` is recorded, not probed: it is
  ``background_intensity - 0.5``; ``reward_noise`` is ``reward - clean_reward``)."""
  if variant not in _NOISE_TARGETS:
    raise ValueError(f"unknown variant {variant!r}; expected one of {dmc.VARIANTS}")
  return ("qpos", "qvel") + _NOISE_TARGETS[variant]


def _random_policy(seed: int, action_dim: int) -> Policy:
  # SeedSequence(seed).spawn(2) are the env's streams (background clip, episodes): take a third
  rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])

  def policy(obs, t, state):
    return rng.uniform(-1.0, 1.0, action_dim), state

  return policy


def _check_action(action: Any, action_dim: int) -> np.ndarray:
  a = np.asarray(action, dtype=np.float64)
  if a.shape != (action_dim,):
    raise ValueError(f"policy returned an action of shape {a.shape}; expected ({action_dim},)")
  if not np.all(np.isfinite(a)) or np.any(np.abs(a) > 1.0):
    raise ValueError(f"policy returned an action outside [-1, 1] or not finite: {a}")
  # what the env is given is what is recorded, so that the record replays exactly
  return a.astype(np.float32)


def collect(
  task: str,
  variant: str,
  *,
  num_episodes: int,
  seed: int,
  image_size: int = 32,
  action_repeat: int = 2,
  episode_length: int = 200,
  num_background_frames: int = 1000,
  policy: Policy | None = None,
  video_dir: str | None = None,
  progress: bool = False,
) -> dict[str, np.ndarray]:
  """``num_episodes`` episodes of one env ``dmc.make(task, variant, seed=seed, ...)``.

  ``episode_length`` counts physics steps, as in ``dmc.make``. ``policy``: None for actions
  uniform in ``[-1, 1]`` (seeded by ``seed``, independently of the env's own streams), or
  ``policy(obs_SxSx3_uint8, t, state) -> (action, state)``, called before agent step ``t``
  (0-based) with the frame ``t`` and its own ``state`` (None at the start of each episode);
  actions must lie in ``[-1, 1]`` and are rounded to float32 before they are applied.
  Returns the arrays of the module docstring, keys ``KEYS``.
  """
  if isinstance(num_episodes, bool) or not isinstance(num_episodes, (int, np.integer)):
    raise ValueError(f"num_episodes must be an int, got {num_episodes!r}")
  if num_episodes < 1:
    raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
  if policy is not None and not callable(policy):
    raise ValueError(f"policy must be None or callable, got {policy!r}")
  env = dmc.make(
    task,
    variant,
    seed=seed,
    image_size=image_size,
    action_repeat=action_repeat,
    episode_length=episode_length,
    num_background_frames=num_background_frames,
    video_dir=video_dir,
  )
  try:
    return _collect(env, int(num_episodes), int(seed), policy, progress)
  finally:
    env.close()


def _collect(env: dmc.NoisyDMCEnv, E: int, seed: int, policy: Policy | None, progress: bool):
  T, A = env.episode_steps + 1, env.action_dim
  nq, nv = env.physics.data.qpos.shape[0], env.physics.data.qvel.shape[0]
  out = {
    "image": np.zeros((E, T, *env.observation_shape), np.uint8),
    "action": np.zeros((E, T, A), np.float32),
    "reward": np.zeros((E, T), np.float32),
    "clean_reward": np.zeros((E, T), np.float32),
    "qpos": np.zeros((E, T, nq), np.float32),
    "qvel": np.zeros((E, T, nv), np.float32),
    "background_index": np.full((E, T), -1, np.int32),
    "background_intensity": np.full((E, T), np.nan, np.float32),
    "sensor_noise": np.full((E, T), np.nan, np.float32),
    "jitter_offset": np.zeros((E, T, 2), np.float32),
  }
  intensity = None  # per clip frame
  if env.background is not None:
    intensity = np.array([compositing.sensor_noise(f) + 0.5 for f in env.background], np.float64)
  if policy is None:
    policy = _random_policy(seed, A)

  def record(e, t, obs, bg_index, offset):
    out["image"][e, t] = obs
    out["qpos"][e, t] = env.physics.data.qpos
    out["qvel"][e, t] = env.physics.data.qvel
    if bg_index is not None:
      out["background_index"][e, t] = bg_index
      out["background_intensity"][e, t] = intensity[bg_index]
    out["jitter_offset"][e, t] = offset

  for e in tqdm(range(E), desc="ground truth", unit="episode", disable=not progress):
    obs = env.reset()
    record(e, 0, obs, env.background_index, env.jitter_offset)
    state = None
    for t in range(1, T):
      action, state = policy(obs, t - 1, state)
      a = _check_action(action, A)
      obs, reward, _, info = env.step(a)
      out["action"][e, t] = a
      out["reward"][e, t] = reward
      out["clean_reward"][e, t] = info["clean_reward"]
      if info["sensor_noise"] is not None:
        out["sensor_noise"][e, t] = info["sensor_noise"]
      record(e, t, obs, info["background_index"], info["jitter_offset"])
  return out


def _check(episodes: dict, where: str) -> None:
  for key in KEYS:
    if key not in episodes:
      raise ValueError(f"{where}: missing key {key!r} (expected {KEYS})")
  image = np.asarray(episodes["image"])
  if image.ndim != 5 or image.shape[-1] != 3 or image.dtype != np.uint8:
    raise ValueError(
      f"{where}: 'image' must be uint8 E x T x H x W x 3, got {image.dtype} {image.shape}"
    )
  ET = image.shape[:2]
  for key, ndim in _NDIMS.items():
    shape = np.shape(episodes[key])
    if len(shape) != ndim or shape[:2] != ET:
      raise ValueError(
        f"{where}: {key!r} has shape {shape}; expected {ndim} dimensions starting with "
        f"E x T = {ET} (from 'image')"
      )
  if np.shape(episodes["jitter_offset"])[-1] != 2:
    raise ValueError(
      f"{where}: 'jitter_offset' must be E x T x 2, got {np.shape(episodes['jitter_offset'])}"
    )


def save(path: str, episodes: dict[str, np.ndarray]) -> None:
  """Write ``episodes`` (from :func:`collect`) to ``path`` (``.npz``), atomically."""
  _check(episodes, "episodes")
  io.save_npz(path, **{k: np.asarray(v) for k, v in episodes.items()})


def load(path: str) -> dict[str, np.ndarray]:
  """The episodes saved by :func:`save`; checks that every key is there and the shapes agree."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"no ground-truth file {path}")
  with np.load(path, allow_pickle=False) as f:
    episodes = {k: f[k] for k in f.files}
  _check(episodes, path)
  return episodes
