"""End-to-end smoke tests of scripts/prune.py and the pruning job."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxprune.pruning.data import load_embeddings, load_tfds
from jaxprune.pruning.kmeans_config import KMeansConfig
from jaxprune.pruning.prune import run
from jaxprune.pruning.prune_config import PruneConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _check_outputs(workdir, n, n_kept):
  z = np.load(os.path.join(workdir, "scores.npz"))
  assert z["score"].shape == (n,) and np.isfinite(z["score"]).all()
  kept = np.load(os.path.join(workdir, "kept_indices.npy"))
  assert len(kept) == n_kept and np.all(np.diff(kept) > 0)
  np.testing.assert_array_equal(np.flatnonzero(z["kept"]), kept)
  with open(os.path.join(workdir, "scores.csv")) as f:
    assert len(f.readlines()) == n + 1
  for name in ("config.json", "summary.json", "hardness_hist.png", "kept_indices.json"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0
  assert not [f for f in os.listdir(workdir) if f.startswith(".tmp-")]  # atomic writes
  return z, kept


def test_script_on_default_data(tmp_path):
  """The main job's defaults (SimCLR embeddings, k = 100), with a shorter SimCLR run."""
  wd = str(tmp_path / "run")
  r = subprocess.run(
    [
      sys.executable,
      os.path.join(ROOT, "scripts", "prune.py"),
      "--workdir",
      wd,
      "--fraction",
      "0.3",
      "--mode",
      "hard",
      "--ssl.steps",
      "60",
      "--progress",
      "false",
    ],
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert r.returncode == 0, r.stderr[-3000:]
  assert "kept 404 of 1348" in r.stdout and "class: before -> after" in r.stdout
  z, kept = _check_outputs(wd, 1348, 404)
  # hard mode keeps exactly the highest scores
  assert z["score"][kept].min() >= np.delete(z["score"], kept).max()
  assert os.path.getsize(os.path.join(wd, "extremes.png")) > 0
  summary = json.load(open(os.path.join(wd, "summary.json")))
  assert summary["k"] == 100 and summary["kmeans_converged"]  # the k sweep's default
  assert sum(a for _, a in summary["per_class_before_after"].values()) == 404


def test_tfds_mock_data(tmp_path):
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=40):
    ds = load_tfds("mnist", split="train")
    assert ds.images.shape == (40, 28, 28, 1) and ds.images.dtype == np.uint8
    assert ds.labels.shape == (40,)
    wd = str(tmp_path / "mnist")
    s = run(
      PruneConfig(
        data="mnist",
        embedding="pixels",
        kmeans=KMeansConfig(k=4),
        fraction=0.25,
        mode="easy",
        workdir=wd,
        progress=False,
      )
    )
  assert s["n"] == 40 and s["kept"] == 10
  z, kept = _check_outputs(wd, 40, 10)
  assert z["score"][kept].max() <= np.delete(z["score"], kept).min()


def test_missing_tfds_dataset_is_clear(tmp_path):
  with pytest.raises(FileNotFoundError, match="not available"):
    load_tfds("mnist", data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="unknown TFDS dataset"):
    load_tfds("no_such_dataset_xyz", data_dir=str(tmp_path))


def test_user_npz_and_npy(tmp_path):
  rng = np.random.default_rng(0)
  emb = rng.standard_normal((120, 6)).astype(np.float32)
  labels = rng.integers(0, 3, 120)
  ids = np.array([f"img_{i:04d}" for i in range(120)])
  np.savez(tmp_path / "e.npz", embeddings=emb, labels=labels, ids=ids)
  wd = str(tmp_path / "npz")
  s = run(
    PruneConfig(
      data=str(tmp_path / "e.npz"),
      kmeans=KMeansConfig(k=5),
      fraction=0.5,
      workdir=wd,
      class_balance=1.0,
      progress=False,
    )
  )
  z, kept = _check_outputs(wd, 120, 60)
  np.testing.assert_array_equal(z["id"], ids)
  counts = np.bincount(labels)
  for c, (before, after) in s["per_class_before_after"].items():
    assert before == counts[c] and after >= int(np.floor(0.5 * counts[c]))
  np.save(tmp_path / "e.npy", emb)
  ds = load_embeddings(str(tmp_path / "e.npy"))
  assert isinstance(ds.embeddings, np.memmap)
  wd = str(tmp_path / "npy")
  run(
    PruneConfig(
      data=str(tmp_path / "e.npy"),
      kmeans=KMeansConfig(k=5),
      fraction=0.2,
      stream=True,
      workdir=wd,
      progress=False,
    )
  )
  _check_outputs(wd, 120, 24)
  # supervised prototypes and random through the same job
  for score in ("supervised_prototypes", "random"):
    wd = str(tmp_path / score)
    run(
      PruneConfig(
        data=str(tmp_path / "e.npz"), score=score, fraction=0.5, workdir=wd, progress=False
      )
    )
    _check_outputs(wd, 120, 60)


def test_bad_inputs_are_clear(tmp_path):
  with pytest.raises(FileNotFoundError, match="not found"):
    load_embeddings(str(tmp_path / "missing.npy"))
  emb = np.ones((10, 3), np.float32)
  emb[3, 1] = np.nan
  np.save(tmp_path / "nan.npy", emb)
  with pytest.raises(ValueError, match="NaN or inf"):
    run(
      PruneConfig(
        data=str(tmp_path / "nan.npy"),
        kmeans=KMeansConfig(k=2),
        workdir=str(tmp_path / "w"),
        progress=False,
      )
    )
  np.savez(tmp_path / "bad.npz", embeddings=np.ones((10, 3), np.float32), labels=np.zeros(9, int))
  with pytest.raises(ValueError, match="labels"):
    load_embeddings(str(tmp_path / "bad.npz"))
  with pytest.raises(ValueError, match="k must"):
    run(PruneConfig(kmeans=KMeansConfig(k=5000), workdir=str(tmp_path / "w2"), progress=False))
  with pytest.raises(ValueError, match="fraction"):
    run(PruneConfig(fraction=1.5, workdir=str(tmp_path / "w3"), progress=False))
