"""Linear and MLP probes of latent features, scored by R^2.

A probe measures how well features ``x`` (N x D) of a factor predict ground-truth targets ``y``
(N x K): it is fitted on a train split, its hyper-parameter (ridge strength) or stopping step (MLP)
is chosen on a validation split, and it is scored on a test split by R^2 per target column.

Design:

- ``r2_score``, ``standardize`` and ``ridge_fit`` are pure ``jnp`` functions: jit- and
  vmap-friendly, they check nothing.
- ``ridge_probe`` and ``mlp_probe`` take one train/val/test split. They validate it in Python
  (``validate_probe_data``) and then call a jitted pure core (``_ridge_probe_core``,
  ``_mlp_probe_core``). Shapes are checked always; the values (finite, no NaN) only when the
  arrays are concrete, so the public functions still run under a caller's ``jit``/``vmap``.
- ``ridge_probe_seeds`` and ``mlp_probe_seeds`` take a stack of S feature sets (S x N x D), with
  targets either per seed (S x N x K) or shared (N x K, or N), and S keys for the MLP. They
  validate the whole stack once and ``vmap`` the same core over the seed axis, so seed ``s`` of
  their result is what the single-split function gives on ``x[s]``, ``y[s]``, ``keys[s]``.
- Features are standardised with the train split's mean and std inside both probes; a feature
  that is constant on train becomes 0 everywhere. The MLP also fits standardised targets and maps
  its predictions back before scoring, so its R^2 is on the targets' own scale (R^2 is invariant
  to a per-column affine map of targets and predictions, so this only matters for round-off).
- Ridge strength ``lam`` multiplies N: the penalty is ``lam * N * |w|^2`` against the summed
  squared error, i.e. ``lam * |w|^2`` against the mean squared error, so one ``lam`` means the
  same thing for any number of samples. The intercept is not penalised.
- The MLP stops early inside its ``lax.scan``: after each optimiser step it scores the validation
  loss and carries the parameters of the best step so far; the test score uses those.

Matrix products use full float32 precision (``precision="highest"``), so accelerators that
default to reduced-precision matmuls give the same fits as the CPU.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

DEFAULT_LAMS: tuple[float, ...] = tuple(10.0**k for k in range(-6, 3))
"""ridge strengths tried by ``ridge_probe``: 1e-6, 1e-5, ..., 1e2 (scaled by N, see ridge_fit)"""

STD_FLOOR = 1e-6
"""a feature (or target) whose train std is at most this is treated as constant"""

_SPLITS = ("train", "val", "test")
_matmul = partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)


# ---------------------------------------------------------------------------------------------
# pure functions


@jax.jit
def r2_score(y_true_NxK: jax.Array, y_pred_NxK: jax.Array) -> jax.Array:
  """R^2 per column, (K,): 1 - SS_res / SS_tot; can be negative.

  A column whose SS_tot is at most 1e-12 * N (a constant target) gives NaN.
  """
  n = y_true_NxK.shape[0]
  ss_res_K = jnp.sum(jnp.square(y_true_NxK - y_pred_NxK), axis=0)
  # shifted by the first row: an exactly constant column gives SS_tot == 0 at any magnitude
  d_NxK = y_true_NxK - y_true_NxK[0]
  ss_tot_K = jnp.sum(jnp.square(d_NxK - jnp.mean(d_NxK, axis=0)), axis=0)
  const_K = ss_tot_K <= 1e-12 * n
  return jnp.where(const_K, jnp.nan, 1.0 - ss_res_K / jnp.where(const_K, 1.0, ss_tot_K))


def _moments(train_NxD: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Column mean (D,), std (D,) and whether the std is above STD_FLOOR (D,) of ``train``."""
  shift_D = train_NxD[0]
  d_NxD = train_NxD - shift_D
  mean_d_D = jnp.mean(d_NxD, axis=0)
  std_D = jnp.sqrt(jnp.mean(jnp.square(d_NxD - mean_d_D), axis=0))
  return shift_D + mean_d_D, std_D, std_D > STD_FLOOR


def _apply_moments(a_MxD, mean_D, std_D, keep_D):
  return jnp.where(keep_D, (a_MxD - mean_D) / jnp.where(keep_D, std_D, 1.0), 0.0)


