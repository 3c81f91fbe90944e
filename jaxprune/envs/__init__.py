"""Noisy DeepMind Control environments of the Denoised MDP paper, from pixels.

>>> env = make("cheetah_run", "video_background_camera_jitter", seed=0)
>>> obs = env.reset()                       # uint8 64 x 64 x 3
>>> obs, reward, done, info = env.step(a)   # a in [-1, 1]^action_dim

Modules: ``dmc`` (the environment), ``backgrounds`` (video sources), ``compositing`` (masks, noisy
sensor value), ``rewards`` (noisy task rewards), ``jitter`` (camera jitter walk).
Rendering is headless: ``MUJOCO_GL`` defaults to ``egl`` when unset.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco

from jaxprune.envs.backgrounds import VIDEO_EXTENSIONS, load_video_dir, procedural_video  # noqa: E402
from jaxprune.envs.compositing import MASKS, blue_mask, composite, sensor_noise  # noqa: E402
from jaxprune.envs.dmc import CAMERA_ID, MASK_MODES, TASKS, VARIANTS, NoisyDMCEnv, make  # noqa: E402
from jaxprune.envs.jitter import JitterState, jitter_init, jitter_step  # noqa: E402
from jaxprune.envs.rewards import NOISY_REWARDS, noisy_reward  # noqa: E402

__all__ = [
  "CAMERA_ID",
  "JitterState",
  "MASKS",
  "MASK_MODES",
  "NOISY_REWARDS",
  "NoisyDMCEnv",
  "TASKS",
  "VARIANTS",
  "VIDEO_EXTENSIONS",
  "blue_mask",
  "composite",
  "jitter_init",
  "jitter_step",
  "load_video_dir",
  "make",
  "noisy_reward",
  "procedural_video",
  "sensor_noise",
]
