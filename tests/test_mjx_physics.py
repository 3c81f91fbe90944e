"""Tests of jaxprune.envs.mjx_physics against MuJoCo C through dm_control.

MJX runs in float32, MuJoCo C in float64: states agree to rounding, and contacts amplify the
difference over time, so each task has a horizon over which its trajectories are compared
(measured with 8 seeds, random uniform actions: max |qpos diff| reacher 8.5e-7 at 100 steps,
cheetah 2.4e-6 at 100 steps, walker 1.4e-4 at 25 steps but 6.3e-3 at 50 and 1.6 at 100).

MJX compiles slowly on a CPU (tens of seconds per function and task), so the default run holds
the cheap tests and reacher's trajectory; cheetah's and walker's trajectories, the resets and
the batched-vs-unbatched check are ``slow``. Compiled functions are cached for the session, and
built with XLA's backend optimization level 0 (``FAST_COMPILE``: about half the compile time of
the default, same semantics up to rounding).
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import functools  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("dm_control")
pytest.importorskip("mujoco.mjx")

from dm_control import suite  # noqa: E402
from dm_control.utils import rewards as dm_rewards  # noqa: E402

from jaxprune.envs import mjx_physics as mp  # noqa: E402
from jaxprune.envs import rewards  # noqa: E402

NOISES = (0.0, -0.3, 0.4)
STEP_NOISES = np.array([0.0, -0.3, 0.4, 0.1], np.float32)  # one per state of a batch of 4
# (horizon in control steps, qpos atol, reward atol) for the trajectory comparisons
HORIZONS = {
  "reacher_easy": (100, 1e-5, 1e-6),
  "cheetah_run": (100, 1e-4, 1e-5),
  "walker_walk": (25, 1e-3, 1e-3),
}
FAST_COMPILE = {"xla_backend_optimization_level": 0}
SLOW = {"cheetah_run": [pytest.mark.slow], "walker_walk": [pytest.mark.slow], "reacher_easy": []}


def _suite_env(task, seed):
  domain, name = task.split("_", 1)
  return suite.load(domain, name, task_kwargs={"random": seed})


def _stack(states):
  return jax.tree.map(lambda *x: jnp.stack(x), *states)


def _index(tree, i):
  return jax.tree.map(lambda x: x[i], tree)


@functools.cache
def _model(task):
  return mp.load(task)


@functools.cache
def _batched_step(task):
  """jit(vmap(step)) over states, controls and noise: one compile per task for the session."""
  return jax.jit(jax.vmap(mp.step, in_axes=(None, 0, 0, 0)), compiler_options=FAST_COMPILE)


@functools.cache
def _reward_grid(task):
  """jit of reward over states x noises."""
  inner = jax.vmap(mp.reward, in_axes=(None, None, 0))
  return jax.jit(jax.vmap(inner, in_axes=(None, 0, None)), compiler_options=FAST_COMPILE)


# ---------------------------------------------------------------------------------------------
# tolerance and static facts (no MJX compile)


@pytest.mark.parametrize(
  "bounds, margin, sigmoid, value_at_margin",
  [
    ((0.0, 0.06), 0.0, "gaussian", 0.1),
    ((10.0, float("inf")), 10.0, "linear", 0.0),
    ((1.2, float("inf")), 0.6, "gaussian", 0.1),
    ((1.0, float("inf")), 0.5, "linear", 0.5),
    ((-1.0, 1.0), 2.0, "hyperbolic", 0.2),
    ((-1.0, 1.0), 2.0, "long_tail", 0.2),
    ((-1.0, 1.0), 2.0, "reciprocal", 0.2),
    ((-1.0, 1.0), 2.0, "cosine", 0.2),
    ((-1.0, 1.0), 2.0, "quadratic", 0.2),
    ((-1.0, 1.0), 2.0, "tanh_squared", 0.2),
    ((0.5, 0.5), 1.0, "cosine", 0.0),
  ],
)
def test_tolerance_equals_dm_control(bounds, margin, sigmoid, value_at_margin):
  x = np.concatenate([np.linspace(-30, 30, 601), [0.0, 0.06, 1.2, 10.0, 0.5, -1.0, 1.0]])
  want = dm_rewards.tolerance(x, bounds, margin, sigmoid, value_at_margin)
  got = np.asarray(
    mp.tolerance(jnp.asarray(x, jnp.float32), bounds, margin, sigmoid, value_at_margin)
  )
  np.testing.assert_allclose(got, want, atol=2e-6)


def test_tolerance_rejects_bad_arguments():
  with pytest.raises(ValueError, match="lower bound"):
    mp.tolerance(0.0, (1.0, 0.0))
  with pytest.raises(ValueError, match="margin"):
    mp.tolerance(0.0, (0.0, 1.0), margin=-1.0)
  with pytest.raises(ValueError, match="sigmoid"):
    mp.tolerance(0.0, (0.0, 1.0), margin=1.0, sigmoid="nope")
  with pytest.raises(ValueError, match="value_at_margin"):
    mp.tolerance(0.0, (0.0, 1.0), margin=1.0, sigmoid="gaussian", value_at_margin=0.0)


@pytest.mark.parametrize("task", mp.TASKS)
def test_load_matches_the_suite(task):
  pm, mj_model = _model(task)
  env = _suite_env(task, 0)
  physics = env.physics
  n_sub = round(env.control_timestep() / physics.timestep())
  assert pm.n_substeps == mp.N_SUBSTEPS[task] == n_sub
  assert mj_model.opt.timestep == physics.model.opt.timestep
  # the release scene changes colours only: the same dynamics parameters as the suite's model
  for field in ("body_mass", "dof_damping", "jnt_range", "geom_friction", "actuator_gear"):
    np.testing.assert_array_equal(getattr(mj_model, field), getattr(physics.model, field))
  env.reset()  # reacher: sets the target's size
  if task == "reacher_easy":
    want = physics.named.model.geom_size[["target", "finger"], 0].sum()
    assert pm.reacher_radii == pytest.approx(want, abs=1e-12)
    np.testing.assert_array_equal(mj_model.geom_size, physics.model.geom_size)
  # reset ranges: the limited joints' ranges; unlimited hinges [-pi, pi] except for cheetah
  named = {mj_model.joint(j).name: j for j in range(mj_model.njnt)}
  sampled = {
    mj_model.joint(j).name
    for j in range(mj_model.njnt)
    if mj_model.jnt_qposadr[j] in pm.reset_qpos_adr
  }
  want_sampled = {
    "cheetah_run": {"bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot"},
    "walker_walk": set(named) - {"rootx", "rootz"},
    "reacher_easy": {"shoulder", "wrist"},
  }[task]
  assert sampled == want_sampled


def test_constants_are_the_suites():
  from dm_control.suite import cheetah, reacher, walker

  assert mp.CHEETAH_RUN_SPEED == cheetah._RUN_SPEED
  assert mp.WALKER_STAND_HEIGHT == walker._STAND_HEIGHT
  assert mp.WALKER_WALK_SPEED == walker._WALK_SPEED == walker.walk().task._move_speed
  assert mp.REACHER_BIG_TARGET == reacher._BIG_TARGET


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match="unknown task"):
    mp.load("cheetah_walk")
  pm, _ = _model("reacher_easy")
  with pytest.raises(ValueError, match="does not match"):
    mp.from_dm_control(pm, _suite_env("cheetah_run", 0).physics)


# ---------------------------------------------------------------------------------------------
# reward() and from_dm_control() on states set in dm_control


def _reward_states(task):
  """dm_control physics in states that span the reward's range (set, then mj_forward)."""
  out = []
  rng = np.random.default_rng(1)
  for seed in range(2):
    env = _suite_env(task, seed)
    env.reset()
    for _ in range(5):
      env.step(rng.uniform(-1, 1, env.action_spec().shape))
    physics = env.physics
    if task == "cheetah_run":
      speeds = (-5.0, 1.0, 6.0, 12.0, 25.0)
    elif task == "walker_walk":
      speeds = (-1.0, 0.3, 0.8, 1.2)
    else:
      speeds = (0.01, 0.035, 0.059, 0.0605, 0.08, 0.15)  # finger-to-target distances
    for i, v in enumerate(speeds):
      p = physics.copy(share_model=False)
      if task == "reacher_easy":
        finger = p.named.data.geom_xpos["finger", :2]
        angle = 0.7 * i + seed
        p.named.model.geom_pos["target", :2] = finger + v * np.array([np.cos(angle), np.sin(angle)])
      else:
        p.named.data.qvel["rootx"] = v
        if task == "walker_walk":
          p.named.data.qpos["rootz"] = (-0.6, -0.2, 0.0, 0.3)[i]  # torso height around 1.2
          p.named.data.qpos["rooty"] = 0.5 * i
      p.forward()
      out.append((env, p))
  return out


