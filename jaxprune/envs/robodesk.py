"""Noisy RoboDesk with a TV: the fifth environment setting of the Denoised MDP paper.

>>> env = make("robodesk_tv_green_hue", "noisy", seed=0)   # through jaxprune.envs.make too
>>> obs = env.reset()                                       # uint8 96 x 96 x 3
>>> obs, reward, done, info = env.step(a)                   # a in [-1, 1]^5

Base: the RoboDesk benchmark (Kannan et al. 2021; PyPI ``robodesk==1.0.0``): a Franka Panda arm
at a desk with a drawer, a sliding door, three buttons wired to three indicator lights, a ball
and two blocks, laid out as the Denoised MDP release's ``RoboDeskWithTV`` has it: three desks and
a large TV behind them (:mod:`jaxprune.envs.robodesk_scene`). Only the package's assets
(``desk.xml``, the Franka MJCF, meshes, textures) are used, read from its install directory
without importing it: its ``RoboDesk`` class cannot run
here (``reset()`` calls ``PIL.Image.ANTIALIAS``, removed in Pillow 10, and it needs the
unmaintained ``gym``). The scene is loaded with dm_control's MuJoCo bindings, and the control
(end-effector deltas through inverse kinematics on a copy of the physics, 10 physics steps of
2 ms per control step, gravity compensation), the reset randomisation and the reward follow the
package's and the Denoised MDP authors' RoboDesk fork (``SsnL/robodesk``) semantics; the code is
ours.

Task ``robodesk_tv_green_hue`` (the authors' ``tv_green_hue``): push the green button to make the
TV greener. Per control step (physics-time 20 ms) the dense reward is::

  r = clip(0.5 * tv_green + 0.25 * reach + 0.25 * pressed, 0, 1)
  tv_green = mean of the TV image's green channel / 255
  reach    = clip(1 - |end effector - green button|, 0, 1)        (metres)
  pressed  = 1 if the green light's joint < -0.00453 (button pushed down) else 0

summed over the ``action_repeat`` control steps of an agent step, so an agent step earns at most
``action_repeat``. The release's settings: ``action_repeat=2``, ``episode_length=1000`` control
steps (500 agent steps), 96 x 96 images; no early termination (``info["discount"]`` is 1).

Variants ``VARIANTS``: ``noisy`` (all distractors, the paper's) and ``noiseless`` (none);
``distractors=`` picks any subset of ``DISTRACTORS`` instead:

* ``tv``: the TV plays natural colour video as the release does (:mod:`jaxprune.envs.robodesk_tv`):
  two 60 x 60 clips side by side, contrast-boosted and sharpened, each one frame further per
  control step from its own random start each episode, the 60 x 120 picture scrolling one column
  per control step; from procedural colour clips offline, or from ``video_dir`` (real videos
  such as Kinetics-400 driving_car). Without it the TV shows a still mid-gray picture, so the
  task keeps its meaning.
* ``button``: a noisy button sensor. The button reading is ``b = -q / 0.005 + n`` (0 released, 1
  fully pressed; ``q`` the light joint that mirrors the button), with a slowly diffusing noise
  per button::

    c_0 ~ N(0, 1);  c_t = a c_{t-1} + (1 - a) e_t,  a = sqrt(0.96);  n_t = 0.295 c_t + 0.0125 e'_t

  The reading drives the TV hue (below), so it perturbs the reward through ``tv_green`` only:
  ``info["clean_reward"]`` is the same reward with ``n = 0``. The indicator lights then show the
  noisy reading as brightness (alpha ``clip((b - 0.12) * 6 + 0.4, -1, 1)``, negative values
  darken) instead of switching on at a full press.
* ``env_light``: the three scene lights swing (random angular speeds around the desk) and
  flicker (a sine of random phase plus Gaussian noise, dimmer when further away); the headlight
  is raised from 0.4 to 0.9 as in the release.
* ``camera``: the camera's eye and target follow two smooth seeded 3-D random walks (the
  release's walker, ``jitter.shift_step`` in 3-D, scaled 0.3 and 0.65), so the whole view shakes.

TV hue (controllable through the button, reward-relevant): the TV picture ``I`` (60 x 120 RGB)
is blended toward 255 on the green channel only, ``I_g <- round(I_g (1 - w) + 255 w)`` with
``w = clip(0.75 b_green, 0, 1)``: a full press turns the picture green. The screen shows it
doubled in height (nearest) on the front face of its cube texture.

Camera and rendering (the release's, :mod:`jaxprune.envs.robodesk_scene`): RoboDesk's default
view jittered, then moved back and up to take in the three desks and the TV; rendered square at
1.875x ``image_size`` (180 px for 96), its top 22% cut off and the rest resized to
``image_size`` with Pillow's Lanczos filter. At reset the TV screen covers about half the image.
``shadows=False`` skips MuJoCo's shadow pass, ~4x faster with software rendering (0.20 -> 0.05 s
per agent step at 96 px here) at the cost of the shadows; the release renders them.

Seeding: ``SeedSequence(seed)`` spawns one child per source, in the fork's order: the reset
(arm and object placements), the button noise, the camera walk, the lights, the TV (per clip: the
files' order or the procedural clip, and the start frames). Same seed, same actions -> the same
frames and rewards; successive episodes differ. Every source draws exactly as the fork does:
with the same seed, the same video files and the same actions, the physics, every noise, the TV
picture, the rewards and the pixels equal those of the fork's ``RoboDeskWithTV``
(``scripts/compare_robodesk_fork.py``, docs/results.md).
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering, before dm_control loads mujoco

from typing import Any  # noqa: E402

import mujoco as mujoco_lib  # noqa: E402
import numpy as np  # noqa: E402
from dm_control import mujoco  # noqa: E402
from dm_control.utils import inverse_kinematics  # noqa: E402

from jaxprune.envs import jitter as jitter_lib  # noqa: E402
from jaxprune.envs import robodesk_scene as scene  # noqa: E402
from jaxprune.envs import robodesk_tv as tv_lib  # noqa: E402
from jaxprune.envs.dmc import check_action, check_seed_and_schedule  # noqa: E402

TASKS = ("robodesk_tv_green_hue",)
VARIANTS = ("noisy", "noiseless")
DISTRACTORS = ("tv", "button", "env_light", "camera")
ACTION_DIM = 5
TV_SHAPE = (tv_lib.FRAME, tv_lib.CLIPS * tv_lib.FRAME, 3)  # the TV picture: two 60x60 clips
COLORS = scene.COLORS

# control (RoboDesk's)
_PHYSICS_STEPS = 10  # 2 ms physics steps per control step
_EE_SCALE = 0.01  # metres of end-effector motion per unit action
_WRIST_SCALE = 0.02
_ARM_JOINTS = tuple(f"panda0_joint{i}" for i in range(1, 7))
_INIT_POSE = np.array([-0.30, -0.4, 0.28, -2.5, 0.13, 1.87, 0.91, 0.01, 0.01])
_PRESSED_BELOW = -0.00453  # light joint (mirrors the button) below this: pressed
_BUTTON_TRAVEL = 0.005

# distractor constants (the release's)
_BUTTON_ALPHA = math.sqrt(0.96)
_BUTTON_CORR, _BUTTON_IID = 0.295, 0.0125
_HUE_GAIN = 0.75
_SWING_RADIUS = np.array([0.5, 1 / math.sqrt(2), 1.0])
_SWING_SPEED_MEAN = np.array([math.sqrt(5), 1.0, 1 / math.sqrt(3)]) / 30
_SWING_SPEED_STD = _SWING_SPEED_MEAN / 2
_SWING_SPEED_MAX = 0.8
_FLICKER_PERIOD = np.array([1.0, math.sqrt(8), math.sqrt(28)]) / 15
_FLICKER_AMPLITUDE, _FLICKER_OFFSET, _FLICKER_STD = 0.3, -0.15, 0.15
_CAMERA_JITTER = {"eye": 0.3, "target": 0.65}


def _check_args(task, variant, *, seed, image_size, action_repeat, episode_length, distractors,
                num_tv_frames) -> None:  # fmt: skip
  if task not in TASKS:
    raise ValueError(f"unknown RoboDesk task {task!r}; expected one of {TASKS}")
  if variant not in VARIANTS:
    raise ValueError(f"unknown RoboDesk variant {variant!r}; expected one of {VARIANTS}")
  check_seed_and_schedule(seed, action_repeat, episode_length, unit="control steps")
  if (
    isinstance(image_size, bool)
    or not isinstance(image_size, (int, np.integer))
    or not 16 <= image_size <= 512
  ):
    raise ValueError(f"image_size must be an int in [16, 512] (the paper: 96), got {image_size!r}")
  if distractors is not None:
    unknown = set(distractors) - set(DISTRACTORS)
    if isinstance(distractors, str) or unknown:
      raise ValueError(f"distractors must be a subset of {DISTRACTORS}, got {distractors!r}")
  if num_tv_frames < 1:
    raise ValueError(f"num_tv_frames must be >= 1, got {num_tv_frames}")


class NoisyRoboDeskEnv:
  """One environment; see the module docstring. Build it with :func:`make`."""

  def __init__(
    self,
    task: str = "robodesk_tv_green_hue",
    variant: str = "noisy",
    *,
    seed: int,
    image_size: int = 96,
    action_repeat: int = 2,
    episode_length: int = 1000,
    video_dir: str | None = None,
    num_tv_frames: int = 1000,
    distractors: tuple[str, ...] | None = None,
    shadows: bool = True,
  ):
    _check_args(
      task,
      variant,
      seed=seed,
      image_size=image_size,
      action_repeat=action_repeat,
      episode_length=episode_length,
      distractors=distractors,
      num_tv_frames=num_tv_frames,
    )
    if distractors is None:
      distractors = DISTRACTORS if variant == "noisy" else ()
    self.task, self.variant = task, variant
    self.distractors = tuple(d for d in DISTRACTORS if d in distractors)
    self.image_size, self.action_repeat = int(image_size), int(action_repeat)
    self.episode_length = int(episode_length)
    self.episode_steps = self.episode_length // self.action_repeat
    self.observation_shape = (self.image_size, self.image_size, 3)
    self.action_dim = ACTION_DIM
    self.shadows = bool(shadows)

    xml, assets = scene.scene_xml()
    self.physics = mujoco.Physics.from_xml_string(xml, assets=assets)
    self._ik_physics = self.physics.copy(share_model=True)
    model = self.physics.model
    self._ctrl_range = model.actuator_ctrlrange.copy()
    self._light_qpos = [self.physics.named.model.jnt_qposadr[f"{c}_light"] for c in COLORS]
    self._green_button = self.physics.model.name2id("green_button", "body")
    self._ee_site = self.physics.model.name2id("end_effector", "site")

    # which sources are on; strength 1 or 0 as the release's switches
    self._button_noise = 1.0 if "button" in self.distractors else 0.0
    self._light_noise = 1.0 if "env_light" in self.distractors else 0.0
    self._camera_noise = 1.0 if "camera" in self.distractors else 0.0
    headlight = 0.9 if self._light_noise else 0.4
    model.vis.headlight.ambient[:] = headlight * 0.25
    model.vis.headlight.diffuse[:] = headlight
    model.vis.headlight.specular[:] = headlight * 0.8 + 0.18
    self._light_pos0 = model.light_pos.copy()
    self._light_diffuse0 = model.light_diffuse[:, 0].copy()
    if self._button_noise:  # the lights show the noisy reading through the overlays
      for c in COLORS:
        self.physics.named.model.geom_rgba[f"{c}_light_rise_cylinder", 3] = 0.0

    # the TV's cube texture: 6 faces of 120 x 120 stacked; the screen shows the front face,
    # the picture doubled in height (nearest), the other faces black as in the release
    tex = self.physics.model.name2id("tv_texture", "texture")
    side = scene.TV_TEXTURE
    adr, n = int(model.tex_adr[tex]), 6 * side * side * 3
    cube = model.tex_data[adr : adr + n].reshape(6 * side, side, 3)
    cube[:] = 0
    self._tv_texture = cube[scene.TV_FRONT_FACE * side : (scene.TV_FRONT_FACE + 1) * side]
    self._tv_texid = tex
    self._render_size = scene.render_size(self.image_size)

    seqs = np.random.SeedSequence(int(seed)).spawn(5)  # the fork's order; the TV's is the last
    self._rng = {
      name: np.random.default_rng(s)
      for name, s in zip(("reset", "button", "camera", "light"), seqs)
    }
    clip_rngs = tv_lib.clip_generators(seqs[4])
    self._tv_rngs = [run for _, run in clip_rngs]
    loaders = [load for load, _ in clip_rngs]
    if "tv" not in self.distractors:
      self.tv_clips = tv_lib.still_clips()  # a still mid-gray picture
    elif video_dir is None:
      self.tv_clips = tv_lib.procedural_clips(loaders, num_tv_frames)
    else:
      self.tv_clips = tv_lib.video_dir_clips(video_dir, loaders, num_tv_frames)
    self._camera = None
    self._needs_reset = True
    self._t = 0
    self._steps = 0

  # --- the distractors' state ---------------------------------------------------------------

  def button_reading(self, noisy: bool = True) -> np.ndarray:
    """Per button (red, green, blue): how far it is pressed, 0 released .. 1 fully (+ noise)."""
    # in float32 as the release reads the joints (then + the float64 noise)
    q = np.array([self.physics.data.qpos[a] for a in self._light_qpos], np.float32)
    reading = -q / _BUTTON_TRAVEL
    return reading + self._noise if noisy else reading

  def tv_picture(self) -> np.ndarray:
    """The video on the TV now, before the hue: ``uint8`` 60 x 120 x 3 (two clips, scrolled)."""
    return tv_lib.picture(self.tv_clips, self._tv_start, self._t)

  def tv_image(self, noisy: bool = True) -> np.ndarray:
    """The TV's picture now: ``uint8`` 60 x 120 x 3, green lifted by the (noisy) green reading."""
    img = self.tv_picture().astype(np.float64)
    w = np.clip(_HUE_GAIN * float(self.button_reading(noisy)[1]), 0.0, 1.0)
    img[..., 1] = img[..., 1] * (1 - w) + 255.0 * w
    return np.round(img).astype(np.uint8)

  def tv_frames(self) -> tuple[int, ...]:
    """The frame each clip shows now."""
    return tuple(int((s + self._t) % self.tv_clips.shape[1]) for s in self._tv_start)

  def _button_step(self, first: bool = False) -> None:
    rng = self._rng["button"]
    if not self._button_noise:
      self._corr, self._noise = np.zeros(3), np.zeros(3)
      return
    e = rng.normal(size=3)
    self._corr = e if first else self._corr * _BUTTON_ALPHA + e * (1 - _BUTTON_ALPHA)
    self._noise = self._button_noise * (
      _BUTTON_CORR * self._corr + _BUTTON_IID * rng.normal(size=3)
    )

  def _lights_step(self) -> None:
    if not self._light_noise:
      return
    speed = self._rng["light"].normal(_SWING_SPEED_MEAN, _SWING_SPEED_STD)
    self._swing = (self._swing + np.clip(speed, 0, _SWING_SPEED_MAX)) % (2 * np.pi)

  def _camera_step(self) -> None:
    if self._camera_noise:
      self._walks = {
        k: jitter_lib.shift_step(w, self._rng["camera"].normal(size=3))
        for k, w in self._walks.items()
      }

  def camera_jitter(self) -> dict[str, np.ndarray]:
    """The camera's eye and target offsets (metres) of the current view (zeros without jitter)."""
    return {
      k: self._camera_noise * _CAMERA_JITTER[k] * np.asarray(w.pos_2)
      for k, w in self._walks.items()
    }

  # --- rendering -----------------------------------------------------------------------------

  def _apply_lights(self) -> np.ndarray:
    """Set the scene lights for this frame; returns their brightness (3,)."""
    model = self.physics.model
    if not self._light_noise:
      return self._light_diffuse0.copy()
    radius = _SWING_RADIUS * self._light_noise
    pos = self._light_pos0.copy()
    pos[:, :2] += np.stack([np.sin(self._swing), np.cos(self._swing)], -1) * radius[:, None]
    model.light_pos[:] = pos
    sq = (pos**2).sum(-1)
    model.light_dir[:] = -pos / np.sqrt(sq)[:, None]
    t = self._t
    mean = np.sin(self._flicker_phase + t * _FLICKER_PERIOD) * _FLICKER_AMPLITUDE + _FLICKER_OFFSET
    br = np.clip(self._rng["light"].normal(mean, _FLICKER_STD), 0, 1)
    br = br * (self._light_pos0**2).sum(-1) / sq
    br = self._light_noise * br + (1 - self._light_noise) * self._light_diffuse0
    model.light_diffuse[:] = br[:, None]
    return br

  def _apply_indicators(self) -> None:
    if not self._button_noise:
      return
    alpha = np.clip((self.button_reading() - 0.12) * 6 + 0.4, -1, 1)
    rgba = self.physics.named.model.geom_rgba
    for c, a in zip(COLORS, alpha):
      rgba[f"{c}_light_overlay", 3] = max(a, 0.0)
      rgba[f"{c}_light_neg_overlay", 3] = max(-a, 0.0)

  def _observe(self) -> np.ndarray:
    self._brightness = self._apply_lights()
    self._apply_indicators()
    self._tv_texture[:] = np.repeat(self.tv_image(), 2, axis=0)  # 60 -> 120 rows, nearest
    if self._camera is None:
      size = self._render_size
      self._camera = mujoco.MovableCamera(self.physics, size, size)
    ctx = self.physics.contexts
    with ctx.gl.make_current() as gl:  # the TV picture changed: upload it to the GL texture
      gl.call(mujoco_lib.mjr_uploadTexture, self.physics.model.ptr, ctx.mujoco.ptr, self._tv_texid)
    jit = self.camera_jitter()
    self._camera.set_pose(*scene.camera_pose(jit["eye"], jit["target"]))
    frame = self._camera.render(render_flag_overrides={"shadow": self.shadows})
    return scene.crop_and_resize(frame, self.image_size)

  def view_geometry(self) -> dict[str, Any]:
    """Where the TV screen and the green button are in the current image (after ``reset()``):
    ``tv_share`` (the share of the image's pixels the screen covers) and ``button_px`` (the
    green button's top, its centre in image pixels (x, y)), from a segmentation render of the
    current view."""
    if self._camera is None:
      raise RuntimeError("call reset() before view_geometry()")
    seg = self._camera.render(segmentation=True)
    return scene.view_geometry(self.physics.model, seg, self.image_size)

  # --- control -------------------------------------------------------------------------------

  def _joint_targets(self, a: np.ndarray) -> np.ndarray:
    """RoboDesk's action map: end-effector delta via IK, wrist delta, gripper position."""
    phys = self.physics
    target = phys.data.site_xpos[self._ee_site] + a[:3] * _EE_SCALE
    q = (
      inverse_kinematics.qpos_from_site_pose(
        self._ik_physics, "end_effector", target, joint_names=_ARM_JOINTS, inplace=True
      )
      .qpos[:9]
      .copy()
    )
    lo, hi = self._ctrl_range[6]
    wrist = lo + (a[3] + 1) * (hi - lo) / 2
    q[6] = np.clip(_WRIST_SCALE * wrist + phys.data.qpos[6], lo, hi)
    lo, hi = self._ctrl_range[7]
    q[7] = q[8] = lo + (a[4] + 1) * (hi - lo) / 2
    return q

  def _reward(self) -> tuple[float, float, float, float]:
    """(reward, clean reward, tv_green, clean tv_green) of the current state."""
    ee = self.physics.data.site_xpos[self._ee_site]
    gap = np.linalg.norm(ee - self.physics.data.xpos[self._green_button])
    reach = float(np.clip(1 - gap, 0, 1))
    pressed = float(self.physics.data.qpos[self._light_qpos[1]] < _PRESSED_BELOW)
    green = self.tv_image(noisy=True)[..., 1].mean() / 255.0
    clean = self.tv_image(noisy=False)[..., 1].mean() / 255.0
    r = lambda g: float(np.clip(0.5 * g + 0.25 * reach + 0.25 * pressed, 0, 1))
    return r(green), r(clean), float(green), float(clean)

  def reset(self) -> np.ndarray:
    """Start a new episode; returns the first observation, ``uint8`` ``S x S x 3``."""
    rng, phys = self._rng["reset"], self.physics
    phys.reset()
    qpos = phys.named.data.qpos
    qpos["drawer_joint"] -= 0.10 * rng.random()
    qpos["slide_joint"] += 0.20 * rng.random()
    qpos["flat_block"][0] += 0.3 * rng.random()
    qpos["flat_block"][1] += 0.07 * rng.random()
    qpos["ball"][0] += 0.48 * rng.random()
    qpos["ball"][1] += 0.08 * rng.random()
    qpos["upright_block"][0] += 0.3 * rng.random() + 0.05
    qpos["upright_block"][1] += 0.05 * rng.random()
    lo, hi = self._ctrl_range[:9, 0], self._ctrl_range[:9, 1]
    phys.data.qpos[:9] = _INIT_POSE + 0.15 * rng.uniform(lo, hi)
    phys.data.qvel[:9] = 0.0
    phys.forward()
    self._ik_physics.data.qpos[:] = phys.data.qpos
    self._t = self._steps = 0
    self._tv_start = [int(g.integers(0, self.tv_clips.shape[1])) for g in self._tv_rngs]
    self._button_step(first=True)
    self._swing = self._rng["light"].normal(size=3)
    self._flicker_phase = self._rng["light"].normal(size=3)
    self._walks = {k: jitter_lib.shift_init(self._rng["camera"], dim=3) for k in _CAMERA_JITTER}
    self._needs_reset = False
    return self._observe()

  def step(self, action: Any) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
    """``action_repeat`` control steps with ``action``; returns ``(obs, reward, done, info)``.

    ``info``: ``clean_reward`` (the reward with a noiseless button sensor, summed),
    ``discount`` (1), ``tv_green`` / ``tv_green_clean`` (of the last control step),
    ``button_noise`` (the green button's sensor noise, last step), ``pressed`` (green button
    down), ``light_brightness`` (3 scene lights, this frame), ``camera_jitter`` (eye and target
    offsets, 6 floats), ``tv_frames`` (each clip's frame on the TV; the picture is scrolled by
    the control steps since reset).
    """
    if self._needs_reset:
      raise RuntimeError("call reset() before step() (at the start and after done=True)")
    a = check_action(action, ACTION_DIM)
    phys = self.physics
    reward = clean = 0.0
    for _ in range(self.action_repeat):
      q = self._joint_targets(a)
      for _ in range(_PHYSICS_STEPS):
        phys.data.ctrl[:9] = q
        phys.data.qfrc_applied[:9] = phys.data.qfrc_bias[:9]  # gravity compensation
        phys.step()
      self._ik_physics.data.qpos[:] = phys.data.qpos
      self._t += 1
      self._button_step()
      self._lights_step()
      self._camera_step()
      r, c, green, green_clean = self._reward()
      reward += r
      clean += c
    self._steps += 1
    done = self._steps >= self.episode_steps
    self._needs_reset = done
    obs = self._observe()
    jit = self.camera_jitter()
    info = {
      "clean_reward": clean,
      "discount": 1.0,
      "tv_green": green,
      "tv_green_clean": green_clean,
      "button_noise": float(self._noise[1]),
      "pressed": bool(phys.data.qpos[self._light_qpos[1]] < _PRESSED_BELOW),
      "light_brightness": self._brightness.copy(),
      "camera_jitter": np.concatenate([jit["eye"], jit["target"]]),
      "tv_frames": self.tv_frames(),
    }
    return obs, float(reward), done, info

  def close(self) -> None:
    """Free the rendering context."""
    if self._camera is not None:
      self._camera._scene.free()  # noqa: SLF001 (dm_control has no public free)
      self._camera = None
    self.physics.free()


