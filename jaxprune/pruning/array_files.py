"""Reading ``.npy`` / ``.npz`` files: a missing, empty, foreign or damaged file is an error that
names the file and what is wrong with it (used by :mod:`jaxprune.pruning.data` and
:mod:`jaxprune.pruning.npm_data`)."""

from __future__ import annotations

import os
import zipfile
import zlib

import numpy as np

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK"


def _damaged(path: str, what: str, e: Exception) -> ValueError:
  """A ValueError naming ``path`` and what is wrong with it (empty, not numpy, truncated)."""
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    head = f.read(8)
  magic = _ZIP_MAGIC if path.endswith(".npz") else _NPY_MAGIC
  if size == 0:
    why = "it is empty (0 bytes)"
  elif not head.startswith(magic):
    why = f"it is not a NumPy {os.path.splitext(path)[1]} file (it starts with {head!r})"
  else:
    why = f"it is damaged or truncated ({size} bytes; numpy: {type(e).__name__}: {e})"
  return ValueError(f"cannot read {what} {path}: {why}")


# what numpy raises for empty, truncated, foreign or corrupt files
_READ_ERRORS = (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error, KeyError)


def load_npy(path: str, *, what: str = "array file", mmap: bool = False) -> np.ndarray:
  """A ``.npy`` file (memory-mapped with ``mmap``); a damaged one is a ``ValueError`` naming it."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"{what} not found: {path}")
  try:
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
  except _READ_ERRORS as e:
    raise _damaged(path, what, e) from e


def load_npz(path: str, keys, *, what: str = "array file") -> tuple[dict, list[str]]:
  """``(arrays, names)``: the arrays ``keys`` (those present, read now) of a ``.npz`` file and
  the names of all its arrays; a damaged file is a ``ValueError`` naming it."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"{what} not found: {path}")
  try:
    with np.load(path, allow_pickle=False) as z:
      return {k: z[k] for k in keys if k in z.files}, list(z.files)
  except _READ_ERRORS as e:
    raise _damaged(path, what, e) from e


def file_view(x):
  """(path, byte offset) when ``x`` is a whole, C-contiguous memory-mapped array, else None."""
  if isinstance(x, np.memmap) and getattr(x, "filename", None) and x.flags.c_contiguous:
    return x.filename, int(x.offset)
  return None


def read_range(x, start: int, stop: int) -> np.ndarray:
  """Rows ``start:stop`` of ``x`` as an array of its own dtype. A memory-mapped file is read with
  ``readinto`` (its pages never map into this process, so a pass over the file does not grow
  the resident memory); any other array is sliced."""
  view = file_view(x)
  if view is None:
    return np.asarray(x[start:stop])
  out = np.empty((stop - start,) + x.shape[1:], x.dtype)
  row_bytes = x.dtype.itemsize * int(np.prod(x.shape[1:], dtype=np.int64))
  with open(view[0], "rb") as f:
    f.seek(view[1] + start * row_bytes)
    f.readinto(memoryview(out.reshape(-1)).cast("B"))
  return out