@pytest.mark.parametrize("task", mp.TASKS)
def test_reward_and_state_copy_match_dm_control(task):
  pm, _ = _model(task)
  pairs = _reward_states(task)
  states = [mp.from_dm_control(pm, p) for _, p in pairs]
  for (_, p), s in zip(pairs, states):  # the copy holds C's state and derived fields
    np.testing.assert_allclose(s.data.qpos, p.data.qpos, atol=1e-6)
    np.testing.assert_allclose(s.data.geom_xpos, p.data.geom_xpos, atol=1e-6)
    np.testing.assert_allclose(s.data.sensordata, p.data.sensordata, rtol=1e-6)
    np.testing.assert_allclose(s.light_xpos, p.data.light_xpos, atol=1e-6)
    if task == "reacher_easy":
      np.testing.assert_allclose(s.target_xy, p.named.model.geom_pos["target", :2], atol=1e-7)
  got = np.asarray(_reward_grid(task)(pm, _stack(states), jnp.asarray(NOISES, jnp.float32)))
  want = np.array([[rewards.noisy_reward(task, p, e.task, n) for n in NOISES] for e, p in pairs])
  assert want.std() > 0.1  # the states span the reward's range
  if task == "reacher_easy":  # a step function of the distance: compare away from its edges
    dist = np.array([p.finger_to_target_dist() for _, p in pairs])[:, None]
    edge = np.minimum(
      np.abs(dist + pm.reacher_radii * np.array(NOISES) - pm.reacher_radii),
      np.abs(dist + pm.reacher_radii * np.array(NOISES)),
    )
    assert (edge > 1e-4).all()
    np.testing.assert_array_equal(got, want)
  else:
    np.testing.assert_allclose(got, want, atol=2e-5)


