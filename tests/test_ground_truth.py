"""Tests of jaxprune.envs.ground_truth: episodes with the state and noise the model never sees.

Kept small for a 2-core CPU: 32 x 32 images, episodes of 8 agent steps, 100-frame clips.
"""

import functools
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("dm_control")

from jaxprune import envs  # noqa: E402
from jaxprune.envs import compositing, ground_truth  # noqa: E402

TASK = "cheetah_run"  # strict mask: the release's grey floor stays, the sky is replaced
KW = dict(seed=3, image_size=32, action_repeat=2, episode_length=16, num_background_frames=100)
E, T = 2, 9  # episodes, frames per episode (reset + 16 / 2 agent steps)


@functools.cache
def _episodes(variant):
  """Recorded episodes of ``TASK`` in ``variant`` (shared by the tests; do not modify them)."""
  return ground_truth.collect(TASK, variant, num_episodes=E, **KW)


def _env(variant):
  """A fresh env made with the arguments ``collect`` used."""
  return envs.make(TASK, variant, **KW)


def _replay(variant, check):
  """Re-run the recorded episodes by hand with their actions; ``check(env, ep, e, t, obs, info)``
  after the reset (``info`` None) and after every step."""
  ep, env = _episodes(variant), _env(variant)
  for e in range(E):
    check(env, ep, e, 0, env.reset(), None)
    for t in range(1, T):
      obs, reward, done, info = env.step(ep["action"][e, t])
      assert reward == pytest.approx(ep["reward"][e, t], rel=1e-6, abs=1e-6)
      assert done == (t == T - 1)
      check(env, ep, e, t, obs, info)
  env.close()