def press_green_action(env: NoisyRoboDeskEnv) -> np.ndarray:
  """A scripted reference policy: move the end effector above the green button, then down onto
  it (gripper closed). From the env's true state, so it is a yardstick, not an agent: it presses
  within ~100 control steps and holds the button down."""
  phys = env.physics
  button = phys.named.data.xpos["green_button"]
  ee = phys.named.data.site_xpos["end_effector"]
  above = np.linalg.norm((button - ee)[:2]) > 0.02
  target = button + np.array([0.0, 0.0, 0.06 if above else -0.03])
  action = np.zeros(ACTION_DIM)
  action[:3] = np.clip((target - ee) / _EE_SCALE, -1, 1)
  action[4] = -1.0
  return action


def episode_return(env: NoisyRoboDeskEnv, policy) -> tuple[float, float]:
  """(return, clean return) of one episode of ``policy(env) -> action``."""
  env.reset()
  done, total, clean = False, 0.0, 0.0
  while not done:
    _, r, done, info = env.step(policy(env))
    total += r
    clean += info["clean_reward"]
  return total, clean


def make(
  task: str = "robodesk_tv_green_hue",
  variant: str = "noisy",
  *,
  seed: int,
  image_size: int = 96,
  action_repeat: int = 2,
  episode_length: int = 1000,
  video_dir: str | None = None,
  num_tv_frames: int = 1000,
  distractors: tuple[str, ...] | None = None,
  shadows: bool = True,
) -> NoisyRoboDeskEnv:
  """A RoboDesk environment (``task`` in ``TASKS``, ``variant`` in ``VARIANTS``); see the module
  docstring. ``distractors``: a subset of ``DISTRACTORS`` (None: all for ``noisy``, none for
  ``noiseless``). ``video_dir``: the TV's videos (None: the offline procedural clip)."""
  return NoisyRoboDeskEnv(
    task,
    variant,
    seed=seed,
    image_size=image_size,
    action_repeat=action_repeat,
    episode_length=episode_length,
    video_dir=video_dir,
    num_tv_frames=num_tv_frames,
    distractors=distractors,
    shadows=shadows,
  )
