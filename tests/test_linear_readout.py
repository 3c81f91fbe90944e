"""The linear readout (jaxprune.pruning.linear_readout): multinomial logistic regression to
convergence, checked against scikit-learn's LogisticRegression on 200 standardised digits.

One compiled program (200 x 64 features, 10 classes, weights given) serves every default test
(~8 s in all, most of it that compile); the tests that need another program (the vmapped
solver, the fit on the subset's rows) or run op by op (jit == eager) are in the slow set.
"""

import jax
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from jaxprune.pruning.linear_readout import (
  check_readout_inputs,
  fit_readout,
  predict_readout,
  readout_accuracy,
)

L2 = 1e-2
TOL = 1e-6  # reachable in float32 at this size (the gradient's rounding error is ~1e-8)
K = 10


@pytest.fixture(scope="module")
def digits():
  d = load_digits()
  x, y = d.data[:200], d.target[:200].astype(np.int32)
  x = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)  # the caller standardises
  return x.astype(np.float32), y


@pytest.fixture(scope="module")
def mask(digits):
  m = np.zeros(len(digits[1]), np.float32)
  m[np.random.default_rng(0).permutation(len(m))[:120]] = 1.0
  return m


def _fit(x, y, weights, **kw):
  kw = {"num_classes": K, "l2": L2, "tol": TOL, "max_iter": 500} | kw
  return fit_readout(x, y, weights_N=weights, **kw)


def _sklearn(x, y, n_weighted, sample_weight=None):
  # sklearn minimises C * sum(loss) + |W|^2 / 2 = C * n * (our mean loss + (l2 / 2) |W|^2)
  # when C = 1 / (l2 * n): the same minimiser.
  c = 1.0 / (L2 * n_weighted)
  model = LogisticRegression(C=c, tol=1e-10, max_iter=10_000)
  return model.fit(x.astype(np.float64), y, sample_weight=sample_weight)


def _assert_same_as_sklearn(fit, sk, x):
  w, b = np.asarray(fit.readout.w_DxK), np.asarray(fit.readout.b_K)
  scale = np.abs(sk.coef_).max()
  np.testing.assert_allclose(w, sk.coef_.T, rtol=1e-3, atol=1e-3 * scale)
  # softmax is shift-invariant and b is not penalised: compare the intercepts centred (ours
  # stay centred, the iterates never leave the sum-zero subspace)
  np.testing.assert_allclose(b, sk.intercept_ - sk.intercept_.mean(), atol=1e-3 * scale)
  assert abs(b.sum()) < 1e-4
  np.testing.assert_array_equal(np.asarray(predict_readout(fit.readout, x)), sk.predict(x))


def test_equals_sklearn_logistic_regression(digits):
  x, y = digits
  fit = _fit(x, y, np.ones(len(y), np.float32))
  assert bool(fit.converged) and float(fit.grad_norm) <= TOL
  assert 0 < int(fit.num_iter) < 500
  sk = _sklearn(x, y, len(y))
  _assert_same_as_sklearn(fit, sk, x)
  assert float(readout_accuracy(fit.readout, x, y)) == pytest.approx(sk.score(x, y), abs=1e-6)
  # a wrong C (sklearn's C = 1 / l2, i.e. a summed loss) gives a different model: the mapping
  # is what makes them agree
  wrong = LogisticRegression(C=1.0 / L2, tol=1e-6, max_iter=10_000).fit(x, y)
  gap = np.abs(wrong.coef_.T - np.asarray(fit.readout.w_DxK)).max()
  assert gap > 0.1 * np.abs(wrong.coef_).max()


def test_weights_mask_equals_sklearn_on_subset_rows(digits, mask):
  """A 0/1 mask over the pool fits the subset: C = 1 / (l2 * n_kept), on the kept rows or with
  sklearn's sample_weight = mask on all rows."""
  x, y = digits
  fit = _fit(x, y, mask)
  assert bool(fit.converged) and float(fit.grad_norm) <= TOL
  kept = mask > 0
  n_kept = int(kept.sum())
  _assert_same_as_sklearn(fit, _sklearn(x[kept], y[kept], n_kept), x)
  _assert_same_as_sklearn(fit, _sklearn(x, y, n_kept, sample_weight=mask), x)
  acc = float(readout_accuracy(fit.readout, x, y, mask))
  assert acc == pytest.approx(float(readout_accuracy(fit.readout, x[kept], y[kept])), abs=1e-6)


@pytest.mark.slow  # a second compiled program (120 rows): ~4 s of compile
def test_weights_mask_equals_own_fit_on_subset_rows(digits, mask):
  x, y = digits
  kept = mask > 0
  masked = _fit(x, y, mask)
  rows = _fit(x[kept], y[kept], None)
  assert bool(masked.converged) and bool(rows.converged)
  np.testing.assert_allclose(masked.readout.w_DxK, rows.readout.w_DxK, atol=1e-4)
  np.testing.assert_allclose(masked.readout.b_K, rows.readout.b_K, atol=1e-4)
  np.testing.assert_allclose(masked.loss, rows.loss, rtol=1e-5)


