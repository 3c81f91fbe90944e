"""Noisy RoboDesk as the release's agent sees it (jaxprune.envs.robodesk_scene / robodesk_tv): the
three-desk model, the view at reset (values measured beside the authors' fork), the TV picture
(colour, two clips, scrolling) and its frame processing against OpenCV."""

import cv2
import numpy as np
import pytest

from jaxprune import envs
from jaxprune.envs import backgrounds, robodesk, robodesk_scene, robodesk_tv

TASK = "robodesk_tv_green_hue"


def test_three_desk_model():
  xml, assets = robodesk_scene.scene_xml()
  from dm_control import mujoco

  phys = mujoco.Physics.from_xml_string(xml, assets=assets)
  m = phys.model
  # the arm (9), the left desk's drawer, door, 3 buttons, 3 lights, 3 free objects (7 each),
  # then 8 joints per copied desk
  assert m.nq == 9 + 8 + 21 + 16 and m.njnt == 9 + 8 + 3 + 16
  assert m.neq == 3  # only the left desk's buttons drive lights
  for name in ("robotdesk_left", "desk_middle", "desk_right", "tv"):
    m.name2id(name, "body")
  np.testing.assert_allclose(phys.named.model.body_pos["desk_middle"], [1.3, 0, 0])
  np.testing.assert_allclose(phys.named.model.body_pos["desk_right"], [2.6, 0, 0])
  np.testing.assert_allclose(phys.named.model.body_pos["tv"], [1.3, 1.825, 1.6])
  np.testing.assert_allclose(phys.named.model.geom_size["tv_screen"], [2.3, 1e-6, 1.34])
  tex = m.name2id("tv_texture", "texture")
  assert (m.tex_width[tex], m.tex_height[tex]) == (120, 720)  # a cube: 6 faces of 120 x 120
  # each desk has its three light overlays, named after it
  for suffix in ("", "_middle", "_right"):
    m.name2id(f"green_light_overlay{suffix}", "geom")


def test_crop_box_and_render_size_are_the_releases():
  assert robodesk_scene.render_size(96) == 180 and robodesk_scene.render_size(64) == 120
  assert robodesk_scene.render_size(512) == 480
  assert robodesk_scene.crop_box(180) == (0, 39, 180, 180)  # 25.892 * 1.5 = 38.84 -> 39
  assert robodesk_scene.crop_box(120) == (0, 26, 120, 120)


def test_view_at_reset_matches_the_release():
  # seed 0, every distractor on, 96 px: scripts/compare_robodesk_fork.py measured the fork's
  # RoboDeskWithTV at TV share 0.5136 and the green button at (11.39, 75.41) px, ours equal
  env = envs.make(TASK, "noisy", seed=0, shadows=False)
  env.reset()
  view = env.view_geometry()
  env.close()
  assert view["tv_share"] == pytest.approx(0.5136, abs=0.002)
  np.testing.assert_allclose(view["button_px"], (11.39, 75.41), atol=1.0)
  # the old single-desk view had the TV at 3.5% and the button at (15.4, 65.6): far off
  assert view["tv_share"] > 0.45


def test_geom_in_image_by_hand():
  seg = np.full((12, 12, 2), -1, np.int32)
  seg[..., 1] = 5  # geoms
  seg[4:6, 0:3, 0] = 7  # 2 x 3 pixels of geom 7, below the crop's top row (round(25.892/10))
  share, (x, y) = robodesk_scene.geom_in_image(seg, 7, image_size=12)
  x0, y0, x1, y1 = robodesk_scene.crop_box(12)
  assert (x0, y0, x1, y1) == (0, 3, 12, 12)
  assert share == pytest.approx(6 / (12 * 9))
  assert x == pytest.approx((1 + 0.5) * 12 / 12 - 0.5)  # column centre 1
  assert y == pytest.approx((1.5 + 0.5) * 12 / 9 - 0.5)  # rows 4, 5 -> 1, 2 in the crop
  assert robodesk_scene.geom_in_image(seg, 8, 12)[0] == 0.0


def test_tv_picture_is_colour_two_clips_and_scrolls():
  env = envs.make(TASK, "noisy", seed=3, image_size=24, shadows=False, num_tv_frames=50,
                  action_repeat=1, episode_length=10)  # fmt: skip
  clips = env.tv_clips
  assert clips.shape == (2, 50, 60, 60, 3) and not np.array_equal(clips[0], clips[1])
  env.reset()
  still = np.zeros(robodesk.ACTION_DIM)
  for t in range(4):
    pic = env.tv_picture()
    assert pic.shape == (60, 120, 3) and pic.dtype == np.uint8
    # colour: the channels differ
    assert np.abs(pic[..., 0].astype(int) - pic[..., 2]).mean() > 10
    # by hand: each clip's frame advances one per control step, side by side, rolled t columns
    frames = [clips[c][(env._tv_start[c] + t) % 50] for c in range(2)]
    both = np.concatenate(frames, axis=1)
    np.testing.assert_array_equal(pic[:, t:], both[:, : 120 - t])
    np.testing.assert_array_equal(pic[:, :t], both[:, 120 - t :])
    assert env.tv_frames() == tuple((s + t) % 50 for s in env._tv_start)
    # the screen's texture: the hue-blended picture, doubled in height
    np.testing.assert_array_equal(env._tv_texture, np.repeat(env.tv_image(), 2, axis=0))
    env.step(still)
  env.close()


