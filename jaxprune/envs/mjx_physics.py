"""The physics of the three DMC tasks in MJX (pure JAX): reset, one env step and the rewards.

``load(task)`` builds an MJX copy of dm_control's own model (``scene.model_and_assets``; the
scene changes colours only). ``reset``, ``step`` and ``reward`` are pure functions of a
``PhysicsModel`` and a ``PhysState`` and work under ``jax.jit`` and ``jax.vmap`` (over keys,
states, controls and noise). Facts they rely on, read from dm_control 1.0.50 and MuJoCo 3.17:

* One dm_control ``env.step`` is ``physics.set_control(action)`` then ``n_substeps`` physics
  steps: walker ``_CONTROL_TIMESTEP = .025`` over ``timestep = .0025`` (10), cheetah and reacher
  pass no control timestep (1; ``timestep`` .01 and .02). The action reaches ``data.ctrl`` as
  given (the actuators' ``ctrlrange`` is [-1, 1]; MuJoCo clamps it).
* ``Physics.step`` uses the legacy step: ``mj_step2`` (from the ``mj_step1`` quantities of the
  current state), ``mj_step`` for the other substeps, then ``mj_step1`` so that the
  position- and velocity-derived fields match the new ``qpos``/``qvel``. With the Euler
  integrator of these models that is ``n_substeps`` full steps of the current state;
  ``mjx.step`` does the same. ``step`` then recomputes, for the new state: body and geom poses
  (``mjx.kinematics``), subtree centres of mass (``mjx.com_pos``), cameras (``mjx.camlight``;
  the ``trackcom`` cameras read ``subtree_com``), body velocities (``mjx.com_vel``) and the
  velocity sensors (``mjx.sensor_vel``, which runs ``mjx.subtree_vel``: the
  ``torso_subtreelinvel`` sensor). Contacts, constraint rows, the mass matrix and ``qacc``
  in ``data`` are left from the last substep's start (the next ``mjx.step`` recomputes them).
* MJX has no lights in ``mjx.Data``: ``PhysState.light_xpos`` / ``light_xdir`` hold them,
  computed as ``mj_camlight`` does (cheetah and walker: ``trackcom`` on the torso; reacher:
  fixed in the world).
* Resets (``initialize_episode``; the same distributions with ``jax.random``, so the streams
  differ from dm_control's ``RandomState`` draws for the same seed):
  walker: ``randomize_limited_and_rotational_joints``: limited hinges uniform in their range,
  the unlimited hinge ``rooty`` uniform in [-pi, pi], the slides ``rootx``/``rootz`` left at 0.
  reacher: the same for its joints (``shoulder`` in [-pi, pi], ``wrist`` in its range); the
  target's size is ``_BIG_TARGET`` = .05 and its position ``geom_pos['target'][:2] =
  r (sin a, cos a)``, ``a ~ U(0, 2 pi)``, ``r ~ U(.05, .2)``; it is a model parameter in
  dm_control, here ``PhysState.target_xy``, put into the model inside ``reset`` and ``step``
  (so that ``geom_xpos`` of the target is right).
  cheetah: the limited joints uniform in their ranges, then ``physics.step(200)`` inside
  ``reset_context`` and ``time = 0``. Its first legacy substep is ``mj_step2`` on the
  quantities of ``mj_resetData``'s ``qpos0`` (``reset`` ran ``mj_forward`` there, with zero
  controls): the acceleration of ``qpos0`` integrated onto the randomized ``qpos``. ``reset``
  reproduces that (``mjx.forward`` at ``qpos0`` then ``mjx.euler`` from the new ``qpos``), then
  199 ``mjx.step``.
  All three end with ``after_reset``: ``mj_forward`` with actuation disabled (controls are 0).
* Rewards (``jaxprune.envs.rewards``; ``noise = 0`` is the task's own ``get_reward``): cheetah
  ``tolerance(speed + 10 noise, (10, inf), 10, linear, 0)``, speed = ``torso_subtreelinvel``
  x; walker stand/upright/move with the torso height ``xpos[torso, z] + 1.2 noise``, upright
  ``xmat[torso, zz]``, horizontal velocity ``torso_subtreelinvel`` x, move speed 1; reacher
  ``tolerance(dist + r noise, (0, r))``, r = .05 + .01 (target + finger radii), dist between
  the target and finger geoms in the plane.

Precision: MJX runs in JAX's default float32 (float64 if ``jax_enable_x64`` is on); MuJoCo C
in float64, so trajectories agree only up to rounding, and contacts amplify differences over
time (the tests state the horizons and tolerances that hold).

Speed: a jitted function that takes the ``PhysicsModel`` as an argument flattens and hashes
the whole ``mjx.Model`` on every call (about 10-20 ms on a CPU); close over it instead
(``jax.jit(lambda s, a: step(pm, s, a))``) or call it from inside a larger jitted loop.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before dm_control / mujoco are imported

from typing import NamedTuple  # noqa: E402

import flax.struct  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402
from mujoco import mjx  # noqa: E402

from jaxprune.envs import scene as _scene  # noqa: E402

TASKS = ("cheetah_run", "walker_walk", "reacher_easy")

# dm_control constants (suite/{cheetah,walker,reacher}.py), checked against the suite in tests
N_SUBSTEPS = {"cheetah_run": 1, "walker_walk": 10, "reacher_easy": 1}
CHEETAH_RUN_SPEED = 10.0  # cheetah._RUN_SPEED
WALKER_STAND_HEIGHT = 1.2  # walker._STAND_HEIGHT
WALKER_WALK_SPEED = 1.0  # walker._WALK_SPEED
REACHER_BIG_TARGET = 0.05  # reacher._BIG_TARGET (the easy task's target radius)
CHEETAH_SETTLE_STEPS = 200  # cheetah.Cheetah.initialize_episode: physics.step(nstep=200)
REACHER_TARGET_RADIUS = (0.05, 0.20)  # reacher.Reacher.initialize_episode

_SIGMOIDS = (
  "gaussian",
  "hyperbolic",
  "long_tail",
  "reciprocal",
  "cosine",
  "linear",
  "quadratic",
  "tanh_squared",
)


@flax.struct.dataclass
class PhysicsModel:
  """The MJX model of a task and the static facts that reset / step / reward need."""

  mjx_model: mjx.Model
  task: str = flax.struct.field(pytree_node=False)
  n_substeps: int = flax.struct.field(pytree_node=False)
  # body whose pose / subtree velocity the reward reads (torso; -1 for reacher)
  torso_body: int = flax.struct.field(pytree_node=False)
  # address in sensordata of torso_subtreelinvel (-1 for reacher)
  speed_sensor_adr: int = flax.struct.field(pytree_node=False)
  # reacher: geom ids of target and finger, and the success radius (target + finger radius)
  target_geom: int = flax.struct.field(pytree_node=False)
  finger_geom: int = flax.struct.field(pytree_node=False)
  reacher_radii: float = flax.struct.field(pytree_node=False)
  # reset: qpos addresses sampled uniformly in (low, high) (limited joints; and the unlimited
  # hinges, in [-pi, pi], for walker and reacher)
  reset_qpos_adr: tuple[int, ...] = flax.struct.field(pytree_node=False)
  reset_low: tuple[float, ...] = flax.struct.field(pytree_node=False)
  reset_high: tuple[float, ...] = flax.struct.field(pytree_node=False)
  # lights (mj_camlight): mode, body and target body of each
  light_mode: tuple[int, ...] = flax.struct.field(pytree_node=False)
  light_body: tuple[int, ...] = flax.struct.field(pytree_node=False)
  light_target: tuple[int, ...] = flax.struct.field(pytree_node=False)


class PhysState(NamedTuple):
  """The simulation state after a reset or an env step.

  ``data``: the MJX data (state and the position/velocity-derived fields of that state).
  ``target_xy``: ``(2,)`` reacher's target position (the model's ``geom_pos['target'][:2]``),
  zeros for the other tasks. ``light_xpos`` / ``light_xdir``: ``(nlight, 3)`` light positions
  and unit directions (MuJoCo's ``data.light_xpos`` / ``light_xdir``, absent from mjx.Data).
  """

  data: mjx.Data
  target_xy: jax.Array
  light_xpos: jax.Array
  light_xdir: jax.Array


def _check_task(task: str) -> None:
  if task not in TASKS:
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def _id(mj_model: mujoco.MjModel, kind: mujoco.mjtObj, name: str) -> int:
  i = mujoco.mj_name2id(mj_model, kind, name)
  if i < 0:
    raise ValueError(f"model has no {kind.name} named {name!r}")
  return int(i)


def load(task: str, *, scene: str = "release") -> tuple[PhysicsModel, mujoco.MjModel]:
  """The ``PhysicsModel`` of ``task`` (in ``TASKS``) and the MuJoCo model it was built from.

  The model is dm_control's own XML in ``scene`` (``scene.SCENES``; colours only). For reacher,
  the target's radius is set to the easy task's .05 (its ``initialize_episode`` does).
  """
  _check_task(task)
  domain = task.split("_", 1)[0]
  xml, assets = _scene.model_and_assets(domain, scene=scene)
  mj_model = mujoco.MjModel.from_xml_string(xml, assets)
  if mj_model.opt.integrator != mujoco.mjtIntegrator.mjINT_EULER:
    raise ValueError(f"{task}: expected the Euler integrator, got {mj_model.opt.integrator}")
  jnt_type = mj_model.jnt_type
  hinge, slide = mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE
  if not np.all((jnt_type == hinge) | (jnt_type == slide)):
    raise ValueError(f"{task}: only hinge and slide joints are handled, got {jnt_type}")

  torso = speed_adr = target = finger = -1
  radii = 0.0
  if task == "reacher_easy":
    target = _id(mj_model, mujoco.mjtObj.mjOBJ_GEOM, "target")
    finger = _id(mj_model, mujoco.mjtObj.mjOBJ_GEOM, "finger")
    mj_model.geom_size[target, 0] = REACHER_BIG_TARGET
    radii = float(mj_model.geom_size[target, 0] + mj_model.geom_size[finger, 0])
  else:
    torso = _id(mj_model, mujoco.mjtObj.mjOBJ_BODY, "torso")
    sensor = _id(mj_model, mujoco.mjtObj.mjOBJ_SENSOR, "torso_subtreelinvel")
    speed_adr = int(mj_model.sensor_adr[sensor])

  adr, low, high = [], [], []
  for j in range(mj_model.njnt):
    if mj_model.jnt_limited[j]:
      lo, hi = mj_model.jnt_range[j]
    elif task != "cheetah_run" and jnt_type[j] == hinge:
      lo, hi = -np.pi, np.pi  # randomize_limited_and_rotational_joints: unlimited hinges
    else:
      continue  # unlimited slides (and cheetah's unlimited joints) keep qpos0
    adr.append(int(mj_model.jnt_qposadr[j]))
    low.append(float(lo))
    high.append(float(hi))

  pm = PhysicsModel(
    mjx_model=mjx.put_model(mj_model),
    task=task,
    n_substeps=N_SUBSTEPS[task],
    torso_body=torso,
    speed_sensor_adr=speed_adr,
    target_geom=target,
    finger_geom=finger,
    reacher_radii=radii,
    reset_qpos_adr=tuple(adr),
    reset_low=tuple(low),
    reset_high=tuple(high),
    light_mode=tuple(int(x) for x in mj_model.light_mode),
    light_body=tuple(int(x) for x in mj_model.light_bodyid),
    light_target=tuple(int(x) for x in mj_model.light_targetbodyid),
  )
  return pm, mj_model


def _model(pm: PhysicsModel, target_xy: jax.Array) -> mjx.Model:
  """The MJX model with reacher's target at ``target_xy`` (unchanged for the other tasks)."""
  if pm.task != "reacher_easy":
    return pm.mjx_model
  m = pm.mjx_model
  geom_pos = m.geom_pos.at[pm.target_geom, :2].set(target_xy.astype(m.geom_pos.dtype))
  return m.replace(geom_pos=geom_pos)


def lights(pm: PhysicsModel, m: mjx.Model, d: mjx.Data) -> tuple[jax.Array, jax.Array]:
  """``(light_xpos, light_xdir)``, each ``(nlight, 3)``, as MuJoCo's ``mj_camlight``."""
  xpos_L3, xdir_L3 = [], []
  for i, (mode, body, target) in enumerate(zip(pm.light_mode, pm.light_body, pm.light_target)):
    pos = d.xpos[body] + d.xmat[body] @ m.light_pos[i]
    direction = d.xmat[body] @ m.light_dir[i]
    if mode == mujoco.mjtCamLight.mjCAMLIGHT_TRACK:
      pos = d.xpos[body] + m.light_pos0[i]
      direction = m.light_dir0[i]
    elif mode == mujoco.mjtCamLight.mjCAMLIGHT_TRACKCOM:
      pos = d.subtree_com[body] + m.light_poscom0[i]
      direction = m.light_dir0[i]
    elif mode in (
      mujoco.mjtCamLight.mjCAMLIGHT_TARGETBODY,
      mujoco.mjtCamLight.mjCAMLIGHT_TARGETBODYCOM,
    ):
      if target >= 0:
        aim = d.xpos[target]
        if mode == mujoco.mjtCamLight.mjCAMLIGHT_TARGETBODYCOM:
          aim = d.subtree_com[target]
        direction = aim - pos
    direction = direction / jnp.maximum(jnp.linalg.norm(direction), mujoco.mjMINVAL)
    xpos_L3.append(pos)
    xdir_L3.append(direction)
  if not xpos_L3:
    return jnp.zeros((0, 3), d.xpos.dtype), jnp.zeros((0, 3), d.xpos.dtype)
  return jnp.stack(xpos_L3), jnp.stack(xdir_L3)


def _sync(pm: PhysicsModel, m: mjx.Model, d: mjx.Data, target_xy: jax.Array) -> PhysState:
  """The position/velocity-derived quantities of ``d``'s state (what ``mj_step1`` leaves that
  the reward and the renderer read), and the lights."""
  d = mjx.kinematics(m, d)
  d = mjx.com_pos(m, d)
  d = mjx.camlight(m, d)
  d = mjx.com_vel(m, d)
  d = mjx.sensor_vel(m, d)
  light_xpos, light_xdir = lights(pm, m, d)
  return PhysState(d, target_xy, light_xpos, light_xdir)


def _sigmoid(x: jax.Array, value_at_1: float, sigmoid: str) -> jax.Array:
  if sigmoid == "gaussian":
    return jnp.exp(-0.5 * (x * np.sqrt(-2 * np.log(value_at_1))) ** 2)
  if sigmoid == "hyperbolic":
    return 1 / jnp.cosh(x * np.arccosh(1 / value_at_1))
  if sigmoid == "long_tail":
    return 1 / ((x * np.sqrt(1 / value_at_1 - 1)) ** 2 + 1)
  if sigmoid == "reciprocal":
    return 1 / (jnp.abs(x) * (1 / value_at_1 - 1) + 1)
  if sigmoid == "cosine":
    scaled = x * (np.arccos(2 * value_at_1 - 1) / np.pi)
    return jnp.where(jnp.abs(scaled) < 1, (1 + jnp.cos(np.pi * scaled)) / 2, 0.0)
  if sigmoid == "linear":
    scaled = x * (1 - value_at_1)
    return jnp.where(jnp.abs(scaled) < 1, 1 - scaled, 0.0)
  if sigmoid == "quadratic":
    scaled = x * np.sqrt(1 - value_at_1)
    return jnp.where(jnp.abs(scaled) < 1, 1 - scaled**2, 0.0)
  # tanh_squared
  return 1 - jnp.tanh(x * np.arctanh(np.sqrt(1 - value_at_1))) ** 2


def tolerance(
  x: jax.Array,
  bounds: tuple[float, float] = (0.0, 0.0),
  margin: float = 0.0,
  sigmoid: str = "gaussian",
  value_at_margin: float = 0.1,
) -> jax.Array:
  """``dm_control.utils.rewards.tolerance`` in jnp: 1 inside ``bounds``, else a sigmoid of the
  distance to the nearest bound in units of ``margin`` (0 outside when ``margin == 0``).

  ``bounds``, ``margin``, ``sigmoid`` and ``value_at_margin`` are Python constants (checked
  here, with dm_control's messages' conditions); ``x`` may be traced.
  """
  lower, upper = (float(b) for b in bounds)
  if lower > upper:
    raise ValueError(f"lower bound must be <= upper bound, got {bounds}")
  if margin < 0:
    raise ValueError(f"margin must be non-negative, got {margin}")
  if sigmoid not in _SIGMOIDS:
    raise ValueError(f"unknown sigmoid {sigmoid!r}; known: {_SIGMOIDS}")
  if margin > 0:
    if sigmoid in ("cosine", "linear", "quadratic"):
      if not 0 <= value_at_margin < 1:
        raise ValueError(f"value_at_margin must be in [0, 1) for {sigmoid}, got {value_at_margin}")
    elif not 0 < value_at_margin < 1:
      raise ValueError(f"value_at_margin must be in (0, 1) for {sigmoid}, got {value_at_margin}")
  x = jnp.asarray(x)
  in_bounds = (lower <= x) & (x <= upper)
  if margin == 0:
    return jnp.where(in_bounds, 1.0, 0.0)
  d = jnp.where(x < lower, lower - x, x - upper) / margin
  return jnp.where(in_bounds, 1.0, _sigmoid(d, value_at_margin, sigmoid))


def reward(pm: PhysicsModel, state: PhysState, noise: jax.Array | float = 0.0) -> jax.Array:
  """The task's reward on ``state`` with sensor noise ``noise`` (``jaxprune.envs.rewards``)."""
  d = state.data
  noise = jnp.asarray(noise, d.qpos.dtype)
  if pm.task == "cheetah_run":
    speed = d.sensordata[pm.speed_sensor_adr] + CHEETAH_RUN_SPEED * noise
    return tolerance(
      speed,
      bounds=(CHEETAH_RUN_SPEED, float("inf")),
      margin=CHEETAH_RUN_SPEED,
      value_at_margin=0.0,
      sigmoid="linear",
    )
  if pm.task == "walker_walk":
    height = d.xpos[pm.torso_body, 2] + WALKER_STAND_HEIGHT * noise
    standing = tolerance(
      height, bounds=(WALKER_STAND_HEIGHT, float("inf")), margin=WALKER_STAND_HEIGHT / 2
    )
    upright = (1 + d.xmat[pm.torso_body, 2, 2]) / 2
    stand_reward = (3 * standing + upright) / 4
    move_reward = tolerance(
      d.sensordata[pm.speed_sensor_adr],
      bounds=(WALKER_WALK_SPEED, float("inf")),
      margin=WALKER_WALK_SPEED / 2,
      value_at_margin=0.5,
      sigmoid="linear",
    )
    return stand_reward * (5 * move_reward + 1) / 6
  # reacher_easy
  to_target = d.geom_xpos[pm.target_geom, :2] - d.geom_xpos[pm.finger_geom, :2]
  dist = jnp.linalg.norm(to_target) + pm.reacher_radii * noise
  return tolerance(dist, (0.0, pm.reacher_radii))


def sample_initial(pm: PhysicsModel, key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The randomized part of ``reset``: ``(qpos, target_xy)`` before any physics (for cheetah,
  before the 200 settling steps). ``target_xy`` is zeros except for reacher."""
  k_qpos, k_angle, k_radius = jax.random.split(key, 3)
  qpos0 = pm.mjx_model.qpos0
  dtype = qpos0.dtype
  low = jnp.asarray(pm.reset_low, dtype)
  high = jnp.asarray(pm.reset_high, dtype)
  u = jax.random.uniform(k_qpos, (len(pm.reset_qpos_adr),), dtype, low, high)
  qpos = qpos0.at[np.asarray(pm.reset_qpos_adr)].set(u)
  target_xy = jnp.zeros((2,), dtype)
  if pm.task == "reacher_easy":
    angle = jax.random.uniform(k_angle, (), dtype, 0.0, 2 * np.pi)
    radius = jax.random.uniform(k_radius, (), dtype, *REACHER_TARGET_RADIUS)
    target_xy = jnp.stack([radius * jnp.sin(angle), radius * jnp.cos(angle)])
  return qpos, target_xy


def reset(pm: PhysicsModel, key: jax.Array) -> PhysState:
  """A new episode's initial state: the task's ``initialize_episode`` (module docstring)."""
  qpos, target_xy = sample_initial(pm, key)
  m = _model(pm, target_xy)
  d = mjx.make_data(m)
  if pm.task == "cheetah_run":
    # first legacy substep: mj_step2 on the mj_forward of qpos0, integrated from the new qpos
    d = mjx.forward(m, d).replace(qpos=qpos)
    d = mjx.euler(m, d)
    d = jax.lax.fori_loop(0, CHEETAH_SETTLE_STEPS - 1, lambda _, x: mjx.step(m, x), d)
    d = d.replace(time=jnp.zeros_like(d.time))
  else:
    d = d.replace(qpos=qpos)
  d = mjx.forward(m, d)  # after_reset (controls are zero)
  light_xpos, light_xdir = lights(pm, m, d)
  return PhysState(d, target_xy, light_xpos, light_xdir)


def step(
  pm: PhysicsModel, state: PhysState, ctrl_A: jax.Array, noise: jax.Array | float = 0.0
) -> tuple[PhysState, jax.Array, jax.Array]:
  """One dm_control ``env.step(ctrl_A)``: ``(new state, reward with noise, clean reward)``."""
  m = _model(pm, state.target_xy)
  d = state.data
  d = d.replace(ctrl=jnp.asarray(ctrl_A, d.ctrl.dtype).reshape(d.ctrl.shape))
  if pm.n_substeps == 1:
    d = mjx.step(m, d)
  else:
    d = jax.lax.fori_loop(0, pm.n_substeps, lambda _, x: mjx.step(m, x), d)
  new = _sync(pm, m, d, state.target_xy)
  return new, reward(pm, new, noise), reward(pm, new, 0.0)


def from_dm_control(pm: PhysicsModel, physics) -> PhysState:
  """The state of a dm_control ``Physics`` of ``pm.task`` (host side, not jittable).

  ``mjx.put_data`` of the physics' data: the state (``qpos``, ``qvel``, ``act``, ``ctrl``,
  ``qacc_warmstart``, ``time``) and the derived fields as MuJoCo C holds them (after a reset or
  a step they are those of the current state; call ``physics.forward()`` after setting a state
  by hand), plus the lights and, for reacher, the target position ``geom_pos['target'][:2]``.
  The result has the same pytree structure as ``reset``'s. ValueError if the sizes do not
  match ``pm``'s model.
  """
  m0 = pm.mjx_model
  src = physics.data
  if (src.qpos.shape, src.qvel.shape, src.ctrl.shape) != ((m0.nq,), (m0.nv,), (m0.nu,)):
    raise ValueError(
      f"physics (nq, nv, nu) = {src.qpos.shape, src.qvel.shape, src.ctrl.shape} does not match "
      f"the {pm.task} model ({m0.nq}, {m0.nv}, {m0.nu})"
    )
  dtype = m0.qpos0.dtype
  target_xy = jnp.zeros((2,), dtype)
  if pm.task == "reacher_easy":
    target_xy = jnp.asarray(physics.named.model.geom_pos["target", :2], dtype)
  d = mjx.put_data(physics.model.ptr, physics.data.ptr)
  light_xpos = jnp.asarray(src.light_xpos, dtype).reshape(-1, 3)
  light_xdir = jnp.asarray(src.light_xdir, dtype).reshape(-1, 3)
  return PhysState(d, target_xy, light_xpos, light_xdir)