@pytest.mark.slow  # op by op, each primitive compiles on first use: ~17 s
def test_jit_equals_eager(digits, mask):
  """Three L-BFGS iterations, jitted and op by op: the same iterates (and not converged, so the
  flag is not always true)."""
  x, y = digits
  jitted = _fit(x, y, mask, max_iter=3)
  with jax.disable_jit():
    eager = _fit(x, y, mask, max_iter=3)
  for fit in (jitted, eager):
    assert int(fit.num_iter) == 3 and not bool(fit.converged) and float(fit.grad_norm) > TOL
  np.testing.assert_allclose(jitted.readout.w_DxK, eager.readout.w_DxK, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(jitted.readout.b_K, eager.readout.b_K, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(jitted.loss, eager.loss, rtol=1e-5)


@pytest.mark.slow  # a second compiled program (the batched solver): ~5 s of compile
def test_vmap_over_masks_equals_separate_fits(digits, mask):
  x, y = digits
  masks = np.stack([np.ones_like(mask), mask, np.roll(mask, 50)])
  batched = jax.vmap(lambda w: _fit(x, y, w))(masks)
  assert batched.readout.w_DxK.shape == (3, x.shape[1], K) and batched.converged.shape == (3,)
  for i, m in enumerate(masks):
    single = _fit(x, y, m)
    assert bool(batched.converged[i]) and bool(single.converged)
    np.testing.assert_allclose(batched.readout.w_DxK[i], single.readout.w_DxK, atol=1e-4)
    np.testing.assert_allclose(batched.readout.b_K[i], single.readout.b_K, atol=1e-4)
    np.testing.assert_allclose(batched.loss[i], single.loss, rtol=1e-5)
  # different subsets, different models
  assert np.abs(batched.readout.w_DxK[1] - batched.readout.w_DxK[2]).max() > 1e-2


@pytest.mark.parametrize(
  "case, match",
  [
    ("nan_x", r"x_NxD has 1 non-finite values \(the first at row 3, feature 5"),
    ("label_too_big", r"y_N has 1 labels outside \[0, 10\) \(the first at index 7: 10\)"),
    ("label_negative", r"y_N has 1 labels outside \[0, 10\) \(the first at index 0: -1\)"),
    ("l2_zero", r"l2 must be a finite number > 0.*got 0.0"),
    ("l2_negative", r"l2 must be a finite number > 0.*got -1.0"),
    ("weights_zero", r"weights_N sums to zero: the subset is empty"),
    ("weights_row_zero", r"weights_N sums to zero \(rows \[1\] of 3\)"),
    ("weights_negative", r"weights_N must be finite and >= 0"),
    ("weights_shape", r"weights_N must have shape \(200,\) or \(M, 200\)"),
    ("tol_zero", r"tol must be a finite number > 0"),
  ],
)
def test_check_readout_inputs_rejects_bad_inputs(digits, case, match):
  x, y = digits[0].copy(), digits[1].copy()
  kw = {"num_classes": K, "l2": L2}
  n = len(y)
  if case == "nan_x":
    x[3, 5] = np.nan
  elif case == "label_too_big":
    y[7] = K
  elif case == "label_negative":
    y[0] = -1
  elif case == "l2_zero":
    kw["l2"] = 0.0
  elif case == "l2_negative":
    kw["l2"] = -1.0
  elif case == "weights_zero":
    kw["weights_N"] = np.zeros(n)
  elif case == "weights_row_zero":
    kw["weights_N"] = np.stack([np.ones(n), np.zeros(n), np.ones(n)])
  elif case == "weights_negative":
    kw["weights_N"] = np.where(np.arange(n) == 4, -1.0, 1.0)
  elif case == "weights_shape":
    kw["weights_N"] = np.ones(n + 1)
  elif case == "tol_zero":
    kw["tol"] = 0.0
  with pytest.raises(ValueError, match=match):
    check_readout_inputs(x, y, **kw)


def test_check_readout_inputs_accepts_good_inputs(digits, mask):
  x, y = digits
  check_readout_inputs(x, y, num_classes=K, l2=L2, weights_N=mask, tol=TOL, max_iter=10)
  check_readout_inputs(x, y, num_classes=K, l2=L2, weights_N=np.stack([mask, 1 - mask]))


@pytest.mark.parametrize(
  "case, match",
  [
    ("x_1d", r"x_NxD must be 2-D"),
    ("y_length", r"y_N must have shape \(200,\)"),
    ("y_float", r"y_N must hold integer class labels"),
    ("weights_2d", r"weights_N must have shape \(200,\).*jax.vmap"),
    ("one_class", r"num_classes must be an int >= 2"),
  ],
)
def test_fit_readout_rejects_bad_shapes(digits, case, match):
  """Shape and dtype errors are static: fit_readout raises them itself, before tracing the
  solver."""
  x, y = digits
  kw = {"num_classes": K, "l2": L2}
  if case == "x_1d":
    x = x[:, 0]
  elif case == "y_length":
    y = y[:-1]
  elif case == "y_float":
    y = y.astype(np.float32)
  elif case == "weights_2d":
    kw["weights_N"] = np.ones((2, len(y)), np.float32)
  elif case == "one_class":
    kw["num_classes"] = 1
  with pytest.raises(ValueError, match=match):
    fit_readout(x, y, **kw)
