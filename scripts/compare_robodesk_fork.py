"""Our RoboDesk against the authors' fork (SsnL/robodesk at baff50d) on the same seeds and actions.

  git clone https://github.com/SsnL/robodesk ~/robodesk_fork && pip install opencv-python-headless
  python scripts/compare_robodesk_fork.py --fork_dir ~/robodesk_fork

The fork's ``RoboDeskWithTV``, the environment the Denoised MDP release trains on (three desks,
the TV, every distractor on: ``distractors="all"``), and ours (``noisy``) get the same seed, the
same TV videos and the same actions (20 random, then the scripted press of the green button).
The videos are written first: ``--videos`` colour clips of our procedural source, as .mp4 files
in a temporary directory that both read (``--tv_pattern``/``video_dir``). It reports:

* the two compiled models: every numeric array of MuJoCo's ``MjModel`` (names aside) compared;
* per observation, the largest absolute difference of the physics state (qpos, qvel), the button
  noise, the lights (brightness, positions), the camera walk (eye, target), the green indicator's
  alpha, the TV's start frames, its texture, the per-step reward (``tv_green_hue``, dense), and the
  image (largest and mean absolute pixel difference);
* at reset, for each: the share of the image the TV screen covers and the green button's centre
  in image pixels (from a segmentation render of each one's own view).

Shims, so that the fork's code runs with today's libraries (nothing else of it is changed):
MuJoCo 3 renamed ``tex_rgb`` to ``tex_data`` and gave ``mat_texid`` one column per texture role
(its TV is handed a view of the physics with the old names); Pillow 10+ rejects the fork's
NumPy-array crop box (``Image.crop`` is given it as a tuple, in this process only); scikit-video
does not import with NumPy 2, so ``skvideo.io.vread`` is imageio's ``imread`` of the same file.

The fork's code runs in this process, so where it comes from is checked: ``--fork_dir`` has no
default (a shared default such as /tmp/fork is a place anyone may fill), and the directory, its
``robodesk`` package directory and the package's .py files (and its __pycache__) must be owned
by you and writable by no one else (not group- or world-writable); otherwise the script stops
before importing anything. The package is then imported from that exact location
(``importlib.util.spec_from_file_location`` under the name ``robodesk_fork``): nothing is put on
``sys.path``, and the name ``robodesk`` stays the pinned package's.
"""

import importlib
import importlib.util
import json
import os
import stat
import sys
import tempfile
import types
from dataclasses import dataclass

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering, before dm_control loads

import numpy as np  # noqa: E402

from jaxprune.core.config import parse, require  # noqa: E402
from jaxprune.core.run import cli  # noqa: E402

FORK_MODULE = "robodesk_fork"  # the name the fork's package is imported under


def check_fork_dir(fork_dir: str) -> None:
  """``ValueError`` unless ``fork_dir`` is a checkout of SsnL/robodesk whose directory, package
  directory (``robodesk/``) and package .py files are owned by the current user and neither
  group- nor world-writable: code that anyone else could have put or changed is not imported."""
  root = os.path.realpath(fork_dir)
  pkg = os.path.join(root, "robodesk")
  require(
    os.path.isfile(os.path.join(pkg, "utils.py")),
    f"{fork_dir!r} is not a checkout of SsnL/robodesk (no robodesk/utils.py)",
  )
  # the package's sources, and its byte-code cache when there is one (Python would load a .pyc
  # planted there in place of its source)
  cache = os.path.join(pkg, "__pycache__")
  paths = [root, pkg] + sorted(os.path.join(pkg, n) for n in os.listdir(pkg) if n.endswith(".py"))
  if os.path.isdir(cache):
    paths += [cache] + sorted(os.path.join(cache, n) for n in os.listdir(cache))
  for path in paths:
    st = os.stat(path)
    require(
      st.st_uid == os.getuid(),
      f"{path} is not owned by you (owner uid {st.st_uid}, you are {os.getuid()}): the fork's "
      "code would run in this process; clone the fork into a directory of your own and give "
      "it as --fork_dir",
    )
    require(
      not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH),
      f"{path} is group- or world-writable (mode {stat.S_IMODE(st.st_mode):o}): someone else "
      f"could change the code this script imports; chmod go-w it (chmod -R go-w {root}) or "
      "clone the fork into a directory of your own",
    )


