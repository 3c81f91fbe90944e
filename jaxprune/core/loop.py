"""THE shared functional training loop.

The contract (every model in the project trains through it)::

  loss_fn(params, batch, key) -> (loss, metrics)             # pure, user-written
  update = make_update(loss_fn, optimizer)                    # (state, batch) -> (state, metrics)
  state, metrics = run_steps(update, state, stacked_batches)  # lax.scan over K steps per dispatch

For data that lives on the device, :func:`make_data_step` turns ``update`` into a step that draws
its own batch from ``(state.step, data)``: a fresh permutation per epoch from the state's key, the
batch gathered and augmented inside jit. Because the batch is a pure function of the step,
resuming from a checkpoint resumes the data stream exactly.

:func:`jaxprune.core.run.fit` drives any such step under a :class:`jaxprune.core.run.Run`, the
driver that owns the work directory (checkpoints, metrics, NaN guard, lock, progress).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxprune.core.sharding import DATA_AXIS

_DATA_SALT = 0x5EED  # key stream for data order / augmentation, separate from the loss's keys


class TrainState(struct.PyTreeNode):
  """Everything a run needs to continue: params, optimizer state, step and base key."""

  params: Any
  opt_state: Any
  step: jax.Array  # int32 scalar
  key: jax.Array  # typed PRNG key; step keys are fold_in(key, step)


def create_state(params, optimizer: optax.GradientTransformation, key: jax.Array) -> TrainState:
  """The state at step 0: ``params``, ``optimizer.init(params)``, ``step = 0`` and ``key`` (a typed
  PRNG key, e.g. ``jax.random.key(seed)``; step ``i`` draws with ``fold_in(key, i)``).

  The state holds ``params`` themselves (no copy). :func:`jaxprune.core.run.fit` donates the
  state it trains, but only its own copy of it: the caller's ``params`` and state stay usable, so
  one init can start several runs. Runs under ``jax.jit`` (an init in one program).
  """
  return TrainState(params=params, opt_state=optimizer.init(params), step=jnp.int32(0), key=key)


# XLA's cheapest compile: for programs that run once (parameter initialisation), where compile
# time is all the cost. A world model's init is mostly threefry draws: on 2 CPU cores it compiles
# in 5 s instead of 37 s this way; the values agree with the optimised build to an ulp (1e-8).
ONCE_COMPILER_OPTIONS = {
  "xla_backend_optimization_level": 0,
  "xla_llvm_disable_expensive_passes": True,
}


def jit_once(fun: Callable, **jit_kwargs) -> Callable:
  """``jax.jit(fun, **jit_kwargs)`` compiled with :data:`ONCE_COMPILER_OPTIONS` (no XLA
  optimisation): for a function called once, such as an init."""
  return jax.jit(fun, compiler_options=ONCE_COMPILER_OPTIONS, **jit_kwargs)


def step_key(state: TrainState) -> jax.Array:
  """The key of the current step: ``fold_in(base_key, step)`` (a resumed run draws the same)."""
  return jax.random.fold_in(state.key, state.step)


def make_update(loss_fn: Callable, optimizer: optax.GradientTransformation) -> Callable:
  """``update(state, batch) -> (state, metrics)``: one optimizer step on ``loss_fn``.

  ``loss_fn(params, batch, key) -> (loss, metrics)`` with ``metrics`` a dict of scalars;
  the returned metrics hold ``loss`` and ``grad_norm`` besides.
  """

  def update(state: TrainState, batch) -> tuple[TrainState, dict]:
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params, batch, step_key(state)
    )
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), **aux}
    return state.replace(params=params, opt_state=opt_state, step=state.step + 1), metrics

  return update


def run_steps(update: Callable, state: TrainState, batches=None, *, length: int | None = None):
  """K updates in one ``lax.scan``: over the leading axis of ``batches`` (stacked K x ...), or
  ``length`` times with ``batches=None`` for steps that draw their own data."""
  return lax.scan(update, state, batches, length=length)


# ---------------------------------------------------------------------------------------------
# on-device datasets


class DeviceData(NamedTuple):
  """A dataset held on the device (made by :func:`to_device`), read by :func:`make_data_step`.

  ``images``: the examples, N x ... . Either uint8 images N x H x W x C (kept compact on the
  device; the step scales and augments each batch in jit), or floating features of any trailing
  shape (rows N x D of tabular data or embeddings, float images N x H x W x C), float32 unless
  given as bfloat16 / float16. ``labels``: int32, N (zeros when the loss needs none).
  """

  images: jax.Array
  labels: jax.Array


_FLOAT_KEEP = (np.float16, np.float32, jnp.bfloat16)


def to_device(images, labels, mesh: Mesh | None = None) -> DeviceData:
  """Put a dataset on the device(s), replicated over ``mesh`` (batches get sharded in jit).

  ``images``: uint8 images N x H x W x C, or floating features N x ... (float64 is stored as
  float32; integer features other than uint8 images are refused: cast them to float32).
  ``labels``: integers, N. Non-finite features are refused (they would turn the loss NaN).
  """
  images = np.asarray(images)
  labels = np.asarray(labels)
  if images.ndim < 1 or labels.shape != images.shape[:1]:
    raise ValueError(
      f"need images N x ... and labels N, got images {images.shape} and labels {labels.shape}"
    )
  if labels.size and not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"labels must be integers, got {labels.dtype}")
  if images.dtype != np.uint8:
    if not np.issubdtype(images.dtype, np.floating) and images.dtype != jnp.bfloat16:
      raise ValueError(
        "images must be uint8 images or floating features (cast integer features to float32), "
        f"got {images.dtype}"
      )
    if images.dtype not in _FLOAT_KEEP:
      images = images.astype(np.float32)
    n_bad = int(np.size(images) - np.count_nonzero(np.isfinite(images.astype(np.float32))))
    if n_bad:
      raise ValueError(f"features hold {n_bad} NaN or inf values")
  data = DeviceData(jnp.asarray(images), jnp.asarray(labels.astype(np.int32)))
  if mesh is not None:
    data = jax.device_put(data, NamedSharding(mesh, P()))
  return data


def steps_per_epoch(n: int, batch_size: int) -> int:
  if batch_size > n:
    raise ValueError(f"batch_size {batch_size} is larger than the dataset ({n} examples)")
  return n // batch_size  # the remainder of each epoch's permutation is dropped


def epoch_batch_indices(key: jax.Array, step, *, n: int, batch_size: int) -> jax.Array:
  """Indices of the batch at ``step``: a fresh permutation of ``n`` for every epoch."""
  spe = steps_per_epoch(n, batch_size)
  epoch, pos = step // spe, step % spe
  perm = jax.random.permutation(jax.random.fold_in(jax.random.fold_in(key, _DATA_SALT), epoch), n)
  return lax.dynamic_slice_in_dim(perm, pos * batch_size, batch_size)


def scale_uint8(images, key) -> jax.Array:
  """The default ``preprocess`` of :func:`make_data_step`: uint8 images to float32 in [0, 1];
  floating features pass unchanged (no augmentation either way)."""
  del key
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  return images


def make_data_step(
  update: Callable,
  *,
  batch_size: int,
  preprocess: Callable | None = None,
  mesh: Mesh | None = None,
) -> Callable:
  """``step(state, data) -> (state, metrics)`` drawing batch ``state.step`` from ``data``.

  ``data`` is a :class:`DeviceData`. Batch ``i`` is a slice of a fresh permutation of the N
  examples per epoch (``N // batch_size`` steps; the remainder is dropped), drawn from the
  state's key: a pure function of the step, so a resumed run sees the same batches.

  ``update(state, batch)`` (e.g. :func:`make_update`, whose ``loss_fn(params, batch, key)``
  receives it) gets the dict::

    batch["image"]  preprocess(data.images[idx], aug_key): B x ... (B = batch_size), the
                    features as ``preprocess`` returns them (float32 by default)
    batch["label"]  data.labels[idx]: int32, B
    batch["index"]  idx: int32, B, the examples' rows in ``data``

  ``preprocess(x_Bx..., key) -> array`` runs in jit on each batch with its own key (per step,
  independent of the loss's key): augmentation and normalisation go here. By default
  (:func:`scale_uint8`) uint8 images become float32 in [0, 1] and floating features pass
  unchanged; a given ``preprocess`` sees the stored dtype (uint8 images or float features).
  With ``mesh``, the batch is sharded along the mesh's data axis; params stay replicated.
  """
  if preprocess is None:
    preprocess = scale_uint8

  def step(state: TrainState, data: DeviceData):
    n = data.labels.shape[0]
    idx = epoch_batch_indices(state.key, state.step, n=n, batch_size=batch_size)
    aug_key = jax.random.fold_in(jax.random.fold_in(state.key, _DATA_SALT + 1), state.step)
    batch = {
      "image": preprocess(data.images[idx], aug_key),
      "label": data.labels[idx],
      "index": idx,
    }
    if mesh is not None:
      batch = lax.with_sharding_constraint(batch, NamedSharding(mesh, P(DATA_AXIS)))
    return update(state, batch)

  return step
