"""The noisy RoboDesk environment (jaxprune.envs.robodesk): seeding, the button -> TV hue -> reward
path (a scripted press), lights that flicker on their own, the noisy sensor's single reward term,
seeded camera shake, and the errors. Small images and no shadows keep it fast."""

import numpy as np
import pytest

from jaxprune import envs
from jaxprune.envs import robodesk

TASK = "robodesk_tv_green_hue"
FAST = dict(image_size=24, shadows=False)


def _make(seed=0, **kw):
  return envs.make(TASK, kw.pop("variant", "noisy"), seed=seed, **{**FAST, **kw})


def _rollout(env, actions):
  obs = [env.reset()]
  out = []
  for a in actions:
    o, r, done, info = env.step(a)
    obs.append(o)
    out.append((r, info))
  return np.stack(obs), out


def _actions(n, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (n, robodesk.ACTION_DIM))


def test_same_seed_same_frames_and_rewards_other_seed_differs():
  acts = _actions(4)
  runs = []
  for seed in (5, 5, 6):
    env = _make(seed)
    runs.append(_rollout(env, acts))
    env.close()
  (obs_a, out_a), (obs_b, out_b), (obs_c, out_c) = runs
  np.testing.assert_array_equal(obs_a, obs_b)
  for (ra, ia), (rb, ib) in zip(out_a, out_b):
    assert ra == rb and ia["clean_reward"] == ib["clean_reward"]
    np.testing.assert_array_equal(ia["camera_jitter"], ib["camera_jitter"])
    np.testing.assert_array_equal(ia["light_brightness"], ib["light_brightness"])
  assert not np.array_equal(obs_a, obs_c)
  assert [r for r, _ in out_a] != [r for r, _ in out_c]
  assert obs_a.shape == (5, 24, 24, 3) and obs_a.dtype == np.uint8


def test_pressing_the_green_button_turns_the_tv_green_and_pays():
  # only the TV on: no sensor noise, so the reading is the button's own position
  env = _make(0, distractors=("tv",), action_repeat=4, episode_length=400)
  env.reset()
  phys = env.physics
  frame0 = env.tv_picture()
  first = None
  # a scripted reach (seed 0 presses at step ~45): above the button, then down onto it
  for _ in range(80):
    _, r, _, info = env.step(robodesk.press_green_action(env))
    first = first or (r, info)
    if info["pressed"] and info["tv_green"] > 0.95:
      break
  r0, info0 = first
  assert not info0["pressed"] and 0.3 < info0["tv_green"] < 0.7  # the video's own green level
  assert info["pressed"], "the scripted reach did not press the button"
  assert env.button_reading()[1] >= 0.9 and info["tv_green"] > 0.95
  # the hue change is on the green channel only: red and blue are the video's
  img = env.tv_image()
  frame = env.tv_picture()
  np.testing.assert_array_equal(img[..., 0], frame[..., 0])
  np.testing.assert_array_equal(img[..., 2], frame[..., 2])
  assert img[..., 1].mean() > frame[..., 1].mean() + 60 and frame0.shape == (60, 120, 3)
  # pressed: +0.25 and a greener TV, per control step
  assert r > r0 + 4 * 0.3
  # the reward by hand from the state, for the last control step (action_repeat 4: 4 terms)
  ee = phys.named.data.site_xpos["end_effector"]
  reach = np.clip(1 - np.linalg.norm(ee - phys.named.data.xpos["green_button"]), 0, 1)
  by_hand = np.clip(0.5 * info["tv_green"] + 0.25 * reach + 0.25, 0, 1)
  assert by_hand == pytest.approx(env._reward()[0], abs=1e-12)
  assert r == info["clean_reward"]
  env.close()


def test_lights_flicker_without_any_action():
  still = np.zeros(robodesk.ACTION_DIM)
  diffs, brightness = {}, {}
  for name, distractors in (("lights", ("env_light",)), ("none", ())):
    env = _make(2, distractors=distractors)
    obs, out = _rollout(env, [still] * 6)
    env.close()
    diffs[name] = np.abs(np.diff(obs.astype(int), axis=0)).mean()
    brightness[name] = np.stack([i["light_brightness"] for _, i in out])
  # with the lights on their own the picture changes far more than the arm's settling does
  assert diffs["lights"] > 3 * diffs["none"] + 0.5, diffs
  assert np.ptp(brightness["lights"], axis=0).max() > 0.05
  assert np.ptp(brightness["none"], axis=0).max() == 0.0


