"""The workdir lock (jaxprune.core.lock through jaxprune.core.run.Run): two runs started together,
a live owner (also while its lock file is still empty), a dead one, another host's lock, the
re-entrant lock of one process, and damaged lock files or workdir paths.

The processes are forked and never touch JAX (an empty workdir's Run does not): a few seconds."""

import json
import multiprocessing as mp
import os
import signal
import socket
import time

import pytest

from jaxprune.core.run import Run, WorkdirError, WorkdirInUseError

# forking a process that has loaded JAX warns; the children here never use it
pytestmark = pytest.mark.filterwarnings("ignore:os.fork")

_CTX = mp.get_context("fork")
_TIMEOUT = 60


def _start_together(workdir, start, attempted, outcome, i):
  """A child: open Run at the barrier, say whether it got in, hold it until both have tried."""
  run = None
  try:
    start.wait(_TIMEOUT)
    try:
      run = Run(workdir)
      outcome[i] = 1
    except WorkdirInUseError:
      outcome[i] = 0
  except BaseException:
    outcome[i] = 2
  finally:
    attempted.wait(_TIMEOUT)
    if run is not None:
      run.close()


def test_two_runs_started_together_exactly_one_runs(tmp_path):
  for trial in range(20):
    wd = str(tmp_path / f"w{trial}")  # a fresh workdir each time, not created yet
    start, attempted = _CTX.Barrier(2), _CTX.Barrier(2)
    outcome = _CTX.Array("i", [-1, -1])
    procs = [
      _CTX.Process(target=_start_together, args=(wd, start, attempted, outcome, i))
      for i in range(2)
    ]
    for p in procs:
      p.start()
    for p in procs:
      p.join(_TIMEOUT)
    assert sorted(outcome[:]) == [0, 1], f"trial {trial}: outcomes {outcome[:]}"
    assert not os.path.exists(os.path.join(wd, ".lock"))  # released by the one that ran


def _hold(workdir, ready):
  Run(workdir)
  ready.set()
  time.sleep(_TIMEOUT)  # killed before it ends


def test_live_owner_is_refused_even_with_an_empty_lock_file_and_a_dead_one_is_taken_over(
  tmp_path,
):
  wd = str(tmp_path)
  lock = os.path.join(wd, ".lock")
  ready = _CTX.Event()
  owner = _CTX.Process(target=_hold, args=(wd, ready))
  owner.start()
  try:
    assert ready.wait(_TIMEOUT)
    with pytest.raises(WorkdirInUseError, match=f"in use by process {owner.pid}"):
      Run(wd)
    # the moment between creating the lock file and writing into it: still the owner's
    open(lock, "w").close()
    with pytest.raises(WorkdirInUseError, match="in use by"):
      Run(wd)
    # killed (-9): the OS releases its lock, the next run takes it over
    with open(lock, "w") as f:
      json.dump({"pid": owner.pid, "host": socket.gethostname()}, f)
    os.kill(owner.pid, signal.SIGKILL)
    owner.join(_TIMEOUT)
    with pytest.warns(UserWarning, match=f"stale lock of process {owner.pid}"):
      run = Run(wd)
    assert json.loads(open(lock).read()) == {"pid": os.getpid(), "host": socket.gethostname()}
    run.close()
  finally:
    if owner.is_alive():
      owner.kill()
      owner.join(_TIMEOUT)


def test_lock_of_another_host_is_never_taken_over_without_overwrite(tmp_path):
  lock = tmp_path / ".lock"
  lock.write_text(json.dumps({"pid": 4242, "host": "other-machine"}))
  with pytest.raises(WorkdirInUseError, match=r"process 4242 on host other-machine") as e:
    Run(str(tmp_path))
  assert "overwrite" in str(e.value) and str(lock) in str(e.value)
  assert json.loads(lock.read_text())["host"] == "other-machine"  # left alone
  with pytest.warns(UserWarning, match="other-machine"):
    with Run(str(tmp_path), overwrite=True):
      assert json.loads(lock.read_text())["pid"] == os.getpid()


def _try_once(workdir, outcome):
  try:
    Run(workdir).close()
    outcome.value = 1
  except WorkdirInUseError:
    outcome.value = 0
  except BaseException:
    outcome.value = 2


def _other_process_gets_in(workdir) -> bool:
  outcome = _CTX.Value("i", -1)
  p = _CTX.Process(target=_try_once, args=(workdir, outcome))
  p.start()
  p.join(_TIMEOUT)
  assert outcome.value in (0, 1)
  return bool(outcome.value)


def test_lock_is_reentrant_within_a_process_and_held_until_the_outer_run_closes(tmp_path):
  wd = str(tmp_path)
  with Run(wd):
    with Run(wd):  # a job and the fit it drives
      pass
    assert not _other_process_gets_in(wd)  # the inner close did not release it
  assert _other_process_gets_in(wd)


@pytest.mark.parametrize("content", ["[1, 2, 3]", '{"pid": "abc", "host": "h"}', "x"])
def test_damaged_lock_file_is_replaced_with_a_warning(tmp_path, content):
  lock = tmp_path / ".lock"
  lock.write_text(content)
  with pytest.warns(UserWarning, match=r"\.lock"):
    run = Run(str(tmp_path))
  assert json.loads(lock.read_text())["pid"] == os.getpid()
  run.close()
  assert not lock.exists()


def test_lock_path_that_is_a_directory_is_a_clear_error(tmp_path):
  (tmp_path / ".lock").mkdir()
  with pytest.raises(WorkdirError, match=r"\.lock is a directory") as e:
    Run(str(tmp_path))
  assert "remove it" in str(e.value)
  assert (tmp_path / ".lock").is_dir()  # not ours to delete


def test_workdir_that_is_a_file_or_lies_under_one_is_a_clear_error(tmp_path):
  f = tmp_path / "f"
  f.write_text("x")
  with pytest.raises(WorkdirError, match=f"{f} is a file"):
    Run(str(f))
  with pytest.raises(WorkdirError, match=f"{f} is a file"):
    Run(str(f / "run"))
  assert f.read_text() == "x"
