"""The curve job's seed sources (issue 26): pool draws, per-seed rows (``per_seed.csv`` in
:mod:`jaxprune.pruning.claims`' schema), the epochs step rule, and resume without duplicates."""

import collections
import csv
import dataclasses
import itertools
import json
import math
import os

import jax
import numpy as np
import pytest

from jaxprune.models.classifier import ClassifierConfig
from jaxprune.pruning import claims, curve, curve_config
from jaxprune.pruning.kmeans_config import KMeansConfig

POOLS = (60, 120)


def _tiny(workdir: str, prototypes: str = "ssl_prototypes") -> curve_config.CurveConfig:
  """Two nested pools x two pool draws x two scorer seeds (prototype and supervised) x two
  classifier seeds, one fraction, tiny models trained by the epochs rule."""
  return curve_config.CurveConfig(
    fractions=(0.5,),
    scores=(prototypes, "el2n"),
    embedding="pixels",
    seeds=2,
    scorer_seeds=2,
    supervised_scorer_seeds=2,
    pool_draws=2,
    pool_sizes=POOLS,
    kmeans=KMeansConfig(k=None),
    classifier=ClassifierConfig(width=4, steps=10, steps_per_dispatch=5),
    steps_rule="epochs",
    epochs=4,
    score_models=2,
    score_epochs=1,
    workdir=workdir,
    progress=False,
  )


class _FakeTraining:
  """Stand-ins for the classifier training, its test accuracy and the supervised scoring run
  (the default run's variant: the job's bookkeeping without minutes of XLA compilations); they
  record what the job asks for."""

  def __init__(self):
    self.trained, self.score_keys, self.stop_after = [], [], None

  def train_classifiers(self, clf_cfg, images, labels, *, num_models, **kw):
    if self.stop_after is not None and len(self.trained) >= self.stop_after:
      raise RuntimeError("simulated interruption")
    self.trained.append((clf_cfg.steps, len(labels)))
    rng = np.random.default_rng([len(labels), int(np.sum(labels)), clf_cfg.steps])
    return None, rng.uniform(0.5, 0.9, num_models)  # the "params" are the accuracies

  def accuracy(self, clf, params, images, labels):
    return params

  def supervised_metrics(self, cfg, images, labels, *, key, which, **kw):
    self.score_keys.append(np.asarray(jax.random.key_data(key)).tolist())
    rng = np.random.default_rng(self.score_keys[-1] + [len(labels)])
    return {sc: rng.random(len(labels)) for sc in which}


def _recording_real():
  """The real functions, recording the training runs like :class:`_FakeTraining`."""
  fake = _FakeTraining()
  real = curve.train_classifiers

  def train(clf_cfg, images, labels, **kw):
    if fake.stop_after is not None and len(fake.trained) >= fake.stop_after:
      raise RuntimeError("simulated interruption")
    fake.trained.append((clf_cfg.steps, len(labels)))
    return real(clf_cfg, images, labels, **kw)

  return fake, {"train_classifiers": train}


@pytest.fixture(
  scope="module",
  params=["fake_training", pytest.param("real_training", marks=pytest.mark.slow)],
)
def interrupted_then_resumed(request, tmp_path_factory):
  """The tiny job stopped by an error after a few training runs, then rerun to the end; the
  step count of every training run is recorded. fake_training (the default run) replaces the
  training and scoring by :class:`_FakeTraining`; real_training (slow: ~150 CPU-s of
  compilations) trains and scores for real."""
  wd = str(tmp_path_factory.mktemp("curve_per_seed") / "curve")
  # supervised_prototypes in the default run: no k-means compilations
  cfg = _tiny(wd, "supervised_prototypes" if request.param == "fake_training" else "ssl_prototypes")
  if request.param == "fake_training":
    rec = _FakeTraining()
    patches = {n: getattr(rec, n) for n in ("train_classifiers", "accuracy", "supervised_metrics")}
  else:
    rec, patches = _recording_real()
  mp = pytest.MonkeyPatch()
  for name, fn in patches.items():
    mp.setattr(curve, name, fn)
  rec.stop_after = 5
  try:
    with pytest.raises(RuntimeError, match="simulated"):
      curve.run(cfg)
    rec.stop_after = None
    rows = curve.run(cfg)
  finally:
    mp.undo()
  return cfg, rows, rec


def test_pool_draws_differ_and_nest():
  cfg = dataclasses.replace(curve_config.CurveConfig(), pool_sizes=(50, 200, 100), pool_draws=3)
  draws = [dict(curve.pools(cfg, 1000, draw=d)) for d in range(3)]
  for d in draws:
    assert sorted(d) == [50, 100, 200]
    for small, big in ((50, 100), (100, 200)):
      assert set(d[small]) < set(d[big])  # nested within a draw
  for a, b in itertools.combinations(draws, 2):
    assert not np.array_equal(a[200], b[200])  # every draw has its own pools
  # draw 0 is the permutation a single-draw job has always used (its cached scores stay valid)
  perm = np.random.default_rng(cfg.seed).permutation(1000)
  assert np.array_equal(draws[0][100], np.sort(perm[:100]))


