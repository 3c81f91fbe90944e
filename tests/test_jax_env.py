"""The composed JAX environment (jaxprune.envs.jax_env): its clip is the host environment's, its
observation is the JAX render composited and shifted exactly as the host env composites a frame,
its rewards are the physics' summed over the repeats, and it vmaps. Small: reacher (one substep
per control step) at 32 px without shadows, so compilation stays short."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxprune import envs  # noqa: E402
from jaxprune.envs import compositing, jax_env, mjx_physics  # noqa: E402
from jaxprune.envs import jax_render as jr  # noqa: E402
from jaxprune.envs import jitter as jitter_lib  # noqa: E402

TASK, S, T = "reacher_easy", 32, 12
KW = dict(seed=3, image_size=S, episode_length=8, num_background_frames=T)


@pytest.fixture(scope="module")
def made():
  out = {}
  for variant in ("video_background_noisy_sensor", "video_background_camera_jitter"):
    out[variant] = jax_env.make(TASK, variant, shadows=False, reflections=False, **KW)
  return out


@pytest.fixture(scope="module")
def jitted(made):
  fns = {}
  for variant, (env, params) in made.items():
    fns[variant] = (jax.jit(env.reset), jax.jit(env.step))
  return fns


def test_clip_is_the_host_environments(made):
  for variant, (_, params) in made.items():
    host = envs.make(TASK, variant, **KW)
    np.testing.assert_array_equal(np.asarray(params.clip), host.background)
    host.close()
  other = jax_env.make(TASK, "video_background", **{**KW, "seed": 4}, shadows=False)[1]
  assert not np.array_equal(np.asarray(other.clip), np.asarray(params.clip))


def _render(params, phys):
  d = phys.data
  view = jr.RenderState(
    geom_xpos=d.geom_xpos,
    geom_xmat=jnp.asarray(d.geom_xmat).reshape(-1, 3, 3),
    cam_xpos=d.cam_xpos,
    cam_xmat=jnp.asarray(d.cam_xmat).reshape(-1, 3, 3),
    light_xpos=phys.light_xpos,
    light_xdir=phys.light_xdir,
  )
  return np.asarray(jax.jit(jr.render)(params.scene, view)[0])


@pytest.mark.slow
def test_observation_is_the_host_compositing_of_the_render(made, jitted):
  for variant, (env, params) in made.items():
    reset, step = jitted[variant]
    state, obs = reset(params, jax.random.key(0))
    for t in range(3):
      state, obs, reward, clean = step(params, state, jnp.full((2,), 0.5))
    rgb = _render(params, state.phys)
    idx = int((state.distractor.start + state.distractor.t) % T)
    clip = np.asarray(params.clip)
    mask = compositing.blue_mask(rgb, mode=env.mask_mode)
    want = compositing.composite(rgb, clip[idx], mask)
    if variant == "video_background_camera_jitter":
      walk = jitter_lib.ShiftState(*(np.asarray(x, np.float64) for x in state.distractor.walk))
      dy, dx = jitter_lib.shift_offset(walk, image_size=S)
      want = jitter_lib.translate(want, (-dy, -dx))
    assert mask.mean() > 0.2  # the blue floor is replaced
    np.testing.assert_array_equal(np.asarray(obs), want)


@pytest.mark.slow
def test_rewards_are_the_physics_summed_over_the_repeats(made, jitted):
  env, params = made["video_background_noisy_sensor"]
  reset, step = jitted["video_background_noisy_sensor"]
  state, _ = reset(params, jax.random.key(1))
  pstep = jax.jit(mjx_physics.step)
  phys, d = state.phys, state.distractor
  state2, _, reward, clean = step(params, state, jnp.asarray([0.3, -0.2]))
  want_r = want_c = 0.0
  clip = np.asarray(params.clip)
  for i in range(env.action_repeat):
    noise = compositing.sensor_noise(clip[int((d.start + d.t + i) % T)])
    phys, r, c = pstep(params.physics, phys, jnp.asarray([0.3, -0.2]), noise)
    want_r, want_c = want_r + float(r), want_c + float(c)
  np.testing.assert_allclose(float(reward), want_r, atol=1e-6)
  np.testing.assert_allclose(float(clean), want_c, atol=1e-6)
  np.testing.assert_allclose(np.asarray(state2.phys.data.qpos), np.asarray(phys.data.qpos))
  assert int(state2.distractor.t) == env.action_repeat


@pytest.mark.slow
def test_vmapped_environments_equal_one_by_one(made):
  env, params = made["video_background_camera_jitter"]
  keys = jax.random.split(jax.random.key(2), 3)
  vs, vo = jax.jit(jax.vmap(env.reset, in_axes=(None, 0)))(params, keys)
  a = jnp.asarray([[1.0, -1.0], [0.2, 0.1], [-0.5, 0.9]])
  vs, vo, vr, _ = jax.jit(jax.vmap(env.step, in_axes=(None, 0, 0)))(params, vs, a)
  reset, step = jax.jit(env.reset), jax.jit(env.step)
  for i in range(3):
    s, o = reset(params, keys[i])
    s, o, r, _ = step(params, s, a[i])
    # batched and single programs fuse the shading differently: float rounding moves a few
    # pixels by one grey level, never more
    diff = np.abs(np.asarray(vo[i], int) - np.asarray(o, int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.97, (diff.max(), (diff == 0).mean())
    np.testing.assert_allclose(float(vr[i]), float(r), atol=1e-6)
  assert len({np.asarray(vo[i]).tobytes() for i in range(3)}) == 3  # distinct episodes


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="crop"):
    jax_env.make(TASK, "video_background_camera_jitter", jitter="crop", **KW)
  with pytest.raises(ValueError, match="unknown task"):
    jax_env.make("humanoid_run", "noiseless", **KW)
