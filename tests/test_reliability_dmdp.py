"""Issue 25 on the Denoised MDP side: duplicated conditions, replay identity on resume, compare on
a workdir of the wrong kind, the RoboDesk fork's import location. None of these trains anything."""

import dataclasses
import json
import os
import sys

import numpy as np
import pytest

from jaxprune.dmdp import disentangle_config
from jaxprune.dmdp.disentangle_config import DisentangleConfig

QUICK = disentangle_config.quick(DisentangleConfig())


@pytest.mark.parametrize(
  "field,value,dup",
  [
    ("tasks", ("walker_walk", "cheetah_run", "walker_walk"), "walker_walk"),
    ("variants", ("video_background", "video_background"), "video_background"),
    ("models", ("dmdp", "dreamer", "dmdp"), "dmdp"),
    ("factors", ("x", "x"), "x"),
    ("probes", ("ridge", "ridge"), "ridge"),
    ("probe_at", (2, 2), "2"),
  ],
)
def test_duplicated_conditions_are_refused_at_config_time(field, value, dup):
  with pytest.raises(ValueError, match=rf"{field}.*duplicate.*{dup}"):
    dataclasses.replace(QUICK, **{field: value})


def test_duplicated_tasks_on_the_command_line_stop_before_any_work(tmp_path, capsys):
  from jaxprune.core.config import parse

  w = tmp_path / "w"
  argv = ["--preset", "quick", "--tasks", "walker_walk", "walker_walk", "--workdir", str(w)]
  with pytest.raises((SystemExit, ValueError)) as e:
    parse(DisentangleConfig, argv, presets=disentangle_config.PRESETS)
  text = str(e.value) + capsys.readouterr().err
  assert "tasks" in text and "walker_walk" in text
  assert not w.exists()


def test_duplicated_runs_and_seeds_of_the_other_dmdp_scripts_are_refused(tmp_path):
  from jaxprune.dmdp.report import CompareConfig

  a = str(tmp_path / "a")
  with pytest.raises(ValueError, match=r"runs.*duplicate.*a"):  # the same run, spelt twice
    CompareConfig(runs=(a, str(tmp_path / "x" / ".." / "a")))
  fork = _fake_fork(tmp_path / "fork")
  with pytest.raises(ValueError, match=r"seeds.*duplicate.*1"):
    _fork_script().ForkCompareConfig(fork_dir=fork, seeds=(0, 1, 1))


# ---------------------------------------------------------------------------------------------
# point 9: a replay file carries the checkpoint it belongs to; the driver refuses another's

OBS, A = (2, 2, 3), 2


def _buffer(episodes: int, steps: int = 4):
  from jaxprune.dmdp.replay import ReplayBuffer

  buf = ReplayBuffer(capacity=100, obs_shape=OBS, action_dim=A, seed=0)
  for e in range(episodes):
    obs = np.full((steps + 1, *OBS), e, np.uint8)
    buf.add_episode(obs, np.zeros((steps, A), np.float32), np.ones(steps, np.float32))
  return buf


def test_replay_file_carries_the_checkpoint_it_belongs_to(tmp_path):
  from jaxprune.dmdp.replay import ReplayBuffer

  path = str(tmp_path / "r.npz")
  owner = {"update": 6, "env_steps": 24, "episodes": 3}
  _buffer(3).save(path, belongs_to=owner)
  assert ReplayBuffer.load(path).belongs_to == owner
  _buffer(3).save(path)  # a file without the record (as older versions wrote): still loads
  back = ReplayBuffer.load(path)
  assert back.belongs_to is None and back.total_episodes == 3
  with pytest.raises(ValueError, match="belongs_to"):
    _buffer(1).save(path, belongs_to={"update": "6"})