@jax.jit
def standardize(train_NxD: jax.Array, *others: jax.Array) -> tuple[jax.Array, ...]:
  """``(train, *others)`` standardised with the column mean and std of ``train``.

  Each array is M x D with the same D. A column whose train std is at most STD_FLOOR (1e-6) is
  constant: it becomes 0 in every array.
  """
  mean_D, std_D, keep_D = _moments(train_NxD)
  return tuple(_apply_moments(a, mean_D, std_D, keep_D) for a in (train_NxD, *others))


@jax.jit
def ridge_fit(x_NxD: jax.Array, y_NxK: jax.Array, *, lam) -> tuple[jax.Array, jax.Array]:
  """Closed-form ridge regression with an unpenalised intercept: ``(w_DxK, b_K)``.

  Minimises ``|y - x w - b|^2 + lam * N * |w|^2`` (sums over rows and columns): ``lam`` is scaled
  by N, so it weighs ``|w|^2`` against the *mean* squared error and does not depend on N. With x
  and y centred, ``(xc^T xc + lam N I) w = xc^T yc`` and ``b = mean(y) - mean(x) @ w``. ``lam``
  may be traced (vmap over several strengths shares the Gram matrix).
  """
  n, d = x_NxD.shape
  mean_x_D = jnp.mean(x_NxD, axis=0)
  mean_y_K = jnp.mean(y_NxK, axis=0)
  xc_NxD = x_NxD - mean_x_D
  yc_NxK = y_NxK - mean_y_K
  gram_DxD = _matmul(xc_NxD.T, xc_NxD)
  a_DxD = gram_DxD + lam * n * jnp.eye(d, dtype=gram_DxD.dtype)
  w_DxK = jnp.linalg.solve(a_DxD, _matmul(xc_NxD.T, yc_NxK))
  b_K = mean_y_K - _matmul(mean_x_D, w_DxK)
  return w_DxK, b_K


def _ridge_probe_core(x_tr, y_tr, x_va, y_va, x_te, y_te, lams_L):
  """Pure ridge probe on one split (2-D float arrays); see ``ridge_probe``."""
  x_tr, x_va, x_te = standardize(x_tr, x_va, x_te)

  def val_score(lam):
    w_DxK, b_K = ridge_fit(x_tr, y_tr, lam=lam)
    return w_DxK, b_K, r2_score(y_va, _matmul(x_va, w_DxK) + b_K)

  w_LxDxK, b_LxK, val_r2_LxK = jax.vmap(val_score)(lams_L)
  score_L = jnp.nanmean(val_r2_LxK, axis=1)
  # a strength whose validation R^2 is NaN everywhere (a failed solve) is never chosen
  best = jnp.argmax(jnp.where(jnp.isnan(score_L), -jnp.inf, score_L))
  test_r2_K = r2_score(y_te, _matmul(x_te, w_LxDxK[best]) + b_LxK[best])
  return {"r2": test_r2_K, "lam": lams_L[best], "val_r2": val_r2_LxK[best]}


def _mlp_init(key, d, hidden, k):
  k1, k2 = jax.random.split(key)
  return {
    "w1": jax.random.normal(k1, (d, hidden), jnp.float32) / np.sqrt(d),
    "b1": jnp.zeros((hidden,), jnp.float32),
    "w2": jax.random.normal(k2, (hidden, k), jnp.float32) / np.sqrt(hidden),
    "b2": jnp.zeros((k,), jnp.float32),
  }


def _mlp_apply(params, x_NxD):
  h_NxH = jax.nn.elu(_matmul(x_NxD, params["w1"]) + params["b1"])
  return _matmul(h_NxH, params["w2"]) + params["b2"]