# ---------------------------------------------------------------------------------------------
# step against MuJoCo C


@functools.cache
def _trajectory(task):
  """4 seeded suite envs and their MJX copies driven by the same random actions.

  Returns per step: max |qpos diff| (H x 4), |noisy reward diff| and |clean reward diff|, and
  the last states (MJX and the envs) for the renderer-field checks.
  """
  pm, mj_model = _model(task)
  horizon = HORIZONS[task][0]
  envs_ = [_suite_env(task, seed) for seed in range(4)]
  for env in envs_:
    env.reset()
  state = _stack([mp.from_dm_control(pm, env.physics) for env in envs_])
  step = _batched_step(task)
  rng = np.random.default_rng(0)
  dq, dr, dc = (np.zeros((horizon, 4)) for _ in range(3))
  for h in range(horizon):
    a_BxA = rng.uniform(-1, 1, (4, mj_model.nu))
    ts = [env.step(a) for env, a in zip(envs_, a_BxA)]
    state, r_B, c_B = step(pm, state, jnp.asarray(a_BxA, jnp.float32), STEP_NOISES)
    qpos = np.asarray(state.data.qpos)
    for b, env in enumerate(envs_):
      dq[h, b] = np.abs(qpos[b] - env.physics.data.qpos).max()
      want = rewards.noisy_reward(task, env.physics, env.task, float(STEP_NOISES[b]))
      dr[h, b] = abs(float(r_B[b]) - want)
      dc[h, b] = abs(float(c_B[b]) - ts[b].reward)
  return dq, dr, dc, state, envs_


