"""The driver every training loop runs under: :class:`Run` owns a work directory, :func:`fit`
drives a pure step with it. Both :func:`fit` and the Denoised MDP agent's training phase issue
their scanned updates through one :class:`Dispatcher` (K steps per jitted call, metrics read back
later, one NaN guard) and log through :meth:`Run.log`.

``Run(workdir, config=...)`` gives, for any loop (epochs of on-device data, or an agent that
interacts with an environment between updates):

* a lock: an OS lock (``fcntl.flock``) on ``workdir/.lock``, taken atomically (of two runs
  started together on one workdir exactly one runs; the other stops at once with
  :class:`WorkdirInUseError` naming the owner's pid and host, which the file holds for the
  message). The OS releases the lock of a dead owner, however it died, so the next run takes
  it over (with a warning when the owner left its file behind). A lock file naming another
  host (a network file system, where the OS lock may not reach) is never taken over without
  ``overwrite``. Re-entrant within a process (a job and the :func:`fit` it drives). A workdir
  that is a file, lies under one, or whose lock file is a directory is a
  :class:`WorkdirError` (see :mod:`jaxprune.core.lock`);
* checkpoints (Orbax) of a state pytree with JSON metadata: the run's config, its position
  (the logging counter, e.g. the step or the env steps) and any counters the loop keeps;
  files that belong to a checkpoint (an agent's replay) are written before it, named by its
  step, restored with it and deleted with it (:func:`fit` saves at the end and, by default, every
  :data:`CKPT_SECONDS` of wall time, so a killed run resumes close to where it was);
* resume: a config that differs from the checkpoint's (other than the fields that may change,
  e.g. the number of steps) is an error listing the fields, before any work; ``overwrite``
  starts afresh instead;
* overwrite that loses nothing until the new run has something: ``overwrite`` moves every
  entry of the workdir but the lock (checkpoints, files, metrics, config, summaries, plots)
  into ``workdir/.replaced/`` and deletes that folder only once the new run has written its
  first checkpoint (:meth:`Run.save`; a job that stores progress otherwise calls
  :meth:`Run.discard_replaced`), or when it closes without an error. A run that fails before
  (an exception leaving the ``with`` block, or ``close(failed=True)``) gets the old run back
  and its own files go. A process killed in between leaves ``.replaced/`` behind: the next
  Run on the workdir restores it before anything else, with a warning (or, when the killed
  run had written a checkpoint, discards it, with a warning);
* ``metrics.jsonl``: records appended at log time, records past the restored checkpoint
  dropped on resume (a record that is not an object with a number at the position key is an
  error naming the file and line), and a NaN/Inf guard that names the first bad record and
  metric;
* a progress bar and rates.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import time
import warnings
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from jaxprune.core import config as config_lib
from jaxprune.core import io
from jaxprune.core import lock as lock_lib
from jaxprune.core.cache import memoize
from jaxprune.core.checkpoint import Checkpointer
from jaxprune.core.lock import WorkdirError, WorkdirInUseError
from jaxprune.core.loop import run_steps

__all__ = [  # WorkdirError and WorkdirInUseError live in jaxprune.core.lock, raised from here
  "CKPT_SECONDS",
  "ConfigMismatchError",
  "Dispatcher",
  "NonFiniteError",
  "Run",
  "WorkdirError",
  "WorkdirInUseError",
  "check_finite_record",
  "check_finite_steps",
  "cli",
  "config_diff",
  "fit",
  "jitted_dispatch",
]


class NonFiniteError(FloatingPointError):
  """A logged metric became NaN or inf."""


class ConfigMismatchError(ValueError):
  """The work directory holds a checkpoint of a run with a different config."""


def cli(main: Callable[[], Any], *errors: type[BaseException]) -> Any:
  """Run a script's ``main()``. A run stopped on purpose (another process holds the workdir,
  the workdir cannot be used, the config differs from the checkpoint's, a metric went NaN, a
  checkpoint cannot be read, or one of ``errors``) exits with status 1 and its message on
  stderr, without a traceback; ``JAXPRUNE_TRACEBACK=1`` keeps the traceback. Any other
  exception propagates."""
  from jaxprune.core.checkpoint import CheckpointError

  stops = (WorkdirInUseError, WorkdirError, ConfigMismatchError, NonFiniteError, CheckpointError)
  stops = (*stops, *errors)
  try:
    return main()
  except stops as e:
    if os.environ.get("JAXPRUNE_TRACEBACK") == "1":
      raise
    raise SystemExit(f"error ({type(e).__name__}): {e}") from None


def _jsonable(config) -> dict:
  if config is None:
    return {}
  if dataclasses.is_dataclass(config):
    config = config_lib.to_dict(config)
  return json.loads(json.dumps(config, default=str))  # tuples -> lists, numpy -> str


def config_diff(
  old: Mapping, new: Mapping, may_change: Iterable[str] = (), defaults: Mapping | None = None
) -> list[str]:
  """``["name: old -> new", ...]`` over the flattened (dotted) fields, except ``may_change``. A
  field ``old`` lacks (added to the code since) matches when ``new`` holds its default (dotted
  names in ``defaults``): a default keeps the behaviour the old run had."""
  a, b = config_lib.flatten(old), config_lib.flatten(new)
  skip = set(may_change)
  defaults = _jsonable(dict(defaults or {}))
  added_at_default = {k for k in set(b) - set(a) if k in defaults and defaults[k] == b[k]}
  return [
    f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}"
    for k in sorted(set(a) | set(b))
    if k not in skip and k not in added_at_default and a.get(k) != b.get(k)
  ]


def check_finite_record(record: Mapping, where: str) -> None:
  """Raise :class:`NonFiniteError` when any number in ``record`` (lists too) is NaN or inf."""
  bad = {}
  for k, v in record.items():
    vals = v if isinstance(v, (list, tuple)) else [v]
    if any(isinstance(x, (float, int, np.number)) and not np.isfinite(x) for x in vals):
      bad[k] = v
  if bad:
    raise NonFiniteError(f"non-finite {', '.join(bad)} at {where} (values: {bad})")


LOCK = ".lock"
ASIDE = ".replaced"
"""Where ``Run(overwrite=True)`` keeps the old run until the new one has checkpointed."""
ASIDE_PARTIAL = ".replaced.partial"  # being moved aside or back: holds old entries only
ASIDE_DISCARD = ".replaced.discard"  # being deleted
_SPECIAL = (LOCK, ASIDE, ASIDE_PARTIAL, ASIDE_DISCARD)
_ASIDE: dict[str, tuple[int, int]] = {}  # workdir -> (pid, id of the Run that moved it aside)


def _remove(path: str) -> None:
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path)
  else:
    os.remove(path)


def _make_workdir(workdir: str) -> None:
  """Create ``workdir``; a file in its place or above it is a :class:`WorkdirError`."""
  p = workdir
  while p and not os.path.lexists(p):
    p = os.path.dirname(p)
  if p and not os.path.isdir(p):
    raise WorkdirError(
      f"cannot use {workdir} as a work directory: {p} is a file; pass another workdir (or "
      "move the file away)"
    )
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise WorkdirError(f"cannot create the work directory {workdir}: {e.strerror}") from e


class Run:
  """A training run's work directory (see the module docstring). Use as a context manager.

  ``position_key`` is the counter metrics are logged and truncated by (``"step"`` for
  :func:`fit`, ``"env_steps"`` for the agent). ``may_change`` are config fields a resumed run
  may change (e.g. the number of steps; dotted names for nested fields).
  """

  def __init__(
    self,
    workdir: str,
    *,
    config=None,
    may_change: Iterable[str] = (),
    overwrite: bool = False,
    position_key: str = "step",
    max_to_keep: int = 2,
  ):
    self.workdir = os.path.abspath(workdir)
    self.config = _jsonable(config)
    self._defaults = config_lib.field_defaults(config) if dataclasses.is_dataclass(config) else {}
    self.may_change = tuple(may_change)
    self.position_key = position_key
    self.metrics_path = os.path.join(self.workdir, "metrics.jsonl")
    self._lock_path = os.path.join(self.workdir, LOCK)
    self._bar = None
    self._ckpt = None
    self._owns_lock = False
    self._ckpt_dir = os.path.join(self.workdir, "checkpoints")
    self._max_to_keep = max_to_keep
    _make_workdir(self.workdir)
    lock_lib.acquire(self._lock_path, workdir=self.workdir, take_over_foreign=overwrite)
    self._owns_lock = True
    try:
      if lock_lib.held_count(self._lock_path) == 1:  # not a Run nested in one of this process
        self._recover_aside()
      if overwrite:
        self._move_aside()
      if os.path.isdir(self._ckpt_dir):  # created on the first save, not before
        self._open_checkpointer()
        self._check_config()
    except BaseException:
      self.close(failed=True)
      raise

  def close(self, *, failed: bool = False) -> None:
    """Close the progress bar and the checkpointer, release the lock. A run opened with
    ``overwrite`` that has not checkpointed yet gives the old run back when ``failed`` (its own
    files go), else discards it (see the module docstring)."""
    if self._bar is not None:
      self._bar.close()
      self._bar = None
    if self._ckpt is not None:
      self._ckpt.close()
      self._ckpt = None
    if self._owns_lock:
      try:
        if _ASIDE.get(self.workdir) == (os.getpid(), id(self)):
          del _ASIDE[self.workdir]
          if failed:
            self._restore_aside()
          else:
            self._discard_aside()
      finally:
        self._owns_lock = False
        lock_lib.release(self._lock_path)

  def __enter__(self) -> "Run":
    return self

  def __exit__(self, exc_type, *exc) -> None:
    self.close(failed=exc_type is not None)

  def _open_checkpointer(self) -> Checkpointer:
    if self._ckpt is None:
      self._ckpt = Checkpointer(self._ckpt_dir, max_to_keep=self._max_to_keep)
    return self._ckpt

  # -- overwrite: the old run aside until the new one has checkpointed ---------------------------
  def _path(self, name: str) -> str:
    return os.path.join(self.workdir, name)

  def _move_aside(self) -> None:
    entries = [e for e in os.listdir(self.workdir) if e not in _SPECIAL]
    if not entries:
      return
    if _ASIDE.get(self.workdir, (None,))[0] == os.getpid():
      # a Run nested in one of this process that moved the old run aside already: what is
      # here is that new run's, which asked to be overwritten
      for e in entries:
        _remove(self._path(e))
      return
    partial = self._path(ASIDE_PARTIAL)
    os.mkdir(partial)
    for e in entries:
      os.rename(self._path(e), os.path.join(partial, e))
    os.rename(partial, self._path(ASIDE))  # complete: from now on the workdir is the new run's
    _ASIDE[self.workdir] = (os.getpid(), id(self))

  def _restore_aside(self) -> None:
    """The new run's entries go, the old run's (``ASIDE``) come back."""
    aside, partial = self._path(ASIDE), self._path(ASIDE_PARTIAL)
    if os.path.isdir(aside):
      for e in os.listdir(self.workdir):
        if e not in _SPECIAL:
          _remove(self._path(e))
      os.rename(aside, partial)
    if os.path.isdir(partial):  # only old entries here and in the workdir: move them all back
      for e in os.listdir(partial):
        if os.path.lexists(self._path(e)):
          _remove(self._path(e))
        os.rename(os.path.join(partial, e), self._path(e))
      os.rmdir(partial)

  def _discard_aside(self) -> None:
    if os.path.isdir(self._path(ASIDE)):
      os.rename(self._path(ASIDE), self._path(ASIDE_DISCARD))
    if os.path.lexists(self._path(ASIDE_DISCARD)):
      _remove(self._path(ASIDE_DISCARD))

  def discard_replaced(self) -> None:
    """The new run has durable progress: the old run that ``overwrite`` moved aside goes now
    (:meth:`save` calls it; a job that stores its progress otherwise calls it itself). Nothing
    happens when no old run is aside."""
    if _ASIDE.get(self.workdir, (None,))[0] == os.getpid():
      del _ASIDE[self.workdir]
      self._discard_aside()

  def _recover_aside(self) -> None:
    """What a process killed during an overwrite left (this process holds no Run here)."""
    if os.path.lexists(self._path(ASIDE_DISCARD)):
      _remove(self._path(ASIDE_DISCARD))  # the discard was decided already
    aside, partial = self._path(ASIDE), self._path(ASIDE_PARTIAL)
    if not (os.path.isdir(aside) or os.path.isdir(partial)):
      return
    if os.path.isdir(aside) and os.path.isdir(self._ckpt_dir) and self._has_checkpoint():
      warnings.warn(
        f"{self.workdir}: a run started with overwrite stopped after its first checkpoint; "
        f"discarding the previous run it had moved aside ({aside})",
        stacklevel=3,
      )
      self._discard_aside()
      return
    warnings.warn(
      f"{self.workdir}: a run started with overwrite stopped before its first checkpoint; "
      f"restoring the previous run from {aside if os.path.isdir(aside) else partial} (the "
      "stopped run's files are removed)",
      stacklevel=3,
    )
    self._restore_aside()

  def _has_checkpoint(self) -> bool:
    ckpt = Checkpointer(self._ckpt_dir, max_to_keep=self._max_to_keep)
    try:
      return bool(ckpt.all_steps())
    finally:
      ckpt.close()

  # -- config ------------------------------------------------------------------------------------
  def _check_config(self) -> None:
    meta = self._ckpt.read_meta()
    if meta is None or "config" not in meta:
      return
    diff = config_diff(meta["config"], self.config, self.may_change, self._defaults)
    if diff:
      raise ConfigMismatchError(
        f"{self.workdir} holds a checkpoint (step {self._ckpt.latest_step()}) of a run with "
        "a different config:\n  " + "\n  ".join(diff) + "\nUse a new workdir, or "
        "overwrite=True to discard it (Run(..., overwrite=True), a job config's overwrite "
        "field; --overwrite true in the scripts)"
        + (
          f" (fields that may change on resume: {', '.join(self.may_change)})"
          if self.may_change
          else ""
        )
      )

  # -- checkpoints -------------------------------------------------------------------------------
  def file_path(self, name: str, step: int, ext: str = ".npz") -> str:
    """Where file ``name`` of the checkpoint at ``step`` lives (``workdir/files/name/``)."""
    return os.path.join(self.workdir, "files", name, f"{int(step):010d}{ext}")

  def save(
    self,
    step: int,
    state,
    *,
    position: int,
    meta: Mapping | None = None,
    files: Mapping[str, Callable[[str], None]] | None = None,
  ) -> None:
    """Checkpoint ``state`` at ``step``; ``position`` is the logging counter it corresponds to.

    ``files``: ``name -> write(path)`` for data that belongs to this checkpoint (written first,
    atomically by the writer, and deleted when the checkpoint is).
    """
    for name, write in (files or {}).items():
      path = self.file_path(name, step)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      write(path)
    self._open_checkpointer().save(
      int(step), state, {"config": self.config, "position": int(position), **dict(meta or {})}
    )
    self.discard_replaced()
    kept = set(self._ckpt.all_steps())
    for name in files or {}:
      for p in glob.glob(os.path.join(self.workdir, "files", name, "*")):
        stem = os.path.splitext(os.path.basename(p))[0]
        if stem.isdigit() and int(stem) not in kept:
          os.remove(p)

  def restore(self, like_state):
    """``(state, meta)`` from the latest checkpoint, or ``None`` (a fresh start).

    Either way, records of ``metrics.jsonl`` past the checkpoint's position go (all of them on
    a fresh start), so a resumed run never logs a record twice. ``meta["files"]`` maps each file
    name saved with the checkpoint to its path.
    """
    restored = None if self._ckpt is None else self._ckpt.restore_latest(like_state)
    position = -1 if restored is None else int(restored[1].get("position", -1))
    if os.path.exists(self.metrics_path):
      io.truncate_jsonl(self.metrics_path, position, key=self.position_key)
    if restored is None:
      return None
    state, meta = restored
    step = self._ckpt.latest_step()
    names = [os.path.basename(d) for d in glob.glob(os.path.join(self.workdir, "files", "*"))]
    meta["files"] = {
      n: self.file_path(n, step) for n in names if os.path.exists(self.file_path(n, step))
    }
    return state, meta

  def checkpoint_steps(self) -> list[int]:
    return [] if self._ckpt is None else self._ckpt.all_steps()

  # -- metrics and progress ----------------------------------------------------------------------
  def log(self, records: Iterable[Mapping]) -> None:
    """Check (NaN / inf -> :class:`NonFiniteError`, nothing written) and append records."""
    records = list(records)
    for r in records:
      check_finite_record(r, f"{self.position_key} {r.get(self.position_key)}")
    if records:
      io.append_jsonl(self.metrics_path, records)

  def records(self) -> list[dict]:
    return io.read_jsonl(self.metrics_path)

  def progress(
    self, *, total: int, initial: int, unit: str, desc: str, enabled: bool = True
  ) -> Any:
    """The run's progress bar (closed with the run)."""
    self._bar = tqdm(
      total=total, initial=initial, unit=unit, desc=desc, disable=not enabled, smoothing=0.05
    )
    return self._bar


