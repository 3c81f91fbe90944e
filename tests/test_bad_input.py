"""Bad input ends in a clear error (naming the flag, the file, the count), before any work and
with nothing of an earlier run lost; a workdir in use or holding another run's state stops."""

import dataclasses
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxprune.core.config import parse
from jaxprune.core.run import ConfigMismatchError, WorkdirInUseError
from jaxprune.models.classifier import ClassifierConfig
from jaxprune.pruning import curve, curve_config, data, prune, prune_config, train_subset
from jaxprune.pruning.kmeans import check_embeddings, kmeans
from jaxprune.pruning.kmeans_config import KMeansConfig
from jaxprune.pruning.kmeans_streamed import kmeans_streamed
from jaxprune.pruning.scores import supervised_prototypes
from jaxprune.pruning.train_subset_config import SubsetTrainConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def script(name, *args, timeout=120):
  return subprocess.run(
    [sys.executable, os.path.join(ROOT, "scripts", name), *args],
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def small_embeddings(tmp_path, n=60, d=5, name="e.npy"):
  x = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
  np.save(tmp_path / name, x)
  return str(tmp_path / name)


# ---------------------------------------------------------------------------------------------
# zero-norm embeddings with the cosine distance


def zero_rows(n=20, bad=(3, 7, 11)):
  x = np.random.default_rng(1).standard_normal((n, 4)).astype(np.float32)
  x[list(bad)] = 0.0
  return x


def test_zero_norm_rows_with_cosine_name_how_many():
  # the host check that jobs run before kmeans / assign / the prototype scores (which are
  # jittable, so they check shapes only)
  x = zero_rows()
  for arr in (x, jax.numpy.asarray(x)):
    with pytest.raises(ValueError, match="3 of 20 rows with zero norm"):
      check_embeddings(arr, k=2, distance="cosine")
  check_embeddings(x, k=2, distance="euclidean")  # fine without directions
  kmeans(x, k=2, key=jax.random.key(0), distance="euclidean")
  supervised_prototypes(x, np.arange(20) % 2, distance="euclidean")


def test_zero_norm_rows_streamed(tmp_path):
  np.save(tmp_path / "z.npy", zero_rows(n=50, bad=(0, 49)))
  xm = np.load(tmp_path / "z.npy", mmap_mode="r")
  with pytest.raises(ValueError, match="2 of 50 rows with zero norm"):
    kmeans_streamed(xm, k=2, key=jax.random.key(0), distance="cosine", block_size=16)


def test_all_zero_embeddings_through_the_job(tmp_path):
  np.save(tmp_path / "zeros.npy", np.zeros((30, 4), np.float32))
  with pytest.raises(ValueError, match="30 of 30 rows with zero norm"):
    prune.run(
      prune_config.PruneConfig(
        data=str(tmp_path / "zeros.npy"),
        kmeans=KMeansConfig(k=2),
        workdir=str(tmp_path / "w"),
        progress=False,
      )
    )
  assert not os.path.exists(tmp_path / "w" / "config.json")


# ---------------------------------------------------------------------------------------------
# values rejected by the configs, before any work


@pytest.mark.parametrize(
  "make, msg",
  [
    (lambda: ClassifierConfig(batch_size=0), "batch_size must be >= 1"),
    (lambda: SubsetTrainConfig(seeds=0), "seeds must be >= 1"),
    (lambda: curve_config.CurveConfig(seeds=0), "seeds must be >= 1"),
    (lambda: curve_config.CurveConfig(fractions=(0.5, 1.5)), "fractions"),
    (lambda: curve_config.CurveConfig(modes=("medium",)), "modes"),
    (lambda: curve_config.CurveConfig(scores=("el2n", "loss")), "scores"),
    (lambda: curve_config.CurveConfig(pool_sizes=(100, 1)), "pool_sizes must be distinct"),
    (lambda: curve_config.CurveConfig(pool_sizes=(100, 100)), "pool_sizes must be distinct"),
    (lambda: curve_config.CurveConfig(scorer_seeds=0), "scorer_seeds must be >= 1"),
    (lambda: curve_config.CurveConfig(image_size=0), "image_size must be >= 1"),
    (lambda: curve_config.CurveConfig(score_at=0.0), "score_at must be in"),
    (lambda: prune_config.PruneConfig(score_at=1.5), "score_at must be in"),
    (lambda: prune_config.PruneConfig(score_epochs=0), "score_epochs must be >= 1"),
    (lambda: prune_config.PruneConfig(grand_at="end"), "grand_at must be"),
    (lambda: prune_config.PruneConfig(fraction=0.0), "fraction"),
    (lambda: prune_config.PruneConfig(mode="medium"), "mode"),
    (lambda: prune_config.PruneConfig(kmeans=KMeansConfig(k=0)), "k must be >= 1"),
    (lambda: prune_config.PruneConfig(max_examples=0), "max_examples"),
    (lambda: prune_config.PruneConfig(score_models=0), "score_models"),
    (lambda: KMeansConfig(tol=float("nan")), "finite"),
    (lambda: prune_config.PruneConfig(split="valid"), "digits splits"),
  ],
)
def test_configs_reject_bad_values(make, msg):
  with pytest.raises(ValueError, match=msg):
    make()


@pytest.mark.parametrize(
  "name, args, flag",
  [
    ("prune.py", ["--shard", "ture"], "--shard"),
    ("prune.py", ["--kmeans.k", "1e9"], "--kmeans.k"),
    ("prune.py", ["--fraction", "1.5"], "fraction"),
    ("train.py", ["--classifier.batch_size", "0"], "batch_size"),
    ("train.py", ["--seeds", "0"], "seeds"),
    ("prune_curve.py", ["--modes", "hard", "medium"], "--modes"),
  ],
)
def test_bad_flags_exit_nonzero_naming_the_flag(tmp_path, name, args, flag):
  wd = tmp_path / "w"
  r = script(name, *args, "--workdir", str(wd))
  assert r.returncode != 0 and flag in r.stderr, r.stderr[-2000:]
  assert not wd.exists()  # nothing written


def test_nested_and_tuple_flags_parse():
  cfg = parse(
    prune_config.PruneConfig,
    [
      "--score",
      "el2n",
      "--classifier.model",
      "resnet18",
      "--classifier.augment",
      "true",
      "--ssl.steps",
      "7",
    ],
  )
  assert cfg.classifier == ClassifierConfig(model="resnet18", augment=True)
  assert cfg.ssl.steps == 7
  c = parse(
    curve_config.CurveConfig,
    ["--fractions", "0.1", "0.3", "0.5", "--modes", "hard", "--scores", "el2n", "forgetting"],
  )
  assert c.fractions == (0.1, 0.3, 0.5) and c.modes == ("hard",)
  assert c.scores == ("el2n", "forgetting")


def test_classifier_flag_reaches_the_el2n_models(monkeypatch, tmp_path):
  """``--classifier.*`` is the config the supervised scores train (it was hard-coded)."""
  seen = {}

  def fake(cfg, images, labels, **kw):
    seen["cfg"], seen["num_models"] = cfg, kw["num_models"]
    return {s: np.arange(len(labels), dtype=np.float32) for s in ("el2n", "grand", "forgetting")}

  import jaxprune.pruning.supervised as supervised

  monkeypatch.setattr(supervised, "supervised_metrics", fake)
  cfg = parse(
    prune_config.PruneConfig,
    [
      "--score",
      "el2n",
      "--classifier.width",
      "8",
      "--classifier.lr",
      "0.01",
      "--score_models",
      "3",
      "--workdir",
      str(tmp_path / "w"),
      "--progress",
      "false",
    ],
  )
  s = prune.run(cfg)
  assert seen["cfg"] == ClassifierConfig(width=8, lr=0.01) and seen["num_models"] == 3
  assert s["kept"] == 674


# ---------------------------------------------------------------------------------------------
# kept indices and damaged files


@pytest.mark.parametrize(
  "array, msg",
  [
    (np.array([0.0, 1.5, 3.0]), "integer row indices"),
    (np.array([1, 4, 4, 7, 7]), "2 duplicate row indices"),
    (np.array([[0, 1], [2, 3]]), "1-D"),
    (np.array([], np.int64), "non-empty"),
    (np.array([-1, 3]), "non-negative"),
  ],
)
def test_bad_kept_indices(tmp_path, array, msg):
  path = str(tmp_path / "kept.npy")
  np.save(path, array)
  with pytest.raises(ValueError, match=msg) as e:
    data.load_kept(path)
  assert path in str(e.value)


def test_bad_kept_stops_the_job_before_anything_is_written(tmp_path):
  np.save(tmp_path / "kept.npy", np.array([2, 2, 5]))
  wd = tmp_path / "w"
  with pytest.raises(ValueError, match="duplicate"):
    train_subset.run(
      SubsetTrainConfig(kept=str(tmp_path / "kept.npy"), workdir=str(wd), progress=False)
    )
  assert not wd.exists()


def damage(path, how):
  if how == "empty":
    open(path, "wb").close()
  elif how == "text":
    with open(path, "w") as f:
      f.write("id,x\n1,0.5\n")
  else:  # truncated to half
    b = open(path, "rb").read()
    open(path, "wb").write(b[: len(b) // 2])


@pytest.mark.parametrize(
  "ext, how, msg",
  [
    (".npy", "truncated", "damaged or truncated"),
    (".npy", "empty", "empty"),
    (".npy", "text", "not a NumPy .npy file"),
    (".npz", "truncated", "damaged or truncated"),
    (".npz", "empty", "empty"),
  ],
)
def test_damaged_files_name_the_file(tmp_path, ext, how, msg):
  path = str(tmp_path / f"emb{ext}")
  x = np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32)
  (np.save(path, x) if ext == ".npy" else np.savez(path, embeddings=x))
  damage(path, how)
  with pytest.raises(ValueError, match=msg) as e:
    data.load_embeddings(path)
  assert path in str(e.value)
  if ext == ".npy":
    with pytest.raises(ValueError, match=msg):
      data.load_kept(path)


# ---------------------------------------------------------------------------------------------
# an earlier run's files, workdirs in use, workdirs of another run


def test_failed_run_leaves_config_json_untouched(tmp_path):
  wd = str(tmp_path / "w")
  emb = small_embeddings(tmp_path)
  prune.run(
    prune_config.PruneConfig(
      data=emb, kmeans=KMeansConfig(k=3), fraction=0.5, workdir=wd, progress=False
    )
  )
  path = os.path.join(wd, "config.json")
  before = open(path).read()
  r = script("prune.py", "--data", emb, "--mode", "medium", "--workdir", wd)
  assert r.returncode != 0 and "--mode" in r.stderr
  with pytest.raises(ValueError, match="k must"):  # fails after loading the data
    prune.run(
      prune_config.PruneConfig(
        data=emb, kmeans=KMeansConfig(k=500), mode="easy", workdir=wd, progress=False
      )
    )
  np.save(tmp_path / "e.npy", np.zeros((60, 5), np.float32))  # fails in k-means
  with pytest.raises(ValueError, match="zero norm"):
    prune.run(
      prune_config.PruneConfig(
        data=emb, kmeans=KMeansConfig(k=3), fraction=0.2, workdir=wd, progress=False
      )
    )
  assert open(path).read() == before
  assert json.loads(before)["mode"] == "hard" and json.loads(before)["fraction"] == 0.5


@pytest.fixture
def live_lock(tmp_path):
  """A workdir whose lock belongs to another live process (a ``sleep``)."""
  wd = tmp_path / "busy"
  wd.mkdir()
  proc = subprocess.Popen(["sleep", "60"])
  (wd / ".lock").write_text(json.dumps({"pid": proc.pid, "host": socket.gethostname()}))
  yield str(wd), proc.pid
  proc.kill()
  proc.wait()


def test_workdir_in_use_stops_every_job_at_once(live_lock, tmp_path):
  wd, pid = live_lock
  jobs = [
    lambda: prune.run(prune_config.PruneConfig(workdir=wd, progress=False)),
    lambda: curve.run(curve_config.CurveConfig(workdir=wd, progress=False)),
    lambda: train_subset.run(SubsetTrainConfig(workdir=wd, progress=False)),
  ]
  for job in jobs:
    with pytest.raises(WorkdirInUseError, match=f"in use by process {pid}"):
      job()
  assert sorted(os.listdir(wd)) == [".lock"]
  r = script("prune.py", "--workdir", wd, "--progress", "false")
  assert r.returncode != 0 and "WorkdirInUseError" in r.stderr


def test_rerun_with_another_config_or_subset_stops(tmp_path):
  """scripts/train.py --steps N --workdir W, then --kept K --lr 0.1 --seed 7 --workdir W."""
  wd = str(tmp_path / "w")
  first = SubsetTrainConfig(
    classifier=ClassifierConfig(width=4, steps=10, batch_size=32), workdir=wd, progress=False
  )
  res = train_subset.run(first)
  assert res["n_train"] == 1348
  kept = str(tmp_path / "kept.npy")
  np.save(kept, np.arange(0, 1348, 2))
  other = SubsetTrainConfig(
    kept=kept,
    seed=7,
    workdir=wd,
    progress=False,
    classifier=ClassifierConfig(width=4, steps=10, batch_size=32, lr=0.1),
  )
  with pytest.raises(ConfigMismatchError) as e:
    train_subset.run(other)
  msg = str(e.value)
  for field in ("classifier.lr", "seed", "kept_subset.n", "kept_subset.sha256", "--overwrite"):
    assert field in msg, msg
  assert json.load(open(os.path.join(wd, "result.json")))["n_train"] == 1348  # untouched
  assert json.load(open(os.path.join(wd, "config.json")))["kept"] is None
  # the same kept path with other content
  wd2 = str(tmp_path / "w2")
  same = SubsetTrainConfig(kept=kept, classifier=first.classifier, workdir=wd2, progress=False)
  train_subset.run(same)
  np.save(kept, np.arange(1, 1348, 2))
  with pytest.raises(ConfigMismatchError, match="kept_subset.sha256"):
    train_subset.run(same)
  # more steps may be asked of a stored run; --overwrite discards it
  more = SubsetTrainConfig(
    classifier=ClassifierConfig(width=4, steps=14, batch_size=32), workdir=wd, progress=False
  )
  train_subset.run(more)
  res = train_subset.run(dataclasses.replace(other, overwrite=True))
  assert res["n_train"] == 674
  assert json.load(open(os.path.join(wd, "config.json")))["seed"] == 7
