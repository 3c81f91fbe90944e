"""The JAX distractors (``envs.jax_distractors``) against the numpy env's own functions
(``envs.compositing``, ``envs.jitter``) and against ``dmc.NoisyDMCEnv`` itself (its observation
and its step loop's schedule), on random frames and on frames rendered by dm_control."""

import math
import os
from fractions import Fraction

os.environ.setdefault("MUJOCO_GL", "egl")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import jaxprune.envs as envs  # noqa: E402
from jaxprune.envs import compositing, jitter  # noqa: E402
from jaxprune.envs import jax_distractors as jd  # noqa: E402

S = 64
JIT = "video_background_camera_jitter"


@pytest.fixture(scope="module")
def jitter_env():
  """walker (argmax mask, release scene) with camera jitter; a short clip."""
  env = envs.make("walker_walk", JIT, seed=0, episode_length=10, num_background_frames=8)
  env.reset()
  yield env
  env.close()


@pytest.fixture(scope="module")
def render(jitter_env):
  return jitter_env.physics.render(S, S, camera_id=0)


@pytest.fixture(scope="module")
def translate_jit():
  return jax.jit(jd.translate)


def _tie_frames(rng, n, size):
  """uint8 frames with many equal channels (mask ties) and some random ones."""
  levels = np.array([0, 60, 128, 200, 255], np.uint8)
  tied = levels[rng.integers(0, len(levels), (n, size, size, 3))]
  return np.concatenate([tied, rng.integers(0, 256, (n, size, size, 3)).astype(np.uint8)])


def test_masks_composite_noise_equal_numpy_on_random_frames():
  rng = np.random.default_rng(0)
  frames = _tie_frames(rng, 3, 16)
  grays = rng.integers(0, 256, (len(frames), 16, 16)).astype(np.uint8)
  for mode in jd.MASKS:
    mask_fn = jax.jit(lambda f, mode=mode: jd.blue_mask(f, mode=mode))
    for frame, gray in zip(frames, grays):
      want = compositing.blue_mask(frame, mode=mode)
      got = np.asarray(mask_fn(frame))
      assert got.dtype == bool and np.array_equal(got, want)
      comp = np.asarray(jax.jit(jd.composite)(frame, gray, want))
      assert comp.dtype == np.uint8 and np.array_equal(
        comp, compositing.composite(frame, gray, want)
      )
  for size in (64, 84, 17, 5):  # the float32 nearest numpy's float64 value
    for gray in rng.integers(0, 256, (20, size, size)).astype(np.uint8):
      got = jax.jit(jd.sensor_noise)(gray)
      assert got.dtype == jnp.float32
      assert float(got) == float(np.float32(compositing.sensor_noise(gray)))
  assert float(jd.sensor_noise(np.full((S, S), 255, np.uint8))) == 0.5
  assert float(jd.sensor_noise(np.zeros((S, S), np.uint8))) == -0.5


def test_sensor_division_is_correctly_rounded():
  """``(2 sum - 255 n) / (510 n)`` rounded once to float32 (numpy's float64 quotient cast to
  float32 is that value: den < 2**25 keeps it off float32 midpoints unless exactly on one)."""
  rng = np.random.default_rng(7)
  for n in (1, 16, 441, 256, 65536):
    den = 510 * n
    nums = np.unique(np.concatenate([rng.integers(-255 * n, 255 * n + 1, 3000), [0, 1, -1]]))
    nums = np.concatenate([nums, [255 * n, -255 * n]]).astype(np.int32)
    got = jax.jit(jax.vmap(lambda x, den=den: jd._divide_rounded(x, den)))(nums)
    assert np.array_equal(np.asarray(got), (nums / den).astype(np.float32)), n


def test_masks_composite_noise_equal_numpy_on_rendered_frame(jitter_env, render):
  assert render.shape == (S, S, 3) and render.dtype == np.uint8
  for mode in jd.MASKS:
    want = compositing.blue_mask(render, mode=mode)
    assert 0 < want.sum() < want.size  # sky and floor, and the walker
    assert np.array_equal(np.asarray(jd.blue_mask(jnp.asarray(render), mode=mode)), want)
    for gray in jitter_env.background[:3]:
      got = np.asarray(jd.composite(render, gray, want))
      assert np.array_equal(got, compositing.composite(render, gray, want))
  for gray in jitter_env.background:
    assert float(jd.sensor_noise(gray)) == float(np.float32(compositing.sensor_noise(gray)))