# ---------------------------------------------------------------------------------------------
# the dispatch: K scanned steps per jitted call, metrics read back later, one NaN guard


def check_finite_steps(
  fetched: Sequence[tuple[int, Mapping[str, Any]]], where: Callable[[int], str]
) -> None:
  """Raise :class:`NonFiniteError` naming the first step whose metrics hold a NaN or inf.

  ``fetched``: ``(at, metrics)`` per dispatch in order, each metric K x ... (numpy) for steps
  ``at + 1 ... at + K`` (a trailing axis, e.g. of vmapped models, counts as one step);
  ``where(n)`` names step ``n`` in the message.
  """
  for at, metrics in fetched:
    arrays = {k: np.asarray(v) for k, v in metrics.items()}
    arrays = {k: v for k, v in arrays.items() if v.ndim and np.issubdtype(v.dtype, np.number)}
    if not arrays:
      continue
    k = len(next(iter(arrays.values())))
    bad = np.zeros(k, bool)
    for v in arrays.values():
      bad |= ~np.isfinite(v).reshape(k, -1).all(axis=1)
    if bad.any():
      i = int(np.argmax(bad))
      values = {name: v[i].tolist() for name, v in arrays.items() if not np.isfinite(v[i]).all()}
      raise NonFiniteError(f"non-finite {', '.join(values)} at {where(at + i + 1)}: {values}")


