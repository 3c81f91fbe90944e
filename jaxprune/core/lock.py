"""The work directory's lock: an OS lock (``fcntl.flock``) on ``workdir/.lock`` is the truth.

Taking it is atomic (two processes that start together: exactly one gets it), and the OS
releases it when its owner dies, however it dies, so a dead owner's lock needs no stale-lock
logic. The file holds ``{"pid", "host"}`` of the owner, written after the lock is taken, for
the messages only; besides, a file that names another live process of this host (a lock of an
older version of this code) or a process of another host (where ``flock`` over a network file
system may not reach) is never taken over: the latter only with ``take_over_foreign``.

Re-entrant within one process (a job holds the lock and the :func:`jaxprune.core.run.fit` it
drives opens the same workdir): a count per lock; the OS lock goes with the last release. The
file is deleted at the last release, while the lock is still held; whoever then takes the lock
of the unlinked file sees that the path names another file (or none) and retries.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import warnings


class WorkdirInUseError(RuntimeError):
  """Another live process holds the work directory's lock."""


class WorkdirError(ValueError):
  """The work directory (or its lock file) is not something a run can use."""


_HELD: dict[str, list] = {}  # lock path -> [pid, fd, count]; the pid drops what a fork inherits
_GUARD = threading.Lock()  # threads of one process share _HELD


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  return True


def _owner(text: str) -> dict | None:
  """The ``{"pid": int, "host": str}`` a lock file holds; None for anything else."""
  try:
    owner = json.loads(text)
  except ValueError:
    return None
  if not isinstance(owner, dict):
    return None
  pid, host = owner.get("pid"), owner.get("host")
  if type(pid) is not int or not isinstance(host, str):
    return None
  return {"pid": pid, "host": host}


def _read(fd: int) -> str:
  os.lseek(fd, 0, os.SEEK_SET)
  data = b""
  while chunk := os.read(fd, 65536):
    data += chunk
  return data.decode("utf-8", "replace")


def _same_file(fd: int, path: str) -> bool:
  try:
    st = os.stat(path)
  except FileNotFoundError:
    return False
  fst = os.fstat(fd)
  return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def _open(path: str) -> int:
  try:
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except IsADirectoryError:
    raise WorkdirError(
      f"{path} is a directory, not a lock file; remove it (rmdir) and start the run again"
    ) from None
  except OSError as e:
    raise WorkdirError(f"cannot open the lock file {path}: {e.strerror}") from e


def acquire(path: str, *, workdir: str, take_over_foreign: bool = False) -> None:
  """Take the lock at ``path`` (``workdir``'s) or raise :class:`WorkdirInUseError`."""
  with _GUARD:
    _acquire(os.path.abspath(path), workdir, take_over_foreign)


def _acquire(path: str, workdir: str, take_over_foreign: bool) -> None:
  me = {"pid": os.getpid(), "host": socket.gethostname()}
  for p in [p for p, held in _HELD.items() if held[0] != me["pid"]]:  # inherited by a fork
    os.close(_HELD.pop(p)[1])  # closing a copy leaves the parent's lock in place
  if path in _HELD:
    _HELD[path][2] += 1
    return
  while True:
    fd = _open(path)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      text = _read(fd)
      os.close(fd)
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise WorkdirError(f"cannot lock {path}: {e.strerror}") from e
      owner = _owner(text)
      who = (
        f"process {owner['pid']} on host {owner['host']}"
        if owner
        else "another process (which is writing its pid into the lock file)"
      )
      raise WorkdirInUseError(
        f"{workdir} is in use by {who} (lock file {path}); wait for it to finish or use "
        "another workdir"
      ) from None
    if _same_file(fd, path):
      break
    os.close(fd)  # we locked a file its last owner had just deleted: take the new one
  try:
    text = _read(fd)
    owner = _owner(text)
    if owner is None and text.strip():
      warnings.warn(
        f"{path}: the lock file held {text[:80]!r}, not a lock of this code; no process holds "
        "it, so it is replaced",
        stacklevel=5,
      )
    elif owner is not None and owner["pid"] != me["pid"]:
      pid, host = owner["pid"], owner["host"]
      if host == me["host"] and pid > 0 and _pid_alive(pid):
        raise WorkdirInUseError(
          f"{workdir} is in use by process {pid} (lock file {path}, written by a process that "
          "holds no OS lock on it: an older version of this code). Wait for it to finish or use "
          f"another workdir; if process {pid} is not a run on this workdir, delete {path}"
        )
      if host != me["host"] and not take_over_foreign:
        raise WorkdirInUseError(
          f"{workdir} is in use by process {pid} on host {host} (lock file {path}); this host "
          f"cannot tell whether it still runs. Wait for it to finish; if it no longer runs, "
          f"delete {path}, or discard its run with overwrite=True (--overwrite true)"
        )
      if host == me["host"]:
        why = "which is no longer running"
      else:
        why = "as overwrite=True asks (this host cannot tell whether it still runs)"
      warnings.warn(
        f"{workdir}: taking over the stale lock of process {pid} on {host}, {why}",
        stacklevel=5,
      )
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
  except BaseException:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    raise
  _HELD[path] = [me["pid"], fd, 1]


def release(path: str) -> None:
  """Undo one :func:`acquire`; the last one deletes the file and releases the OS lock."""
  with _GUARD:
    _release(os.path.abspath(path))


def _release(path: str) -> None:
  held = _HELD.get(path)
  if held is None or held[0] != os.getpid():
    return
  held[2] -= 1
  if held[2] > 0:
    return
  del _HELD[path]
  fd = held[1]
  try:
    if _same_file(fd, path):
      os.remove(path)  # while still locked: see the module docstring
  finally:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def held_count(path: str) -> int:
  """How many times this process holds the lock at ``path`` (0: not at all)."""
  held = _HELD.get(os.path.abspath(path))
  return held[2] if held is not None and held[0] == os.getpid() else 0
