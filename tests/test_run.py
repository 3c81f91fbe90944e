"""The shared driver (jaxprune.core.run.Run) and its files: lock, config check on resume,
checkpoint files, metrics.jsonl truncation and damage, NaN guard, file modes, the config CLI."""

import dataclasses
import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from typing import Literal

import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune.core import config as config_lib
from jaxprune.core import io
from jaxprune.core.cache import memoize
from jaxprune.core.config import check_finite, parse, require
from jaxprune.core.run import (
  ConfigMismatchError,
  NonFiniteError,
  Run,
  WorkdirInUseError,
  cli,
  config_diff,
)


def _state(v=0.0):
  return {"w": jnp.full(3, v, jnp.float32), "step": jnp.int32(0)}


def test_lock_held_by_live_process_stops_second_run(tmp_path):
  sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    (tmp_path / ".lock").write_text(json.dumps({"pid": sleeper.pid, "host": os.uname().nodename}))
    with pytest.raises(WorkdirInUseError, match=f"in use by process {sleeper.pid}"):
      Run(str(tmp_path))
    assert (tmp_path / ".lock").exists()  # the owner's lock is left alone
  finally:
    sleeper.kill()
    sleeper.wait()


def test_stale_lock_of_dead_process_is_taken_over(tmp_path):
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  (tmp_path / ".lock").write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))
  with pytest.warns(UserWarning, match="stale lock"):
    run = Run(str(tmp_path))
  assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
  run.close()
  assert not (tmp_path / ".lock").exists()


def test_second_process_on_a_workdir_in_use_exits_with_message(tmp_path):
  with Run(str(tmp_path)):
    prog = f"from jaxprune.core.run import Run, cli; cli(lambda: Run({str(tmp_path)!r}))"
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=300)
  # the scripts' entry point: status 1, one line naming the error and the owner, no traceback
  assert r.returncode == 1
  assert "WorkdirInUseError" in r.stderr and f"process {os.getpid()}" in r.stderr
  assert "Traceback" not in r.stderr


def test_cli_stops_cleanly_only_on_run_errors(monkeypatch):
  def fails(e):
    def main():
      raise e

    return main

  with pytest.raises(SystemExit) as stop:
    cli(fails(ConfigMismatchError("fields differ: lr")))
  assert stop.value.code == "error (ConfigMismatchError): fields differ: lr"

  class Diverged(RuntimeError):
    pass

  with pytest.raises(SystemExit, match="Diverged"):
    cli(fails(Diverged("value 1e4")), Diverged)
  with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
    cli(fails(ZeroDivisionError("x")), Diverged)
  monkeypatch.setenv("JAXPRUNE_TRACEBACK", "1")
  with pytest.raises(ConfigMismatchError):
    cli(fails(ConfigMismatchError("fields differ: lr")))
  assert cli(lambda: 7) == 7


def test_resume_with_other_config_lists_fields(tmp_path):
  cfg = {"lr": 0.1, "seed": 0, "steps": 10, "model": {"width": 8}}
  with Run(str(tmp_path), config=cfg, may_change=("steps",)) as run:
    run.save(5, _state(), position=5)
  # the fields that may change on resume do not stop it
  with Run(str(tmp_path), config={**cfg, "steps": 20}, may_change=("steps",)) as run:
    assert run.restore(_state()) is not None
  with pytest.raises(ConfigMismatchError) as e:
    Run(str(tmp_path), config={**cfg, "lr": 0.5, "model": {"width": 16}}, may_change=("steps",))
  msg = str(e.value)
  assert "lr: 0.1 -> 0.5" in msg and "model.width: 8 -> 16" in msg and "seed" not in msg
  # library code names the library's argument (the scripts' flag form comes after it)
  assert "new workdir, or overwrite=True" in msg and "Run(..., overwrite=True)" in msg
  assert "--workdir" not in msg
  assert not (tmp_path / ".lock").exists()  # a failed open releases the lock
  # overwrite discards the old run
  with Run(str(tmp_path), config={**cfg, "lr": 0.5}, overwrite=True) as run:
    assert run.restore(_state()) is None