@pytest.mark.parametrize("task", [pytest.param(t, marks=SLOW[t]) for t in mp.TASKS])
def test_step_follows_mujoco_c(task):
  _, qpos_atol, reward_atol = HORIZONS[task]
  dq, dr, dc, state, envs_ = _trajectory(task)
  assert dq.max() < qpos_atol, f"max |qpos diff| {dq.max():.2e} per step {dq.max(1)}"
  assert dr.max() < reward_atol and dc.max() < reward_atol, (dr.max(), dc.max())
  # the fields the renderer reads are those of the new state (as after mj_step1 in C)
  atol = 10 * qpos_atol
  for b, env in enumerate(envs_):
    d, c = _index(state, b).data, env.physics.data
    np.testing.assert_allclose(d.time, c.time, atol=1e-4)
    np.testing.assert_allclose(d.geom_xpos, c.geom_xpos, atol=atol)
    np.testing.assert_allclose(np.reshape(d.geom_xmat, (-1, 9)), c.geom_xmat, atol=atol)
    np.testing.assert_allclose(d.cam_xpos, c.cam_xpos, atol=atol)
    np.testing.assert_allclose(np.reshape(d.cam_xmat, (-1, 9)), c.cam_xmat, atol=atol)
    np.testing.assert_allclose(state.light_xpos[b], c.light_xpos, atol=atol)
    np.testing.assert_allclose(state.light_xdir[b], c.light_xdir, atol=1e-6)
    np.testing.assert_allclose(d.sensordata, c.sensordata, atol=100 * qpos_atol)
  if task == "reacher_easy":  # each env has its own target, carried in the batched state
    targets = np.array([env.physics.named.model.geom_pos["target", :2] for env in envs_])
    np.testing.assert_allclose(state.target_xy, targets, atol=1e-7)
    assert np.ptp(targets[:, 0]) > 0.01


