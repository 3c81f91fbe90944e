"""THE shared functional training loop.

The contract (every model in the project trains through it)::

  loss_fn(params, batch, key) -> (loss, metrics)             # pure, user-written
  update = make_update(loss_fn, optimizer)                    # (state, batch) -> (state, metrics)
  state, metrics = run_steps(update, state, stacked_batches)  # lax.scan over K steps per dispatch

For data that lives on the device, :func:`make_data_step` turns ``update`` into a step that draws
its own batch from ``(state.step, data)``: a fresh permutation per epoch from the state's key, the
batch gathered and augmented inside jit. Because the batch is a pure function of the step,
resuming from a checkpoint resumes the data stream exactly.

:func:`fit` drives any such step: one jitted dispatch of K scanned steps (state donated), metrics
fetched only at log intervals and appended to ``metrics.jsonl``, a NaN/inf guard that names the
step, a progress bar, and Orbax checkpoints with automatic resume from the work directory.
"""
from __future__ import annotations

import os
import time
import weakref
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

from jaxprune.core import io
from jaxprune.core.checkpoint import Checkpointer
from jaxprune.core.sharding import DATA_AXIS

_DATA_SALT = 0x5EED  # key stream for data order / augmentation, separate from the loss's keys


class TrainState(struct.PyTreeNode):
  """Everything a run needs to continue: params, optimizer state, step and base key."""

  params: Any
  opt_state: Any
  step: jax.Array  # int32 scalar
  key: jax.Array  # typed PRNG key; step keys are fold_in(key, step)


def create_state(params, optimizer: optax.GradientTransformation, key: jax.Array) -> TrainState:
  return TrainState(params=params, opt_state=optimizer.init(params), step=jnp.int32(0), key=key)


def step_key(state: TrainState) -> jax.Array:
  """The key of the current step: ``fold_in(base_key, step)`` (a resumed run draws the same)."""
  return jax.random.fold_in(state.key, state.step)


def make_update(loss_fn: Callable, optimizer: optax.GradientTransformation) -> Callable:
  """``update(state, batch) -> (state, metrics)``: one optimizer step on ``loss_fn``.

  ``loss_fn(params, batch, key) -> (loss, metrics)`` with ``metrics`` a dict of scalars;
  the returned metrics hold ``loss`` and ``grad_norm`` besides.
  """

  def update(state: TrainState, batch) -> tuple[TrainState, dict]:
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch,
                                                                     step_key(state))
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
  """A dataset held on the device: uint8 images (N x H x W x C) and int32 labels (N)."""

  images: jax.Array
  labels: jax.Array


def to_device(images, labels, mesh: Mesh | None = None) -> DeviceData:
  """Put a dataset on the device(s), replicated over ``mesh`` (batches get sharded in jit)."""
  images = np.asarray(images)
  if images.dtype != np.uint8:
    raise ValueError(f"images must be uint8 (kept compact on device), got {images.dtype}")
  data = DeviceData(jnp.asarray(images), jnp.asarray(np.asarray(labels, np.int32)))
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


def make_data_step(update: Callable, *, batch_size: int, preprocess: Callable,
                   mesh: Mesh | None = None) -> Callable:
  """``step(state, data) -> (state, metrics)`` drawing batch ``state.step`` from ``data``.

  ``preprocess(images_uint8_BxHxWxC, key) -> float images`` runs in jit (augmentation).
  With ``mesh``, the batch is sharded along the mesh's data axis; params stay replicated.
  """

  def step(state: TrainState, data: DeviceData):
    n = data.labels.shape[0]
    idx = epoch_batch_indices(state.key, state.step, n=n, batch_size=batch_size)
    aug_key = jax.random.fold_in(jax.random.fold_in(state.key, _DATA_SALT + 1), state.step)
    batch = {"image": preprocess(data.images[idx], aug_key), "label": data.labels[idx],
             "index": idx}
    if mesh is not None:
      batch = lax.with_sharding_constraint(batch, NamedSharding(mesh, P(DATA_AXIS)))
    return update(state, batch)

  return step


# ---------------------------------------------------------------------------------------------
# the driver


_DISPATCH = weakref.WeakKeyDictionary()  # step function -> its jitted K-step dispatch


def jitted_dispatch(step: Callable) -> Callable:
  """``dispatch(state, data, length) -> (state, stacked metrics)``, jitted once per ``step``
  object (state donated): fits that reuse a step reuse its compilations."""
  if step not in _DISPATCH:
    def dispatch(state, data, length):
      return run_steps(lambda s, _: step(s, data), state, length=length)
    _DISPATCH[step] = jax.jit(dispatch, static_argnums=2, donate_argnums=0)
  return _DISPATCH[step]