def test_driver_refuses_the_replay_file_of_another_checkpoint(tmp_path):
  from jaxprune.core.checkpoint import CheckpointError
  from jaxprune.dmdp import driver
  from jaxprune.dmdp.replay import ReplayBuffer

  # action_repeat 2: 3 episodes of 4 agent steps = 24 env steps (the replay of update 6)
  path = str(tmp_path / "files" / "replay" / "0000000010.npz")
  os.makedirs(os.path.dirname(path))
  _buffer(3).save(path, belongs_to={"update": 6, "env_steps": 24, "episodes": 3})
  buf = ReplayBuffer.load(path)
  ckpt = str(tmp_path / "checkpoints" / "10")
  own = {"env_steps": 24, "episodes": 3}
  driver.check_replay_belongs(buf, path, ckpt, step=6, counters=own, action_repeat=2)  # its own
  later = {"env_steps": 40, "episodes": 5}
  with pytest.raises(CheckpointError) as e:
    driver.check_replay_belongs(buf, path, ckpt, step=10, counters=later, action_repeat=2)
  msg = str(e.value)
  assert path in msg and ckpt in msg and "update 6" in msg and "update 10" in msg
  # a file without the record (an older version's) is checked by its own counters
  _buffer(3).save(path)
  old = ReplayBuffer.load(path)
  driver.check_replay_belongs(old, path, ckpt, step=10, counters=own, action_repeat=2)
  with pytest.raises(CheckpointError, match=r"3 episodes.*5 episodes|5 episodes.*3 episodes"):
    driver.check_replay_belongs(old, path, ckpt, step=10, counters=later, action_repeat=2)
  with pytest.raises(CheckpointError, match=r"24 env steps.*40 env steps|40.*24 env steps"):
    driver.check_replay_belongs(
      old, path, ckpt, step=10, counters={"env_steps": 40, "episodes": 3}, action_repeat=2
    )


@pytest.mark.slow  # an agent run of ~1 min; the check itself is tested above without one
def test_resume_with_the_replay_file_of_an_older_checkpoint_stops(tmp_path):
  import importlib.util
  import shutil

  from jaxprune.core.checkpoint import CheckpointError

  script = os.path.join(os.path.dirname(__file__), "..", "scripts", "train_dmdp.py")
  spec = importlib.util.spec_from_file_location("train_dmdp_script", script)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  w = str(tmp_path / "w")
  flags = ["--preset", "small", "cheetah_run", "video_background_noisy_sensor", "quick"]
  flags += ["--progress", "false", "--workdir", w]
  mod.main(flags + ["--env_steps", "400"])  # checkpoints at updates 2 (env step 200) and 6 (400)
  replay = os.path.join(w, "files", "replay")
  assert sorted(os.listdir(replay)) == ["0000000002.npz", "0000000006.npz"]
  shutil.copy(os.path.join(replay, "0000000002.npz"), os.path.join(replay, "0000000006.npz"))
  before = open(os.path.join(w, "metrics.jsonl")).read()
  with pytest.raises(CheckpointError, match=r"update 2, 200 env steps, 2 episodes.*update 6"):
    mod.main(flags + ["--env_steps", "600"])
  assert open(os.path.join(w, "metrics.jsonl")).read() == before


# ---------------------------------------------------------------------------------------------
# point 10: compare_dmdp on a workdir that is not a train_dmdp run with evaluations

DMDP_CONFIG = {
  "model": "dmdp",
  "variant": "noiseless",
  "env": "walker_walk",
  "seed": 0,
  "world_model": {"beta_y": 0.25},
}


def _workdir(d, config, rows):
  os.makedirs(d)
  if config is not None:
    with open(os.path.join(d, "config.json"), "w") as f:
      json.dump(config, f)
  if rows is not None:
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in rows)
  return str(d)


@pytest.mark.parametrize(
  "config,rows,found",
  [
    # a prune workdir: its own config, no metrics
    ({"data": "npm", "kmeans": {"k": 10}, "fraction": 0.5}, None, "lacks model, variant, env"),
    # a train.py workdir: classifier config, step-keyed records
    ({"classifier": {"steps": 5}, "kept": None}, [{"step": 5, "loss": 0.1}], "lacks model"),
    # an agent config beside records of another job (no kind)
    (DMDP_CONFIG, [{"step": 5, "loss": 0.1}], "record 1 has no 'kind'"),
    # an agent run that has not evaluated yet
    (DMDP_CONFIG, [{"kind": "train", "env_steps": 200, "loss": 1.0}], "no evaluation"),
    # an eval record of something else
    (DMDP_CONFIG, [{"kind": "eval", "env_steps": 400, "accuracy": 0.5}], "'return_mean'"),
    # no metrics at all
    (DMDP_CONFIG, None, "no metrics.jsonl"),
    # config.json that is not an object
    ([1, 2], [], "not a JSON object"),
  ],
)
def test_compare_on_a_workdir_of_the_wrong_kind_names_it(tmp_path, config, rows, found):
  from jaxprune.dmdp.report import WorkdirKindError, load_run

  w = _workdir(tmp_path / "w", config, rows)
  with pytest.raises(WorkdirKindError) as e:
    load_run(w)
  msg = str(e.value)
  assert w in msg and found in msg and "train_dmdp" in msg, msg