@pytest.mark.slow
@pytest.mark.parametrize("task", mp.TASKS)
def test_batched_step_equals_unbatched(task):
  pm, mj_model = _model(task)
  envs_ = [_suite_env(task, seed) for seed in range(4)]
  for env in envs_:
    env.reset()
  states = [mp.from_dm_control(pm, env.physics) for env in envs_]
  a_BxA = np.random.default_rng(2).uniform(-1, 1, (3, 4, mj_model.nu)).astype(np.float32)
  batched = _stack(states)
  single = jax.jit(mp.step, compiler_options=FAST_COMPILE)
  for h in range(3):
    batched, r_B, c_B = _batched_step(task)(pm, batched, jnp.asarray(a_BxA[h]), STEP_NOISES)
    for b in range(4):
      states[b], r, c = single(pm, states[b], jnp.asarray(a_BxA[h, b]), STEP_NOISES[b])
      np.testing.assert_allclose(batched.data.qpos[b], states[b].data.qpos, atol=1e-6)
      np.testing.assert_allclose(batched.data.qvel[b], states[b].data.qvel, atol=1e-4)
      np.testing.assert_allclose(batched.data.geom_xpos[b], states[b].data.geom_xpos, atol=1e-6)
      np.testing.assert_allclose(r_B[b], r, atol=1e-6)
      np.testing.assert_allclose(c_B[b], c, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# reset


def _replay_reset_in_c(task, qpos, target_xy):
  """dm_control's initialize_episode with the sampled values in place of its own draws."""
  env = _suite_env(task, 0)
  physics = env.physics
  with physics.reset_context():
    if task == "reacher_easy":
      physics.named.model.geom_size["target", 0] = mp.REACHER_BIG_TARGET
      physics.named.model.geom_pos["target", :2] = target_xy
    physics.data.qpos[:] = qpos
    if task == "cheetah_run":
      physics.step(nstep=mp.CHEETAH_SETTLE_STEPS)
      physics.data.time = 0
  return env


@pytest.mark.slow
@pytest.mark.parametrize("task", mp.TASKS)
def test_reset_is_the_suites_initialize_episode(task):
  pm, mj_model = _model(task)
  n = 16 if task == "cheetah_run" else 64
  keys = jax.random.split(jax.random.key(3), n)
  state = jax.jit(jax.vmap(mp.reset, in_axes=(None, 0)), compiler_options=FAST_COMPILE)(pm, keys)
  qpos_pre, target = jax.jit(jax.vmap(mp.sample_initial, in_axes=(None, 0)))(pm, keys)
  qpos_pre, target = np.asarray(qpos_pre, np.float64), np.asarray(target, np.float64)
  d = state.data
  adr = list(pm.reset_qpos_adr)
  lo, hi = np.array(pm.reset_low), np.array(pm.reset_high)
  assert ((qpos_pre[:, adr] >= lo) & (qpos_pre[:, adr] <= hi)).all()
  others = [i for i in range(mj_model.nq) if i not in adr]
  np.testing.assert_array_equal(
    qpos_pre[:, others], np.broadcast_to(mj_model.qpos0[others], (n, len(others)))
  )
  np.testing.assert_array_equal(d.time, 0.0)
  np.testing.assert_array_equal(d.ctrl, 0.0)
  if task != "cheetah_run":  # no physics steps in the reset
    np.testing.assert_allclose(d.qpos, qpos_pre, atol=1e-6)  # (sampled in two compilations)
    np.testing.assert_array_equal(d.qvel, 0.0)
  if task == "walker_walk":  # rooty uniform on [-pi, pi]: Kolmogorov-Smirnov distance
    rooty = np.sort(qpos_pre[:, mj_model.joint("rooty").qposadr[0]])
    cdf = (rooty + np.pi) / (2 * np.pi)
    ks = np.max(np.maximum(np.arange(1, n + 1) / n - cdf, cdf - np.arange(n) / n))
    assert ks < 0.25, ks  # 1% critical value for n = 64 is 0.20
    assert rooty.min() < -2 and rooty.max() > 2
  if task == "reacher_easy":
    radius = np.linalg.norm(target, axis=1)
    assert ((radius >= 0.05 - 1e-6) & (radius <= 0.2 + 1e-6)).all()
    np.testing.assert_allclose(state.target_xy, target, atol=1e-6)
    angle = np.arctan2(target[:, 0], target[:, 1])  # x = r sin(a), y = r cos(a)
    assert np.ptp(angle) > 4
  # the same initialize_episode in MuJoCo C, from the sampled values
  atol = {"cheetah_run": 1e-4, "walker_walk": 1e-5, "reacher_easy": 1e-5}[task]
  max_dq = 0.0
  for i in range(min(n, 16)):
    env = _replay_reset_in_c(task, qpos_pre[i], target[i])
    c = env.physics.data
    max_dq = max(max_dq, np.abs(d.qpos[i] - c.qpos).max())
    np.testing.assert_allclose(d.xpos[i], c.xpos, atol=atol)
    np.testing.assert_allclose(d.geom_xpos[i], c.geom_xpos, atol=atol)
    np.testing.assert_allclose(d.sensordata[i], c.sensordata, atol=10 * atol)
    np.testing.assert_allclose(d.qacc_warmstart[i], c.qacc_warmstart, atol=1e3 * atol)
    np.testing.assert_allclose(state.light_xpos[i], c.light_xpos, atol=atol)
    want = env.task.get_reward(env.physics)
    got = mp.reward(pm, _index(state, i))
    np.testing.assert_allclose(got, want, atol=10 * atol)
  assert max_dq < atol, max_dq