def import_fork(fork_dir: str):
  """``(package, package.utils)`` of the fork, imported from ``fork_dir/robodesk`` by its path
  under the name :data:`FORK_MODULE`; ``sys.path`` is not changed and ``robodesk`` stays the
  pinned package. Call :func:`check_fork_dir` first."""
  pkg = os.path.join(os.path.realpath(fork_dir), "robodesk")
  spec = importlib.util.spec_from_file_location(
    FORK_MODULE, os.path.join(pkg, "__init__.py"), submodule_search_locations=[pkg]
  )
  module = importlib.util.module_from_spec(spec)
  sys.modules[FORK_MODULE] = module  # its relative imports (.robodesk, .utils) resolve here
  try:
    spec.loader.exec_module(module)
  except BaseException:
    for name in [n for n in sys.modules if n == FORK_MODULE or n.startswith(FORK_MODULE + ".")]:
      del sys.modules[name]
    raise
  return module, importlib.import_module(FORK_MODULE + ".utils")


@dataclass(frozen=True)
class ForkCompareConfig:
  fork_dir: str
  """a checkout of https://github.com/SsnL/robodesk, owned by you and writable by no one else"""
  seeds: tuple[int, ...] = (0, 1, 2)
  steps: int = 100
  """agent steps per seed (the first 20 random, then the scripted press)"""
  image_size: int = 96
  videos: int = 3
  """procedural clips written as the TV's video files"""
  video_frames: int = 150
  """frames per clip (fewer than the TV's 1000: both loop over shuffled files as the fork does)"""
  out: str = "runs/robodesk_fork_compare.json"
  figure: str = ""
  """if set, a PNG of both images at reset and their difference, per seed"""

  def __post_init__(self):
    check_fork_dir(self.fork_dir)
    require(self.steps >= 21, f"steps must be >= 21, got {self.steps}")
    require(self.videos >= 1 and self.video_frames >= 1, "videos and video_frames must be >= 1")
    require(
      len(set(self.seeds)) == len(self.seeds),
      f"seeds holds a duplicate: {sorted(s for s in set(self.seeds) if self.seeds.count(s) > 1)} "
      f"given twice in {list(self.seeds)}; give each seed once",
    )


def model_differences(a, b) -> list[str]:
  """Names of the numeric ``MjModel`` arrays that differ between compiled models ``a`` and ``b``
  (name tables and paths aside)."""
  out = []
  for k in dir(a):
    if k.startswith(("name", "_")) or k.endswith("pathadr") or k in ("paths", "signature"):
      continue
    va, vb = getattr(a, k, None), getattr(b, k, None)
    if isinstance(va, np.ndarray) and va.dtype != object:
      if va.shape != vb.shape or not np.array_equal(va, vb, equal_nan=True):
        out.append(k)
  return out


class _TexIds:
  """``mat_texid[name]`` as MuJoCo 2 had it: the material's RGB texture."""

  def __init__(self, named_model):
    import mujoco

    self._ids, self._role = named_model.mat_texid, int(mujoco.mjtTextureRole.mjTEXROLE_RGB)

  def __getitem__(self, name):
    return int(self._ids[name][self._role])


class _OldNames:
  """A view of ``physics`` with MuJoCo 2's names for what the fork's TV reads."""

  def __init__(self, physics):
    self._physics = physics
    model = types.SimpleNamespace(
      tex_adr=physics.named.model.tex_adr,
      tex_width=physics.named.model.tex_width,
      tex_height=physics.named.model.tex_height,
      tex_rgb=physics.named.model.tex_data,
      mat_texid=_TexIds(physics.named.model),
    )
    self.named = types.SimpleNamespace(model=model, data=physics.named.data)

  def __getattr__(self, name):
    return getattr(self._physics, name)