def test_compare_script_stops_without_a_traceback_on_a_wrong_workdir(tmp_path, monkeypatch):
  import runpy

  w = _workdir(tmp_path / "w", {"classifier": {"steps": 5}}, [{"step": 5, "loss": 0.1}])
  script = os.path.join(os.path.dirname(__file__), "..", "scripts", "compare_dmdp.py")
  # the script as `python scripts/compare_dmdp.py ...` runs it (its __main__ block), in-process
  monkeypatch.setattr(sys, "argv", [script, "--runs", w, "--out", str(tmp_path / "o")])
  with pytest.raises(SystemExit) as e:
    runpy.run_path(script, run_name="__main__")
  msg = str(e.value.code)
  assert msg.startswith("error (WorkdirKindError)") and w in msg and "train_dmdp" in msg, msg
  assert not os.path.exists(tmp_path / "o")


# ---------------------------------------------------------------------------------------------
# point 12: the RoboDesk fork is imported only from a directory given on purpose, owned by the
# user and writable by no one else, by its explicit location


def _fork_script():
  import importlib.util

  path = os.path.join(os.path.dirname(__file__), "..", "scripts", "compare_robodesk_fork.py")
  spec = importlib.util.spec_from_file_location("compare_robodesk_fork_script", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def _fake_fork(d):
  """A stand-in for a checkout of SsnL/robodesk: a package ``robodesk`` importing its utils."""
  pkg = d / "robodesk"
  pkg.mkdir(parents=True)
  (pkg / "__init__.py").write_text("from .utils import CameraManager\nFAKE_FORK = True\n")
  (pkg / "utils.py").write_text("class CameraManager:\n  pass\n")
  for p in (d, pkg):
    os.chmod(p, 0o755)
  return str(d)


def test_fork_dir_has_no_default():
  mod = _fork_script()
  with pytest.raises(TypeError, match="fork_dir"):
    mod.ForkCompareConfig()


@pytest.mark.parametrize("where", [".", "robodesk", "robodesk/utils.py", "robodesk/__pycache__"])
def test_fork_dir_writable_by_others_is_refused(tmp_path, where):
  mod = _fork_script()
  fork = _fake_fork(tmp_path / "fork")
  os.makedirs(os.path.join(fork, "robodesk", "__pycache__"), mode=0o755)
  target = os.path.join(fork, where)
  os.chmod(target, 0o777 if os.path.isdir(target) else 0o666)
  with pytest.raises(ValueError, match="writable") as e:
    mod.ForkCompareConfig(fork_dir=fork)
  assert os.path.realpath(target) in str(e.value)
  os.chmod(target, 0o775 if os.path.isdir(target) else 0o664)  # group-writable: refused too
  with pytest.raises(ValueError, match="writable"):
    mod.ForkCompareConfig(fork_dir=fork)


def test_fork_dir_of_another_user_is_refused(tmp_path, monkeypatch):
  mod = _fork_script()
  fork = _fake_fork(tmp_path / "fork")
  monkeypatch.setattr(os, "getuid", lambda: os.stat(fork).st_uid + 1)
  with pytest.raises(ValueError, match="not owned by you") as e:
    mod.ForkCompareConfig(fork_dir=fork)
  assert os.path.realpath(fork) in str(e.value)


def test_fork_is_imported_by_its_location_leaving_sys_path_alone(tmp_path):
  mod = _fork_script()
  fork = _fake_fork(tmp_path / "fork")
  mod.ForkCompareConfig(fork_dir=fork)  # accepted: owned by the user, 0o755
  path, modules = list(sys.path), dict(sys.modules)
  pkg, utils = mod.import_fork(fork)
  assert pkg.FAKE_FORK and utils.CameraManager is pkg.CameraManager
  assert os.path.dirname(pkg.__file__) == os.path.realpath(os.path.join(fork, "robodesk"))
  assert sys.path == path  # nothing put on the path
  assert sys.modules.get("robodesk") is modules.get("robodesk")  # the pinned name untouched
  for name in [n for n in sys.modules if n.startswith(mod.FORK_MODULE)]:
    del sys.modules[name]  # the fake fork stays out of later tests