def test_resume_accepts_a_field_added_since_at_its_default(tmp_path):
  @dataclasses.dataclass(frozen=True)
  class Inner:
    width: int = 8
    new: int = 0  # a field the old run's code did not have

  @dataclasses.dataclass(frozen=True)
  class Cfg:
    lr: float = 0.1
    inner: Inner = Inner()

  assert config_lib.field_defaults(Cfg(lr=0.5, inner=Inner(new=3))) == {
    "lr": 0.1,
    "inner.width": 8,
    "inner.new": 0,
  }
  with Run(str(tmp_path), config={"lr": 0.1, "inner": {"width": 8}}) as run:  # the old run
    run.save(5, _state(), position=5)
  with Run(str(tmp_path), config=Cfg()) as run:
    assert run.restore(_state()) is not None
  with pytest.raises(ConfigMismatchError, match=r"inner.new: '<absent>' -> 3"):
    Run(str(tmp_path), config=Cfg(inner=Inner(new=3)))


def test_config_diff_flattens_nested_fields():
  assert config_diff({"a": {"b": 1}, "c": 2}, {"a": {"b": 2}, "c": 2}) == ["a.b: 1 -> 2"]
  assert config_diff({"a": 1}, {"a": 1, "n": 3}, may_change=("n",)) == []
  # a field added since the old run matches only at its default (the old run's behaviour)
  assert config_diff({"a": {}}, {"a": {"new": 0}}, defaults={"a.new": 0}) == []
  assert config_diff({"a": {}}, {"a": {"new": 5}}, defaults={"a.new": 0}) == [
    "a.new: '<absent>' -> 5"
  ]
  assert config_diff({}, {"new": 0}) == ["new: '<absent>' -> 0"]  # no default given


def test_restore_truncates_metrics_past_checkpoint(tmp_path):
  with Run(str(tmp_path), config={"x": 1}) as run:
    run.log([{"step": s, "loss": float(s)} for s in range(1, 7)])
    run.save(4, _state(4.0), position=4)
  with Run(str(tmp_path), config={"x": 1}) as run:
    state, meta = run.restore(_state())
    assert meta["position"] == 4 and meta["config"] == {"x": 1}
    np.testing.assert_array_equal(state["w"], 4.0)
    assert [r["step"] for r in run.records()] == [1, 2, 3, 4]


def test_fresh_start_drops_metrics_of_an_earlier_run(tmp_path):
  io.append_jsonl(str(tmp_path / "metrics.jsonl"), [{"step": 1, "loss": 1.0}])
  with Run(str(tmp_path)) as run:
    assert run.restore(_state()) is None
    assert run.records() == []


def test_files_saved_with_checkpoint_and_deleted_with_it(tmp_path):
  def writer(tag):
    return lambda path: io.save_npy(path, np.array([tag]))

  with Run(str(tmp_path), max_to_keep=2) as run:
    for step in (1, 2, 3):
      run.save(step, _state(step), position=step, files={"replay": writer(step)})
    assert run.checkpoint_steps() == [2, 3]
    left = sorted(os.listdir(tmp_path / "files" / "replay"))
    assert left == ["0000000002.npz", "0000000003.npz"]
  with Run(str(tmp_path)) as run:
    _, meta = run.restore(_state())
    assert np.load(meta["files"]["replay"])[0] == 3


def test_log_refuses_non_finite_and_writes_nothing(tmp_path):
  with Run(str(tmp_path), position_key="env_steps") as run:
    run.log([{"env_steps": 10, "loss": 1.0}])
    with pytest.raises(NonFiniteError, match=r"value_loss at env_steps 20"):
      run.log([{"env_steps": 20, "loss": 1.0, "value_loss": float("nan")}])
    with pytest.raises(NonFiniteError, match="returns"):
      run.log([{"env_steps": 30, "returns": [1.0, float("inf")]}])
    assert run.records() == [{"env_steps": 10, "loss": 1.0}]


def test_partial_last_line_is_dropped_with_warning(tmp_path):
  p = tmp_path / "metrics.jsonl"
  p.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "lo')
  with pytest.warns(UserWarning, match="partial last line"):
    assert io.read_jsonl(str(p)) == [{"step": 1, "loss": 1.0}]
  with pytest.warns(UserWarning):  # resume rewrites the file without it
    with Run(str(tmp_path)) as run:
      run.restore(_state())
  assert p.read_text() == ""  # a fresh start keeps nothing