def test_epochs_rule_step_count():
  clf = ClassifierConfig(batch_size=64, steps=300, steps_per_dispatch=25)
  cfg = curve_config.CurveConfig(classifier=clf, steps_rule="epochs", epochs=30)
  for n in (10, 40, 64, 150, 1200):
    want = max(clf.steps_per_dispatch, math.ceil(30 * n / min(64, n)))
    assert curve.train_steps(cfg, n) == want
  assert curve.train_steps(cfg, 1200) > clf.steps  # a large subset trains past the old ceiling
  fixed = curve_config.CurveConfig(classifier=clf)
  assert fixed.steps_rule == "fixed"
  assert {curve.train_steps(fixed, n) for n in (10, 1200)} == {clf.steps}
  with pytest.raises(ValueError, match="steps_rule"):
    curve_config.CurveConfig(steps_rule="plateau")
  with pytest.raises(ValueError, match="pool_draws"):
    curve_config.CurveConfig(pool_draws=2)  # the whole split is one draw


def test_interrupted_run_resumes_with_steps_of_the_rule_and_every_seed_once(
  interrupted_then_resumed,
):
  """One test on the fixture's job (under xdist a module fixture shared by several tests would
  run once per worker)."""
  cfg, rows, rec = interrupted_then_resumed
  _check_steps(cfg, rows, rec)
  _check_resume(cfg, rows, rec)
  _check_per_seed(cfg)


def _check_steps(cfg, rows, rec):
  """The run trains the steps of the epochs rule, and its table says so."""
  trained = rec.trained
  assert trained and all(steps == curve.train_steps(cfg, n) for steps, n in trained)
  assert len({steps for steps, _ in trained}) > 1  # the rule follows the subset size
  assert all(r["steps"] == curve.train_steps(cfg, r["n_kept"]) for r in rows)
  with open(os.path.join(cfg.workdir, "table.txt")) as f:
    title = f.readline()  # the table says its step rule
  assert curve.steps_text(cfg) in title and f"{cfg.epochs:g} epochs" in title


def _check_resume(cfg, rows, rec):
  """The interrupted run's rerun trains only what was missing: no duplicated row."""
  with open(os.path.join(cfg.workdir, "results.jsonl")) as f:
    stored = [json.loads(line) for line in f if line.strip()]
  keys = [curve._row_key(r) for r in stored]
  assert len(keys) == len(set(keys)) == len(rows)
  # per (pool, draw): full, random, prototypes x 2 modes x 2 scorers, el2n x 2 modes x 2 scorers
  assert len(rows) == len(POOLS) * cfg.pool_draws * (2 + 4 + 4)
  assert len(rec.trained) == len(rows)  # the rerun trained only what the first run had not
  assert {r["pool_draw"] for r in rows} == {0, 1}
  if rec.score_keys:  # el2n's two scorer seeds train their ensembles from different keys
    assert len(rec.score_keys) == len(POOLS) * cfg.pool_draws * 2
    assert len({str(k) for k in rec.score_keys}) == 2


def _check_per_seed(cfg):
  """per_seed.csv has every (pool seed, scorer seed, classifier seed) of each cell once, and
  claims.bootstrap / scaling.json take it."""
  path = os.path.join(cfg.workdir, "per_seed.csv")
  with open(path, newline="") as f:
    assert tuple(next(csv.reader(f))) == claims.COLUMNS
  per_seed = claims.read_rows(path)
  cell = lambda r: (r["pool"], r["score"], r["mode"], r["fraction"])
  count = collections.Counter(cell(r) + tuple(r[s] for s in claims.SEED_SOURCES) for r in per_seed)
  assert set(count.values()) == {1}
  seeds = collections.defaultdict(set)
  for r in per_seed:
    seeds[cell(r)].add(tuple(r[s] for s in claims.SEED_SOURCES))
  draws, classifiers = range(cfg.pool_draws), range(cfg.seeds)
  assert {c[0] for c in seeds} == set(POOLS)
  for c, got in seeds.items():
    scorer_seeds = [claims.NOT_APPLICABLE] if c[2] in ("random", "full") else range(2)
    assert got == set(itertools.product(draws, scorer_seeds, classifiers)), c
  boot = claims.bootstrap(per_seed, num_resamples=50)
  assert boot.seeds[POOLS[0], "el2n", "hard", 0.5] == (2, 2, 2)
  assert boot.seeds[POOLS[0], "random", "random", 0.5] == (2, None, 2)
  with open(os.path.join(cfg.workdir, "scaling.json")) as f:
    assert json.load(f)["intervals"]["differences"]


@pytest.mark.parametrize("name", ["scaling_digits_epochs", "scaling_fashion_epochs"])
def test_epochs_presets_have_twelve_seed_combinations_per_point(name):
  from jaxprune.core.config import parse

  cfg = parse(curve_config.CurveConfig, ["--preset", name], presets=curve_config.PRESETS)
  assert cfg.steps_rule == "epochs" and cfg.fractions == (0.125, 0.25, 0.5)
  assert cfg.scores == ("ssl_prototypes", "el2n", "forgetting") and len(cfg.pool_sizes) == 4
  for score in cfg.scores:
    assert cfg.pool_draws * len(curve.scorers(cfg, score)) * cfg.seeds == 12
  assert cfg.pool_sizes[-1] == 8 * cfg.pool_sizes[0]