def _patch(gray_HxW):
  """The noisy sensor's patch: H/4 x W/4 at (H/8, W/8)."""
  h, w = gray_HxW.shape
  return gray_HxW[h // 8 : h // 8 + h // 4, w // 8 : w // 8 + w // 4]


# ---------------------------------------------------------------------------------------------


def test_shapes_actions_and_the_noiseless_fields():
  ep = _episodes("noiseless")
  env = _env("noiseless")
  nq, nv, A = env.physics.model.nq, env.physics.model.nv, env.action_dim
  env.close()
  want = {
    "image": ((E, T, 32, 32, 3), np.uint8),
    "action": ((E, T, A), np.float32),
    "reward": ((E, T), np.float32),
    "clean_reward": ((E, T), np.float32),
    "qpos": ((E, T, nq), np.float32),
    "qvel": ((E, T, nv), np.float32),
    "background_index": ((E, T), np.int32),
    "background_intensity": ((E, T), np.float32),
    "sensor_noise": ((E, T), np.float32),
    "jitter_offset": ((E, T, 2), np.float32),
  }
  assert set(ep) == set(want) == set(ground_truth.KEYS)
  for key, (shape, dtype) in want.items():
    assert ep[key].shape == shape and ep[key].dtype == dtype, key
  np.testing.assert_array_equal(ep["action"][:, 0], 0)
  np.testing.assert_array_equal(ep["reward"][:, 0], 0)
  assert np.abs(ep["action"]).max() <= 1 and ep["action"][:, 1:].std() > 0.3
  np.testing.assert_array_equal(ep["reward"], ep["clean_reward"])
  np.testing.assert_array_equal(ep["background_index"], -1)
  assert np.isnan(ep["background_intensity"]).all() and np.isnan(ep["sensor_noise"]).all()
  np.testing.assert_array_equal(ep["jitter_offset"], 0)
  assert not np.array_equal(ep["qpos"][0], ep["qpos"][1])  # episodes differ
  assert not np.array_equal(ep["action"][0], ep["action"][1])
  again = ground_truth.collect(TASK, "noiseless", num_episodes=1, **KW)
  for key in ground_truth.KEYS:  # same seed, same first episode
    np.testing.assert_array_equal(again[key][0], ep[key][0])


def test_policy_is_called_with_its_state_and_its_actions_recorded():
  calls = []

  def policy(obs, t, state):
    assert obs.shape == (32, 32, 3) and obs.dtype == np.uint8
    calls.append((t, state))
    return np.full(6, 0.1 * (t % 3) - 0.1), (state or 0) + 1

  ep = ground_truth.collect(TASK, "noiseless", num_episodes=2, policy=policy, **KW)
  # t counts agent steps; a fresh state (None) at the start of each episode
  assert calls == 2 * ([(0, None)] + [(t, t) for t in range(1, T - 1)])
  for t in range(1, T):
    np.testing.assert_array_equal(ep["action"][:, t], np.float32(0.1 * ((t - 1) % 3) - 0.1))
  with pytest.raises(ValueError, match="outside"):
    ground_truth.collect(
      TASK, "noiseless", num_episodes=1, policy=lambda o, t, s: (np.full(6, 2.0), s), **KW
    )
  with pytest.raises(ValueError, match="shape"):
    ground_truth.collect(
      TASK, "noiseless", num_episodes=1, policy=lambda o, t, s: (np.zeros(2), s), **KW
    )
  with pytest.raises(ValueError, match="num_episodes"):
    ground_truth.collect(TASK, "noiseless", num_episodes=0, **KW)
  with pytest.raises(ValueError, match="policy"):
    ground_truth.collect(TASK, "noiseless", num_episodes=1, policy="random", **KW)
  with pytest.raises(ValueError, match="unknown variant"):
    ground_truth.collect(TASK, "video", num_episodes=1, **KW)


@pytest.mark.parametrize(
  "variant", ["video_background_noisy_sensor", "video_background_camera_jitter"]
)
def test_state_images_and_noise_replay_exactly(variant):
  def check(env, ep, e, t, obs, info):
    np.testing.assert_array_equal(ep["image"][e, t], obs)
    np.testing.assert_array_equal(ep["qpos"][e, t], env.physics.data.qpos.astype(np.float32))
    np.testing.assert_array_equal(ep["qvel"][e, t], env.physics.data.qvel.astype(np.float32))
    assert ep["background_index"][e, t] == env.background_index
    np.testing.assert_array_equal(ep["jitter_offset"][e, t], np.float32(env.jitter_offset))
    if info is not None:
      assert env.background_index == info["background_index"]
      assert env.jitter_offset == info["jitter_offset"]
      assert ep["clean_reward"][e, t] == np.float32(info["clean_reward"])

  _replay(variant, check)
  ep = _episodes(variant)
  assert np.abs(np.diff(ep["qpos"], axis=1)).mean() > 1e-3  # the physics moves


def test_background_intensity_is_the_patch_mean_of_the_background_shown():
  shown = []

  def check(env, ep, e, t, obs, info):
    raw = env.physics.render(32, 32, camera_id=envs.CAMERA_ID)
    mask = compositing.blue_mask(raw, mode=envs.MASK_MODES[TASK])
    assert 0.3 < mask.mean() < 0.95  # the sky is replaced, the cheetah and floor stay
    index = ep["background_index"][e, t]
    bg = env.background[index]
    np.testing.assert_array_equal(ep["image"][e, t], compositing.composite(raw, bg, mask))
    np.testing.assert_array_equal(ep["image"][e, t][mask], np.repeat(bg[mask][:, None], 3, 1))
    got = ep["background_intensity"][e, t]
    assert got == pytest.approx(_patch(bg).mean() / 255, rel=1e-6)
    assert got == pytest.approx(compositing.sensor_noise(bg) + 0.5, rel=1e-6)
    shown.append(index)

  _replay("video_background", check)
  ep = _episodes("video_background")
  assert _patch(np.zeros((32, 32))).shape == (8, 8)
  assert len(set(shown)) == E * T  # one clip frame per agent step (2 physics steps), no repeats
  np.testing.assert_array_equal(np.diff(ep["background_index"], axis=1) % 100, 2)
  assert ep["background_intensity"].std() > 0.005
  assert ((ep["background_intensity"] >= 0) & (ep["background_intensity"] <= 1)).all()
  np.testing.assert_array_equal(ep["reward"], ep["clean_reward"])  # no noisy sensor here
  assert np.isnan(ep["sensor_noise"]).all()


def test_sensor_noise_is_the_mean_over_the_frames_before_each_physics_step():
  ep = _episodes("video_background_noisy_sensor")
  env = _env("video_background_noisy_sensor")
  clip, R = env.background, KW["action_repeat"]
  env.close()
  assert np.isnan(ep["sensor_noise"][:, 0]).all()
  noise = ep["sensor_noise"][:, 1:]
  index = ep["background_index"][:, 1:]
  want = np.mean(
    [
      [[compositing.sensor_noise(clip[(i - k) % len(clip)]) for k in range(1, R + 1)] for i in row]
      for row in index
    ],
    axis=-1,
  )
  np.testing.assert_allclose(noise, want, rtol=1e-6, atol=1e-7)
  assert np.abs(noise).max() > 0.01
  # the reward read the noise; the clean reward did not
  differs = ep["reward"][:, 1:] != ep["clean_reward"][:, 1:]
  assert differs.any() and not differs[noise == 0].any()
  video = _episodes("video_background")
  np.testing.assert_array_equal(ep["clean_reward"], video["clean_reward"])  # same physics
  np.testing.assert_array_equal(ep["image"], video["image"])


def test_jitter_offset_moves_only_with_camera_jitter():
  ep = _episodes("video_background_camera_jitter")
  offs = ep["jitter_offset"]
  assert (np.abs(offs) > 0).all(axis=-1).mean() > 0.9
  assert len({tuple(o) for o in offs.reshape(-1, 2)}) == E * T  # varying every frame
  assert np.abs(np.diff(offs, axis=1)).max() < 4  # a smooth walk: pixels per agent step
  np.testing.assert_array_equal(_episodes("video_background")["jitter_offset"], 0)
  assert np.isnan(ep["sensor_noise"]).all()


def test_save_load_round_trip_and_errors(tmp_path):
  ep = _episodes("video_background_noisy_sensor")
  path = str(tmp_path / "gt.npz")
  ground_truth.save(path, ep)
  back = ground_truth.load(path)
  assert set(back) == set(ep)
  for key in ep:
    np.testing.assert_array_equal(back[key], ep[key])
    assert back[key].dtype == ep[key].dtype
  assert os.listdir(tmp_path) == ["gt.npz"]  # atomic: no temporary file left

  partial = {k: v for k, v in ep.items() if k != "qvel"}
  np.savez(str(tmp_path / "partial.npz"), **partial)
  with pytest.raises(ValueError, match=r"partial\.npz.*missing key 'qvel'"):
    ground_truth.load(str(tmp_path / "partial.npz"))
  with pytest.raises(ValueError, match="missing key 'qvel'"):
    ground_truth.save(str(tmp_path / "never.npz"), partial)
  assert not (tmp_path / "never.npz").exists()

  bad = dict(ep, qpos=ep["qpos"][:, :-1])  # one frame short
  np.savez(str(tmp_path / "bad.npz"), **bad)
  with pytest.raises(ValueError, match=r"bad\.npz.*'qpos' has shape"):
    ground_truth.load(str(tmp_path / "bad.npz"))
  with pytest.raises(FileNotFoundError, match="missing.npz"):
    ground_truth.load(str(tmp_path / "missing.npz"))


def test_targets_for_each_variant():
  want = {
    "noiseless": (),
    "video_background": ("background_intensity",),
    # not sensor_noise, background_intensity - 0.5: the reward's noise is its own quantity
    "video_background_noisy_sensor": ("background_intensity", "reward_noise"),
    "video_background_camera_jitter": ("background_intensity", "jitter_offset"),
  }
  assert set(want) == set(envs.VARIANTS)
  for variant, noise in want.items():
    assert ground_truth.targets_for(variant) == ("qpos", "qvel") + noise
  assert set(ground_truth.TARGETS) == {
    "qpos",
    "qvel",
    "background_intensity",
    "sensor_noise",
    "reward_noise",
    "jitter_offset",
  }
  assert all(isinstance(d, str) and d for d in ground_truth.TARGETS.values())
  with pytest.raises(ValueError, match="unknown variant"):
    ground_truth.targets_for("video")