class Dispatcher:
  """The one driver of scanned dispatches: :func:`fit` and the Denoised MDP agent's training
  phase both run through it.

  ``dispatch(state, *args) -> (state, metrics)`` runs K steps in one jitted ``lax.scan`` with the
  state donated (e.g. :func:`jitted_dispatch`), each metric stacked K x ... . :meth:`issue` and
  :meth:`run` issue dispatches and read nothing back, so the device runs ahead of the host (the
  host samples the next batches meanwhile). :meth:`fetch` reads the pending metrics in one
  transfer and checks them: first the NaN guard (:func:`check_finite_steps`: a NaN or inf
  anywhere raises :class:`NonFiniteError` naming the first bad step), then each of ``checks``,
  ``check(metrics, at)`` per dispatch in order (extra guards such as a divergence bound, raising
  their own errors). The caller turns what it returns into records for :meth:`Run.log`.

  Steps are numbered as the state's step after them: a dispatch issued at step ``at`` runs steps
  ``at + 1 ... at + K``; ``where(n)`` names step ``n`` in errors (default ``"step n"``).
  """

  def __init__(
    self,
    dispatch: Callable,
    *,
    where: Callable[[int], str] | None = None,
    checks: Iterable[Callable[[Mapping[str, np.ndarray], int], None]] = (),
  ):
    self.dispatch = dispatch
    self.where = where if where is not None else (lambda n: f"step {n}")
    self.checks = tuple(checks)
    self._pending: list[tuple[int, Any]] = []  # (at, metrics still on the device)

  @property
  def num_pending(self) -> int:
    """Dispatches whose metrics are not fetched yet."""
    return len(self._pending)

  def issue(self, state, at: int, *args):
    """``dispatch(state, *args)`` for the steps after ``at``; returns the new state (the one
    passed in is donated) and keeps the metrics pending."""
    state, metrics = self.dispatch(state, *args)
    self._pending.append((at, metrics))
    return state

  def run(
    self,
    state,
    *,
    start: int,
    stop: int,
    per_dispatch: int,
    args: Callable[[int], tuple] = lambda length: (),
  ) -> Iterator[tuple[int, int, Any]]:
    """Issue steps ``start + 1 ... stop``, ``per_dispatch`` per dispatch (the last one shorter
    when they do not divide). ``args(length)`` is the data source: each dispatch's arguments
    after the state (fixed data, or batches sampled on the host per dispatch). Yields
    ``(at, at + length, state)`` after issuing each dispatch: the caller fetches, logs,
    checkpoints between dispatches, or stops (``break``) as it likes."""
    if per_dispatch < 1:
      raise ValueError(f"need per_dispatch >= 1, got {per_dispatch}")
    at = start
    while at < stop:
      length = min(per_dispatch, stop - at)
      state = self.issue(state, at, *args(length))
      yield at, at + length, state
      at += length

  def fetch(self, *, keep_newest: bool = False) -> list[tuple[int, dict[str, np.ndarray]]]:
    """The pending metrics, ``[(at, {name: K x ... numpy}), ...]`` in dispatch order, checked
    (see the class docstring). ``keep_newest`` leaves the last dispatch running: its metrics
    are read next time."""
    n_take = len(self._pending) - (1 if keep_newest else 0)
    if n_take <= 0:
      return []
    fetched = jax.device_get(self._pending[:n_take])
    del self._pending[:n_take]
    check_finite_steps(fetched, self.where)
    for check in self.checks:
      for at, metrics in fetched:
        check(metrics, at)
    return fetched