def test_bad_middle_line_names_file_and_line(tmp_path):
  p = tmp_path / "m.jsonl"
  p.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
  with pytest.raises(ValueError, match=r"m.jsonl, line 2"):
    io.read_jsonl(str(p))


def test_output_files_follow_the_umask(tmp_path):
  old = os.umask(0o022)
  try:
    io.save_json(str(tmp_path / "a.json"), {"a": 1})
    io.save_npy(str(tmp_path / "b.npy"), np.zeros(2))
  finally:
    os.umask(old)
  for name in ("a.json", "b.npy"):
    assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644


def test_nan_is_never_written_as_json(tmp_path):
  with pytest.raises(ValueError):
    io.append_jsonl(str(tmp_path / "m.jsonl"), [{"x": float("nan")}])


def test_memoize_returns_same_object_and_rejects_unhashable():
  calls = []

  @memoize
  def build(cfg, n):
    calls.append(n)
    return object()

  assert build((1, 2), 3) is build((1, 2), 3)
  assert build((1, 2), 4) is not build((1, 2), 3)
  assert calls == [3, 4]
  with pytest.raises(TypeError, match="hashable"):
    build([1], 3)


@dataclass(frozen=True)
class _Inner:
  model: Literal["cnn", "resnet18"] = "cnn"
  """which model"""
  lr: float = 0.1
  """learning rate"""

  def __post_init__(self):
    check_finite(self)


@dataclass(frozen=True)
class _Job:
  shard: bool = True
  """shard over devices"""
  fractions: tuple[float, ...] = (0.5,)
  """fractions kept"""
  batch_size: int = 4
  inner: _Inner = _Inner()

  def __post_init__(self):
    require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")


_PRESETS = {
  "small": lambda c: dataclasses.replace(c, batch_size=2),
  "big": lambda c: dataclasses.replace(c, batch_size=64),
}


def test_cli_nested_tuples_bools_and_presets():
  cfg = parse(_Job, ["--inner.model", "resnet18", "--fractions", "0.1", "0.3", "--shard", "false"])
  assert cfg == _Job(shard=False, fractions=(0.1, 0.3), inner=_Inner(model="resnet18"))
  # the preset applies first, explicit flags after it whatever their order
  cfg = parse(
    _Job, ["--inner.lr", "0.2", "--preset", "big"], presets=_PRESETS, default_presets=("small",)
  )
  assert cfg.batch_size == 64 and cfg.inner.lr == 0.2
  assert parse(_Job, [], presets=_PRESETS, default_presets=("small",)).batch_size == 2


@pytest.mark.parametrize(
  "argv, needle",
  [
    (["--shard", "ture"], "--shard"),
    (["--inner.model", "vgg"], "resnet18"),
    (["--batch_size", "1e9"], "--batch_size"),
    (["--batch_size", "0"], "batch_size must be >= 1"),
    (["--inner.lr", "nan"], "lr must be a finite number"),
    (["--preset", "huge"], "small"),
  ],
)
def test_cli_bad_values_exit_naming_the_flag(argv, needle, capsys):
  with pytest.raises(SystemExit) as e:
    parse(_Job, argv, presets=_PRESETS, default_presets=("small",))
  assert e.value.code != 0
  out = capsys.readouterr()
  assert needle in out.err + out.out + str(e.value.code)


@pytest.mark.parametrize("bad", ["[1, 2, 3]", '{"step": "5"}', '{"loss": 1}', '{"step": true}'])
def test_metrics_record_of_the_wrong_type_names_file_line_and_record(tmp_path, bad):
  p = tmp_path / "metrics.jsonl"
  p.write_text('{"step": 1, "loss": 1.0}\n' + bad + '\n{"step": 3, "loss": 1.0}\n')
  with Run(str(tmp_path)) as run:
    with pytest.raises(ValueError) as e:
      run.restore(_state())
  msg = str(e.value)
  assert f"{p}, line 2" in msg and bad in msg and "'step'" in msg
  assert "delete" in msg  # what to do
  assert p.read_text().count("\n") == 3  # nothing was dropped