def _shifts(rng):
  special = [(0.5, 0.5), (-0.5, 0.25), (0.0, 0.0), (-0.0, 1.0), (1.0, -1.0), (3.5, -2.25)]
  special += [(0.375, -0.625), (-1e-9, 0.5), (2.0**-25, -(2.0**-25)), (1e-30, -0.5)]
  special += [(64.0, 0.0), (-64.5, 3.0), (70.0, -70.0), (-63.75, 63.5), (1e4, -1e4)]
  noise = rng.normal(0.0, 8.0, (150, 2))  # the walk's offsets: ~6.5 px
  ties = rng.integers(-80, 80, (60, 2)) / 8  # dyadic: exact .5 ties in the bilinear sum
  fine = rng.integers(-(2**14), 2**14, (30, 2)) / 1024
  return np.concatenate([np.array(special), noise, ties, fine]).astype(np.float32)


def test_translate_equals_numpy_exactly(translate_jit):
  rng = np.random.default_rng(1)
  equal = total = max_diff = 0
  for sy, sx in _shifts(rng):
    frame = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    want = jitter.translate(frame, (float(sy), float(sx)))
    got = np.asarray(translate_jit(frame, jnp.array([sy, sx], jnp.float32)))
    assert got.dtype == np.uint8 and got.shape == want.shape
    diff = np.abs(got.astype(int) - want.astype(int))
    equal, total, max_diff = equal + (diff == 0).sum(), total + diff.size, max(max_diff, diff.max())
  # measured: every pixel equal (not the <= 1 gray level a float32 bilinear gives on near-ties)
  assert (equal / total, max_diff) == (1.0, 0)
  gray = rng.integers(0, 256, (12, 12)).astype(np.uint8)  # H x W frames as well
  assert np.array_equal(
    np.asarray(jd.translate(gray, (2.25, -0.5))), jitter.translate(gray, (2.25, -0.5))
  )
  black = np.asarray(translate_jit(frame, jnp.array([np.nan, 0.0], jnp.float32)))
  assert not black.any()  # numpy raises on non-finite shifts; here: off the frame


def test_translate_full_frames_match_numpy(render, translate_jit):
  """Many 64 x 64 pixels on the walk's offsets: a float32 bilinear misses ~1e-5 of them."""
  rng = np.random.default_rng(2)
  frames = [render, rng.integers(0, 256, (S, S, 3)).astype(np.uint8)]
  for sy, sx in rng.normal(0.0, 6.5, (40, 2)).astype(np.float32):
    for frame in frames:
      want = jitter.translate(frame, (float(sy), float(sx)))
      assert np.array_equal(np.asarray(translate_jit(frame, jnp.array([sy, sx]))), want)


