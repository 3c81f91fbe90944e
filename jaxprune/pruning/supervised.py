"""Train an ensemble of classifiers (vmapped over seeds, through the shared loop) and score every
training example with the supervised metrics: EL2N, GraNd and forgetting.

One run gives all three: S models train for E epochs on the full training set while a tracker
records, for every example, correct -> incorrect transitions each time the example is drawn
(forgetting, Toneva et al.; correctness is judged on the un-augmented image just before the
update); EL2N and GraNd are computed from the S models' parameters at the end (Paul et al. use
an early epoch: choose E accordingly).
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxprune.pruning import scores as scores_lib
from jaxprune.core.loop import (DeviceData, TrainState, create_state, epoch_batch_indices,
                                make_data_step, make_update, steps_per_epoch)
from jaxprune.core.run import fit


class Tracked(struct.PyTreeNode):
  """A train state plus per-example forgetting statistics (N = dataset size)."""

  train: TrainState
  prev_correct: jax.Array  # N bool: correct at the example's last presentation
  forgets: jax.Array  # N int32: correct -> incorrect transitions
  learned: jax.Array  # N bool: ever correct

  @property
  def step(self):
    return self.train.step


def track(state: TrainState, n: int) -> Tracked:
  return Tracked(state, jnp.zeros(n, bool), jnp.zeros(n, jnp.int32), jnp.zeros(n, bool))


def make_tracked_step(step: Callable, apply_fn: Callable, *, batch_size: int,
                      preprocess_eval: Callable) -> Callable:
  """Wrap a data step (see :func:`train.make_data_step`) with forgetting statistics."""

  def tracked(t: Tracked, data: DeviceData):
    n = data.labels.shape[0]
    idx = epoch_batch_indices(t.train.key, t.train.step, n=n, batch_size=batch_size)
    logits = apply_fn(t.train.params, preprocess_eval(data.images[idx]))
    correct = jnp.argmax(logits, -1) == data.labels[idx]
    forgot = t.prev_correct[idx] & ~correct
    train, metrics = step(t.train, data)
    return Tracked(train, t.prev_correct.at[idx].set(correct),
                   t.forgets.at[idx].add(forgot.astype(jnp.int32)),
                   t.learned.at[idx].max(correct)), metrics

  return tracked


def train_ensemble(init_fn: Callable, apply_fn: Callable, loss_fn: Callable,
                   optimizer: optax.GradientTransformation, data: DeviceData, *, seeds,
                   epochs: int, batch_size: int, preprocess: Callable, preprocess_eval: Callable,
                   steps_per_dispatch: int = 10, workdir: str | None = None,
                   progress: bool = True, track_forgetting: bool = True,
                   num_steps: int | None = None, mesh=None):
  """S = len(seeds) models trained side by side (vmapped) for ``epochs`` epochs (or exactly
  ``num_steps`` steps); resumable with ``workdir``. Returns the stacked :class:`Tracked` states
  (or plain stacked :class:`TrainState` with ``track_forgetting=False``).

  ``init_fn(key) -> params``; ``loss_fn(params, batch, key) -> (loss, metrics)``.
  """
  n = int(data.labels.shape[0])
  keys = jnp.stack([jax.random.key(int(s)) for s in seeds])
  init, step = _ensemble_fns(init_fn, apply_fn, loss_fn, optimizer, n, batch_size, preprocess,
                             preprocess_eval, track_forgetting, mesh)
  states = init(keys)
  if num_steps is None:
    num_steps = epochs * steps_per_epoch(n, batch_size)
  states, _ = fit(step, states, data, num_steps=num_steps,
                  workdir=workdir, steps_per_dispatch=steps_per_dispatch,
                  log_every=max(1, num_steps // 20), ckpt_every=max(1, num_steps // 4),
                  progress=progress, desc=f"ensemble of {len(seeds)}", mesh=mesh,
                  config={"batch_size": batch_size, "steps_per_epoch":
                        steps_per_epoch(n, batch_size), "seeds": [int(s) for s in seeds]})
  return states


@functools.lru_cache(maxsize=64)
def _ensemble_fns(init_fn, apply_fn, loss_fn, optimizer, n, batch_size, preprocess,
                  preprocess_eval, track_forgetting, mesh):
  """The jitted vmapped init and the vmapped step of an ensemble, cached so that repeated
  trainings with the same model and shapes (a pruning curve) compile once."""

  def init_one(key):
    k_init, k_run = jax.random.split(key)
    state = create_state(init_fn(k_init), optimizer, k_run)
    return track(state, n) if track_forgetting else state

  step = make_data_step(make_update(loss_fn, optimizer), batch_size=batch_size,
                        preprocess=preprocess, mesh=mesh)
  if track_forgetting:
    step = make_tracked_step(step, apply_fn, batch_size=batch_size,
                             preprocess_eval=preprocess_eval)
  return jax.jit(jax.vmap(init_one)), jax.vmap(step, in_axes=(0, None))


def supervised_scores(ensemble: Tracked, apply_fn: Callable, data: DeviceData, *,
                      num_classes: int, preprocess_eval: Callable,
                      grand_chunk: int = 32) -> dict[str, np.ndarray]:
  """``{"el2n", "grand", "forgetting"}``: one float per training example, higher = harder."""
  images = preprocess_eval(data.images)
  labels = np.asarray(data.labels)
  params = ensemble.train.params

  def loss_single(p, x, y):
    logits = apply_fn(p, x[None])[0]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)

  forgets = np.asarray(ensemble.forgets).mean(0)  # averaged over the S runs
  learned = np.asarray(ensemble.learned).all(0)
  return {
      "el2n": np.asarray(scores_lib.el2n(apply_fn, params, images, labels,
                                         num_classes=num_classes)),
      "grand": np.asarray(scores_lib.grand(loss_single, params, images, labels,
                                           chunk_size=grand_chunk)),
      "forgetting": np.asarray(scores_lib.forgetting(forgets, learned)),
  }