def _old_run(wd, cfg):
  """A finished run: a checkpoint with its replay file, metrics, a summary and a plot."""
  with Run(wd, config=cfg) as run:
    run.log([{"step": s, "loss": float(s)} for s in (1, 2)])
    replay = lambda path: io.save_npy(path, np.array([7]))
    run.save(2, _state(2.0), position=2, files={"replay": replay})
  io.save_json(os.path.join(wd, "config.json"), cfg)
  io.save_json(os.path.join(wd, "summary.json"), {"loss": 2.0})
  io.save_text(os.path.join(wd, "returns.png"), "png")


def _assert_old_run_intact(wd, cfg):
  assert json.load(open(os.path.join(wd, "config.json"))) == cfg
  assert json.load(open(os.path.join(wd, "summary.json"))) == {"loss": 2.0}
  assert open(os.path.join(wd, "returns.png")).read() == "png"
  assert sorted(e for e in os.listdir(wd) if e.startswith(".")) == []  # no aside, no lock
  with Run(wd, config=cfg) as run:
    state, meta = run.restore(_state())
    np.testing.assert_array_equal(state["w"], 2.0)
    assert np.load(meta["files"]["replay"])[0] == 7
    assert [r["step"] for r in run.records()] == [1, 2]


def test_overwrite_keeps_the_old_run_until_the_new_one_fails_or_checkpoints(tmp_path):
  wd, old, new = str(tmp_path), {"lr": 0.1}, {"lr": 0.5}
  _old_run(wd, old)
  # the new run fails before its first checkpoint (a bad --video_dir): the old run comes back
  with pytest.raises(RuntimeError, match="bad video_dir"):
    with Run(wd, config=new, overwrite=True) as run:
      assert run.restore(_state()) is None  # a fresh start ...
      assert not os.path.exists(os.path.join(wd, "summary.json"))  # ... in an emptied workdir
      io.save_json(os.path.join(wd, "config.json"), new)
      os.makedirs(os.path.join(wd, "pictures"))
      raise RuntimeError("bad video_dir")
  assert not os.path.exists(os.path.join(wd, "pictures"))  # the failed run's files go
  _assert_old_run_intact(wd, old)
  # the new run's first checkpoint discards the old run at once
  with Run(wd, config=new, overwrite=True) as run:
    assert run.restore(_state()) is None
    run.save(1, _state(1.0), position=1)
    assert sorted(os.listdir(wd)) == [".lock", "checkpoints"]
    assert run.checkpoint_steps() == [1]
  # a job that never checkpoints discards the old run when it closes without an error
  io.save_json(os.path.join(wd, "summary.json"), {"loss": 2.0})
  with Run(wd, overwrite=True):
    io.save_json(os.path.join(wd, "result.json"), {"acc": 1.0})
  assert sorted(os.listdir(wd)) == ["result.json"]


def _aside(wd, name=".replaced"):
  """What a run started with overwrite leaves when killed (-9): the old run moved aside."""
  aside = os.path.join(wd, name)
  os.makedirs(aside)
  for e in os.listdir(wd):
    if e not in (".lock", name):
      os.rename(os.path.join(wd, e), os.path.join(aside, e))


def test_run_killed_before_its_first_checkpoint_gives_the_old_run_back(tmp_path):
  wd, old, new = str(tmp_path), {"lr": 0.1}, {"lr": 0.5}
  _old_run(wd, old)
  _aside(wd)
  io.save_json(os.path.join(wd, "config.json"), new)  # the killed run's
  io.append_jsonl(os.path.join(wd, "metrics.jsonl"), [{"step": 1, "loss": 9.0}])
  with pytest.warns(UserWarning, match=r"restoring the previous run"):
    Run(wd, config=old).close()
  _assert_old_run_intact(wd, old)
  # killed while still moving the old run aside: nothing of a new run there yet
  _aside(wd, ".replaced.partial")
  with pytest.warns(UserWarning, match=r"restoring the previous run"):
    Run(wd, config=old).close()
  _assert_old_run_intact(wd, old)


