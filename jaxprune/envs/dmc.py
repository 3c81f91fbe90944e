"""The noisy DeepMind Control environments of the Denoised MDP paper (Wang et al. 2022).

Tasks ``TASKS`` from pixels, in four variants ``VARIANTS``:

* ``noiseless``: the dm_control task, observed as an ``S x S x 3`` ``uint8`` render of camera 0.
* ``video_background``: pixels where blue is the largest channel (``compositing.blue_mask``;
  strict for cheetah and reacher, ties-count-as-blue for walker) show a grayscale video, one
  frame per physics-control step, starting at a random frame each episode (looping).
* ``video_background_noisy_sensor``: as above, and the quantity the reward reads is perturbed by
  the background (``rewards``): the env's reward is the noisy one, ``info["clean_reward"]`` the
  task's own. The noise of a physics step comes from the background frame shown before it.
* ``video_background_camera_jitter``: as ``video_background``, with the whole image translated
  along a smooth seeded random walk (``jitter``). The scene is rendered with a wider field of
  view at ``S + 2M`` pixels (``render_size``) and the background clip is made at that size, so
  the background looks 1.5x larger than in the other variants and the window moves over it.

Time: ``episode_length`` counts physics-control steps (dm_control ``env.step`` calls; 1000 in the
paper, the suite's own episode length for all three tasks). It must be a multiple of
``action_repeat``; an episode is ``episode_steps = episode_length // action_repeat`` agent steps,
after which ``done`` is True (a time limit: ``info["discount"]`` stays 1). The suite's own time
limit is lifted, so episodes may be longer than 1000. Rewards are summed over the repeats; the
image is rendered once per agent step, after the last repeat.

Actions: ``float`` arrays of shape ``(action_dim,)`` in ``[-1, 1]`` (mapped linearly onto the
task's action bounds, which are ``[-1, 1]`` for these tasks); values outside, NaN or a wrong
shape raise ``ValueError`` (clip on the agent's side).

Seeding: with ``seed`` s, the task's own ``RandomState`` is ``RandomState(s)`` (as
``suite.load(..., task_kwargs={"random": s})``, so initial states match plain dm_control), and
``SeedSequence(s)`` spawns the seeds of the background clip (procedural video, or the order in
which the user's videos are read) and of the episode generator, from which every ``reset()``
draws the start frame and the jitter walk's start, and every step the walk's noise. The same
seed gives the same frames and rewards; successive episodes differ.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering, before dm_control loads mujoco

from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from dm_control import suite  # noqa: E402

from jaxprune.envs import backgrounds, compositing, jitter, rewards  # noqa: E402

TASKS = ("cheetah_run", "walker_walk", "reacher_easy")
VARIANTS = (
  "noiseless",
  "video_background",
  "video_background_noisy_sensor",
  "video_background_camera_jitter",
)
MASK_MODES = {"cheetah_run": "strict", "walker_walk": "argmax", "reacher_easy": "strict"}
CAMERA_ID = 0  # "side" for cheetah and walker, "fixed" (top-down) for reacher


def _check_args(
  task: str,
  variant: str,
  *,
  seed: Any,
  image_size: int,
  action_repeat: int,
  episode_length: int,
  num_background_frames: int,
) -> None:
  if task not in TASKS:
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
    raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
  if not isinstance(image_size, (int, np.integer)) or not 16 <= image_size <= 1024:
    raise ValueError(f"image_size must be an int in [16, 1024], got {image_size!r}")
  if not isinstance(action_repeat, (int, np.integer)) or action_repeat < 1:
    raise ValueError(f"action_repeat must be a positive int, got {action_repeat!r}")
  if (
    not isinstance(episode_length, (int, np.integer))
    or episode_length < action_repeat
    or episode_length % action_repeat
  ):
    raise ValueError(
      f"episode_length (physics steps) must be a positive multiple of "
      f"action_repeat={action_repeat}, got {episode_length!r}"
    )
  if num_background_frames < 1:
    raise ValueError(f"num_background_frames must be >= 1, got {num_background_frames}")


class NoisyDMCEnv:
  """One environment; see the module docstring. Build it with :func:`make`."""

  def __init__(
    self,
    task: str,
    variant: str,
    *,
    seed: int,
    image_size: int = 64,
    action_repeat: int = 2,
    episode_length: int = 1000,
    video_dir: str | None = None,
    num_background_frames: int = 1000,
  ):
    _check_args(
      task,
      variant,
      seed=seed,
      image_size=image_size,
      action_repeat=action_repeat,
      episode_length=episode_length,
      num_background_frames=num_background_frames,
    )
    self.task, self.variant = task, variant
    self.image_size, self.action_repeat = int(image_size), int(action_repeat)
    self.episode_length = int(episode_length)
    self.episode_steps = self.episode_length // self.action_repeat
    self.observation_shape = (self.image_size, self.image_size, 3)
    self.camera_id = CAMERA_ID
    domain, name = task.split("_", 1)
    self._env = suite.load(
      domain, name, task_kwargs={"random": int(seed), "time_limit": float("inf")}
    )
    spec = self._env.action_spec()
    self._action_low = np.asarray(spec.minimum, np.float64)
    self._action_high = np.asarray(spec.maximum, np.float64)
    self.action_dim = int(spec.shape[0])

    self._jitter = variant == "video_background_camera_jitter"
    self._noisy = variant == "video_background_noisy_sensor"
    self._margin = jitter.jitter_margin(self.image_size) if self._jitter else 0
    self.render_size = self.image_size + 2 * self._margin
    if self._jitter:
      fovy = self._env.physics.model.cam_fovy
      fovy[CAMERA_ID] = jitter.widened_fovy(
        float(fovy[CAMERA_ID]), image_size=self.image_size, margin=self._margin
      )

    bg_seq, episode_seq = np.random.SeedSequence(int(seed)).spawn(2)
    self._rng = np.random.default_rng(episode_seq)
    self.background = None  # uint8 T x R x R, R = render_size
    if variant != "noiseless":
      bg_seed = int(bg_seq.generate_state(1)[0])
      size = dict(num_frames=num_background_frames, height=self.render_size, width=self.render_size)
      if video_dir is None:
        self.background = backgrounds.procedural_video(seed=bg_seed, **size)
      else:
        self.background = backgrounds.load_video_dir(video_dir, seed=bg_seed, **size)
    self._mask_mode = MASK_MODES[task]
    self._t = 0  # physics steps taken this episode
    self._steps = 0  # agent steps taken this episode
    self._start = 0
    self._walk: jitter.JitterState | None = None
    self._needs_reset = True

  @property
  def physics(self):
    """The dm_control ``Physics`` (read-only use: e.g. tests and state logging)."""
    return self._env.physics

  @property
  def suite_env(self):
    """The wrapped dm_control ``control.Environment`` (read-only use)."""
    return self._env

  def _background_index(self) -> int | None:
    if self.background is None:
      return None
    return (self._start + self._t) % len(self.background)

  def _jitter_offset(self) -> tuple[int, int]:
    return jitter.jitter_offset(self._walk) if self._jitter else (0, 0)

  def _observe(self) -> np.ndarray:
    frame = self._env.physics.render(self.render_size, self.render_size, camera_id=CAMERA_ID)
    if self.background is not None:
      mask = compositing.blue_mask(frame, mode=self._mask_mode)
      frame = compositing.composite(frame, self.background[self._background_index()], mask)
    if self._jitter:
      frame = jitter.crop_window(frame, self._jitter_offset(), image_size=self.image_size)
    return np.array(frame, dtype=np.uint8, copy=True)

  def reset(self) -> np.ndarray:
    """Start a new episode; returns the first observation, ``uint8`` ``S x S x 3``."""
    self._env.reset()
    self._t = self._steps = 0
    if self.background is not None:
      self._start = int(self._rng.integers(len(self.background)))
    if self._jitter:
      self._walk = jitter.jitter_init(self._rng, image_size=self.image_size)
    self._needs_reset = False
    return self._observe()

  def _check_action(self, action: Any) -> np.ndarray:
    a = np.asarray(action, dtype=np.float64)
    if a.shape != (self.action_dim,):
      raise ValueError(f"action must have shape ({self.action_dim},), got {a.shape}")
    if not np.all(np.isfinite(a)):
      raise ValueError(f"action must be finite, got {a}")
    if np.any(np.abs(a) > 1.0):
      raise ValueError(f"action must lie in [-1, 1] (clip it first), got {a}")
    # exact identity for [-1, 1] bounds (x2 and /2 are exact), so actions reach the physics as given
    return (a * (self._action_high - self._action_low) + (self._action_high + self._action_low)) / 2

  def step(self, action: Any) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
    """``action_repeat`` physics steps with ``action``; returns ``(obs, reward, done, info)``.

    ``info``: ``clean_reward`` (the task's own reward, summed), ``discount`` (product over the
    repeats), ``background_index`` (frame of the clip shown, None when noiseless) and
    ``jitter_offset`` ((dy, dx) window offset, (0, 0) without jitter).
    """
    if self._needs_reset:
      raise RuntimeError("call reset() before step() (at the start and after done=True)")
    a = self._check_action(action)
    reward = clean = 0.0
    discount = 1.0
    last = False
    for _ in range(self.action_repeat):
      if self._noisy:  # read from the background frame on screen before this physics step
        noise = compositing.sensor_noise(self.background[self._background_index()])
      ts = self._env.step(a)
      clean += ts.reward
      discount *= ts.discount
      if self._noisy:
        reward += rewards.noisy_reward(self.task, self._env.physics, self._env.task, noise)
      else:
        reward += ts.reward
      self._t += 1
      if self._jitter:
        self._walk = jitter.jitter_step(
          self._walk, self._rng.normal(size=2), image_size=self.image_size
        )
      last = ts.last()
      if last:  # not reached by these tasks (no early termination, time limit lifted)
        break
    self._steps += 1
    done = last or self._steps >= self.episode_steps
    self._needs_reset = done
    obs = self._observe()
    info = {
      "clean_reward": float(clean),
      "discount": float(discount),
      "background_index": self._background_index(),
      "jitter_offset": self._jitter_offset(),
    }
    return obs, float(reward), done, info

  def close(self) -> None:
    """Free the MuJoCo rendering context."""
    self._env.physics.free()


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
) -> NoisyDMCEnv:
  """An environment of ``task`` (in ``TASKS``) and ``variant`` (in ``VARIANTS``).

  ``video_dir``: a directory of the user's videos for the background (None: the offline
  procedural video). ``num_background_frames``: length of the background clip (the authors used
  1000 frames of Kinetics "driving car"). See the module docstring for the rest.
  """
  return NoisyDMCEnv(
    task,
    variant,
    seed=seed,
    image_size=image_size,
    action_repeat=action_repeat,
    episode_length=episode_length,
    video_dir=video_dir,
    num_background_frames=num_background_frames,
  )