# ---------------------------------------------------------------------------------------------
# fit: the loop for steps that draw their own data (or take fixed data)


@memoize
def jitted_dispatch(step: Callable, mesh: Mesh | None = None) -> Callable:
  """``dispatch(state, data, length) -> (state, stacked metrics)``: ``length`` steps in one
  ``lax.scan``, state donated. Memoised: fits that reuse a (memoised) step share compilations."""

  def dispatch(state, data, length):
    return run_steps(lambda s, _: step(s, data), state, length=length)

  return jax.jit(dispatch, static_argnums=2, donate_argnums=0)


def _current_step(state) -> int:
  return int(np.max(jax.device_get(state.step)))  # vmapped states carry one step per model


_now = time.monotonic  # the checkpoint clock (a name of its own, so tests can advance it)

CKPT_SECONDS = 60.0
""":func:`fit`'s default ``ckpt_seconds``: a killed run loses at most about a minute of work, and
saving costs a small fraction of the time (a few tenths of a second for the models here)."""


def fit(
  step: Callable,
  state,
  data=None,
  *,
  num_steps: int,
  run: Run | None = None,
  workdir: str | None = None,
  config=None,
  steps_per_dispatch: int = 10,
  log_every: int = 10,
  ckpt_every: int | None = None,
  ckpt_seconds: float | None = CKPT_SECONDS,
  mesh: Mesh | None = None,
  progress: bool = True,
  stop_at: int | None = None,
  desc: str = "train",
):
  """Run ``step(state, data)`` until ``state.step == num_steps``; returns ``(state, records)``.

  ``state`` is any pytree with a ``step`` field (a ``TrainState``, a state carrying trackers, or
  a stack of states for models vmapped over seeds).

  * One jitted dispatch runs ``steps_per_dispatch`` steps (``lax.scan``) through a
    :class:`Dispatcher`; the metrics of a dispatch are read only after the next one is issued.
  * The caller's ``state`` is never deleted: fit copies it once on entry and donates only its
    own copies to the dispatches (so one init can start several fits).
  * Every step's metrics are logged through the :class:`Run` (``metrics.jsonl``) at log
    intervals; NaN or inf raises :class:`NonFiniteError` naming the first bad step.
  * With ``run`` (or ``workdir``, for which a :class:`Run` with ``config`` is opened and
    closed here), checkpoints at the end and at the first dispatch boundary after every
    ``ckpt_every`` steps (off with ``None``, the default) or ``ckpt_seconds`` of wall time since
    the last save (:data:`CKPT_SECONDS` by default; off with ``None``), whichever comes first; a
    new call resumes from the latest one (state, hence data position), so a killed run
    resumes where it was. ``num_steps`` may change on resume.
  * ``stop_at`` ends the run early without a final checkpoint, as a kill would (for tests).
  """
  if num_steps < 0 or steps_per_dispatch < 1 or log_every < 1:
    raise ValueError("need num_steps >= 0, steps_per_dispatch >= 1 and log_every >= 1")
  if ckpt_seconds is not None and not ckpt_seconds > 0:
    raise ValueError(
      f"need ckpt_seconds > 0 (or None for no timed checkpoints), got {ckpt_seconds}"
    )
  if run is None and workdir is not None:
    with Run(workdir, config=config) as own:
      return fit(
        step,
        state,
        data,
        num_steps=num_steps,
        run=own,
        steps_per_dispatch=steps_per_dispatch,
        log_every=log_every,
        ckpt_every=ckpt_every,
        ckpt_seconds=ckpt_seconds,
        mesh=mesh,
        progress=progress,
        stop_at=stop_at,
        desc=desc,
      )
  restored = None if run is None else run.restore(state)
  # the caller's arrays are copied (may_alias=False), restored ones are fit's own already: the
  # dispatches donate what they get, and the caller may still hold (and reuse) its state
  may_alias = None if restored is not None else False
  if restored is not None:
    state = restored[0]
  if mesh is not None:
    state = jax.device_put(state, NamedSharding(mesh, P()), may_alias=may_alias)
  else:
    # committed to where they are, like restored arrays: a fresh and a resumed fit then share
    # one compilation of the dispatch (committed-ness is part of jit's cache key)
    commit = lambda x: (
      jax.device_put(x, x.sharding, may_alias=may_alias) if isinstance(x, jax.Array) else x
    )
    state = jax.tree.map(commit, state)
  dispatcher = Dispatcher(jitted_dispatch(step, mesh))
  start = _current_step(state)
  records: list[dict] = []
  t0 = time.perf_counter()
  bar = tqdm(total=num_steps, initial=start, desc=desc, unit="step", disable=not progress)

  def log(fetched):
    rows = []
    for at, m in fetched:
      k = len(next(iter(m.values()))) if m else 0
      for i in range(k):
        # metrics of vmapped models (a leading model axis) are logged as their mean
        rows.append({"step": at + i + 1, **{name: float(np.mean(v[i])) for name, v in m.items()}})
    if run is not None:
      run.log(rows)
    records.extend(rows)
    if rows:
      shown = {k: v for k, v in rows[-1].items() if k != "step"}
      bar.set_postfix({k: f"{v:.4g}" for k, v in list(shown.items())[:4]})

  cur = start
  end = num_steps if stop_at is None else min(num_steps, stop_at)
  last_save = _now()
  try:
    if cur < end:
      dispatches = dispatcher.run(
        state,
        start=start,
        stop=num_steps,
        per_dispatch=steps_per_dispatch,
        args=lambda length: (data, length),
      )
      for prev, cur, state in dispatches:
        bar.update(cur - prev)
        crossed = lambda every: every and (cur // every > prev // every)
        if crossed(log_every):
          log(dispatcher.fetch(keep_newest=True))  # the dispatch just issued keeps running
        timed = run is not None and ckpt_seconds is not None and _now() - last_save >= ckpt_seconds
        if run is not None and (crossed(ckpt_every) or timed or cur >= num_steps):
          log(dispatcher.fetch())
          run.save(cur, state, position=cur)
          last_save = _now()
        if cur >= end:
          break
    if cur >= num_steps:
      log(dispatcher.fetch())
  finally:
    bar.close()
  if progress and cur > start:
    dt = time.perf_counter() - t0
    print(f"{desc}: steps {start} -> {cur} in {dt:.1f} s ({(cur - start) / dt:.1f} steps/s)")
  return state, records
