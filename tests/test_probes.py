"""jaxprune.dmdp.probes: ridge and MLP probes of features, scored by R^2."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import r2_score as sk_r2_score

from jaxprune.dmdp import probes


def _splits(rng, n, make):
  """Train/val/test (x, y) pairs of n[i] rows from ``make(rng, n) -> (x_NxD, y_NxK)``."""
  return [make(rng, m) for m in n]


def _flat(splits):
  return [a for xy in splits for a in xy]


def _linear(rng, n, d=5, k=2):
  x_NxD = rng.normal(size=(n, d)).astype(np.float32) * np.arange(1, d + 1, dtype=np.float32)
  w_DxK = np.linspace(-1.0, 1.0, d * k, dtype=np.float32).reshape(d, k)
  return x_NxD, x_NxD @ w_DxK + np.float32(3.0)


def _wave(rng, n):
  x_Nx2 = rng.uniform(-2.0, 2.0, size=(n, 2)).astype(np.float32)
  return x_Nx2, (np.sin(2.0 * x_Nx2[:, :1]) + x_Nx2[:, 1:] ** 2).astype(np.float32)


def _np_ridge(x, y, lam):
  """Centred normal equations with strength lam * N, in float64."""
  x, y = x.astype(np.float64), y.astype(np.float64)
  mx, my = x.mean(0), y.mean(0)
  xc, yc = x - mx, y - my
  w = np.linalg.inv(xc.T @ xc + lam * len(x) * np.eye(x.shape[1])) @ (xc.T @ yc)
  return w, my - mx @ w


# --- pure pieces -------------------------------------------------------------------------------


def test_ridge_fit_tiny_lam_is_least_squares_with_intercept():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(50, 5)).astype(np.float32)
  y = rng.normal(size=(50, 3)).astype(np.float32) + x[:, :3]
  w, b = probes.ridge_fit(jnp.asarray(x), jnp.asarray(y), lam=1e-10)
  assert w.shape == (5, 3) and b.shape == (3,)
  coef, *_ = np.linalg.lstsq(np.c_[x, np.ones(50)].astype(np.float64), y, rcond=None)
  np.testing.assert_allclose(w, coef[:5], atol=1e-4)
  np.testing.assert_allclose(b, coef[5], atol=1e-4)


@pytest.mark.parametrize("lam", [0.01, 0.3, 5.0])
def test_ridge_fit_matches_closed_form(lam):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(50, 5)).astype(np.float32) + 2.0
  y = rng.normal(size=(50, 3)).astype(np.float32) + x[:, :3] - 1.0
  w, b = probes.ridge_fit(jnp.asarray(x), jnp.asarray(y), lam=lam)
  w_ref, b_ref = _np_ridge(x, y, lam)
  np.testing.assert_allclose(w, w_ref, atol=1e-4)
  np.testing.assert_allclose(b, b_ref, atol=1e-4)
  # the penalty is lam * N: doubling the data (same rows twice) leaves the fit unchanged
  w2, b2 = probes.ridge_fit(jnp.asarray(np.r_[x, x]), jnp.asarray(np.r_[y, y]), lam=lam)
  np.testing.assert_allclose(w2, w, atol=1e-4)
  np.testing.assert_allclose(b2, b, atol=1e-4)


def test_r2_score_by_hand_sklearn_and_constant_column():
  rng = np.random.default_rng(2)
  y = rng.normal(size=(30, 3)).astype(np.float32)
  pred = y + rng.normal(scale=[0.1, 1.0, 3.0], size=(30, 3)).astype(np.float32)
  got = np.asarray(probes.r2_score(jnp.asarray(y), jnp.asarray(pred)))
  by_hand = 1.0 - ((y - pred) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
  np.testing.assert_allclose(got, by_hand, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got, sk_r2_score(y, pred, multioutput="raw_values"), atol=1e-5)
  assert got[2] < 0  # worse than the mean: negative
  y_const = y.copy()
  y_const[:, 1] = 1234.567  # not exactly representable: a naive mean would leave round-off
  got = np.asarray(probes.r2_score(jnp.asarray(y_const), jnp.asarray(pred)))
  assert np.isnan(got[1]) and np.isfinite(got[[0, 2]]).all()


def test_standardize_uses_train_stats_and_zeros_constant_columns():
  rng = np.random.default_rng(3)
  tr = rng.normal(loc=5.0, scale=3.0, size=(100, 3)).astype(np.float32)
  tr[:, 2] = 0.1
  te = rng.normal(size=(7, 3)).astype(np.float32)
  s_tr, s_te = probes.standardize(jnp.asarray(tr), jnp.asarray(te))
  np.testing.assert_allclose(s_tr[:, :2].mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(s_tr[:, :2].std(0), 1.0, atol=1e-5)
  np.testing.assert_allclose(s_te[:, :2], (te[:, :2] - tr[:, :2].mean(0)) / tr[:, :2].std(0), 1e-4)
  assert (np.asarray(s_tr[:, 2]) == 0).all() and (np.asarray(s_te[:, 2]) == 0).all()


# --- probes ------------------------------------------------------------------------------------


def test_ridge_probe_exact_linear_target_and_lam_choice():
  data = _flat(_splits(np.random.default_rng(4), (200, 100, 100), _linear))
  out = probes.ridge_probe(*data)
  assert out["r2"].shape == (2,) and out["val_r2"].shape == (2,) and out["lam"].shape == ()
  assert (np.asarray(out["r2"]) > 0.9999).all()
  # the chosen strength is the best mean validation R^2 among DEFAULT_LAMS, re-done in numpy
  x_tr, y_tr, x_va, y_va = data[:4]
  mean, std = x_tr.mean(0), x_tr.std(0)
  scores = []
  for lam in probes.DEFAULT_LAMS:
    w, b = _np_ridge((x_tr - mean) / std, y_tr, lam)
    pred = (x_va - mean) / std @ w + b
    scores.append(np.mean(1 - ((y_va - pred) ** 2).sum(0) / ((y_va - y_va.mean(0)) ** 2).sum(0)))
  assert float(out["lam"]) == pytest.approx(probes.DEFAULT_LAMS[int(np.argmax(scores))])
  assert float(np.mean(out["val_r2"])) == pytest.approx(max(scores), abs=1e-5)


def test_ridge_probe_noise_target_scores_near_zero_and_accepts_1d_y():
  rng = np.random.default_rng(5)
  noise = lambda rng, n: (rng.normal(size=(n, 8)).astype(np.float32), rng.normal(size=n))
  out = probes.ridge_probe(*_flat(_splits(rng, (600, 300, 600), noise)))
  assert out["r2"].shape == (1,)
  assert float(out["r2"][0]) <= 0.05


def test_mlp_probe_learns_nonlinear_target_and_beats_ridge():
  data = _flat(_splits(np.random.default_rng(6), (1000, 300, 300), _wave))
  steps = 300
  out = probes.mlp_probe(*data, key=jax.random.key(0), steps=steps, learning_rate=1e-2)
  ridge = probes.ridge_probe(*data)
  assert float(out["r2"][0]) > 0.8
  assert float(out["r2"][0]) > float(ridge["r2"][0]) + 0.3
  assert 0 <= int(out["best_step"]) < steps
  assert out["val_r2"].shape == (1,)


def test_mlp_probe_keeps_best_validation_step():
  # few noisy rows and a wide net: validation loss turns up, so the best step is an early one
  rng = np.random.default_rng(7)

  def make(rng, n):
    x = rng.normal(size=(n, 6)).astype(np.float32)
    return x, (x[:, :1] + rng.normal(scale=1.0, size=(n, 1))).astype(np.float32)

  data = _flat(_splits(rng, (30, 200, 200), make))
  kw = dict(key=jax.random.key(1), hidden=128, learning_rate=3e-2, weight_decay=0.0)
  out = probes.mlp_probe(*data, steps=200, **kw)
  best = int(out["best_step"])
  assert 0 <= best < 199
  # training is deterministic: stopping right after the best step gives the same parameters
  short = probes.mlp_probe(*data, steps=best + 1, **kw)
  assert int(short["best_step"]) == best
  np.testing.assert_allclose(short["r2"], out["r2"], atol=1e-6)
  np.testing.assert_allclose(short["val_r2"], out["val_r2"], atol=1e-6)


# --- seeds -------------------------------------------------------------------------------------


def _seed_stack(rng, n, make, s=3):
  """Per split: features S x N x D (different per seed) and shared targets N x K."""
  out = []
  for x, y in _splits(rng, n, make):
    mix = rng.normal(size=(s, x.shape[1], x.shape[1])).astype(np.float32)
    xs = np.tanh(np.einsum("nd,sde->sne", x, mix)) + 0.1 * rng.normal(size=(s, *x.shape))
    out += [xs.astype(np.float32), y]
  return out


def test_ridge_probe_seeds_equals_loop():
  # the shapes of test_ridge_probe_exact_linear_target_and_lam_choice: the loop reuses its compile
  data = _seed_stack(np.random.default_rng(8), (200, 100, 100), _linear)
  got = probes.ridge_probe_seeds(*data)
  assert got["r2"].shape == (3, 2) and got["lam"].shape == (3,)
  for s in range(3):
    one = probes.ridge_probe(*[a[s] if i % 2 == 0 else a for i, a in enumerate(data)])
    for name in ("r2", "lam", "val_r2"):
      np.testing.assert_allclose(got[name][s], one[name], atol=1e-5, err_msg=name)
  # per-seed targets (S x N x K) give the same as shared ones broadcast
  per_seed = [a if i % 2 == 0 else np.broadcast_to(a, (3, *a.shape)) for i, a in enumerate(data)]
  np.testing.assert_allclose(probes.ridge_probe_seeds(*per_seed)["r2"], got["r2"], atol=1e-6)


def test_mlp_probe_seeds_equals_loop():
  # the shapes of test_mlp_probe_learns_nonlinear_target...: the loop reuses its compile
  data = _seed_stack(np.random.default_rng(9), (1000, 300, 300), _wave)
  keys = jax.random.split(jax.random.key(2), 3)
  kw = dict(steps=300, learning_rate=1e-2)
  got = probes.mlp_probe_seeds(*data, keys=keys, **kw)
  assert got["r2"].shape == (3, 1) and got["best_step"].shape == (3,)
  for s in range(3):
    one = probes.mlp_probe(
      *[a[s] if i % 2 == 0 else a for i, a in enumerate(data)], key=keys[s], **kw
    )
    assert int(got["best_step"][s]) == int(one["best_step"])
    np.testing.assert_allclose(got["r2"][s], one["r2"], atol=1e-5)
    np.testing.assert_allclose(got["val_r2"][s], one["val_r2"], atol=1e-5)


def test_per_column_probes_equal_each_column_alone():
  rng = np.random.default_rng(11)
  data = _seed_stack(rng, (120, 60, 60), _linear)  # y: N x 2, shared by the 3 seeds
  keys = jax.random.split(jax.random.key(5), 3)
  ridge = probes.ridge_probe_seeds(*data, per_column=True)
  mlp = probes.mlp_probe_seeds(*data, keys=keys, steps=30, per_column=True)
  assert ridge["r2"].shape == ridge["lam"].shape == (3, 2)
  assert mlp["r2"].shape == mlp["best_step"].shape == (3, 2)
  for k in range(2):
    col = [a if i % 2 == 0 else a[:, k] for i, a in enumerate(data)]
    one = probes.ridge_probe_seeds(*col)
    np.testing.assert_allclose(ridge["r2"][:, k], one["r2"][:, 0], atol=1e-5)
    np.testing.assert_allclose(ridge["lam"][:, k], one["lam"], rtol=1e-6)
    one = probes.mlp_probe_seeds(*col, keys=keys, steps=30)
    np.testing.assert_allclose(mlp["r2"][:, k], one["r2"][:, 0], atol=1e-5)
    np.testing.assert_array_equal(mlp["best_step"][:, k], one["best_step"])


# --- bad input ---------------------------------------------------------------------------------


def _good(n=(20, 10, 10)):
  return _flat(_splits(np.random.default_rng(10), n, _linear))


def test_nan_features_are_refused_with_row_count():
  data = _good()
  data[2] = data[2].copy()
  data[2][[1, 4], 0] = np.nan
  data[2][4, 3] = np.nan
  with pytest.raises(ValueError, match=r"x_val has 2 of 10 rows with NaN"):
    probes.ridge_probe(*data)
  with pytest.raises(ValueError, match="NaN"):
    probes.validate_probe_data(*data)
  stack = [np.stack([a, a]) if i % 2 == 0 else a for i, a in enumerate(data)]
  with pytest.raises(ValueError, match=r"x_val has 2 of 10 rows with NaN"):
    probes.mlp_probe_seeds(*stack, keys=jax.random.split(jax.random.key(0), 2))


def test_mismatched_rows_and_tiny_splits_are_refused():
  data = _good()
  bad = list(data)
  bad[1] = data[1][:-1]
  with pytest.raises(ValueError, match=r"x_train has 20 rows but y_train has 19"):
    probes.ridge_probe(*bad)
  tiny = _good((20, 10, 1))
  with pytest.raises(ValueError, match=r"test split needs at least 2 rows"):
    probes.mlp_probe(*tiny, key=jax.random.key(0))
  bad = list(data)
  bad[2] = data[2][:, :3]
  with pytest.raises(ValueError, match=r"D \(feature columns\) differs"):
    probes.ridge_probe(*bad)


def test_bad_shapes_keys_and_hyper_parameters_are_refused():
  data = _good()
  with pytest.raises(ValueError, match=r"x_train must be N x D"):
    probes.ridge_probe(data[0][:, 0], *data[1:])
  with pytest.raises(ValueError, match=r"floating dtype"):
    probes.ridge_probe(data[0].astype(np.int32), *data[1:])
  with pytest.raises(ValueError, match=r"typed key"):
    probes.mlp_probe(*data, key=jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match=r"keys must have shape \(2,\)"):
    stack = [np.stack([a, a]) if i % 2 == 0 else a for i, a in enumerate(data)]
    probes.mlp_probe_seeds(*stack, keys=jax.random.split(jax.random.key(0), 3))
  with pytest.raises(ValueError, match=r"steps must be a positive int"):
    probes.mlp_probe(*data, key=jax.random.key(0), steps=0)
  with pytest.raises(ValueError, match=r"lams must all be > 0"):
    probes.ridge_probe(*data, lams=(1.0, 0.0))