def _mlp_probe_core(x_tr, y_tr, x_va, y_va, x_te, y_te, key, lr, wd, *, hidden, steps):
  """Pure MLP probe on one split (2-D float arrays, a typed key); see ``mlp_probe``."""
  x_tr, x_va, x_te = standardize(x_tr, x_va, x_te)
  y_mean_K, y_std_K, y_keep_K = _moments(y_tr)
  ys_tr, ys_va = (_apply_moments(y, y_mean_K, y_std_K, y_keep_K) for y in (y_tr, y_va))

  params = _mlp_init(key, x_tr.shape[1], hidden, y_tr.shape[1])
  decay_mask = {"w1": True, "b1": False, "w2": True, "b2": False}
  opt = optax.adamw(lr, weight_decay=wd, mask=decay_mask)
  mse = lambda p, x, y: jnp.mean(jnp.square(_mlp_apply(p, x) - y))

  def step(carry, t):
    params, opt_state, best_params, best_loss, best_step = carry
    grads = jax.grad(mse)(params, x_tr, ys_tr)
    updates, opt_state = opt.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    val_loss = mse(params, x_va, ys_va)
    better = val_loss < best_loss  # False for NaN: a diverged step is never kept
    best_params = jax.tree.map(lambda a, b: jnp.where(better, a, b), params, best_params)
    best_loss = jnp.where(better, val_loss, best_loss)
    best_step = jnp.where(better, t, best_step)
    return (params, opt_state, best_params, best_loss, best_step), None

  carry = (params, opt.init(params), params, jnp.array(jnp.inf, jnp.float32), jnp.int32(0))
  carry, _ = jax.lax.scan(step, carry, jnp.arange(steps, dtype=jnp.int32))
  best_params, best_step = carry[2], carry[4]

  def predict(x_MxD):  # back on the targets' scale; a constant target is predicted as its mean
    return y_mean_K + jnp.where(y_keep_K, y_std_K, 0.0) * _mlp_apply(best_params, x_MxD)

  return {
    "r2": r2_score(y_te, predict(x_te)),
    "val_r2": r2_score(y_va, predict(x_va)),
    "best_step": best_step,
  }


_ridge_jit = jax.jit(_ridge_probe_core)
_ridge_seeds_jit = jax.jit(jax.vmap(_ridge_probe_core, in_axes=(0, 0, 0, 0, 0, 0, None)))
_mlp_jit = jax.jit(_mlp_probe_core, static_argnames=("hidden", "steps"))


def _mlp_probe_seeds_core(x_tr, y_tr, x_va, y_va, x_te, y_te, keys, lr, wd, *, hidden, steps):
  """``_mlp_probe_core`` vmapped over the leading seed axis of the data and the keys."""
  core = partial(_mlp_probe_core, hidden=hidden, steps=steps)  # keyword args would be mapped
  in_axes = (0, 0, 0, 0, 0, 0, 0, None, None)
  return jax.vmap(core, in_axes=in_axes)(x_tr, y_tr, x_va, y_va, x_te, y_te, keys, lr, wd)


_mlp_seeds_jit = jax.jit(_mlp_probe_seeds_core, static_argnames=("hidden", "steps"))


def _per_column(seeds_core):
  """A seeds core (y_* S x N x K) run on each target column alone (its own strength or MLP),
  vmapped over the K columns; outputs ``(S, K)`` (``r2``, ``val_r2``, ``lam``, ``best_step``)."""

  def core(x_tr, y_tr, x_va, y_va, x_te, y_te, *rest, **static):
    def one(a, b, c):
      return seeds_core(x_tr, a[..., None], x_va, b[..., None], x_te, c[..., None], *rest, **static)

    out = jax.vmap(one, in_axes=(2, 2, 2))(y_tr, y_va, y_te)  # leading K
    return {k: jnp.moveaxis(v[..., 0] if v.ndim == 3 else v, 0, 1) for k, v in out.items()}

  return core


_ridge_columns_jit = jax.jit(
  _per_column(jax.vmap(_ridge_probe_core, in_axes=(0, 0, 0, 0, 0, 0, None)))
)
_mlp_columns_jit = jax.jit(_per_column(_mlp_probe_seeds_core), static_argnames=("hidden", "steps"))


# ---------------------------------------------------------------------------------------------
# validation (Python, on concrete shapes) and the public probes


def _is_concrete(a) -> bool:
  return not isinstance(a, jax.core.Tracer)


def _check_finite(name: str, a, n_rows: int) -> None:
  """ValueError naming how many rows (axis -2 of ``a``, any seed) hold NaN or inf values."""
  if not _is_concrete(a):
    return
  a = np.asarray(a)
  bad = ~np.isfinite(a)
  if bad.any():
    other = tuple(i for i in range(a.ndim) if i != a.ndim - 2)  # seed and column axes
    bad_rows = int(np.count_nonzero(bad.any(axis=other)))
    n_nan = int(np.count_nonzero(np.isnan(a)))
    raise ValueError(
      f"{name} has {bad_rows} of {n_rows} rows with NaN or infinite values "
      f"({n_nan} NaN entries); drop or impute them before probing"
    )


def _as_float32(name: str, a, *, need_float: bool) -> jax.Array:
  dtype = a.dtype if hasattr(a, "dtype") else np.asarray(a).dtype
  if jnp.issubdtype(dtype, jax.dtypes.prng_key) or not (
    jnp.issubdtype(dtype, jnp.floating)
    or (not need_float and (jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, bool)))
  ):
    kind = "a floating" if need_float else "a real numeric"
    raise ValueError(f"{name} must have {kind} dtype, got {dtype}")
  return jnp.asarray(a, jnp.float32)


