"""A linear readout trained to convergence: multinomial logistic regression on frozen features.

The perceptron theory's setting on real data (issue 26): a softmax classifier on fixed features,
fitted on each pruned subset until the gradient of its objective is below a tolerance, not for a
fixed number of steps. The objective, over a fixed pool of ``N`` examples with weights ``w_N``
(a pruned subset is a 0/1 mask over the pool), is

    sum_n w_n * CE(softmax(x_n @ W + b), y_n) / sum_n w_n  +  (l2 / 2) * |W|^2

(the mean cross-entropy over the weighted examples; the bias ``b`` is not penalised). It is
scikit-learn's ``LogisticRegression(C=C)`` objective, ``C * sum_n w_n CE_n + |W|^2 / 2``, divided
by ``C * sum_n w_n``: the two have the same minimiser when ``C = 1 / (l2 * sum_n w_n)``.

The mask keeps the shapes static, so one compilation serves every subset of a pool and
``jax.vmap`` over masks (strategies, fractions, seeds) fits many subsets in one program. On CPU
a Python loop over the masks (the same compiled program each time) was faster: at 60,000 x 128,
10 classes, on two cores, 10 masks took 18.7 s one by one and 80.8 s vmapped
(``scripts/bench_readout.py``), because a vmapped ``while_loop`` runs every fit until the
slowest has converged and the line search's ``lax.cond`` branches become ``select``s that
evaluate both sides. Use vmap where the batch is cheap next to the overhead (an accelerator,
small pools).

Solver: L-BFGS (:func:`optax.lbfgs`) with a zoom line search (strong Wolfe conditions, with the
approximate-decrease test that keeps it working in float32 near the optimum) in a
``lax.while_loop`` until ``|grad| <= tol`` or ``max_iter`` iterations. Why L-BFGS and not Newton:
the problem is smooth and strongly convex (``l2 > 0``), so L-BFGS converges reliably, and an
iteration costs a gradient or two, ``O(N D K)``; one Newton step needs the ``(D K) x (D K)``
Hessian, ``O(N D^2 K^2)`` (about 10^11 multiply-adds at 60,000 x 128 x 10, seconds on two
cores) and a dense solve per subset.

The softmax is unchanged when a constant is added to every class's bias, and ``b`` is not
penalised, so ``b`` is defined up to that shift. Starting from zero, every gradient (so every
iterate) sums to zero over the classes: the returned ``b`` (and each row of ``W``) sums to zero,
the unique centred solution (compare scikit-learn's ``intercept_`` after centring it).

Feature standardisation is the caller's: the penalty ``|W|^2`` and the solver's conditioning
depend on the features' scales, so standardise them (zero mean, unit variance per feature, with
statistics from the pool or the training split, not the test split) before fitting.

Value checks (NaN features, labels out of range, ``l2 <= 0``, all-zero weights) need concrete
values, so they live in the host-side :func:`check_readout_inputs`, which jobs call before
fitting; :func:`fit_readout` itself only checks shapes and dtypes, and runs under ``jit`` /
``vmap``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu


class Readout(NamedTuple):
  """A linear softmax classifier: ``logits = x @ w_DxK + b_K``."""

  w_DxK: jax.Array
  b_K: jax.Array


class ReadoutFit(NamedTuple):
  """The result of :func:`fit_readout` (with a leading axis per fit under ``vmap``).

  ``readout``: the fitted parameters; ``loss``: the objective at them; ``grad_norm``: the L2
  norm of the objective's gradient (over ``W`` and ``b``) at them, recomputed after the last
  iteration; ``num_iter``: L-BFGS iterations run; ``converged``: ``grad_norm <= tol``.
  """

  readout: Readout
  loss: jax.Array
  grad_norm: jax.Array
  num_iter: jax.Array
  converged: jax.Array


def _float_dtype(dtype) -> jnp.dtype:
  """float32, or float64 for float64 inputs (under x64)."""
  if jnp.issubdtype(dtype, jnp.floating):
    return jnp.promote_types(dtype, jnp.float32)
  return jnp.dtype(jnp.float32)


def _check_shapes(x_NxD, y_N, weights_N, num_classes) -> None:
  """Static checks (shapes, dtypes): fine under jit."""
  if not isinstance(num_classes, int | np.integer) or num_classes < 2:
    raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}.")
  if x_NxD.ndim != 2:
    raise ValueError(
      f"x_NxD must be 2-D (examples, features), got shape {x_NxD.shape}; flatten the features"
      " first."
    )
  n = x_NxD.shape[0]
  if y_N.shape != (n,):
    raise ValueError(f"y_N must have shape ({n},) to match x_NxD {x_NxD.shape}, got {y_N.shape}.")
  if not jnp.issubdtype(y_N.dtype, jnp.integer):
    raise ValueError(f"y_N must hold integer class labels, got dtype {y_N.dtype}.")
  if weights_N is not None and weights_N.shape != (n,):
    raise ValueError(
      f"weights_N must have shape ({n},) to match x_NxD {x_NxD.shape}, got {weights_N.shape};"
      " to fit several masks, jax.vmap over them."
    )


def readout_loss(
  readout: Readout, x_NxD: jax.Array, y_N: jax.Array, weights_N: jax.Array, *, l2
) -> jax.Array:
  """The objective: weighted mean cross-entropy plus ``(l2 / 2) |W|^2``. ``weights_N`` must
  sum to more than zero."""
  logp_NxK = jax.nn.log_softmax(x_NxD @ readout.w_DxK + readout.b_K, axis=-1)
  nll_N = -jnp.take_along_axis(logp_NxK, y_N[:, None], axis=-1)[:, 0]
  return jnp.sum(weights_N * nll_N) / jnp.sum(weights_N) + 0.5 * l2 * jnp.sum(
    jnp.square(readout.w_DxK)
  )


@functools.partial(jax.jit, static_argnames=("num_classes", "memory_size"))
def fit_readout(
  x_NxD: jax.typing.ArrayLike,
  y_N: jax.typing.ArrayLike,
  *,
  num_classes: int,
  l2: jax.typing.ArrayLike,
  weights_N: jax.typing.ArrayLike | None = None,
  tol: jax.typing.ArrayLike = 1e-5,
  max_iter: jax.typing.ArrayLike = 1000,
  memory_size: int = 10,
) -> ReadoutFit:
  """Multinomial logistic regression on ``x_NxD`` (standardised by the caller) and labels
  ``y_N`` in ``[0, num_classes)``, with example weights ``weights_N`` (``None``: all ones; a 0/1
  mask selects a subset of the pool), solved by L-BFGS until the objective's gradient norm is
  ``<= tol`` or ``max_iter`` iterations have run (see the module docstring for the objective).

  ``l2`` (> 0), ``tol`` and ``max_iter`` are traced (changing them does not recompile);
  ``num_classes`` and ``memory_size`` (the L-BFGS history) are static. The result's
  ``converged`` says whether ``tol`` was reached; check it. In float32, a ``tol`` much below
  ~1e-6 may not be reachable (the gradient's rounding error); use float64 inputs under
  ``jax.enable_x64`` for tighter fits. Value checks are :func:`check_readout_inputs`'s.
  """
  x_NxD, y_N = jnp.asarray(x_NxD), jnp.asarray(y_N)
  weights_N = None if weights_N is None else jnp.asarray(weights_N)
  _check_shapes(x_NxD, y_N, weights_N, num_classes)
  dtype = _float_dtype(x_NxD.dtype)
  x_NxD = x_NxD.astype(dtype)
  weights_N = jnp.ones(x_NxD.shape[0], dtype) if weights_N is None else weights_N.astype(dtype)
  l2, tol = jnp.asarray(l2, dtype), jnp.asarray(tol, dtype)
  max_iter = jnp.asarray(max_iter, jnp.int32)

  def objective(readout):
    return readout_loss(readout, x_NxD, y_N, weights_N, l2=l2)

  opt = optax.lbfgs(memory_size=memory_size)
  value_and_grad = optax.value_and_grad_from_state(objective)

  def step(carry):
    readout, state = carry
    value, grad = value_and_grad(readout, state=state)
    updates, state = opt.update(grad, state, readout, value=value, grad=grad, value_fn=objective)
    return optax.apply_updates(readout, updates), state

  def running(carry):
    _, state = carry
    count = otu.tree_get(state, "count")
    grad_norm = otu.tree_norm(otu.tree_get(state, "grad"))
    # At count 0 the state's gradient is a zero placeholder: always take the first step.
    return (count == 0) | ((count < max_iter) & (grad_norm > tol))

  d = x_NxD.shape[1]
  init = Readout(jnp.zeros((d, num_classes), dtype), jnp.zeros((num_classes,), dtype))
  readout, state = jax.lax.while_loop(running, step, (init, opt.init(init)))
  loss, grad = jax.value_and_grad(objective)(readout)
  grad_norm = otu.tree_norm(grad)
  return ReadoutFit(
    readout=readout,
    loss=loss,
    grad_norm=grad_norm,
    num_iter=otu.tree_get(state, "count"),
    converged=grad_norm <= tol,
  )


def readout_logits(readout: Readout, x_NxD: jax.typing.ArrayLike) -> jax.Array:
  """``x_NxD @ W + b``, shape ``(N, K)``."""
  x_NxD = jnp.asarray(x_NxD)
  return x_NxD.astype(readout.w_DxK.dtype) @ readout.w_DxK + readout.b_K


def predict_readout(readout: Readout, x_NxD: jax.typing.ArrayLike) -> jax.Array:
  """The predicted class per example, shape ``(N,)`` (int32)."""
  return jnp.argmax(readout_logits(readout, x_NxD), axis=-1).astype(jnp.int32)


def readout_accuracy(
  readout: Readout,
  x_NxD: jax.typing.ArrayLike,
  y_N: jax.typing.ArrayLike,
  weights_N: jax.typing.ArrayLike | None = None,
) -> jax.Array:
  """The (weighted) fraction of ``y_N`` predicted right, a scalar in [0, 1]."""
  correct_N = (predict_readout(readout, x_NxD) == jnp.asarray(y_N)).astype(jnp.float32)
  if weights_N is None:
    return jnp.mean(correct_N)
  weights_N = jnp.asarray(weights_N, jnp.float32)
  return jnp.sum(weights_N * correct_N) / jnp.sum(weights_N)


def check_readout_inputs(
  x_NxD,
  y_N,
  *,
  num_classes: int,
  l2: float,
  weights_N=None,
  tol: float | None = None,
  max_iter: int | None = None,
) -> None:
  """Host-side value checks before :func:`fit_readout` (call it from jobs, not under jit).

  Raises ``ValueError`` for non-finite features, labels outside ``[0, num_classes)``, ``l2``
  not a finite number > 0, weights that are negative, non-finite or sum to zero (an empty
  subset), ``tol <= 0`` or ``max_iter < 1``, and for the shape errors :func:`fit_readout`
  raises. ``weights_N`` may hold one row per fit (shape ``(M, N)``, for ``vmap``); every row is
  checked.
  """
  x_NxD, y_N = np.asarray(x_NxD), np.asarray(y_N)
  weights = None if weights_N is None else np.asarray(weights_N)
  _check_shapes(x_NxD, y_N, None, num_classes)  # weights: checked below, one row per fit
  if weights is not None and (weights.ndim not in (1, 2) or weights.shape[-1] != x_NxD.shape[0]):
    raise ValueError(
      f"weights_N must have shape ({x_NxD.shape[0]},) or (M, {x_NxD.shape[0]}) to match x_NxD"
      f" {x_NxD.shape}, got {weights.shape}."
    )
  bad = ~np.isfinite(x_NxD)
  if bad.any():
    row, col = np.argwhere(bad)[0]
    raise ValueError(
      f"x_NxD has {int(bad.sum())} non-finite values (the first at row {row}, feature {col}:"
      f" {x_NxD[row, col]}); remove or repair those examples before fitting the readout."
    )
  out = (y_N < 0) | (y_N >= num_classes)
  if out.any():
    i = int(np.flatnonzero(out)[0])
    raise ValueError(
      f"y_N has {int(out.sum())} labels outside [0, {num_classes}) (the first at index {i}:"
      f" {y_N[i]}); pass num_classes > the largest label, or fix the labels."
    )
  if not (np.ndim(l2) == 0 and np.isfinite(l2) and l2 > 0):
    raise ValueError(
      f"l2 must be a finite number > 0 (the objective is strongly convex only then), got {l2!r}."
    )
  if tol is not None and not (np.isfinite(tol) and tol > 0):
    raise ValueError(f"tol must be a finite number > 0, got {tol!r}.")
  if max_iter is not None and not (int(max_iter) == max_iter and max_iter >= 1):
    raise ValueError(f"max_iter must be an int >= 1, got {max_iter!r}.")
  if weights is not None:
    w_MxN = weights.reshape(-1, weights.shape[-1]).astype(np.float64)
    if not np.isfinite(w_MxN).all() or (w_MxN < 0).any():
      raise ValueError(
        "weights_N must be finite and >= 0 (a 0/1 mask over the pool), got values in"
        f" [{np.nanmin(w_MxN)}, {np.nanmax(w_MxN)}] with"
        f" {int((~np.isfinite(w_MxN)).sum())} non-finite."
      )
    empty = np.flatnonzero(w_MxN.sum(axis=1) <= 0)
    if empty.size:
      where = "" if weights.ndim == 1 else f" (rows {empty[:5].tolist()} of {len(w_MxN)})"
      raise ValueError(
        f"weights_N sums to zero{where}: the subset is empty; keep at least one example."
      )