def install_shims(fork_utils) -> None:
  """Let the fork's code run with MuJoCo 3, Pillow 13 and NumPy 2 (see the module docstring)."""
  import imageio.v3 as iio
  from PIL import Image

  skvideo, skvideo_io = types.ModuleType("skvideo"), types.ModuleType("skvideo.io")
  skvideo_io.vread = lambda path: iio.imread(path)
  skvideo.io = skvideo_io
  sys.modules.setdefault("skvideo", skvideo)
  sys.modules.setdefault("skvideo.io", skvideo_io)
  crop = Image.Image.crop
  Image.Image.crop = lambda self, box=None: crop(self, None if box is None else tuple(box))
  tv_init = fork_utils.TVManager.__init__
  fork_utils.TVManager.__init__ = lambda self, physics, *a, **k: tv_init(
    self, _OldNames(physics), *a, **k
  )


def fork_view_geometry(f, image_size: int) -> dict:
  """``view_geometry`` of the fork's env: a segmentation render of its own current view (its own
  pose code), measured as ours is."""
  import dm_control.mujoco as dm_mujoco

  from jaxprune.envs import robodesk_scene as scene

  plain = dm_mujoco.MovableCamera.render
  dm_mujoco.MovableCamera.render = lambda self, **k: plain(self, segmentation=True)
  try:
    seg = f.render(resize=False)
  finally:
    dm_mujoco.MovableCamera.render = plain
  return scene.view_geometry(f.physics.model, seg, image_size)


def write_videos(directory: str, n: int, frames: int) -> None:
  import imageio.v2 as iio2

  from jaxprune.envs import backgrounds

  for i in range(n):
    clip = backgrounds.procedural_color_video(num_frames=frames, height=96, width=128, seed=i)
    iio2.mimwrite(os.path.join(directory, f"clip{i}.mp4"), clip, fps=25, macro_block_size=1)


