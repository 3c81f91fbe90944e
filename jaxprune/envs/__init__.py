"""Noisy environments of the Denoised MDP paper, from pixels: DeepMind Control and RoboDesk.

>>> env = make("cheetah_run", "video_background_camera_jitter", seed=0)
>>> obs = env.reset()                       # uint8 64 x 64 x 3
>>> obs, reward, done, info = env.step(a)   # a in [-1, 1]^action_dim
>>> env = make("robodesk_tv_green_hue", "noisy", seed=0)   # uint8 96 x 96 x 3, 5 actions

``make`` dispatches on the task: ``TASKS`` (DMC, variants ``VARIANTS``, module ``dmc``) or
``ROBODESK_TASKS`` (variants ``ROBODESK_VARIANTS``, module ``robodesk``: a TV, flickering
lights, camera shake and a noisy button sensor); ``ALL_TASKS`` holds both.

``make(..., scene="release" | "upstream", jitter="shift" | "crop", mask=None, video_dir=None)``:
the video variants use the scene of the authors' release by default (grey floors), camera
jitter is the release's sub-pixel shift by default, and ``video_dir`` points at real videos
(e.g. Kinetics-400 ``train/driving_car``, as in the paper) instead of the procedural default.

Modules: ``dmc`` (the environment), ``scene`` (the release's floor / sky / wall colours),
``backgrounds`` (video sources), ``compositing`` (masks, noisy sensor value), ``rewards`` (noisy
task rewards), ``jitter`` (camera jitter walks and the translation), ``ground_truth`` (episodes
with the state and noise the model never sees, for representation probes), ``robodesk``.
Rendering is headless: ``MUJOCO_GL`` defaults to ``egl`` when unset.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco

from jaxprune.envs import dmc as _dmc  # noqa: E402, I001
from jaxprune.envs import (
  ground_truth,  # noqa: E402
  robodesk,  # noqa: E402
)
from jaxprune.envs.backgrounds import VIDEO_EXTENSIONS, load_video_dir, procedural_video  # noqa: E402
from jaxprune.envs.compositing import MASKS, blue_mask, composite, sensor_noise  # noqa: E402
from jaxprune.envs.dmc import (  # noqa: E402
  CAMERA_ID,
  DEFAULT_SCENES,
  MASK_MODES,
  TASKS,
  VARIANTS,
  NoisyDMCEnv,
)
from jaxprune.envs.jitter import (  # noqa: E402
  JITTERS,
  JitterState,
  ShiftState,
  jitter_init,
  jitter_step,
  shift_init,
  shift_step,
  translate,
)
from jaxprune.envs.rewards import NOISY_REWARDS, noisy_reward  # noqa: E402
from jaxprune.envs.robodesk import DISTRACTORS, NoisyRoboDeskEnv  # noqa: E402
from jaxprune.envs.scene import SCENES, release_assets  # noqa: E402

ROBODESK_TASKS = robodesk.TASKS
ROBODESK_VARIANTS = robodesk.VARIANTS
ALL_TASKS = TASKS + ROBODESK_TASKS


def make(task: str, variant: str = "noiseless", *, seed: int, **kwargs):
  """The environment of ``task``: :func:`jaxprune.envs.dmc.make` for ``TASKS``,
  :func:`jaxprune.envs.robodesk.make` for ``ROBODESK_TASKS`` (``kwargs`` go to that one)."""
  if task in ROBODESK_TASKS:
    return robodesk.make(task, variant, seed=seed, **kwargs)
  if task not in TASKS:
    raise ValueError(f"unknown task {task!r}; expected one of {ALL_TASKS}")
  return _dmc.make(task, variant, seed=seed, **kwargs)


__all__ = [
  "ALL_TASKS",
  "DISTRACTORS",
  "NoisyRoboDeskEnv",
  "ROBODESK_TASKS",
  "ROBODESK_VARIANTS",
  "robodesk",
  "CAMERA_ID",
  "DEFAULT_SCENES",
  "JITTERS",
  "JitterState",
  "MASKS",
  "MASK_MODES",
  "NOISY_REWARDS",
  "NoisyDMCEnv",
  "SCENES",
  "ShiftState",
  "TASKS",
  "VARIANTS",
  "VIDEO_EXTENSIONS",
  "blue_mask",
  "composite",
  "ground_truth",
  "jitter_init",
  "jitter_step",
  "load_video_dir",
  "make",
  "noisy_reward",
  "procedural_video",
  "release_assets",
  "sensor_noise",
  "shift_init",
  "shift_step",
  "translate",
]