def test_tv_start_frames_follow_the_releases_seed_tree():
  env = envs.make(TASK, "noisy", seed=11, image_size=24, shadows=False, num_tv_frames=40)
  env.reset()
  tv_seed = np.random.SeedSequence(11).spawn(5)[4]
  want = [np.random.default_rng(c.spawn(2)[1]).integers(0, 40) for c in tv_seed.spawn(2)]
  assert list(env._tv_start) == want
  env.close()


def test_frame_processing_matches_opencv():
  rng = np.random.default_rng(0)
  frame = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
  for h, w in ((60, 60), (20, 31), (80, 100)):
    np.testing.assert_array_equal(
      robodesk_tv.resize_nearest(frame, h, w),
      cv2.resize(frame, (w, h), interpolation=cv2.INTER_NEAREST),
    )
  f = 131 * (20 + 127) / (127 * (131 - 20))
  np.testing.assert_array_equal(
    robodesk_tv.boost_contrast(frame), cv2.addWeighted(frame, f, frame, 0, 127 * (1 - f))
  )
  kernel = np.array([[0, -0.5, 0], [-0.5, 3.0, -0.5], [0, -0.5, 0]])
  np.testing.assert_array_equal(
    robodesk_tv.sharpen(frame), cv2.filter2D(src=frame, ddepth=-1, kernel=kernel)
  )
  # by hand: mid-gray stays, the gain is 1.366 around it, and a flat patch is not sharpened
  assert robodesk_tv.boost_contrast(np.array([[[128, 0, 255]]], np.uint8)).tolist() == [
    [[128, 0, 255]]
  ]
  assert robodesk_tv.boost_contrast(np.array([[[100]]], np.uint8))[0, 0, 0] == round(
    100 * f + 127 * (1 - f)
  )
  # a clip at once: as frame by frame
  clip = rng.integers(0, 256, (4, 37, 53, 3), dtype=np.uint8)
  np.testing.assert_array_equal(
    robodesk_tv.process_frames(clip), np.stack([robodesk_tv.process_frames(f) for f in clip])
  )
  flat = np.full((5, 5, 3), 77, np.uint8)
  np.testing.assert_array_equal(robodesk_tv.sharpen(flat), flat)


def test_video_dir_clips_loop_over_reshuffled_files(monkeypatch):
  # three fake files of 3, 4 and 5 frames, each frame a solid level naming (file, frame)
  lengths = {"/v/a.mp4": 3, "/v/b.mp4": 4, "/v/c.mp4": 5}

  def read(path):
    for i in range(lengths[path]):
      yield np.full((8, 8, 3), 100 + 10 * sorted(lengths).index(path) + i, np.uint8)

  monkeypatch.setattr(backgrounds, "list_videos", lambda d: sorted(lengths))
  loaders = [np.random.default_rng(5), np.random.default_rng(6)]
  clips = robodesk_tv.video_dir_clips("/v", loaders, 20, read=read)
  assert clips.shape == (2, 20, 60, 60, 3)
  # by hand: shuffle the sorted files, read them all, shuffle again, until 20 frames
  for seed, clip in zip((5, 6), clips):
    g, want = np.random.default_rng(seed), []
    while len(want) < 20:
      for path in g.permutation(sorted(lengths)):
        want += [100 + 10 * sorted(lengths).index(path) + i for i in range(lengths[path])]
    want = np.array(want[:20], np.uint8)
    levels = clip[:, 30, 30, 0]
    np.testing.assert_array_equal(levels, robodesk_tv.boost_contrast(want[:, None, None])[:, 0, 0])
  assert not np.array_equal(clips[0], clips[1]) and len(np.unique(clips[0])) > 5


def test_procedural_colour_video():
  kw = dict(num_frames=20, height=16, width=24)
  a = backgrounds.procedural_color_video(seed=1, **kw)
  assert a.shape == (20, 16, 24, 3) and a.dtype == np.uint8
  np.testing.assert_array_equal(a, backgrounds.procedural_color_video(seed=1, **kw))
  assert not np.array_equal(a, backgrounds.procedural_color_video(seed=2, **kw))
  # its luma is the grayscale clip of the same seed (up to the rounding of the channels)
  luma = a.astype(np.float64) @ [0.299, 0.587, 0.114]
  assert np.abs(luma - backgrounds.procedural_video(seed=1, **kw)).mean() < 1.5
  assert np.abs(a[..., 0].astype(int) - a[..., 2]).mean() > 10  # colour, not gray
