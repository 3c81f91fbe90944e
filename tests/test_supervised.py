"""EL2N, GraNd and forgetting on tiny hand-checkable cases."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxprune.core.loop import TrainState, epoch_batch_indices, steps_per_epoch, to_device
from jaxprune.core.run import jitted_dispatch
from jaxprune.models.classifier import Classifier, ClassifierConfig
from jaxprune.pruning.scores import el2n, forgetting, grand
from jaxprune.pruning.supervised import (
  classifier_ensemble_fns,
  ensemble_fns,
  fit_ensemble,
  grand_of,
  make_tracked_step,
  model_keys,
  score_step,
  scoring_steps,
  supervised_metrics,
  supervised_scores,
  track,
  train_classifiers,
)


def linear_apply(p, x):
  return x.reshape(x.shape[0], -1) @ p["w"]


def test_el2n_hand_checked():
  # one-pixel images; w maps x -> logits (x, 0): softmax = (s, 1-s) with s = sigmoid(x)
  x = np.array([[0.0], [np.log(3.0)]], np.float32)  # s = 0.5 and 0.75
  y = np.array([0, 1])
  w = jnp.array([[1.0, 0.0]])
  params = {"w": jnp.stack([w, 2 * w])}  # two models: second has logits (2x, 0)
  got = np.asarray(el2n(linear_apply, params, x, y, num_classes=2))

  def e(s, label):
    p = np.array([s, 1 - s])
    return np.linalg.norm(p - np.eye(2)[label])

  s1 = 1 / (1 + np.exp(-np.array([0.0, np.log(3)])))
  s2 = 1 / (1 + np.exp(-np.array([0.0, 2 * np.log(3)])))
  want = [(e(s1[i], y[i]) + e(s2[i], y[i])) / 2 for i in range(2)]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert abs(want[0] - np.sqrt(0.5)) < 1e-6  # s = 0.5 -> ||(0.5, 0.5) - (1, 0)|| = sqrt(0.5)


def test_grand_equals_norm_of_jax_grad_per_example():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((37, 5)).astype(np.float32)  # 37: not a multiple of the chunk
  y = rng.integers(0, 3, 37)
  params = {
    "w": jnp.asarray(rng.standard_normal((2, 5, 3)), jnp.float32),
    "b": jnp.asarray(rng.standard_normal((2, 3)), jnp.float32),
  }
  apply = lambda p, x: x.reshape(x.shape[0], -1) @ p["w"] + p["b"]
  loss = lambda p, xi, yi: optax.softmax_cross_entropy_with_integer_labels(
    apply(p, xi[None])[0], yi
  )
  got = np.asarray(grand(loss, params, x, y, chunk_size=8))
  for i in (0, 17, 36):
    norms = []
    for m in range(2):
      p = jax.tree.map(lambda a: a[m], params)
      g = jax.grad(loss)(p, jnp.asarray(x[i]), y[i])
      norms.append(np.sqrt(sum(float(jnp.sum(l**2)) for l in jax.tree.leaves(g))))
    np.testing.assert_allclose(got[i], np.mean(norms), rtol=1e-5)
  np.testing.assert_allclose(got, np.asarray(grand(loss, params, x, y, chunk_size=37)), rtol=1e-5)


def test_forgetting_score_never_learned_is_hardest():
  s = np.asarray(forgetting(np.array([0, 2, 1, 0]), np.array([True, True, True, False])))
  np.testing.assert_array_equal(s, [0, 2, 1, 3])


def test_forgetting_tracker_against_python_loop():
  n, b, steps = 6, 3, 8
  rng = np.random.default_rng(1)
  pattern = rng.random((steps, n)) < 0.6  # is example i correct at step t?
  images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1)
  data = to_device(images, np.zeros(n, np.int32))

  def apply_fn(p, x):  # label 0 is predicted iff pattern[step, id]
    ids = x.reshape(-1).astype(jnp.int32)
    ok = jnp.asarray(pattern)[p["t"], ids]
    return jnp.stack([jnp.where(ok, 1.0, 0.0), jnp.where(ok, 0.0, 1.0)], -1)

  def fake_step(state, data):  # no learning: just advance the step
    return state.replace(step=state.step + 1, params={"t": state.params["t"] + 1}), {}

  st = TrainState(
    params={"t": jnp.int32(0)}, opt_state=(), step=jnp.int32(0), key=jax.random.key(4)
  )
  t = track(st, n)
  step = jax.jit(
    make_tracked_step(
      fake_step, apply_fn, batch_size=b, preprocess_eval=lambda im: im.astype(jnp.float32)
    )
  )
  prev, forgets, learned = np.zeros(n, bool), np.zeros(n, int), np.zeros(n, bool)
  for s in range(steps):
    idx = np.asarray(epoch_batch_indices(st.key, s, n=n, batch_size=b))
    c = pattern[s, idx]
    forgets[idx] += prev[idx] & ~c
    prev[idx] = c
    learned[idx] |= c
    t, _ = step(t, data)
  np.testing.assert_array_equal(np.asarray(t.forgets), forgets)
  np.testing.assert_array_equal(np.asarray(t.learned), learned)
  assert forgets.sum() > 0  # the case exercises real transitions


def test_train_ensemble_end_to_end_on_separable_data():
  rng = np.random.default_rng(0)
  n = 96
  labels = rng.integers(0, 2, n)
  images = (rng.integers(0, 100, (n, 2, 2, 1)) + 120 * labels[:, None, None, None]).astype(np.uint8)
  images[0], labels[0] = 250, 0  # a mislabelled example: hard for every metric
  data = to_device(images, labels)
  pre = lambda im, key=None: im.astype(jnp.float32) / 255.0
  apply = lambda p, x: x.reshape(x.shape[0], -1) @ p["w"] + p["b"]
  init = lambda k: {"w": 0.01 * jax.random.normal(k, (4, 2)), "b": jnp.zeros(2)}

  def loss(p, batch, key):
    logits = apply(p, batch["image"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean(), {}

  linear = Classifier(init, apply, loss, optax.adam(0.1), pre, pre)
  init_S, step_S = ensemble_fns(linear, n=n, batch_size=16, track_forgetting=True)
  ens = fit_ensemble(
    init_S,
    step_S,
    data,
    key=jax.random.key(0),
    num_models=3,
    num_steps=15 * steps_per_epoch(n, 16),
    progress=False,
  )
  assert ens.train.params["w"].shape == (3, 4, 2)
  assert not np.allclose(ens.train.params["w"][0], ens.train.params["w"][1])  # distinct seeds
  sc = supervised_scores(ens, apply, data, num_classes=2, preprocess_eval=pre)
  for name in ("el2n", "grand", "forgetting"):
    assert sc[name].shape == (n,) and np.isfinite(sc[name]).all()
  assert int(np.argmax(sc["el2n"])) == 0
  assert int(np.argmax(sc["grand"])) == 0
  assert sc["forgetting"][0] == sc["forgetting"].max()


def test_model_keys_do_not_depend_on_the_ensemble_size():
  a, b = model_keys(jax.random.key(3), 2), model_keys(jax.random.key(3), 3)
  np.testing.assert_array_equal(jax.random.key_data(a), jax.random.key_data(b[:2]))
  assert len(np.unique(np.asarray(jax.random.key_data(b)), axis=0)) == 3


@pytest.mark.slow  # moved out of the default run (its 20-minute budget)
def test_subsets_of_one_size_compile_once():
  """A pruning curve trains many subsets of a few sizes: the ensemble's functions are memoised
  on values, so a second subset of the same size reuses the compiled dispatch."""
  rng = np.random.default_rng(0)
  images = rng.integers(0, 255, (60, 8, 8, 1)).astype(np.uint8)
  labels = rng.integers(0, 3, 60)
  cfg = ClassifierConfig(width=4, steps=6, batch_size=8, steps_per_dispatch=4)
  fns = lambda n: classifier_ensemble_fns(cfg, 3, (8, 8, 1), n, 8, False, None)
  train = lambda idx: train_classifiers(
    cfg, images[idx], labels[idx], num_classes=3, key=jax.random.key(0), num_models=2
  )
  clf, p1 = train(np.arange(0, 40))
  dispatch = jitted_dispatch(fns(40)[2], None)
  compiled = dispatch._cache_size()
  assert compiled == 2  # lengths 4 and 2 (6 steps, 4 per dispatch)
  clf2, p2 = train(np.arange(20, 60))  # another subset of 40 examples
  assert clf2 is clf and fns(40) is fns(40)
  assert dispatch._cache_size() == compiled  # no new compilation
  assert not np.allclose(p1["head"]["kernel"], p2["head"]["kernel"])  # it did train on it
  train(np.arange(0, 30))  # another size: its own step, its own compilations
  assert fns(30)[2] is not fns(40)[2]


# ---------------------------------------------------------------------------------------------
# Paul et al.'s protocol in supervised_metrics: EL2N early, GraNd at init, forgetting over all


def _protocol_setup():
  rng = np.random.default_rng(1)
  images = rng.integers(0, 255, (40, 8, 8, 1)).astype(np.uint8)
  labels = rng.integers(0, 3, 40).astype(np.int32)
  cfg = ClassifierConfig(width=4, steps=12, batch_size=8, steps_per_dispatch=4, lr=1e-2)
  clf, init_S, step_S = classifier_ensemble_fns(cfg, 3, (8, 8, 1), 40, 8, True, None)
  return images, labels, cfg, clf, init_S, step_S


def _trained_to(init_S, step_S, data, key, steps):
  return fit_ensemble(
    init_S,
    step_S,
    data,
    key=key,
    num_models=3,
    num_steps=steps,
    steps_per_dispatch=4,
    progress=False,
  )


@pytest.mark.slow
def test_el2n_is_taken_at_the_configured_step_and_forgetting_over_the_whole_run():
  images, labels, cfg, clf, init_S, step_S = _protocol_setup()
  key = jax.random.key(5)
  got = supervised_metrics(
    cfg, images, labels, num_classes=3, key=key, num_models=3, score_at=0.25, grand_at="score_at"
  )
  data = to_device(images, labels)
  x = clf.preprocess_eval(data.images)
  el2n_at = lambda st: np.asarray(el2n(clf.apply_fn, st.train.params, x, labels, num_classes=3))
  at3, at12 = _trained_to(init_S, step_S, data, key, 3), _trained_to(init_S, step_S, data, key, 12)
  assert int(at3.step[0]) == 3 and int(at12.step[0]) == 12
  np.testing.assert_allclose(got["el2n"], el2n_at(at3), rtol=1e-5, atol=1e-6)
  assert np.abs(got["el2n"] - el2n_at(at12)).max() > 1e-3  # not the final models' EL2N
  grand_at3 = grand_of(at3.train.params, clf.apply_fn, x, labels)
  np.testing.assert_allclose(got["grand"], grand_at3, rtol=1e-5, atol=1e-6)
  want = forgetting(np.asarray(at12.forgets).mean(0), np.asarray(at12.learned).all(0))
  np.testing.assert_array_equal(got["forgetting"], np.asarray(want))
  assert np.asarray(at12.forgets).sum() > np.asarray(at3.forgets).sum() >= 0


@pytest.mark.slow  # moved out of the default run (its 20-minute budget)
def test_grand_at_init_is_the_mean_over_initialisations_of_per_example_norms():
  images, labels, cfg, clf, init_S, _ = _protocol_setup()
  key = jax.random.key(7)
  got = supervised_metrics(
    cfg, images[:10], labels[:10], num_classes=3, key=key, num_models=3, epochs=1
  )["grand"]
  params = init_S(model_keys(key, 3)).train.params
  x = np.asarray(clf.preprocess_eval(jnp.asarray(images[:10])))

  def loss(p, xi, yi):
    return optax.softmax_cross_entropy_with_integer_labels(clf.apply_fn(p, xi[None])[0], yi)

  want = np.zeros(10)
  for m in range(3):  # one model, one example at a time
    p = jax.tree.map(lambda v: v[m], params)
    for i in range(10):
      g = jax.grad(loss)(p, x[i], labels[i])
      want[i] += np.sqrt(sum(float(jnp.sum(v**2)) for v in jax.tree.leaves(g))) / 3
  np.testing.assert_allclose(got, want, rtol=1e-4)


def test_scoring_run_length_and_step():
  cfg = ClassifierConfig(steps=300, batch_size=64)
  assert scoring_steps(cfg, 1348, None) == 300
  assert scoring_steps(cfg, 1348, 2) == 2 * steps_per_epoch(1348, 64)
  assert score_step(300, 0.1) == 30 and score_step(5, 0.01) == 1 and score_step(300, 1.0) == 300
  for bad in (0.0, 1.5, float("nan")):
    with pytest.raises(ValueError, match="score_at"):
      score_step(300, bad)
  images, labels, cfg, *_ = _protocol_setup()
  with pytest.raises(ValueError, match="grand_at"):
    supervised_metrics(
      cfg, images, labels, num_classes=3, key=jax.random.key(0), num_models=1, grand_at="end"
    )