def _current_step(state) -> int:
  return int(np.max(jax.device_get(state.step)))  # vmapped states carry one step per model


class NonFiniteError(FloatingPointError):
  """A metric became NaN or inf."""


def fit(step: Callable, state: TrainState, data=None, *, num_steps: int,
        workdir: str | None = None, steps_per_dispatch: int = 10, log_every: int = 10,
        ckpt_every: int | None = None, mesh: Mesh | None = None, progress: bool = True,
        meta: dict | None = None, stop_at: int | None = None, desc: str = "train"):
  """Run ``step(state, data)`` until ``state.step == num_steps``; returns ``(state, records)``.

  ``state`` is any pytree with a ``step`` field (a :class:`TrainState`, a state carrying extra
  trackers, or a stack of states for models vmapped over seeds).

  * One jitted dispatch runs ``steps_per_dispatch`` steps (``lax.scan``), state donated.
  * Metrics (a dict of scalars per step) stay on device until a log interval; then every
    step's metrics are appended to ``workdir/metrics.jsonl`` and checked: NaN or inf raises
    :class:`NonFiniteError` naming the first bad step.
  * With ``workdir``, checkpoints go to ``workdir/checkpoints`` every ``ckpt_every`` steps and
    at the end, and a new call resumes from the latest one (state, hence data position).
  * ``stop_at`` ends the run early without a final checkpoint, as a kill would (for tests).
  """
  if num_steps < 0 or steps_per_dispatch < 1 or log_every < 1:
    raise ValueError("need num_steps >= 0, steps_per_dispatch >= 1 and log_every >= 1")
  ckpt = metrics_path = None
  if workdir is not None:
    os.makedirs(workdir, exist_ok=True)
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    restored = ckpt.restore_latest(state)
    if restored is not None:
      state = restored[0]
      io.truncate_jsonl(metrics_path, _current_step(state))
    elif os.path.exists(metrics_path):
      io.truncate_jsonl(metrics_path, 0)
  if mesh is not None:
    state = jax.device_put(state, NamedSharding(mesh, P()))
  dispatch = jitted_dispatch(step)
  start = _current_step(state)
  pending: list[tuple[int, dict]] = []  # (first step, stacked metrics) not yet fetched
  records: list[dict] = []
  t0 = time.perf_counter()
  bar = tqdm(total=num_steps, initial=start, desc=desc, unit="step", disable=not progress)

  def flush(keep_newest: bool = False):
    # keep_newest: leave the dispatch just issued running; its metrics are read next time
    n_take = len(pending) - 1 if keep_newest else len(pending)
    fetched = jax.device_get(pending[:n_take])
    del pending[:n_take]
    rows = []
    for first, m in fetched:
      k = len(next(iter(m.values()))) if m else 0
      for i in range(k):
        # metrics of vmapped models (a leading model axis) are logged as their mean
        row = {"step": first + i + 1, **{name: float(np.mean(v[i])) for name, v in m.items()}}
        bad = [name for name, v in row.items() if not np.isfinite(v)]
        if bad:
          raise NonFiniteError(f"non-finite {', '.join(bad)} at step {row['step']} "
                               f"(values: { {b: row[b] for b in bad} })")
        rows.append(row)
    if metrics_path and rows:
      io.append_jsonl(metrics_path, rows)
    records.extend(rows)
    if rows:
      shown = {k: v for k, v in rows[-1].items() if k != "step"}
      bar.set_postfix({k: f"{v:.4g}" for k, v in list(shown.items())[:4]})

  cur = start
  end = num_steps if stop_at is None else min(num_steps, stop_at)
  while cur < end:
    length = min(steps_per_dispatch, num_steps - cur)
    state, metrics = dispatch(state, data, length)
    pending.append((cur, metrics))
    prev, cur = cur, cur + length
    bar.update(length)
    crossed = lambda every: every and (cur // every > prev // every)
    if crossed(log_every):
      flush(keep_newest=True)
    if ckpt is not None and (crossed(ckpt_every) or cur >= num_steps):
      flush()
      ckpt.save(cur, state, {"step": cur, **(meta or {})})
  if pending and cur >= num_steps:
    flush()
  bar.close()
  if ckpt is not None:
    ckpt.close()
  if progress and cur > start:
    dt = time.perf_counter() - t0
    print(f"{desc}: steps {start} -> {cur} in {dt:.1f} s ({(cur - start) / dt:.1f} steps/s)")
  return state, records
