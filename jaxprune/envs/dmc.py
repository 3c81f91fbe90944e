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
  along a smooth seeded random walk (``jitter``). ``jitter="shift"`` (default, the release's
  mechanism): the composited ``S x S`` image is translated by a sub-pixel shift with black
  borders. ``jitter="crop"``: the scene is rendered with a wider field of view at ``S + 2M``
  pixels (``render_size``) and the background clip is made at that size, so the background looks
  1.5x larger than in the other variants and an ``S x S`` window moves over it.

Scene (``scene``, module ``scene``): ``"release"`` is the modified suite of the authors' release
(and DBC): a dark grey checker floor for cheetah and walker, a blue floor and orange walls for
reacher, no white stars in the sky; ``"upstream"`` is dm_control's own. Default (``None``):
``release`` for the video variants, ``upstream`` for ``noiseless`` (so that it equals plain
dm_control). Only textures and colours differ; the physics is the same.

Mask (``mask``): ``None`` is the release's rule per task, ``MASK_MODES``: ``strict`` (blue
strictly largest) for cheetah and reacher, ``argmax`` (blue >= red and >= green) for walker
(Sec. B.1.1 of the paper; the release's ``dbc`` / ``argmax``). In the release scene the strict
mask keeps the grey floor of cheetah (90% of its pixels; the rest is its far edge, blended with
the sky), while walker's ``argmax`` replaces the exactly grey (R = G = B) floor pixels, i.e. >90%
of its floor, as the release does; ``mask="strict"`` keeps it.

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

Background video: an offline procedural clip by default; ``video_dir`` reads the user's videos
(``backgrounds.load_video_dir``). The paper used the Kinetics-400 "driving car" training clips
(``<kinetics>/train/driving_car/*.mp4``): pass that folder as ``video_dir`` (``--video_dir`` of
``scripts/train_dmdp.py``); see ``backgrounds`` for how they are read and where this differs
from the release.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering, before dm_control loads mujoco

from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from dm_control import suite  # noqa: E402

from jaxprune.envs import backgrounds, compositing, rewards  # noqa: E402
from jaxprune.envs import jitter as jitter_lib  # noqa: E402
from jaxprune.envs import scene as _scene  # noqa: E402

TASKS = ("cheetah_run", "walker_walk", "reacher_easy")
VARIANTS = (
  "noiseless",
  "video_background",
  "video_background_noisy_sensor",
  "video_background_camera_jitter",
)
MASK_MODES = {"cheetah_run": "strict", "walker_walk": "argmax", "reacher_easy": "strict"}
CAMERA_ID = 0  # "side" for cheetah and walker, "fixed" (top-down) for reacher
# scene when make(scene=None): noiseless stays plain dm_control, the video variants get the
# release's scene (a grey floor that the strict mask keeps)
DEFAULT_SCENES = {v: ("upstream" if v == "noiseless" else "release") for v in VARIANTS}


def check_seed_and_schedule(seed: Any, action_repeat: Any, episode_length: Any, *, unit: str):
  """ValueError unless ``seed`` is an int in [0, 2**32) and ``episode_length`` (in ``unit``) a
  positive multiple of the positive int ``action_repeat`` (shared by the DMC and RoboDesk envs)."""
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
    raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
  if not isinstance(action_repeat, (int, np.integer)) or action_repeat < 1:
    raise ValueError(f"action_repeat must be a positive int, got {action_repeat!r}")
  if (
    not isinstance(episode_length, (int, np.integer))
    or episode_length < action_repeat
    or episode_length % action_repeat
  ):
    raise ValueError(
      f"episode_length ({unit}) must be a positive multiple of "
      f"action_repeat={action_repeat}, got {episode_length!r}"
    )


def check_action(action: Any, action_dim: int) -> np.ndarray:
  """``action`` as float64, or ValueError unless it has shape ``(action_dim,)``, is finite and
  lies in ``[-1, 1]``."""
  a = np.asarray(action, dtype=np.float64)
  if a.shape != (action_dim,):
    raise ValueError(f"action must have shape ({action_dim},), got {a.shape}")
  if not np.all(np.isfinite(a)):
    raise ValueError(f"action must be finite, got {a}")
  if np.any(np.abs(a) > 1.0):
    raise ValueError(f"action must lie in [-1, 1] (clip it first), got {a}")
  return a


def _check_args(
  task: str,
  variant: str,
  *,
  seed: Any,
  image_size: int,
  action_repeat: int,
  episode_length: int,
  num_background_frames: int,
  scene_name: str | None,
  jitter: str,
  mask: str | None,
) -> None:
  if task not in TASKS:
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
  check_seed_and_schedule(seed, action_repeat, episode_length, unit="physics steps")
  if not isinstance(image_size, (int, np.integer)) or not 16 <= image_size <= 1024:
    raise ValueError(f"image_size must be an int in [16, 1024], got {image_size!r}")
  if num_background_frames < 1:
    raise ValueError(f"num_background_frames must be >= 1, got {num_background_frames}")
  if scene_name is not None and scene_name not in _scene.SCENES:
    raise ValueError(f"scene must be None or one of {_scene.SCENES}, got {scene_name!r}")
  if jitter not in jitter_lib.JITTERS:
    raise ValueError(f"jitter must be one of {jitter_lib.JITTERS}, got {jitter!r}")
  if mask is not None and mask not in compositing.MASKS:
    raise ValueError(f"mask must be None or one of {compositing.MASKS}, got {mask!r}")


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
    scene: str | None = None,
    jitter: str = "shift",
    mask: str | None = None,
  ):
    _check_args(
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
    self.task, self.variant = task, variant
    self.image_size, self.action_repeat = int(image_size), int(action_repeat)
    self.episode_length = int(episode_length)
    self.episode_steps = self.episode_length // self.action_repeat
    self.observation_shape = (self.image_size, self.image_size, 3)
    self.camera_id = CAMERA_ID
    self.scene = scene if scene is not None else DEFAULT_SCENES[variant]
    self.mask_mode = mask if mask is not None else MASK_MODES[task]
    domain, name = task.split("_", 1)
    self._env = suite.load(
      domain, name, task_kwargs={"random": int(seed), "time_limit": float("inf")}
    )
    _scene.apply_scene(self._env.physics, domain, scene=self.scene)
    spec = self._env.action_spec()
    self._action_low = np.asarray(spec.minimum, np.float64)
    self._action_high = np.asarray(spec.maximum, np.float64)
    self.action_dim = int(spec.shape[0])

    # "shift" | "crop" for the camera-jitter variant, else None
    self.jitter = jitter if variant == "video_background_camera_jitter" else None
    self._noisy = variant == "video_background_noisy_sensor"
    self._margin = jitter_lib.jitter_margin(self.image_size) if self.jitter == "crop" else 0
    self.render_size = self.image_size + 2 * self._margin
    if self.jitter == "crop":
      fovy = self._env.physics.model.cam_fovy
      fovy[CAMERA_ID] = jitter_lib.widened_fovy(
        float(fovy[CAMERA_ID]), image_size=self.image_size, margin=self._margin
      )

    _, episode_seq = np.random.SeedSequence(int(seed)).spawn(2)
    self._rng = np.random.default_rng(episode_seq)
    self.background = None  # uint8 T x R x R, R = render_size
    if variant != "noiseless":
      self.background = background_clip(
        seed, size=self.render_size, num_frames=num_background_frames, video_dir=video_dir
      )
    self._t = 0  # physics steps taken this episode
    self._steps = 0  # agent steps taken this episode
    self._start = 0
    self._walk: jitter_lib.ShiftState | jitter_lib.JitterState | None = None
    self._needs_reset = True

  @property
  def physics(self):
    """The dm_control ``Physics`` (read-only use: e.g. tests and state logging)."""
    return self._env.physics

  @property
  def suite_env(self):
    """The wrapped dm_control ``control.Environment`` (read-only use)."""
    return self._env

  @property
  def background_index(self) -> int | None:
    """Index into ``background`` of the clip frame in the current observation (None: noiseless).

    The same value as ``info["background_index"]`` after a step; also defined after ``reset()``.
    """
    return self._background_index()

  @property
  def jitter_offset(self) -> tuple[float, float]:
    """The camera offset ``(dy, dx)`` of the current observation (``info["jitter_offset"]``)."""
    return self._jitter_offset()

  def _background_index(self) -> int | None:
    if self.background is None:
      return None
    return (self._start + self._t) % len(self.background)

  def _jitter_offset(self) -> tuple[float, float]:
    if self.jitter == "shift":
      return jitter_lib.shift_offset(self._walk, image_size=self.image_size)
    if self.jitter == "crop":
      return jitter_lib.jitter_offset(self._walk)
    return (0, 0)

  def _observe(self) -> np.ndarray:
    frame = self._env.physics.render(self.render_size, self.render_size, camera_id=CAMERA_ID)
    if self.background is not None:
      mask = compositing.blue_mask(frame, mode=self.mask_mode)
      frame = compositing.composite(frame, self.background[self._background_index()], mask)
    if self.jitter == "shift":  # after compositing, as the release: borders are black
      dy, dx = self._jitter_offset()
      frame = jitter_lib.translate(frame, (-dy, -dx))
    elif self.jitter == "crop":
      frame = jitter_lib.crop_window(frame, self._jitter_offset(), image_size=self.image_size)
    return np.array(frame, dtype=np.uint8, copy=True)

  def _walk_init(self) -> None:
    if self.jitter == "shift":
      self._walk = jitter_lib.shift_init(self._rng)
    elif self.jitter == "crop":
      self._walk = jitter_lib.jitter_init(self._rng, image_size=self.image_size)

  def _walk_step(self) -> None:
    if self.jitter == "shift":
      self._walk = jitter_lib.shift_step(self._walk, self._rng.normal(size=2))
    elif self.jitter == "crop":
      self._walk = jitter_lib.jitter_step(
        self._walk, self._rng.normal(size=2), image_size=self.image_size
      )

  def reset(self) -> np.ndarray:
    """Start a new episode; returns the first observation, ``uint8`` ``S x S x 3``."""
    self._env.reset()
    self._t = self._steps = 0
    if self.background is not None:
      self._start = int(self._rng.integers(len(self.background)))
    self._walk_init()
    self._needs_reset = False
    return self._observe()

  def _check_action(self, action: Any) -> np.ndarray:
    a = check_action(action, self.action_dim)
    # exact identity for [-1, 1] bounds (x2 and /2 are exact), so actions reach the physics as given
    return (a * (self._action_high - self._action_low) + (self._action_high + self._action_low)) / 2

  def step(self, action: Any) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
    """``action_repeat`` physics steps with ``action``; returns ``(obs, reward, done, info)``.

    ``info``: ``clean_reward`` (the task's own reward, summed), ``discount`` (product over the
    repeats), ``background_index`` (frame of the clip shown, None when noiseless) and
    ``jitter_offset`` (the camera's offset (dy, dx) in pixels: the scene appears moved by
    (-dy, -dx); floats with ``jitter="shift"``, ints with ``"crop"``, (0, 0) without jitter) and
    ``sensor_noise`` (``video_background_noisy_sensor``: the mean over the repeats of the noise
    the reward read, a float in [-0.5, 0.5]; None for the other variants).
    """
    if self._needs_reset:
      raise RuntimeError("call reset() before step() (at the start and after done=True)")
    a = self._check_action(action)
    reward = clean = 0.0
    discount = 1.0
    last = False
    noises = []
    for _ in range(self.action_repeat):
      if self._noisy:  # read from the background frame on screen before this physics step
        noise = compositing.sensor_noise(self.background[self._background_index()])
        noises.append(noise)
      ts = self._env.step(a)
      clean += ts.reward
      discount *= ts.discount
      if self._noisy:
        reward += rewards.noisy_reward(self.task, self._env.physics, self._env.task, noise)
      else:
        reward += ts.reward
      self._t += 1
      self._walk_step()
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
      "sensor_noise": float(np.mean(noises)) if noises else None,
    }
    return obs, float(reward), done, info

  def close(self) -> None:
    """Free the MuJoCo rendering context."""
    self._env.physics.free()


def background_clip(
  seed: int, *, size: int, num_frames: int, video_dir: str | None = None
) -> np.ndarray:
  """The background clip of the environment of ``seed``: uint8 ``T x size x size``, from the first
  of the two ``SeedSequence(seed)`` children (the second seeds the episodes); the procedural
  video, or the user's ``video_dir``. The JAX environment of the same seed shows the same clip."""
  bg_seq, _ = np.random.SeedSequence(int(seed)).spawn(2)
  bg_seed = int(bg_seq.generate_state(1)[0])
  shape = dict(num_frames=num_frames, height=size, width=size)
  if video_dir is None:
    return backgrounds.procedural_video(seed=bg_seed, **shape)
  return backgrounds.load_video_dir(video_dir, seed=bg_seed, **shape)


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
) -> NoisyDMCEnv:
  """An environment of ``task`` (in ``TASKS``) and ``variant`` (in ``VARIANTS``).

  ``video_dir``: a directory of the user's videos for the background (None: the offline
  procedural video), e.g. Kinetics-400 ``train/driving_car`` as in the paper.
  ``num_background_frames``: length of the background clip (the authors used 1000 frames).
  ``scene``: ``"release"`` | ``"upstream"`` (None: ``DEFAULT_SCENES[variant]``, release for the
  video variants). ``jitter``: ``"shift"`` (the release's sub-pixel translation, default) |
  ``"crop"`` (a window over a wider render); used by ``video_background_camera_jitter`` only.
  ``mask``: ``"strict"`` | ``"argmax"`` (None: ``MASK_MODES[task]``, the release's rule). See the
  module docstring for the rest.
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
    scene=scene,
    jitter=jitter,
    mask=mask,
  )
