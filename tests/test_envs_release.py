"""Tests of the release's scene (grey / blue floors) and camera jitter (sub-pixel shift walk).

Issue 11, points 2 and 3. Renders are 64 x 64 and few (about 40 ms each on this CPU).
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import xml.etree.ElementTree as ET  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("dm_control")

from dm_control import suite  # noqa: E402
from dm_control.suite import common  # noqa: E402

from jaxprune import envs  # noqa: E402
from jaxprune.envs import compositing, jitter, scene  # noqa: E402

FRAMES = 16  # background clip length (short: synthesis is not what is tested here)
FLOORS = {"cheetah_run": "ground", "walker_walk": "floor", "reacher_easy": "ground"}
WALLS = ("wall_x", "wall_y", "wall_neg_x", "wall_neg_y")  # reacher's arena (decoration)


def _attrs(xml, tag, name):
  (el,) = [e for e in ET.fromstring(xml).iter(tag) if e.get("name") == name]
  return el.attrib


# ---------------------------------------------------------------------------------------------
# scene


def test_release_assets_values_and_input_untouched():
  before = dict(common.ASSETS)
  mat, sky = "./common/materials.xml", "./common/skybox.xml"
  grey = scene.release_assets("walker", common.ASSETS)
  blue = scene.release_assets("reacher", common.ASSETS)
  assert common.ASSETS == before  # the suite's shared dict is not modified
  assert _attrs(common.ASSETS[mat], "texture", "grid")["rgb1"] == ".1 .2 .3"  # upstream
  assert _attrs(common.ASSETS[sky], "texture", "skybox")["markrgb"] == "1 1 1"
  want_grey = dict(rgb1=".1 .1 .1", rgb2=".2 .2 .2", markrgb=".1 .1 .1", mark="edge")
  want_blue = dict(rgb1=".1 .1 .4", rgb2=".2 .2 .8", markrgb=".1 .1 .4", mark="edge")
  for assets, want, decoration in (
    (grey, want_grey, ".3 .5 .7 1"),
    (blue, want_blue, ".7 .5 .3 1"),
  ):
    grid = _attrs(assets[mat], "texture", "grid")
    assert {k: grid[k] for k in want} == want
    assert (grid["width"], grid["height"], grid["builtin"]) == ("300", "300", "checker")
    assert _attrs(assets[mat], "material", "decoration")["rgba"] == decoration
    assert _attrs(assets[mat], "material", "grid")["texrepeat"] == "1 1"  # the rest as upstream
    assert _attrs(assets[mat], "material", "self")["rgba"] == ".7 .5 .3 1"
    assert _attrs(assets[sky], "texture", "skybox")["markrgb"] == "0 0 0"
    assert _attrs(assets[sky], "texture", "skybox")["rgb1"] == ".4 .6 .8"
  assert scene.release_assets("cheetah", common.ASSETS) == grey
  with pytest.raises(ValueError, match="domain"):
    scene.release_assets("hopper", common.ASSETS)
  with pytest.raises(ValueError, match="scene"):
    scene.model_and_assets("cheetah", scene="dbc")
  # geometry as upstream (the release's cheetah ground is not narrower than upstream's)
  xml, _ = scene.model_and_assets("cheetah", scene="release")
  assert _attrs(xml, "geom", "ground")["size"] == "100 .8 .5"


def _render(task, scene_name, seed=0):
  domain, name = task.split("_")
  env = suite.load(domain, name, task_kwargs={"random": seed})
  scene.apply_scene(env.physics, domain, scene=scene_name)
  env.reset()
  frame = env.physics.render(64, 64, camera_id=envs.CAMERA_ID)
  geom_ids = env.physics.render(64, 64, camera_id=envs.CAMERA_ID, segmentation=True)[..., 0]
  model = env.physics.model
  floor = geom_ids == model.name2id(FLOORS[task], "geom")
  walls = np.isin(
    geom_ids, [model.name2id(w, "geom") for w in WALLS] if domain == "reacher" else []
  )
  return frame, floor, walls, geom_ids == -1, env


@pytest.mark.parametrize("task", envs.TASKS)
def test_release_scene_masked_fractions(task):
  """The fraction of pixels the task's mask gives to the video, release scene vs upstream.

  Measured (seed 0): cheetah 0.834 vs 0.955 (floor: 10% vs 99% replaced), walker 0.899 vs 0.924
  (argmax; 0.588 with the strict rule, which keeps the whole grey floor), reacher 0.906 vs 0.965
  (floor replaced in both; walls kept vs replaced).
  """
  rel, floor, walls, sky, _ = _render(task, "release")
  up, floor_up, _, _, _ = _render(task, "upstream")
  np.testing.assert_array_equal(floor, floor_up)  # same geometry, same camera
  mode = envs.MASK_MODES[task]
  mask_rel = compositing.blue_mask(rel, mode=mode)
  mask_up = compositing.blue_mask(up, mode=mode)
  strict_rel = compositing.blue_mask(rel, mode="strict")
  spread_rel = np.ptp(rel.astype(int), axis=-1)  # max - min channel: 0 for grey
  spread_up = np.ptp(up.astype(int), axis=-1)
  assert floor.mean() > 0.1
  assert mask_up[floor].mean() > 0.98  # upstream's blue-grey floor goes to the video
  if task == "cheetah_run":
    assert mask_rel.mean() < mask_up.mean() - 0.08
    assert mask_rel[floor].mean() < 0.2  # the grey floor is kept ...
    # ... and grey (the rest: its far edge, blended with the sky)
    assert (spread_rel[floor] <= 2).mean() > 0.75
    assert (spread_up[floor] <= 2).mean() < 0.05
  if task == "walker_walk":
    assert (spread_rel[floor] == 0).mean() > 0.9  # exactly grey: R = G = B
    assert (spread_up[floor] <= 2).mean() < 0.05
    assert strict_rel[floor].mean() < 0.1  # kept under the strict rule (0% at seed 0)
    # walker's argmax rule (ties count as blue) replaces it, as in the release (same render,
    # same rule); make(mask="strict") keeps it
    assert mask_rel[floor].mean() > 0.9
    assert strict_rel.mean() < mask_up.mean() - 0.25
  if task == "reacher_easy":
    assert mask_rel[floor].mean() > 0.99  # the blue floor is replaced in both scenes
    assert walls.mean() > 0.03
    assert not mask_rel[walls].any()  # the orange walls are kept
    assert mask_up[walls].mean() > 0.99  # upstream's blue walls are not
    assert mask_rel.mean() < mask_up.mean() - 0.03
  else:
    assert mask_rel[sky].mean() > 0.98 and mask_up[sky].mean() > 0.98  # the sky goes


def test_scene_defaults_flags_and_same_physics():
  kw = dict(seed=3, episode_length=6, num_background_frames=FRAMES)
  assert envs.DEFAULT_SCENES == {
    "noiseless": "upstream",
    "video_background": "release",
    "video_background_noisy_sensor": "release",
    "video_background_camera_jitter": "release",
  }
  plain = envs.make("reacher_easy", "noiseless", **kw)
  video = envs.make("reacher_easy", "video_background", **kw)
  released = envs.make("reacher_easy", "noiseless", scene="release", **kw)
  upstream = envs.make("reacher_easy", "video_background", scene="upstream", **kw)
  assert (plain.scene, video.scene, released.scene, upstream.scene) == (
    "upstream",
    "release",
    "release",
    "upstream",
  )
  rgba = lambda env: env.physics.named.model.mat_rgba["decoration"].tolist()
  np.testing.assert_allclose(rgba(video), [0.7, 0.5, 0.3, 1])
  np.testing.assert_allclose(rgba(released), [0.7, 0.5, 0.3, 1])
  np.testing.assert_allclose(rgba(plain), [0.3, 0.5, 0.7, 1])
  np.testing.assert_allclose(rgba(upstream), [0.3, 0.5, 0.7, 1])
  want, *_ = _render("reacher_easy", "release", seed=3)
  np.testing.assert_array_equal(released.reset(), want)
  plain.reset()
  for a in np.random.default_rng(0).uniform(-1, 1, (3, 2)):
    r1 = plain.step(a)[1]
    r2 = released.step(a)[1]
    assert r1 == r2
    np.testing.assert_array_equal(plain.physics.get_state(), released.physics.get_state())
  assert envs.make("walker_walk", "video_background", mask="strict", **kw).mask_mode == "strict"
  assert envs.make("walker_walk", "video_background", **kw).mask_mode == "argmax"


# ---------------------------------------------------------------------------------------------
# shift jitter


def _bilinear_loop(img, sy, sx):
  """Reference: out[y, x] = img(y - sy, x - sx), bilinear, zero outside (a plain Python loop)."""
  h, w = img.shape[:2]
  out = np.zeros(img.shape, np.float64)
  for y in range(h):
    for x in range(w):
      fy, fx = y - sy, x - sx
      y0, x0 = int(np.floor(fy)), int(np.floor(fx))
      for yy, wy in ((y0, 1 - (fy - y0)), (y0 + 1, fy - y0)):
        for xx, wx in ((x0, 1 - (fx - x0)), (x0 + 1, fx - x0)):
          if 0 <= yy < h and 0 <= xx < w:
            out[y, x] += wy * wx * img[yy, xx]
  return np.floor(out + 0.5).astype(np.uint8)


def test_translate_by_hand_and_against_a_loop():
  img = np.array([[100, 200], [0, 40]], np.uint8)
  # out[y, x] = img(y - 0.5, x - 0.25): e.g. out[1, 1] = .5 (.25 100 + .75 200) + .5 (.75 40)
  want = np.array([[38, 88], [38, 103]], np.uint8)  # 37.5, 87.5, 37.5, 102.5 rounded half up
  np.testing.assert_array_equal(jitter.translate(img, (0.5, 0.25)), want)
  rgb = np.stack([img, 255 - img, img // 2], axis=-1)
  out = jitter.translate(rgb, (0.5, 0.25))
  for c in range(3):
    np.testing.assert_array_equal(out[..., c], jitter.translate(rgb[..., c], (0.5, 0.25)))
  rng = np.random.default_rng(0)
  frame = rng.integers(0, 256, (9, 11, 3)).astype(np.uint8)
  for shift in [(0.3, -1.7), (2.5, 0.25), (-3.6, 4.2), (0.0, 0.0), (-0.999, 0.001)]:
    np.testing.assert_array_equal(jitter.translate(frame, shift), _bilinear_loop(frame, *shift))
  moved = jitter.translate(frame, (2, -3))  # whole pixels: a plain move, black borders
  np.testing.assert_array_equal(moved[2:, :-3], frame[:-2, 3:])
  assert not moved[:2].any() and not moved[:, -3:].any()
  assert not jitter.translate(frame, (9.5, 0)).any()
  with pytest.raises(ValueError, match="finite"):
    jitter.translate(frame, (np.nan, 0))


def test_shift_walk_step_by_hand():
  inside = jitter.ShiftState(np.array([0.03, -0.04]), np.array([0.001, 0.002]))  # |p| = 0.05
  eps = np.array([1.0, -2.0])
  s = jitter.shift_step(inside, eps)
  v = (np.array([0.001, 0.002]) + 0.5 * 0.005 * eps) * np.sqrt(0.9)
  np.testing.assert_allclose(s.vel_2, v, rtol=1e-15)
  np.testing.assert_allclose(s.pos_2, [0.03, -0.04] + 0.5 * v, rtol=1e-15)
  outside = jitter.ShiftState(np.array([0.06, 0.08]), np.array([0.001, 0.0]))  # |p| = 0.1
  s = jitter.shift_step(outside, eps)  # pulled back; the noise is not used
  v = (np.array([0.001, 0.0]) - 0.5 * 0.1 * np.array([0.06, 0.08])) * np.sqrt(0.9)
  np.testing.assert_allclose(s.vel_2, v, rtol=1e-15)
  np.testing.assert_allclose(s.pos_2, [0.06, 0.08] + 0.5 * v, rtol=1e-15)
  assert jitter.shift_offset(s, image_size=64) == pytest.approx(tuple(120 * s.pos_2))
  assert jitter.shift_offset(s, image_size=32) == pytest.approx(tuple(60 * s.pos_2))


def test_shift_walk_statistics():
  """The release's walk: |offset| ~6.5 px on average, pulled back near 9 px (no hard bound)."""
  rng = np.random.default_rng(0)
  starts = np.array([jitter.shift_init(rng).pos_2 for _ in range(2000)]) * 120
  np.testing.assert_allclose(starts.std(axis=0), 0.075 / np.sqrt(2) * 120, rtol=0.08)
  offsets, moves = [], []
  for _ in range(30):
    s = jitter.shift_init(rng)
    prev = np.array(jitter.shift_offset(s, image_size=64))
    for _ in range(1000):
      s = jitter.shift_step(s, rng.normal(size=2))
      o = np.array(jitter.shift_offset(s, image_size=64))
      offsets.append(o)
      moves.append(np.linalg.norm(o - prev))
      prev = o
  r = np.linalg.norm(offsets, axis=1)
  assert 5.5 < r.mean() < 7.5
  assert 8.5 < np.percentile(r, 95) < 11.5
  assert (r > 12).mean() < 0.01
  assert 0.3 < np.mean(moves) < 0.8 and np.percentile(moves, 99) < 2
  assert abs(np.mean(offsets, axis=0)).max() < 1.5  # centred