def test_sensor_noise_reaches_the_reward_only_through_the_tv_term():
  acts = _actions(8, seed=3)
  clean_env = _make(4, distractors=("tv",), action_repeat=1, episode_length=8)
  noisy_env = _make(4, distractors=("tv", "button"), action_repeat=1, episode_length=8)
  _, clean = _rollout(clean_env, acts)
  _, noisy = _rollout(noisy_env, acts)
  # zero noise: the reward is the clean reward, exactly
  for r, info in clean:
    assert r == info["clean_reward"] and info["button_noise"] == 0.0
  # the noise leaves the physics alone (separate generators): same arm, same clean reward
  np.testing.assert_array_equal(clean_env.physics.data.qpos, noisy_env.physics.data.qpos)
  for (rc, ic), (rn, i_n) in zip(clean, noisy):
    assert i_n["clean_reward"] == pytest.approx(rc, abs=1e-12)
    # and differs from it by the TV term alone: 0.5 * (noisy - clean green level)
    assert rn - i_n["clean_reward"] == pytest.approx(
      0.5 * (i_n["tv_green"] - i_n["tv_green_clean"]), abs=1e-9
    )
  assert any(abs(i["button_noise"]) > 0 for _, i in noisy)
  assert any(abs(rn - i["clean_reward"]) > 1e-4 for rn, i in noisy), "noise never reached r"
  clean_env.close()
  noisy_env.close()


def test_camera_jitter_is_seeded():
  still = [np.zeros(robodesk.ACTION_DIM)] * 3
  walks = {}
  cases = (("a", 7, ("camera",)), ("b", 7, ("camera",)), ("c", 8, ("camera",)), ("off", 7, ()))
  for key, seed, distractors in cases:
    env = _make(seed, distractors=distractors)
    obs, out = _rollout(env, still)
    env.close()
    walks[key] = (np.stack([i["camera_jitter"] for _, i in out]), obs)
  np.testing.assert_array_equal(walks["a"][0], walks["b"][0])
  np.testing.assert_array_equal(walks["a"][1], walks["b"][1])
  assert not np.allclose(walks["a"][0], walks["c"][0])
  assert np.all(walks["off"][0] == 0) and np.abs(walks["a"][0]).max() > 1e-3
  assert not np.array_equal(walks["a"][1], walks["off"][1])  # the view moved


def test_noiseless_variant_has_no_distractors_and_a_still_tv():
  env = _make(0, variant="noiseless")
  assert env.distractors == () and env.tv_clips.shape[1] == 1
  _, out = _rollout(env, _actions(2))
  for r, info in out:
    assert r == info["clean_reward"] and info["tv_green"] == pytest.approx(128 / 255)
  env.close()
  assert _make(0).distractors == robodesk.DISTRACTORS


@pytest.mark.parametrize(
  "kw,err,msg",
  [
    (dict(task="robodesk_push_red"), ValueError, "unknown task"),
    (dict(variant="video_background"), ValueError, "unknown RoboDesk variant"),
    (dict(image_size=8), ValueError, "image_size must be an int in"),
    (dict(image_size=96.0), ValueError, "image_size must be an int in"),
    (dict(distractors=("tv", "smoke")), ValueError, "distractors must be a subset"),
    (dict(episode_length=5, action_repeat=2), ValueError, "multiple of"),
    (dict(video_dir="/nonexistent/videos"), FileNotFoundError, "nonexistent"),
  ],
)
def test_bad_arguments_raise_clear_errors(kw, err, msg):
  task = kw.pop("task", TASK)
  variant = kw.pop("variant", "noisy")
  with pytest.raises(err, match=msg):
    envs.make(task, variant, seed=0, **{**FAST, **kw})


def test_actions_are_checked():
  env = _make(0, distractors=())
  with pytest.raises(RuntimeError, match="reset"):
    env.step(np.zeros(5))
  env.reset()
  bad_actions = ((np.zeros(4), "shape"), (np.full(5, np.nan), "finite"), (np.full(5, 2.0), "clip"))
  for bad, msg in bad_actions:
    with pytest.raises(ValueError, match=msg):
      env.step(bad)
  env.close()


def test_reference_script(tmp_path):
  import importlib.util
  import json
  import os

  path = os.path.join(os.path.dirname(__file__), "..", "scripts", "robodesk_reference.py")
  spec = importlib.util.spec_from_file_location("robodesk_reference", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  out = str(tmp_path / "ref.json")
  mod.main(["--episodes", "2", "--episode_length", "6", "--shadows", "false", "--out", out])
  res = json.load(open(out))
  for name in ("random", "still", "scripted_press"):
    rets = res[name]["returns"]
    assert len(rets) == 2 and all(0 < r <= 6 for r in rets)  # 3 agent steps of 2 control steps
    assert res[name]["mean"] == pytest.approx(np.mean(rets))
  with pytest.raises(SystemExit):
    mod.main(["--variant", "video_background", "--out", out])