def validate_probe_data(
  x_train, y_train, x_val, y_val, x_test, y_test, *, seed_axis: bool = False
) -> tuple[jax.Array, ...]:
  """Check one train/val/test split and return it as float32 jax arrays, y made 2-D (or 3-D).

  Without ``seed_axis``: each x is N x D (float), each y is N x K or N (reshaped to N x 1). With
  ``seed_axis``: each x is S x N x D and each y is S x N x K (per seed) or N x K / N (shared by
  all seeds, broadcast to S x N x K); give per-seed 1-D targets as S x N x 1. D, K (and S) must
  agree across splits, x and y of a split must have the same N >= 2, and all values must be
  finite. Raises ValueError saying what was wrong; values are only checked on concrete arrays.
  """
  xs = dict(zip(_SPLITS, (x_train, x_val, x_test)))
  ys = dict(zip(_SPLITS, (y_train, y_val, y_test)))
  x_ndim = 3 if seed_axis else 2
  out = []
  dims = {}
  for split in _SPLITS:
    x, y = xs[split], ys[split]
    xname, yname = f"x_{split}", f"y_{split}"
    if x is None or y is None:
      raise ValueError(f"{xname} and {yname} must both be arrays, got None")
    x = _as_float32(xname, x, need_float=True)
    y = _as_float32(yname, y, need_float=False)
    shape_txt = "S x N x D" if seed_axis else "N x D"
    if x.ndim != x_ndim:
      raise ValueError(f"{xname} must be {shape_txt} ({x_ndim}-D), got shape {x.shape}")
    n, d = x.shape[-2:]
    if n < 2:
      raise ValueError(f"the {split} split needs at least 2 rows, got {n} ({xname} {x.shape})")
    if d < 1:
      raise ValueError(f"{xname} has no feature columns: shape {x.shape}")
    y_shared = y.ndim < x_ndim
    if y.ndim == 1 or (seed_axis and y.ndim == 2):
      y_n = y.shape[0]
    elif y.ndim == x_ndim:
      y_n = y.shape[-2]
    else:
      allowed = "S x N x K, N x K or N" if seed_axis else "N x K or N"
      raise ValueError(f"{yname} must be {allowed}, got shape {y.shape}")
    if y_n != n:
      raise ValueError(
        f"{xname} has {n} rows but {yname} has {y_n} (shapes {x.shape} and {y.shape})"
      )
    if y.ndim == 1:
      y = y[:, None]
    k = y.shape[-1]
    if k < 1:
      raise ValueError(f"{yname} has no target columns: shape {y.shape}")
    if seed_axis and not y_shared and y.shape[0] != x.shape[0]:
      raise ValueError(
        f"{xname} has {x.shape[0]} seeds but {yname} has {y.shape[0]} "
        f"(shapes {x.shape} and {y.shape})"
      )
    for what, value in (("D (feature columns)", d), ("K (target columns)", k)) + (
      (("S (seeds)", x.shape[0]),) if seed_axis else ()
    ):
      first = dims.setdefault(what, (split, value))
      if first[1] != value:
        raise ValueError(
          f"{what} differs between splits: {first[1]} in {first[0]}, {value} in {split}"
        )
    _check_finite(xname, x, n)
    _check_finite(yname, y, n)
    if seed_axis and y_shared:
      y = jnp.broadcast_to(y, (x.shape[0], n, k))
    out += [x, y]
  return tuple(out)


def _check_lams(lams) -> jax.Array:
  lams_L = jnp.asarray(lams, jnp.float32)
  if lams_L.ndim != 1 or lams_L.shape[0] < 1:
    raise ValueError(
      f"lams must be a non-empty 1-D sequence of strengths, got shape {lams_L.shape}"
    )
  if _is_concrete(lams_L) and not bool(jnp.all(lams_L > 0)):
    raise ValueError(f"lams must all be > 0, got {np.asarray(lams_L).tolist()}")
  return lams_L


def _check_mlp_hparams(hidden, steps, learning_rate, weight_decay) -> None:
  if not isinstance(hidden, (int, np.integer)) or hidden < 1:
    raise ValueError(f"hidden must be a positive int, got {hidden!r}")
  if not isinstance(steps, (int, np.integer)) or steps < 1:
    raise ValueError(f"steps must be a positive int, got {steps!r}")
  if not learning_rate > 0:
    raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
  if not weight_decay >= 0:
    raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")