def main(argv=None):
  cfg = parse(ForkCompareConfig, argv, description=__doc__)
  import mujoco

  from jaxprune.core import io
  from jaxprune.envs import robodesk as ours
  from jaxprune.envs import robodesk_scene as scene

  check_fork_dir(cfg.fork_dir)  # again, right before the import
  fork, fork_utils = import_fork(cfg.fork_dir)
  install_shims(fork_utils)

  xml, assets = scene.scene_xml()
  fork_xml = os.path.join(os.path.realpath(cfg.fork_dir), "robodesk", "assets", "desks_with_tv.xml")
  model_diff = model_differences(
    mujoco.MjModel.from_xml_string(xml, assets), mujoco.MjModel.from_xml_path(fork_xml)
  )
  print(f"compiled models: {'equal in every numeric array' if not model_diff else model_diff}")

  worst: dict[str, float] = {}
  per_seed = []
  figures = []
  with tempfile.TemporaryDirectory() as videos:
    write_videos(videos, cfg.videos, cfg.video_frames)
    for seed in cfg.seeds:
      f = fork.RoboDeskWithTV(task="tv_green_hue", action_repeat=2, episode_length=2 * cfg.steps,
                              image_size=cfg.image_size, distractors="all",
                              tv_video_file_pattern=os.path.join(videos, "*.mp4"))  # fmt: skip
      f.seed(seed)
      o = ours.make(seed=seed, image_size=cfg.image_size, episode_length=2 * cfg.steps,
                    video_dir=videos, shadows=True)  # fmt: skip
      f_obs, o_obs = f.reset()["image"], o.reset()
      view = {"fork": fork_view_geometry(f, cfg.image_size), "ours": o.view_geometry()}
      figures.append((f_obs, o_obs))
      rewards, pixel_means = [], []

      def record(f_img, o_img, f_r=None, o_r=None):
        fm, named_f, named_o = f.elem_managers, f.physics.named.model, o.physics.named.model
        tv = fm["tv"]
        diffs = {
          "qpos": f.physics.data.qpos - o.physics.data.qpos,
          "qvel": f.physics.data.qvel - o.physics.data.qvel,
          "button noise": fm["button"].noise - o._noise,
          "light brightness": f.physics.model.light_diffuse - o.physics.model.light_diffuse,
          "light position": f.physics.model.light_pos - o.physics.model.light_pos,
          "camera eye": fm["camera"].jitter_amount["lookfrom"] - o.camera_jitter()["eye"],
          "camera target": fm["camera"].jitter_amount["lookat"] - o.camera_jitter()["target"],
          "indicator alpha": named_f.geom_rgba["green_light_overlay"][3]
          - named_o.geom_rgba["green_light_overlay"][3],
          "tv frames": np.array([s.frame_ii % s.num_frames for s in tv.tv_source.sources])
          - np.array(o.tv_frames()),
          "tv texture": tv.tv_tex.astype(int) - o._tv_texture.astype(int),
          "image": f_img.astype(int) - o_img.astype(int),
        }
        if f_r is not None:
          diffs["reward"] = np.array(f_r - o_r)
          rewards.append((f_r, o_r))
        pixel_means.append(float(np.abs(diffs["image"]).mean()))
        for k, v in diffs.items():
          worst[k] = max(worst.get(k, 0.0), float(np.max(np.abs(v))))

      record(f_obs, o_obs)
      rng = np.random.default_rng(seed)
      pressed = 0
      for t in range(cfg.steps):
        a = ours.press_green_action(o) if t >= 20 else rng.uniform(-1, 1, ours.ACTION_DIM)
        f_out, f_r, _, _ = f.step(a)
        o_img, o_r, _, info = o.step(a)
        record(f_out["image"], o_img, f_r, o_r)
        pressed += info["pressed"]
      o.close()
      per_seed.append({
        "seed": seed, "pressed_steps": pressed, "view_at_reset": view,
        "return": {"fork": sum(r for r, _ in rewards), "ours": sum(r for _, r in rewards)},
        "mean_abs_pixel_difference": {"reset": pixel_means[0], "mean": float(np.mean(pixel_means)),
                                      "max": float(np.max(pixel_means))},
      })  # fmt: skip
      print(f"seed {seed}: TV share fork {view['fork']['tv_share']:.4f} ours "
            f"{view['ours']['tv_share']:.4f}; green button fork "
            f"({view['fork']['button_px'][0]:.2f}, {view['fork']['button_px'][1]:.2f}) ours "
            f"({view['ours']['button_px'][0]:.2f}, {view['ours']['button_px'][1]:.2f}) px; "
            f"return fork {per_seed[-1]['return']['fork']:.4f} ours "
            f"{per_seed[-1]['return']['ours']:.4f}; pressed on {pressed} of {cfg.steps} steps; "
            f"mean |pixel difference| {np.mean(pixel_means):.3g}", flush=True)  # fmt: skip
  n = len(cfg.seeds) * (cfg.steps + 1)
  print(f"largest |fork - ours| over {len(cfg.seeds)} seeds x {cfg.steps + 1} observations:")
  for k, v in worst.items():
    print(f"  {k:18s} {v:.3g}")
  result = {"config": cfg.__dict__, "model_differences": model_diff, "largest": worst,
            "per_seed": per_seed, "observations": n}  # fmt: skip
  io.save_json(cfg.out, result)
  if cfg.figure:
    save_figure(cfg.figure, figures, cfg.seeds)
  print(json.dumps({"largest": worst}))
  return worst, n


def save_figure(path: str, pairs, seeds) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from jaxprune.core import io

  fig, axes = plt.subplots(len(pairs), 3, figsize=(7.5, 2.6 * len(pairs)), squeeze=False)
  for row, ((f_img, o_img), seed) in zip(axes, zip(pairs, seeds)):
    diff = np.abs(f_img.astype(int) - o_img.astype(int)).max(-1)
    for ax, img, title in zip(row, (f_img, o_img, diff), ("fork (release)", "ours", "|diff|")):
      ax.imshow(img, cmap="magma" if img.ndim == 2 else None, vmin=0, vmax=255)
      ax.set_title(f"seed {seed}: {title}", fontsize=9)
      ax.axis("off")
  fig.tight_layout()
  io.save_figure(path, fig)
  plt.close(fig)


if __name__ == "__main__":
  cli(main)