def test_run_killed_after_its_first_checkpoint_keeps_the_new_run(tmp_path):
  wd = str(tmp_path / "w")
  _old_run(wd, {"lr": 0.1})
  _aside(wd)
  with Run(str(tmp_path / "new"), config={"lr": 0.5}) as run:  # the killed run's checkpoint
    run.save(1, _state(1.0), position=1)
  os.rename(tmp_path / "new" / "checkpoints", os.path.join(wd, "checkpoints"))
  with pytest.warns(UserWarning, match=r"discarding the previous run"):
    with Run(wd, config={"lr": 0.5}) as run:
      assert run.restore(_state())[1]["position"] == 1
  assert sorted(os.listdir(wd)) == ["checkpoints"]


def test_curve_overwrite_keeps_the_stored_results_when_the_new_run_fails(tmp_path, monkeypatch):
  from jaxprune.pruning import curve, curve_config

  wd = str(tmp_path)
  io.append_jsonl(os.path.join(wd, "results.jsonl"), [{"score": "el2n", "accuracy": 0.5}])
  io.save_npy(os.path.join(wd, "scores_el2n.npy"), np.zeros(3))

  def broken_load(cfg):
    raise OSError("no data")

  monkeypatch.setattr(curve, "_load", broken_load)
  cfg = curve_config.CurveConfig(workdir=wd, overwrite=True, progress=False)
  with pytest.raises(OSError, match="no data"):
    curve.run(cfg)
  assert io.read_jsonl(os.path.join(wd, "results.jsonl")) == [{"score": "el2n", "accuracy": 0.5}]
  assert os.path.exists(os.path.join(wd, "scores_el2n.npy"))
  assert sorted(os.listdir(wd)) == ["results.jsonl", "scores_el2n.npy"]


def test_atomic_files_never_change_the_process_umask(tmp_path, monkeypatch):
  def no_umask(mask):
    raise AssertionError("os.umask changes the mode of every thread's new files")

  old = os.umask(0o027)
  try:
    monkeypatch.setattr(os, "umask", no_umask)
    io.save_json(str(tmp_path / "a.json"), {"a": 1})
    io.save_text(str(tmp_path / "b.txt"), "b")
  finally:
    monkeypatch.undo()
    os.umask(old)
  for name in ("a.json", "b.txt"):
    assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o640
  assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


@pytest.mark.slow  # an agent run of a few hundred env steps (about a minute)
def test_agent_overwrite_with_a_bad_video_dir_keeps_the_finished_run(tmp_path):
  """The issue's reproduction: a finished agent run, then --overwrite true with a corrupt
  --video_dir: the new run fails when it builds its environments, the old run stays whole."""
  import importlib.util

  spec = importlib.util.spec_from_file_location(
    "train_dmdp_script", os.path.join(os.path.dirname(__file__), "..", "scripts", "train_dmdp.py")
  )
  script = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(script)
  flags = ["--preset", "small", "cheetah_run", "video_background", "quick", "--progress", "false"]
  wd = str(tmp_path / "agent")
  script.main(flags + ["--env_steps", "200", "--workdir", wd])
  before = {
    name: open(os.path.join(wd, name), "rb").read()
    for name in ("config.json", "summary.json", "metrics.jsonl")
  }
  ckpts = sorted(os.listdir(os.path.join(wd, "checkpoints")))
  replay = sorted(os.listdir(os.path.join(wd, "files", "replay")))
  assert replay
  videos = tmp_path / "videos"
  videos.mkdir()
  (videos / "broken.mp4").write_bytes(b"not a video")
  with pytest.raises(ValueError, match="no readable video"):
    script.main(
      flags
      + ["--env_steps", "400", "--workdir", wd, "--video_dir", str(videos)]
      + ["--overwrite", "true", "--seed", "3"]
    )
  for name, content in before.items():
    assert open(os.path.join(wd, name), "rb").read() == content, name
  assert sorted(os.listdir(os.path.join(wd, "checkpoints"))) == ckpts
  assert sorted(os.listdir(os.path.join(wd, "files", "replay"))) == replay
  assert not os.path.exists(os.path.join(wd, ".replaced"))
  # and it resumes: more env steps of the same run
  script.main(flags + ["--env_steps", "300", "--workdir", wd])
  assert json.load(open(os.path.join(wd, "summary.json")))["env_steps"] == 300