def test_shift_step_equals_numpy_with_pull_back():
  rng = np.random.default_rng(3)
  eps = rng.normal(size=(200, 2))
  start = jd.ShiftWalk(jnp.array([0.07, -0.02], jnp.float32), jnp.array([0.004, 0.0], jnp.float32))
  step = jax.jit(jd.shift_step)
  walk, ref = start, jitter.ShiftState(np.asarray(start.pos_2, np.float64), np.asarray(start.vel_2))
  pulled = 0
  for e in eps:
    # one step from the same (float32) state: float32 rounding only
    one = jitter.shift_step(
      jitter.ShiftState(np.asarray(walk.pos_2, np.float64), np.asarray(walk.vel_2, np.float64)), e
    )
    pulled += np.linalg.norm(np.asarray(walk.pos_2, np.float64)) >= 0.075
    walk = step(walk, jnp.asarray(e, jnp.float32))
    ref = jitter.shift_step(ref, e)  # and the whole float64 walk alongside
    assert walk.pos_2.dtype == jnp.float32
    np.testing.assert_allclose(walk.pos_2, one.pos_2, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(walk.vel_2, one.vel_2, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(walk.pos_2, ref.pos_2, rtol=1e-4, atol=1e-7)
  assert 10 <= pulled <= 190  # both branches taken
  dy, dx = jd.shift_offset(walk, image_size=S)
  np.testing.assert_allclose([dy, dx], jitter.shift_offset(ref, image_size=S), rtol=1e-4)


def test_shift_init_moments():
  walks = jax.vmap(jd.shift_init)(jax.random.split(jax.random.key(0), 20000))
  numpy_walks = [jitter.shift_init(np.random.default_rng(i)) for i in range(4000)]
  for got, want, ref in (
    (walks.pos_2, 0.075 / np.sqrt(2), np.array([w.pos_2 for w in numpy_walks])),
    (walks.vel_2, 0.005, np.array([w.vel_2 for w in numpy_walks])),
  ):
    got = np.asarray(got)
    assert got.shape == (20000, 2) and got.dtype == np.float32
    np.testing.assert_allclose(got.std(0), want, rtol=0.03)
    np.testing.assert_allclose(ref.std(0), want, rtol=0.06)  # the numpy env's draw
    np.testing.assert_allclose(got.mean(0), 0.0, atol=0.03 * want)
    assert abs(np.corrcoef(got.T)[0, 1]) < 0.03


def _numpy_observe(rgb, clip, start, t, walk, *, variant, mask_mode):
  """``NoisyDMCEnv._observe``'s arithmetic with numpy's functions, on the float32 walk; also the
  composited frame and the (float64) shift."""
  if variant == "noiseless":
    return rgb, rgb, None
  mask = compositing.blue_mask(rgb, mode=mask_mode)
  frame = composited = compositing.composite(rgb, clip[(start + t) % len(clip)], mask)
  shift = None
  if variant == JIT:
    pos, vel = (np.asarray(x, np.float64) for x in walk)
    dy, dx = jitter.shift_offset(jitter.ShiftState(pos, vel), image_size=S)
    shift = (-dy, -dx)
    frame = jitter.translate(frame, shift)
  return frame, composited, shift


def _exact_pixel(frame, shift, i, j, c):
  """The bilinear value at ``(i, j, c)`` of ``jitter.translate`` in exact rationals."""
  (ky, fy), (kx, fx) = [(math.floor(d), Fraction(d) - math.floor(d)) for d in shift]
  h, w = frame.shape[:2]
  px = lambda a, b: int(frame[a, b, c]) if 0 <= a < h and 0 <= b < w else 0
  return (
    (1 - fy) * (1 - fx) * px(i - ky, j - kx)
    + fy * (1 - fx) * px(i - ky - 1, j - kx)
    + (1 - fy) * fx * px(i - ky, j - kx - 1)
    + fy * fx * px(i - ky - 1, j - kx - 1)
  )


def _states(n, seed, num_frames):
  rng = np.random.default_rng(seed)
  pos = rng.normal(0.0, 0.06, (n, 2)).astype(np.float32)
  pos[0] = [0.5 / 120, -0.25 / 120]  # float32: a hair off .5 ties, at 1e-14 from half-integers
  return jd.Distractor(
    jnp.asarray(rng.integers(0, num_frames, n), jnp.int32),
    jnp.asarray(rng.integers(0, 30, n), jnp.int32),
    jd.ShiftWalk(jnp.asarray(pos), jnp.asarray(rng.normal(0.0, 0.005, (n, 2)), jnp.float32)),
  )


@pytest.mark.parametrize("variant", jd.VARIANTS)
def test_observe_equals_numpy_chain_and_batches(variant, jitter_env, render):
  clip = jitter_env.background
  rng = np.random.default_rng(4)
  rgbs = np.stack([render, render[::-1], *_tie_frames(rng, 1, S)])
  states = _states(len(rgbs) * 4, 5, len(clip))
  rgbs = np.tile(rgbs, (4, 1, 1, 1))
  kw = dict(variant=variant, mask_mode="argmax", image_size=S)
  obs = jax.jit(lambda r, c, s: jd.observe(r, c, s, **kw))
  batched = jax.jit(jax.vmap(lambda r, s: jd.observe(r, jnp.asarray(clip), s, **kw)))(rgbs, states)
  assert batched.shape == rgbs.shape and batched.dtype == jnp.uint8
  near_ties = 0
  for i, rgb in enumerate(rgbs):
    state = jax.tree.map(lambda x, i=i: x[i], states)
    want, composited, shift = _numpy_observe(
      rgb, clip, int(state.start), int(state.t), state.walk, variant=variant, mask_mode="argmax"
    )
    one = np.asarray(obs(rgb, clip, state))
    assert np.array_equal(np.asarray(batched[i]), one)
    # numpy's float64 bilinear is off where the exact value lies within ~1e-13 of a .5 tie
    # without being one (the crafted walk 0): there the JAX pixel is the exact value rounded
    for y, x, c in np.argwhere(one != want):
      assert variant == JIT and i % len(rgbs) == 0, (variant, i)
      v = _exact_pixel(composited, shift, y, x, c)
      assert abs(v - math.floor(v) - Fraction(1, 2)) < 1e-12
      assert one[y, x, c] == math.floor(v + Fraction(1, 2)) == want[y, x, c] - 1
      near_ties += 1
  assert near_ties <= (9 * 4 if variant == JIT else 0)  # measured: 9 pixels of walk 0's frame
  if variant == "noiseless":
    one_state = jax.tree.map(lambda x: x[0], states)
    assert np.array_equal(np.asarray(jd.observe(render, None, one_state, **kw)), render)


def test_observe_equals_the_env_observation(jitter_env):
  """The env's own ``_observe`` (camera jitter), its walk set to float32 values."""
  env = jitter_env
  rng = np.random.default_rng(6)
  for _ in range(3):
    pos = rng.normal(0.0, 0.06, 2).astype(np.float32)
    env._walk = jitter.ShiftState(pos.astype(np.float64), np.zeros(2))
    want = env._observe()
    state = jd.Distractor(
      jnp.int32(env._start), jnp.int32(env._t), jd.ShiftWalk(jnp.asarray(pos), jnp.zeros(2))
    )
    rgb = env.physics.render(S, S, camera_id=0)
    got = jd.observe(rgb, env.background, state, variant=JIT, mask_mode="argmax", image_size=S)
    assert np.array_equal(np.asarray(got), want)
    env.step(np.zeros(env.action_dim))


def test_schedule_and_noise_match_the_env_step_loop():
  """Frame index ``(start + t) % T`` and the noise read before each physics step, as dmc.py."""
  variant = "video_background_noisy_sensor"
  env = envs.make("walker_walk", variant, seed=1, episode_length=12, num_background_frames=5)
  try:
    env.reset()
    clip = jnp.asarray(env.background)
    state = jd.Distractor(
      jnp.int32(env.background_index), jnp.int32(0), jd.shift_init(jax.random.key(0))
    )
    step = jax.jit(lambda s, k: jd.distractor_physics_step(s, k, variant=variant))
    noise = jax.jit(jd.frame_noise)
    keys = jax.random.split(jax.random.key(1), env.episode_length)
    for agent_step in range(env.episode_steps):  # 6 steps x 2 repeats: wraps around T = 5
      noises = []
      for r in range(env.action_repeat):
        noises.append(float(noise(clip, state)))
        idx = int(jd.background_index(state, 5))
        assert noises[-1] == float(np.float32(compositing.sensor_noise(env.background[idx])))
        new = step(state, keys[agent_step * env.action_repeat + r])
        assert int(new.t) == int(state.t) + 1 and int(jd.background_index(new, 5)) == (idx + 1) % 5
        assert np.array_equal(new.walk.pos_2, state.walk.pos_2)  # no jitter: the walk stays
        state = new
      _, _, _, info = env.step(np.zeros(env.action_dim))
      assert info["background_index"] == int(jd.background_index(state, 5))
      assert info["sensor_noise"] == pytest.approx(np.mean(noises), abs=1e-7)
  finally:
    env.close()


def test_reset_and_jitter_step():
  clip = jnp.zeros((7, S, S), jnp.uint8)
  starts = jax.vmap(lambda k: jd.distractor_reset(clip, k, variant="video_background").start)(
    jax.random.split(jax.random.key(2), 7000)
  )
  counts = np.bincount(np.asarray(starts), minlength=7)
  assert counts.shape == (7,) and counts.min() > 850  # uniform over [0, T)
  state = jd.distractor_reset(clip, jax.random.key(3), variant=JIT)
  assert int(state.t) == 0 and np.any(np.asarray(state.walk.pos_2) != 0)
  key = jax.random.key(4)
  new = jd.distractor_physics_step(state, key, variant=JIT)
  want = jd.shift_step(state.walk, jax.random.normal(key, (2,), jnp.float32))
  assert np.array_equal(new.walk.pos_2, want.pos_2) and int(new.t) == 1
  quiet = jd.distractor_reset(None, key, variant="noiseless")
  assert int(quiet.start) == 0 and not np.any(np.asarray(quiet.walk.pos_2))


def test_bad_arguments_raise():
  jd.check_variant(JIT, "shift")
  jd.check_variant("video_background", "crop")  # crop only matters with camera jitter
  with pytest.raises(ValueError, match="crop"):
    jd.check_variant(JIT, "crop")
  with pytest.raises(ValueError, match="variant"):
    jd.check_variant("video_backgrounds")
  frame = jnp.zeros((S, S, 3), jnp.uint8)
  state = jd.distractor_reset(None, jax.random.key(0), variant="noiseless")
  with pytest.raises(ValueError, match="mask"):
    jd.observe(frame, None, state, variant="noiseless", mask_mode="blue", image_size=S)
  with pytest.raises(ValueError, match="render"):
    jd.observe(frame, None, state, variant="noiseless", mask_mode="strict", image_size=32)
  with pytest.raises(ValueError, match="mask"):
    jd.blue_mask(frame, mode="dbc")