def _check_keys(key, shape: tuple[int, ...], name: str) -> None:
  if not (hasattr(key, "dtype") and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)):
    raise ValueError(f"{name} must be a typed key from jax.random.key, got {type(key).__name__}")
  if key.shape != shape:
    raise ValueError(f"{name} must have shape {shape}, got {key.shape}")


def ridge_probe(
  x_train, y_train, x_val, y_val, x_test, y_test, *, lams: tuple[float, ...] = DEFAULT_LAMS
) -> dict[str, jax.Array]:
  """Ridge probe: x_* N x D, y_* N x K (or N); test ``r2`` (K,), ``lam`` (), ``val_r2`` (K,).

  Features are standardised with train statistics; every strength in ``lams`` (scaled by N, see
  ``ridge_fit``) is fitted on train at once, the one with the best mean validation R^2 over target
  columns (NaN columns ignored) is kept, and that train fit is scored on test.
  """
  data = validate_probe_data(x_train, y_train, x_val, y_val, x_test, y_test)
  return _ridge_jit(*data, _check_lams(lams))


def ridge_probe_seeds(
  x_train,
  y_train,
  x_val,
  y_val,
  x_test,
  y_test,
  *,
  lams: tuple[float, ...] = DEFAULT_LAMS,
  per_column: bool = False,
) -> dict[str, jax.Array]:
  """``ridge_probe`` vmapped over seeds: x_* S x N x D, y_* S x N x K or shared N x K / N.

  Returns ``r2`` (S, K), ``lam`` (S,), ``val_r2`` (S, K). ``per_column``: each target column
  gets its own probe and strength (vmapped over the columns); ``lam`` is then (S, K).
  """
  data = validate_probe_data(x_train, y_train, x_val, y_val, x_test, y_test, seed_axis=True)
  fn = _ridge_columns_jit if per_column else _ridge_seeds_jit
  return fn(*data, _check_lams(lams))


def mlp_probe(
  x_train,
  y_train,
  x_val,
  y_val,
  x_test,
  y_test,
  *,
  key: jax.Array,
  hidden: int = 64,
  steps: int = 300,
  learning_rate: float = 3e-3,
  weight_decay: float = 1e-4,
) -> dict[str, jax.Array]:
  """One-hidden-layer ELU MLP probe: x_* N x D, y_* N x K (or N), ``key`` a typed key.

  Trained full-batch with AdamW (weight decay on the weights, not the biases) for ``steps`` steps
  on standardised x and y (train statistics). After step t (0-based, i.e. t + 1 updates) the
  validation MSE is computed; the parameters of the best step are kept. Returns test ``r2`` (K,)
  and ``val_r2`` (K,) of those parameters on the targets' scale, and ``best_step`` () in
  [0, steps).
  """
  data = validate_probe_data(x_train, y_train, x_val, y_val, x_test, y_test)
  _check_keys(key, (), "key")
  _check_mlp_hparams(hidden, steps, learning_rate, weight_decay)
  return _mlp_jit(
    *data,
    key,
    jnp.float32(learning_rate),
    jnp.float32(weight_decay),
    hidden=int(hidden),
    steps=int(steps),
  )


def mlp_probe_seeds(
  x_train,
  y_train,
  x_val,
  y_val,
  x_test,
  y_test,
  *,
  keys: jax.Array,
  hidden: int = 64,
  steps: int = 300,
  learning_rate: float = 3e-3,
  weight_decay: float = 1e-4,
  per_column: bool = False,
) -> dict[str, jax.Array]:
  """``mlp_probe`` vmapped over seeds: x_* S x N x D, y_* S x N x K or shared, ``keys`` (S,).

  Returns ``r2`` (S, K), ``val_r2`` (S, K), ``best_step`` (S,). ``per_column``: one MLP per
  target column (vmapped over the columns, the same keys), ``best_step`` then (S, K).
  """
  data = validate_probe_data(x_train, y_train, x_val, y_val, x_test, y_test, seed_axis=True)
  _check_keys(keys, (data[0].shape[0],), "keys")
  _check_mlp_hparams(hidden, steps, learning_rate, weight_decay)
  fn = _mlp_columns_jit if per_column else _mlp_seeds_jit
  return fn(
    *data,
    keys,
    jnp.float32(learning_rate),
    jnp.float32(weight_decay),
    hidden=int(hidden),
    steps=int(steps),
  )
