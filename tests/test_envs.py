"""Tests of jaxprune.envs: the noisy DMC environments of the Denoised MDP paper.

Kept small for a 2-core CPU: 64 x 64 images, episodes of a few agent steps, short background clips.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("dm_control")

from dm_control import suite  # noqa: E402

from jaxprune import envs  # noqa: E402
from jaxprune.envs import compositing, jitter, rewards  # noqa: E402

FRAMES = 200  # background clip length in the tests (the default 1000 is slower to synthesise)


def _make(task, variant, seed=0, episode_length=20, **kw):
  kw.setdefault("num_background_frames", FRAMES)
  return envs.make(task, variant, seed=seed, episode_length=episode_length, **kw)


def _actions(n, dim, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (n, dim))


def _rollout(env, actions):
  """Frames (reset + one per step), rewards and infos of one episode."""
  frames, rews, infos = [env.reset()], [], []
  for a in actions:
    obs, r, _, info = env.step(a)
    frames.append(obs)
    rews.append(r)
    infos.append(info)
  return np.stack(frames), np.array(rews), infos


# ---------------------------------------------------------------------------------------------
# pieces


def test_blue_mask_and_sensor_noise_by_hand():
  px = np.array([[[10, 10, 20], [10, 20, 20], [200, 100, 50], [0, 0, 0], [64, 64, 64]]], np.uint8)
  np.testing.assert_array_equal(
    compositing.blue_mask(px, mode="strict"), [[True, False, False, False, False]]
  )
  np.testing.assert_array_equal(
    compositing.blue_mask(px, mode="argmax"), [[True, True, False, True, True]]
  )
  frame = np.zeros((64, 64), np.uint8)
  assert compositing.sensor_noise(frame) == -0.5
  frame[8:24, 8:24] = 255  # exactly the 16 x 16 patch
  assert compositing.sensor_noise(frame) == 0.5
  frame[8, 8] = 0
  assert compositing.sensor_noise(frame) == pytest.approx(0.5 - 1 / 256)
  out = compositing.composite(
    px, np.full((1, 5), 7, np.uint8), compositing.blue_mask(px, mode="strict")
  )
  np.testing.assert_array_equal(out[0, 0], [7, 7, 7])
  np.testing.assert_array_equal(out[0, 1:], px[0, 1:])
  with pytest.raises(ValueError, match="mask mode"):
    compositing.blue_mask(px, mode="blue")


def test_procedural_video_deterministic_smooth_and_looping():
  v = envs.procedural_video(num_frames=120, height=64, width=64, seed=3)
  assert v.shape == (120, 64, 64) and v.dtype == np.uint8
  same = envs.procedural_video(num_frames=120, height=64, width=64, seed=3)
  np.testing.assert_array_equal(v, same)
  assert (
    np.abs(
      v.astype(int) - envs.procedural_video(num_frames=120, height=64, width=64, seed=4)
    ).mean()
    > 20
  )
  assert 100 < v.mean() < 156 and v.std() > 30
  d = np.abs(np.diff(v.astype(int), axis=0)).mean(axis=(1, 2))
  far = np.abs(v[60:].astype(int) - v[:60]).mean()
  assert 0 < d.mean() < far / 2  # temporally correlated, but moving
  wrap = np.abs(v[0].astype(int) - v[-1]).mean()
  assert wrap < 2 * d.max()  # no seam where the clip loops
  noise = [compositing.sensor_noise(f) for f in v]
  assert np.std(noise) > 0.02  # the noisy sensor really varies


def test_jitter_walk_smooth_bounded_pure():
  rng = np.random.default_rng(0)
  s = jitter.jitter_init(rng, image_size=64)
  eps = rng.normal(size=(400, 2))
  offs = []
  for e in eps:
    s = jitter.jitter_step(s, e, image_size=64)
    offs.append(jitter.jitter_offset(s))
  offs = np.array(offs)
  assert np.abs(offs).max() <= jitter.jitter_margin(64) == 16
  assert np.abs(np.diff(offs[::2], axis=0)).max() <= 5  # per agent step (2 physics steps)
  assert offs.std() > 2  # it does move
  s2 = jitter.jitter_init(np.random.default_rng(0), image_size=64)
  for e in eps:
    s2 = jitter.jitter_step(s2, e, image_size=64)
  np.testing.assert_array_equal(s.pos_2, s2.pos_2)


@pytest.mark.parametrize(
  "task,accessor,scale",
  [
    ("cheetah_run", "speed", 10.0),
    ("walker_walk", "torso_height", 1.2),
    ("reacher_easy", "finger_to_target_dist", 0.06),  # target 0.05 + finger 0.01
  ],
)
def test_noisy_rewards_match_task_reward(task, accessor, scale):
  """noise 0: exactly the task's reward; noise n: the task's reward with the sensor shifted."""

  class Shifted:  # the physics with one accessor reading `value + shift`
    def __init__(self, physics, shift):
      self._physics, self._shift = physics, shift

    def __getattr__(self, name):
      attr = getattr(self._physics, name)
      if name == accessor:
        return lambda: attr() + self._shift
      return attr

  domain, name = task.split("_")
  env = suite.load(domain, name, task_kwargs={"random": 1})
  env.reset()
  if task == "reacher_easy":  # put the finger on the target's rim so the sparse reward can flip
    env.physics.named.model.geom_pos["target", :2] = env.physics.named.data.geom_xpos["finger", :2]
    env.physics.forward()
  differs = 0
  for a in _actions(25, env.action_spec().shape[0], seed=1):
    env.step(a)
    ph = env.physics
    assert rewards.noisy_reward(task, ph, env.task, 0.0) == env.task.get_reward(ph)
    for noise in (-0.5, -0.2, 0.3):
      want = env.task.get_reward(Shifted(ph, scale * noise))
      got = rewards.noisy_reward(task, ph, env.task, noise)
      assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
      differs += got != env.task.get_reward(ph)
  assert differs > 0


# ---------------------------------------------------------------------------------------------
# environments


def test_shapes_dtypes_and_episode_end_every_variant():
  for variant in envs.VARIANTS:
    env = _make("cheetah_run", variant, episode_length=6)
    assert env.action_dim == 6 and env.episode_steps == 3
    assert env.observation_shape == (64, 64, 3)
    obs = env.reset()
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    for i, a in enumerate(_actions(3, 6)):
      obs, r, done, info = env.step(a)
      assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
      assert isinstance(r, float) and np.isfinite(r)
      keys = {"clean_reward", "discount", "background_index", "jitter_offset", "sensor_noise"}
      assert set(info) == keys
      assert info["discount"] == 1.0
      assert done == (i == 2)
    with pytest.raises(RuntimeError, match="reset"):
      env.step(np.zeros(6))
    assert env.reset().shape == (64, 64, 3)  # a second episode
    env.close()


@pytest.mark.parametrize("task,dim", [("walker_walk", 6), ("reacher_easy", 2)])
def test_other_tasks_load(task, dim):
  env = _make(task, "video_background_noisy_sensor", episode_length=4)
  assert env.action_dim == dim
  assert env.reset().shape == (64, 64, 3)
  obs, r, done, _ = env.step(np.zeros(dim))
  assert obs.dtype == np.uint8 and np.isfinite(r) and not done


def test_bad_arguments():
  with pytest.raises(ValueError, match="unknown task"):
    envs.make("cheetah_walk", seed=0)
  with pytest.raises(ValueError, match="unknown variant"):
    envs.make("cheetah_run", "video", seed=0)
  with pytest.raises(ValueError, match="image_size"):
    envs.make("cheetah_run", seed=0, image_size=8)
  with pytest.raises(ValueError, match="multiple of action_repeat"):
    envs.make("cheetah_run", seed=0, episode_length=7)
  with pytest.raises(ValueError, match="seed"):
    envs.make("cheetah_run", seed=-1)
  with pytest.raises(ValueError, match="scene"):
    envs.make("cheetah_run", seed=0, scene="dbc")
  with pytest.raises(ValueError, match="jitter"):
    envs.make("cheetah_run", seed=0, jitter="warp")
  with pytest.raises(ValueError, match="mask"):
    envs.make("cheetah_run", seed=0, mask="blue")
  env = _make("reacher_easy", "noiseless", episode_length=4)
  with pytest.raises(RuntimeError, match="reset"):
    env.step(np.zeros(2))
  env.reset()
  for bad in (np.array([1.5, 0.0]), np.zeros(3), np.array([np.nan, 0.0])):
    with pytest.raises(ValueError, match="action"):
      env.step(bad)


def test_same_seed_same_episodes_other_seed_differs():
  acts = _actions(4, 6, seed=2)

  def two_episodes(seed):
    env = _make("walker_walk", "video_background_camera_jitter", seed=seed, episode_length=8)
    return [_rollout(env, acts) for _ in range(2)]

  a, b, c = two_episodes(5), two_episodes(5), two_episodes(6)
  for (fa, ra, ia), (fb, rb, ib) in zip(a, b):
    np.testing.assert_array_equal(fa, fb)
    np.testing.assert_array_equal(ra, rb)
    assert ia == ib
  assert np.abs(a[0][0].astype(int) - c[0][0]).mean() > 5  # other seed, other frames
  assert not np.array_equal(a[0][1], c[0][1])
  # the second episode draws new randomness: other start frame, other initial state
  assert a[0][2][0]["background_index"] != a[1][2][0]["background_index"]
  assert np.abs(a[0][0].astype(int) - a[1][0]).mean() > 5


def test_noiseless_matches_plain_dm_control():
  for task in envs.TASKS:
    seed = 7
    env = _make(task, "noiseless", seed=seed, episode_length=10)
    acts = _actions(5, env.action_dim, seed=3)
    frames, rews, infos = _rollout(env, acts)
    domain, name = task.split("_")
    ref = suite.load(domain, name, task_kwargs={"random": seed})
    ref.reset()
    want_frames = [ref.physics.render(64, 64, camera_id=envs.CAMERA_ID)]
    want_rews = []
    for a in acts:
      r = 0.0
      for _ in range(2):
        r += ref.step(a).reward
      want_rews.append(r)
      want_frames.append(ref.physics.render(64, 64, camera_id=envs.CAMERA_ID))
    np.testing.assert_array_equal(frames, np.stack(want_frames))
    np.testing.assert_array_equal(rews, want_rews)
    np.testing.assert_array_equal(env.physics.get_state(), ref.physics.get_state())
    assert [i["clean_reward"] for i in infos] == want_rews


@pytest.mark.parametrize("task", envs.TASKS)
def test_video_background_replaces_exactly_the_masked_pixels(task):
  # the video variants default to the release's scene: the clean reference is rendered in it too
  clean = _make(task, "noiseless", seed=2, episode_length=8, scene="release")
  video = _make(task, "video_background", seed=2, episode_length=8)
  acts = _actions(4, clean.action_dim, seed=4)
  fc, rc, _ = _rollout(clean, acts)
  fv, rv, iv = _rollout(video, acts)
  np.testing.assert_array_equal(clean.physics.get_state(), video.physics.get_state())
  np.testing.assert_array_equal(rc, rv)
  start = iv[0]["background_index"] - 2  # frame shown at reset
  for t in range(len(fc)):
    mask = compositing.blue_mask(fc[t], mode=envs.MASK_MODES[task])
    assert mask.mean() > 0.5  # the sky / floor / arena is most of the image
    np.testing.assert_array_equal(fv[t][~mask], fc[t][~mask])  # the agent is untouched
    bg = video.background[(start + 2 * t) % FRAMES]
    np.testing.assert_array_equal(fv[t][mask], np.repeat(bg[mask][:, None], 3, axis=1))
    assert (fv[t] != fc[t]).any(axis=-1).mean() > 0.4


def test_noisy_sensor_changes_reward_not_pixels():
  kw = dict(seed=4, episode_length=24, action_repeat=1)
  clean = _make("walker_walk", "noiseless", **kw)
  video = _make("walker_walk", "video_background", **kw)
  noisy = _make("walker_walk", "video_background_noisy_sensor", **kw)
  acts = _actions(24, 6, seed=5)
  _, rc, _ = _rollout(clean, acts)
  fv, _, _ = _rollout(video, acts)
  fn, rn, infos = _rollout(noisy, acts)
  np.testing.assert_array_equal(fn, fv)  # same background, same physics
  np.testing.assert_array_equal([i["clean_reward"] for i in infos], rc)
  assert np.abs(rn - rc).max() > 1e-3
  # the last step's noise comes from the frame shown before it (action_repeat=1)
  before = noisy.background[infos[-1]["background_index"] - 1]
  want = rewards.noisy_reward(
    "walker_walk", noisy.physics, noisy.suite_env.task, compositing.sensor_noise(before)
  )
  assert rn[-1] == want


def test_camera_jitter_crop_translates_the_scene_smoothly():
  plain = _make("cheetah_run", "noiseless", seed=1, episode_length=40)
  # the upstream scene, as the plain env: its agent mask (not blue) is then the cheetah alone
  kw = dict(seed=1, episode_length=40, jitter="crop", scene="upstream")
  jit = _make("cheetah_run", "video_background_camera_jitter", **kw)
  acts = _actions(20, 6, seed=6)
  fp, _, _ = _rollout(plain, acts)
  fj, _, ij = _rollout(jit, acts)
  offs = np.array([(0, 0)] + [i["jitter_offset"] for i in ij])[1:]
  m = jitter.jitter_margin(64)
  assert np.abs(offs).max() <= m
  assert np.abs(np.diff(offs, axis=0)).max() <= 5  # smooth
  assert len({tuple(o) for o in offs}) > 3  # and moving
  checked = 0
  for t in range(1, len(fp)):
    dy, dx = offs[t - 1]
    agent = ~compositing.blue_mask(fp[t], mode="strict")
    ys, xs = np.nonzero(agent)
    ok = (ys - dy >= 0) & (ys - dy < 64) & (xs - dx >= 0) & (xs - dx < 64)
    ys, xs = ys[ok], xs[ok]
    if len(ys) < 30 or (dy, dx) == (0, 0):
      continue
    moved = np.abs(fj[t][ys - dy, xs - dx].astype(int) - fp[t][ys, xs]).max(axis=-1)
    still = np.abs(fj[t][ys, xs].astype(int) - fp[t][ys, xs]).max(axis=-1)
    assert (moved <= 2).mean() > 0.95  # the agent sits where the offset says
    assert (still <= 2).mean() < 0.9  # and not where it was
    checked += 1
  assert checked >= 5
  again = _make("cheetah_run", "video_background_camera_jitter", **kw)
  np.testing.assert_array_equal(_rollout(again, acts)[0], fj)


def _write_videos(folder):
  import imageio.v3 as iio

  colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128]], np.uint8)
  solid = np.broadcast_to(colors[:, None, None, :], (4, 48, 80, 3)).copy()
  iio.imwrite(os.path.join(folder, "a_solid.mp4"), solid, fps=10)
  halves = np.zeros((3, 48, 80, 3), np.uint8)
  halves[:, :, 40:] = 255
  iio.imwrite(os.path.join(folder, "b_halves.mp4"), halves, fps=10)
  luma = colors.astype(float) @ [0.299, 0.587, 0.114]
  return luma


def test_user_video_directory(tmp_path):
  luma = _write_videos(tmp_path)
  (tmp_path / "notes.txt").write_text("not a video")
  v = envs.load_video_dir(str(tmp_path), num_frames=100, height=64, width=64, seed=0)
  assert v.shape == (7, 64, 64) and v.dtype == np.uint8
  solid = [f for f in v if f.std() < 3]
  halves = [f for f in v if f.std() >= 3]
  assert len(solid) == 4 and len(halves) == 3
  np.testing.assert_allclose(sorted(f.mean() for f in solid), sorted(luma), atol=6)
  for f in halves:  # resized 80 -> 64 wide: left half dark, right half bright
    assert f[:, :28].mean() < 10 and f[:, 36:].mean() > 245
  assert len(envs.load_video_dir(str(tmp_path), num_frames=5, height=64, width=64, seed=0)) == 5
  env = _make("reacher_easy", "video_background", video_dir=str(tmp_path), episode_length=4)
  by_mean = lambda frames: frames[np.argsort(frames.mean(axis=(1, 2)), kind="stable")]
  np.testing.assert_array_equal(by_mean(env.background), by_mean(v))  # same frames, seeded order
  v = env.background
  obs = env.reset()
  start = (env.step(np.zeros(2))[3]["background_index"] - 2) % len(v)
  clean = _make("reacher_easy", "noiseless", episode_length=4, scene="release").reset()
  mask = compositing.blue_mask(clean, mode="strict")
  assert mask.mean() > 0.5
  np.testing.assert_array_equal(obs[mask], np.repeat(v[start][mask][:, None], 3, axis=1))


def test_user_video_directory_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    envs.load_video_dir(str(tmp_path / "missing"), num_frames=10, height=64, width=64, seed=0)
  with pytest.raises(FileNotFoundError):
    envs.make("cheetah_run", "video_background", seed=0, video_dir=str(tmp_path / "missing"))
  with pytest.raises(ValueError, match="no video files"):
    envs.load_video_dir(str(tmp_path), num_frames=10, height=64, width=64, seed=0)
  (tmp_path / "broken.mp4").write_bytes(b"not really a video")
  with pytest.warns(UserWarning, match="unreadable"):
    with pytest.raises(ValueError, match="no readable video"):
      envs.load_video_dir(str(tmp_path), num_frames=10, height=64, width=64, seed=0)
