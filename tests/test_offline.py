"""World models trained on fixed episodes (jaxprune.dmdp.offline): batches, seeds, resume,
features."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import dmdp
from jaxprune.dmdp import offline

CFG = dmdp.tiny(dmdp.dmdp_2c())
TRAIN = dict(batch=3, seq_len=4, learning_rate=1e-3)


def _episodes(cfg, e=4, t=7, seed=0):
  r = np.random.default_rng(seed)
  return {
    "image": r.integers(0, 256, (e, t, cfg.image_size, cfg.image_size, 3), dtype=np.uint8),
    "action": r.uniform(-1, 1, (e, t, cfg.action_dim)).astype(np.float32),
    "reward": r.normal(size=(e, t)).astype(np.float32),
  }


def test_sample_sequences_equals_python_slices():
  eps = _episodes(CFG)
  key = jax.random.key(3)
  got = offline.sample_sequences(key, jax.device_put(eps), batch=5, seq_len=3)
  # the same draws, sliced by hand
  ke, ks = jax.random.split(key)
  ep = np.asarray(jax.random.randint(ke, (5,), 0, 4))
  st = np.asarray(jax.random.randint(ks, (5,), 0, 7 - 3 + 1))
  for k in offline.SEQUENCE_KEYS:
    want = np.stack([eps[k][i, s : s + 3] for i, s in zip(ep, st)])
    np.testing.assert_array_equal(np.asarray(got[k]), want)
  assert got["image"].shape == (5, 3, 16, 16, 3) and got["image"].dtype == jnp.uint8
  assert st.max() <= 4  # every window lies inside its episode


@pytest.mark.slow  # 90 CPU-s: in CI's slow run, out of the README's default run
def test_seed_stack_equals_single_seed_and_seeds_differ(tmp_path):
  eps = _episodes(CFG)
  two, rec = offline.train(CFG, eps, seed=0, num_seeds=2, updates=3, progress=False, **TRAIN)
  one, _ = offline.train(CFG, eps, seed=0, num_seeds=1, updates=3, progress=False, **TRAIN)
  a = jax.tree.leaves(offline.select_seed(two.params, 0))
  b = jax.tree.leaves(offline.select_seed(one.params, 0))
  for x, y in zip(a, b):
    np.testing.assert_allclose(x, y, atol=2e-5)
  c = jax.tree.leaves(offline.select_seed(two.params, 1))
  assert max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(a, c)) > 1e-3
  assert [r["step"] for r in rec] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in rec)
  assert int(two.step[0]) == 3


@pytest.mark.slow  # 58 s: the default run's 20-minute budget (resume is also checked in test_run)
def test_resume_equals_uninterrupted(tmp_path):
  eps = _episodes(CFG, seed=1)
  kw = dict(seed=1, num_seeds=2, updates=60, progress=False, **TRAIN)
  full, _ = offline.train(CFG, eps, workdir=str(tmp_path / "a"), **kw)
  # stopped after 50 updates (the checkpoint at 50 and no final one, as a kill leaves it)
  offline.train(CFG, eps, workdir=str(tmp_path / "b"), stop_at=45, **kw)
  resumed, rec = offline.train(CFG, eps, workdir=str(tmp_path / "b"), **kw)
  assert rec[0]["step"] == 51  # went on from the checkpoint
  for x, y in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params)):
    np.testing.assert_allclose(x, y, atol=1e-6)


@pytest.mark.slow
def test_factor_features_shapes_and_all_is_the_concatenation():
  eps = _episodes(CFG, e=3, t=6)
  eps["action"][:, 0] = 0.0  # a_{-1}: no action before the first frame, as recorded episodes
  params = jax.vmap(lambda k: dmdp.init(CFG, k))(jax.random.split(jax.random.key(0), 2))
  feats = offline.factor_features(CFG, params, eps, key=jax.random.key(1), chunk=2)
  dims = dmdp.feature_dims(CFG)
  assert set(feats) == {"x", "y", "z", "all"}
  for f in "xyz":
    assert feats[f].shape == (2, 3, 6, dims[f])
  np.testing.assert_array_equal(
    feats["all"], np.concatenate([feats["x"], feats["y"], feats["z"]], axis=-1)
  )
  # chunking does not change the result of an episode (its own key aside, the features of the
  # first chunk are computed exactly as with one chunk of the same episodes)
  first = offline.factor_features(
    CFG, params, {k: v[:2] for k, v in eps.items()}, key=jax.random.key(1), chunk=2
  )
  np.testing.assert_allclose(first["x"], feats["x"][:, :2], atol=1e-6)
  # the deterministic part h_x at t = 0 sees only zeros (no state, no action): equal for every
  # episode
  hx = feats["x"][:, :, 0, : CFG.x_deter]
  np.testing.assert_allclose(hx[:, 0], hx[:, 1], atol=1e-6)


def test_dreamer_has_only_x():
  cfg = dmdp.tiny(dmdp.dreamer())
  assert offline.factors_of(cfg) == ("x",)
  assert offline.factors_of(dmdp.tiny()) == ("x", "y")
  assert offline.factors_of(CFG) == ("x", "y", "z")


def test_bad_episodes_are_named():
  eps = _episodes(CFG)
  with pytest.raises(ValueError, match="missing 'reward'"):
    offline.check_episodes(CFG, {k: v for k, v in eps.items() if k != "reward"})
  with pytest.raises(ValueError, match="action must be E x T x A"):
    offline.check_episodes(CFG, {**eps, "action": eps["action"][..., :1]})
  with pytest.raises(ValueError, match="seq_len must be in"):
    offline.train(CFG, eps, seed=0, num_seeds=1, updates=1, batch=2, seq_len=99, learning_rate=1e-3)
  with pytest.raises(ValueError, match="uint8"):
    offline.check_episodes(CFG, {**eps, "image": eps["image"].astype(np.float32)})
