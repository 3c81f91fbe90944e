"""Atomic output files: written to a temporary file in the same directory, then renamed.

An interrupted run never leaves a half-written result behind: a reader sees the old file or the
new one.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import secrets
import warnings

import numpy as np


def _create_temp(d: str, suffix: str) -> str:
  """A new empty file in ``d``, created with mode 0666 so that the kernel applies the umask (and
  any default ACL) itself, as for ``open``: no process-wide ``os.umask`` call, which would give
  another thread's new files mode 0666 for a moment."""
  while True:
    tmp = os.path.join(d, f".tmp-{secrets.token_hex(8)}{suffix}")
    try:
      fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
      continue
    os.close(fd)
    return tmp


@contextlib.contextmanager
def atomic_path(path: str):
  """Yield a temporary path; on success it replaces ``path`` atomically."""
  d = os.path.dirname(os.path.abspath(path))
  os.makedirs(d, exist_ok=True)
  tmp = _create_temp(d, os.path.splitext(path)[1])
  try:
    yield tmp
    with open(tmp, "rb") as f:
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def read_json(path: str):
  """The JSON value in ``path``; a damaged file is an error naming it."""
  with open(path) as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from e


def read_jsonl(path: str) -> list[dict]:
  """The records of a JSON-lines file (``[]`` when it does not exist).

  A last line without its newline that does not parse is what a kill during a write leaves: it
  is dropped with a warning. Any other line that does not parse is an error naming the line.
  """
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = f.read().split("\n")
  rows = []
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError as e:
      if i == len(lines) - 1:  # no newline after it: an interrupted append
        warnings.warn(
          f"{path}: dropping a partial last line ({len(line)} characters; an interrupted write)",
          stacklevel=2,
        )
        break
      raise ValueError(f"{path}, line {i + 1}: not valid JSON ({e.msg}): {line[:80]!r}") from e
  return rows


def append_jsonl(path: str, rows) -> None:
  """Append records (dicts) to a JSON-lines file, one per line."""
  text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows)
  with open(path, "a") as f:
    f.write(text)


def truncate_jsonl(path: str, upto, key: str = "step") -> None:
  """Keep only the records with ``record[key] <= upto`` (atomically): what a run resumed from
  the checkpoint at ``upto`` has not logged yet goes, so nothing is logged twice. A record that
  is not an object with a number at ``key`` is an error naming the file and line (nothing is
  dropped then)."""
  rows = read_jsonl(path)
  with open(path) as f:
    lines = [i for i, line in enumerate(f.read().split("\n"), 1) if line.strip()]
  for r, lineno in zip(rows, lines):
    pos = r.get(key) if isinstance(r, dict) else None
    if not isinstance(pos, (int, float)) or isinstance(pos, bool):
      raise ValueError(
        f"{path}, line {lineno}: the record {json.dumps(r)[:200]} is not a JSON object with a "
        f"number at {key!r}, so a resumed run cannot tell whether it was logged before or after "
        "the checkpoint. Fix or delete that line (or start afresh with overwrite=True, "
        "--overwrite true)"
      )
  rows = [r for r in rows if r[key] <= upto]
  with atomic_path(path) as tmp, open(tmp, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)


def save_npz(path: str, **arrays) -> None:
  with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a handle: numpy adds no suffix
    np.savez(f, **arrays)


def save_npy(path: str, array) -> None:
  with atomic_path(path) as tmp, open(tmp, "wb") as f:
    np.save(f, np.asarray(array))


def save_text(path: str, text: str) -> None:
  with atomic_path(path) as tmp, open(tmp, "w") as f:
    f.write(text)


def save_json(path: str, obj) -> None:
  if dataclasses.is_dataclass(obj):
    obj = dataclasses.asdict(obj)
  with atomic_path(path) as tmp, open(tmp, "w") as f:
    json.dump(obj, f, indent=2, default=_jsonable)
    f.write("\n")


def save_csv(path: str, columns: dict) -> None:
  """Columns of equal length -> a CSV with a header row."""
  names = list(columns)
  cols = [np.asarray(columns[k]) for k in names]
  with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(names)
    w.writerows(zip(*(c.tolist() for c in cols)))


def save_jsonl(path: str, rows) -> None:
  """Write records (dicts) as a JSON-lines file, atomically."""
  save_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def save_figure(path: str, fig) -> None:
  with atomic_path(path) as tmp:
    fig.savefig(tmp, dpi=120, bbox_inches="tight")


def _jsonable(o):
  if isinstance(o, np.generic):
    return o.item()
  if isinstance(o, np.ndarray):
    return o.tolist()
  return str(o)
