"""Our RoboDesk against the authors' fork (SsnL/robodesk) on the same seed and actions.

  git clone https://github.com/SsnL/robodesk ~/robodesk_fork && pip install opencv-python-headless
  python scripts/compare_robodesk_fork.py --fork_dir ~/robodesk_fork

Both environments get the same seed and the same actions (random, then the scripted press of the
green button); with the button, light and camera distractors on (no TV: the fork reads its videos
through scikit-video). At every agent step it prints nothing; at the end, the largest absolute
difference of the physics state (qpos), the button-sensor noise, the lights' brightness and
positions, the camera walk (eye and target), the green indicator's alpha, and the push_green
reward (0.25 pressed + 0.75 reach, the non-TV terms of tv_green_hue). The fork's pixels are not
compared (its render crops with an array box, which current Pillow rejects; it is stubbed out),
and its plain ``RoboDesk`` mixes the light noise at 0.7 (ours, like its ``RoboDeskWithTV``, at
1), so ours is set to 0.7 here. The fork's desk.xml differs from the package's only by the
indicator overlays, so ours keeps reading the pinned package's assets.

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
import os
import stat
import sys
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
  steps: int = 200
  """agent steps per seed (the first 20 random, then the scripted press)"""

  def __post_init__(self):
    check_fork_dir(self.fork_dir)
    require(self.steps >= 21, f"steps must be >= 21, got {self.steps}")
    require(
      len(set(self.seeds)) == len(self.seeds),
      f"seeds holds a duplicate: {sorted(s for s in set(self.seeds) if self.seeds.count(s) > 1)} "
      f"given twice in {list(self.seeds)}; give each seed once",
    )


def main(argv=None):
  cfg = parse(ForkCompareConfig, argv, description=__doc__)
  from jaxprune.envs import robodesk as ours

  assets = ours.asset_dir()  # the pinned package's
  check_fork_dir(cfg.fork_dir)  # again, right before the import
  fork, fork_utils = import_fork(cfg.fork_dir)

  fork_utils.CameraManager.render = lambda self, render_size, image_size=None: np.zeros(
    (4, 4, 3), np.uint8
  )
  ours.asset_dir = lambda: assets
  distractors = ("button", "env_light", "camera")
  worst: dict[str, float] = {}

  def record(f, o):
    fm, named_f, named_o = f.elem_managers, f.physics.named.model, o.physics.named.model
    ee = o.physics.named.data.site_xpos["end_effector"]
    reach = np.clip(1 - np.linalg.norm(ee - o.physics.named.data.xpos["green_button"]), 0, 1)
    pressed = float(o.physics.named.data.qpos["green_light"][0] < -0.00453)
    diffs = {
      "qpos": f.physics.data.qpos - o.physics.data.qpos,
      "button noise": fm["button"].noise - o._noise,
      "light brightness": f.physics.model.light_diffuse - o.physics.model.light_diffuse,
      "light position": f.physics.model.light_pos - o.physics.model.light_pos,
      "camera eye": fm["camera"].jitter_amount["lookfrom"] - o.camera_jitter()["eye"],
      "camera target": fm["camera"].jitter_amount["lookat"] - o.camera_jitter()["target"],
      "indicator alpha": named_f.geom_rgba["green_light_overlay"][3]
      - named_o.geom_rgba["green_light_overlay"][3],
      "push_green reward": f._get_task_reward("push_green", "dense_reward")
      - np.clip(0.25 * pressed + 0.75 * reach, 0, 1),
    }
    for k, v in diffs.items():
      worst[k] = max(worst.get(k, 0.0), float(np.max(np.abs(v))))
    return pressed

  presses = []
  for seed in cfg.seeds:
    f = fork.RoboDesk(task="push_green", action_repeat=2, episode_length=2 * cfg.steps,
                      image_size=24, distractors=set(distractors))  # fmt: skip
    f.seed(seed)
    f.reset()
    o = ours.make(seed=seed, distractors=distractors, image_size=24, shadows=False,
                  episode_length=2 * cfg.steps)  # fmt: skip
    o._light_noise = 0.7  # the fork's plain RoboDesk's light-noise strength
    o.reset()
    record(f, o)
    rng = np.random.default_rng(seed)
    pressed = 0
    for t in range(cfg.steps):
      a = ours.press_green_action(o) if t >= 20 else rng.uniform(-1, 1, ours.ACTION_DIM)
      f.step(a)
      o.step(a)
      pressed += record(f, o)
    presses.append(pressed)
    o.close()
  n = len(cfg.seeds) * (cfg.steps + 1)
  print(f"largest |fork - ours| over {len(cfg.seeds)} seeds x {cfg.steps + 1} observations "
        f"(button pressed on {presses} of {cfg.steps} steps):")  # fmt: skip
  for k, v in worst.items():
    print(f"  {k:18s} {v:.3g}")
  return worst, n


if __name__ == "__main__":
  cli(main)
