"""End-to-end smoke tests of scripts/train.py, scripts/prune_curve.py and prune --embedding ssl,
on the bundled digits and on TFDS mock data."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxprune.core.run import ConfigMismatchError
from jaxprune.models.classifier import ClassifierConfig
from jaxprune.pruning import curve, curve_config, train_subset
from jaxprune.pruning.embeddings import SSLConfig
from jaxprune.pruning.prune import run as run_prune
from jaxprune.pruning.prune_config import PruneConfig
from jaxprune.pruning.train_subset_config import SubsetTrainConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_prune_then_train_on_digits(tmp_path):
  run_prune(
    PruneConfig(fraction=0.5, embedding="pixels", workdir=str(tmp_path / "p"), progress=False)
  )
  res = train_subset.run(
    SubsetTrainConfig(
      kept=str(tmp_path / "p" / "kept_indices.npy"),
      classifier=ClassifierConfig(steps=60),
      seeds=2,
      workdir=str(tmp_path / "t"),
      progress=False,
    )
  )
  assert res["n_train"] == 674 and res["n_test"] == 449
  assert len(res["test_accuracy"]) == 2 and res["test_accuracy_mean"] > 0.5  # chance is 0.1
  for f in ("result.json", "metrics.jsonl", "training_curves.png", "config.json"):
    assert os.path.getsize(tmp_path / "t" / f) > 0
  with pytest.raises(ValueError, match="row indices"):
    np.save(tmp_path / "bad.npy", np.array([0, 5000]))
    train_subset.run(
      SubsetTrainConfig(kept=str(tmp_path / "bad.npy"), workdir=str(tmp_path / "b"), progress=False)
    )


def test_train_script_resumes_after_kill(tmp_path):
  wd = str(tmp_path / "run")
  cmd = [
    sys.executable,
    os.path.join(ROOT, "scripts", "train.py"),
    "--workdir",
    wd,
    "--classifier.steps",
    "400",
    "--classifier.steps_per_dispatch",
    "10",
    "--progress",
    "false",
  ]
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  ckpt = os.path.join(wd, "checkpoints")
  deadline = time.time() + 240
  while time.time() < deadline:  # wait for the first checkpoint (step 100), then kill hard
    if os.path.isdir(ckpt) and any(d.isdigit() for d in os.listdir(ckpt)):
      break
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  steps = [int(d) for d in os.listdir(ckpt) if d.isdigit()]
  assert steps and max(steps) < 400
  r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  res = json.load(open(os.path.join(wd, "result.json")))
  assert res["test_accuracy_mean"] > 0.8
  rows = [json.loads(l)["step"] for l in open(os.path.join(wd, "metrics.jsonl"))]
  assert rows == sorted(set(rows)) and rows[-1] == 400  # no step logged twice


@pytest.mark.slow
def test_prune_curve_tiny_and_resume(tmp_path):
  wd = str(tmp_path / "curve")
  cfg = curve_config.CurveConfig(
    fractions=(0.3,),
    scores=("supervised_prototypes", "forgetting"),
    embedding="pixels",
    seeds=2,
    classifier=ClassifierConfig(steps=30),
    score_epochs=1,
    score_models=2,
    workdir=wd,
    progress=False,
  )
  rows = curve.run(cfg)
  keys = {(r["score"], r["mode"], r["fraction"]) for r in rows}
  assert keys == {
    ("full", "-", 1.0),
    ("random", "random", 0.3),
    ("supervised_prototypes", "hard", 0.3),
    ("supervised_prototypes", "easy", 0.3),
    ("forgetting", "hard", 0.3),
    ("forgetting", "easy", 0.3),
  }
  assert all(len(r["acc_seeds"]) == 2 for r in rows)
  assert all(r["n_kept"] == 404 for r in rows if r["fraction"] == 0.3)
  for f in ("results.csv", "table.txt", "accuracy_vs_fraction.png", "scores_forgetting.npy"):
    assert os.path.getsize(os.path.join(wd, f)) > 0
  # a second run finds everything done and trains nothing (no row appended)
  results = os.path.join(wd, "results.jsonl")
  before = open(results).read()
  rows2 = curve.run(cfg)
  assert len(rows2) == len(rows) and open(results).read() == before
  assert "supervised_prototypes" in curve.table(rows)
  # stored results of other models stop a rerun before any work; fewer fractions may change
  with pytest.raises(ConfigMismatchError, match="seeds: 2 -> 3"):
    curve.run(dataclasses.replace(cfg, seeds=3))
  with pytest.raises(ConfigMismatchError, match="classifier.steps: 30 -> 40"):
    curve.run(dataclasses.replace(cfg, classifier=ClassifierConfig(steps=40)))
  rows3 = curve.run(dataclasses.replace(cfg, modes=("hard",)))
  assert len(rows3) == len(rows)


@pytest.mark.slow  # 120 CPU-s: in CI's slow run, out of the README's default run
def test_prune_curve_pool_axis_and_scorer_seeds(tmp_path):
  """The --quick preset (the scaling experiment's pool axis on two pools of the digits)."""
  wd = str(tmp_path / "pools")
  cfg = dataclasses.replace(curve_config.quick(), workdir=wd, progress=False)
  assert cfg.pool_sizes == (400, 200) and cfg.scorer_seeds == 2 and cfg.fractions == (0.5,)
  rows = curve.run(cfg)
  # per pool: full, random, el2n x 2 modes, ssl_prototypes x 2 modes x 2 scorer seeds
  assert sorted(r["pool"] for r in rows) == [200] * 8 + [400] * 8
  for r in rows:
    assert r["n_kept"] == (r["pool"] if r["score"] == "full" else r["pool"] // 2)
  ssl = [r for r in rows if r["score"] == "ssl_prototypes" and r["pool"] == 200]
  assert sorted((r["mode"], r["scorer"]) for r in ssl) == [
    ("easy", 0),
    ("easy", 1),
    ("hard", 0),
    ("hard", 1),
  ]
  # the two scorer seeds' k-means differ, so do their scores
  s0 = np.load(os.path.join(wd, "scores_pool200_ssl_prototypes.npy"))
  s1 = np.load(os.path.join(wd, "scores_pool200_ssl_prototypes_s1.npy"))
  assert s0.shape == s1.shape == (200,) and not np.allclose(s0, s1)
  agg = {(r["pool"], r["score"], r["mode"]): r for r in curve.aggregate(rows)}
  a = agg[200, "ssl_prototypes", "hard"]
  pooled = [x for r in ssl if r["mode"] == "hard" for x in r["acc_seeds"]]
  assert a["scorers"] == 2 and a["acc_mean"] == pytest.approx(np.mean(pooled))
  want = np.std([r["acc_mean"] for r in ssl if r["mode"] == "hard"])
  assert a["scorer_std"] == pytest.approx(want)
  for f in ("scaling_error.png", "scaling_strategy.png", "scaling.json", "table.txt"):
    assert os.path.getsize(os.path.join(wd, f)) > 0
  assert "pool of 200" in curve.table(rows) and "pool of 400" in curve.table(rows)
  # a rerun with a third pool trains only that pool's points
  rows2 = curve.run(dataclasses.replace(cfg, pool_sizes=(400, 200, 100)))
  assert len(rows2) == len(rows) + 8
  with pytest.raises(ValueError, match="exceed the train split"):
    curve.run(dataclasses.replace(cfg, pool_sizes=(5000,)))


@pytest.mark.slow
def test_prune_curve_script_on_tfds_mock(tmp_path):
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=64):
    small = ClassifierConfig(steps=10, batch_size=16)
    rows = curve.run(
      curve_config.CurveConfig(
        data="mnist",
        fractions=(0.5,),
        scores=("el2n", "grand"),
        modes=("hard",),
        seeds=2,
        classifier=small,
        score_epochs=1,
        score_models=2,
        workdir=str(tmp_path / "c"),
        progress=False,
      )
    )
    assert {(r["score"], r["fraction"]) for r in rows} == {
      ("full", 1.0),
      ("random", 0.5),
      ("el2n", 0.5),
      ("grand", 0.5),
    }
    res = train_subset.run(
      SubsetTrainConfig(data="mnist", classifier=small, workdir=str(tmp_path / "t"), progress=False)
    )
    assert res["n_train"] == 64 and res["n_test"] == 64


@pytest.mark.slow
def test_prune_with_ssl_embeddings(tmp_path):
  s = run_prune(
    PruneConfig(
      embedding="ssl",
      ssl=SSLConfig(steps=20),
      fraction=0.4,
      workdir=str(tmp_path / "ssl"),
      progress=False,
    )
  )
  assert s["kept"] == 539 and s["n"] == 1348
  assert os.path.isdir(tmp_path / "ssl" / "ssl" / "checkpoints")
  # a workdir holding a seed-0 encoder: another seed stops, before any training
  with pytest.raises(ConfigMismatchError, match="seed: 0 -> 3"):
    run_prune(
      PruneConfig(
        embedding="ssl",
        ssl=SSLConfig(steps=20),
        seed=3,
        fraction=0.4,
        workdir=str(tmp_path / "ssl"),
        progress=False,
      )
    )
  with pytest.raises(ConfigMismatchError, match="ssl.lr"):
    run_prune(
      PruneConfig(
        embedding="ssl",
        ssl=SSLConfig(steps=20, lr=1e-3),
        fraction=0.4,
        workdir=str(tmp_path / "ssl"),
        progress=False,
      )
    )
  s = run_prune(
    PruneConfig(
      embedding="ssl",
      ssl=SSLConfig(steps=20),
      fraction=0.5,
      workdir=str(tmp_path / "ssl"),
      progress=False,
    )
  )  # same encoder
  assert s["kept"] == 674
  for score in ("el2n", "grand", "forgetting"):  # one compilation for all three (memoised)
    s = run_prune(
      PruneConfig(
        score=score,
        score_epochs=1,
        score_models=2,
        fraction=0.5,
        classifier=ClassifierConfig(width=8),
        workdir=str(tmp_path / score),
        progress=False,
      )
    )
    assert s["kept"] == 674