def test_shift_jitter_env_seeded_and_equal_to_the_warped_composite():
  kw = dict(episode_length=12, num_background_frames=FRAMES)
  acts = np.random.default_rng(1).uniform(-1, 1, (6, 6))

  def rollout(seed):
    env = envs.make("cheetah_run", "video_background_camera_jitter", seed=seed, **kw)
    assert env.jitter == "shift" and env.render_size == 64
    frames, offsets = [env.reset()], [env._jitter_offset()]
    for a in acts:
      obs, _, _, info = env.step(a)
      frames.append(obs)
      offsets.append(info["jitter_offset"])
    return env, np.stack(frames), np.array(offsets)

  env, frames, offsets = rollout(7)
  _, frames2, offsets2 = rollout(7)
  _, _, offsets3 = rollout(8)
  np.testing.assert_array_equal(frames, frames2)
  np.testing.assert_array_equal(offsets, offsets2)
  assert np.abs(offsets - offsets3).min() > 1e-6  # another seed, another walk
  # smooth (< 3 px per physics step; this seed starts 20 px out, 3 sigma, and is pulled back)
  assert np.abs(offsets).max() < 25 and np.linalg.norm(np.diff(offsets, axis=0), axis=1).max() < 6
  # the observation is the composited render (release scene, strict mask), shifted
  clean = envs.make("cheetah_run", "noiseless", seed=7, scene="release", **kw)
  cf = [clean.reset()] + [clean.step(a)[0] for a in acts]
  start = env._start
  for t in (0, len(acts)):
    bg = env.background[(start + 2 * t) % FRAMES]
    comp = compositing.composite(cf[t], bg, compositing.blue_mask(cf[t], mode="strict"))
    dy, dx = offsets[t]
    np.testing.assert_array_equal(frames[t], jitter.translate(comp, (-dy, -dx)))
    if abs(dx) >= 1:  # the uncovered border is black
      cols = frames[t][:, -int(abs(dx)) :] if dx > 0 else frames[t][:, : int(abs(dx))]
      assert not cols.any()
  crop = envs.make("cheetah_run", "video_background_camera_jitter", seed=7, jitter="crop", **kw)
  assert crop.jitter == "crop" and crop.render_size == 96
  assert envs.make("cheetah_run", "video_background", seed=7, **kw).jitter is None
