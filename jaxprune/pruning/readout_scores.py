"""The supervised pruning metrics for a linear readout: EL2N, GraNd and forgetting from an
ensemble of linear softmax models trained by minibatch Adam on frozen features.

In the linear-readout grid (:mod:`jaxprune.pruning.readout_grid`) the classifier is a linear
softmax on frozen features, so the metrics that rank examples by a classifier's training signal
are taken from the same model family (as Paul et al. take EL2N / GraNd from the network they
prune for): ``num_models`` linear models, each from its own small random initialisation and
data order, trained for ``epochs`` epochs of minibatch Adam on the pool's examples.

* **EL2N** (Paul et al. 2021): ``|| softmax(x W + b) - onehot(y) ||_2`` after ``score_epoch``
  epochs (early in training: Paul et al. take epoch 20 of 200), averaged over the models;
* **GraNd** (Paul et al.): the norm of the per-example loss gradient at the models'
  initialisations, averaged over the models (:func:`jaxprune.pruning.scores.grand`);
* **forgetting** (Toneva et al. 2019): per model, the correct -> incorrect transitions between
  the ends of consecutive epochs, an example never classified right ranking hardest
  (:func:`jaxprune.pruning.scores.forgetting`); averaged over the models.

:func:`train_linear_scorers` is pure and jitted (sizes static); :func:`linear_scores` turns its
result into the three score vectors.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxprune.pruning import scores as scores_lib
from jaxprune.pruning.linear_readout import Readout, readout_logits


class LinearScorers(NamedTuple):
  """The ensemble's states (a leading model axis on every array of ``init`` / ``early``):
  ``init`` at initialisation, ``early`` after ``score_epoch`` epochs; ``forgets_MxN`` the
  correct -> incorrect transitions per model and example, ``learned_MxN`` whether the example was
  ever classified right at an epoch's end."""

  init: Readout
  early: Readout
  forgets_MxN: jax.Array
  learned_MxN: jax.Array


def _ce(readout: Readout, x, y):
  logp = jax.nn.log_softmax(readout_logits(readout, x), axis=-1)
  return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=-1))


def train_linear_scorers(
  x_NxD: jax.Array,
  y_N: jax.Array,
  key: jax.Array,
  *,
  num_classes: int,
  num_models: int = 5,
  epochs: int = 10,
  score_epoch: int = 1,
  batch_size: int = 128,
  lr: float = 1e-2,
  init_scale: float = 1e-2,
) -> LinearScorers:
  """Train ``num_models`` linear softmax models (vmapped) on ``x_NxD`` / ``y_N`` for ``epochs``
  epochs of minibatch Adam (``batch_size``, capped at N; each epoch a fresh permutation per
  model, the last partial batch dropped), from ``W ~ N(0, init_scale^2)``, ``b = 0``. Returns
  the states at init and after ``score_epoch`` epochs (0 <= score_epoch <= epochs; traced, so
  changing it does not recompile) and the forgetting statistics over every epoch's end.
  Jittable (``num_classes``, ``num_models``, ``epochs``, ``batch_size`` static)."""
  if isinstance(score_epoch, int) and not 0 <= score_epoch <= epochs:
    raise ValueError(f"score_epoch {score_epoch} must be in [0, epochs={epochs}]")
  return _train(
    x_NxD,
    y_N,
    key,
    score_epoch,
    lr,
    init_scale,
    num_classes=num_classes,
    num_models=num_models,
    epochs=epochs,
    batch_size=batch_size,
  )


@functools.partial(
  jax.jit,
  static_argnames=("num_classes", "num_models", "epochs", "batch_size"),
)
def _train(
  x_NxD, y_N, key, score_epoch, lr, init_scale, *, num_classes, num_models, epochs, batch_size
) -> LinearScorers:
  x_NxD, y_N = jnp.asarray(x_NxD, jnp.float32), jnp.asarray(y_N, jnp.int32)
  n, d = x_NxD.shape
  b = min(batch_size, n)
  steps = n // b
  opt = optax.adam(lr)

  def one_model(key):
    k_init, k_order = jax.random.split(key)
    init = Readout(
      init_scale * jax.random.normal(k_init, (d, num_classes)), jnp.zeros((num_classes,))
    )

    def epoch(carry, k_epoch):
      readout, opt_state, correct, forgets, learned = carry
      order = jax.random.permutation(k_epoch, n)[: steps * b].reshape(steps, b)

      def step(c, idx):
        r, s = c
        g = jax.grad(_ce)(r, x_NxD[idx], y_N[idx])
        u, s = opt.update(g, s, r)
        return (optax.apply_updates(r, u), s), None

      (readout, opt_state), _ = jax.lax.scan(step, (readout, opt_state), order)
      now = jnp.argmax(readout_logits(readout, x_NxD), -1) == y_N
      forgets = forgets + (correct & ~now)
      return (readout, opt_state, now, forgets, learned | now), None

    def epoch_and_early(carry, xs):
      i, k_epoch = xs
      carry, early = carry
      carry, _ = epoch(carry, k_epoch)
      early = jax.tree.map(lambda a, b: jnp.where(i + 1 == score_epoch, a, b), carry[0], early)
      return (carry, early), None

    carry = (
      init,
      opt.init(init),
      jnp.zeros(n, bool),
      jnp.zeros(n, jnp.int32),
      jnp.zeros(n, bool),
    )
    xs = (jnp.arange(epochs), jax.random.split(k_order, epochs))
    (carry, early), _ = jax.lax.scan(epoch_and_early, (carry, init), xs)
    return init, early, carry[3], carry[4]

  init, early, forgets, learned = jax.vmap(one_model)(jax.random.split(key, num_models))
  return LinearScorers(init, early, forgets, learned)


def linear_scores(scorers: LinearScorers, x_NxD, y_N, *, num_classes: int) -> dict[str, jax.Array]:
  """``{"el2n", "grand", "forgetting"}``: per-example scores (N,), each averaged over the
  ensemble (higher = harder)."""
  x_NxD, y_N = jnp.asarray(x_NxD, jnp.float32), jnp.asarray(y_N, jnp.int32)

  def loss_single(readout, x_D, y):
    return _ce(readout, x_D[None], y[None])

  forgetting = jax.vmap(scores_lib.forgetting)(scorers.forgets_MxN, scorers.learned_MxN)
  return {
    "el2n": scores_lib.el2n(readout_logits, scorers.early, x_NxD, y_N, num_classes=num_classes),
    "grand": scores_lib.grand(loss_single, scorers.init, x_NxD, y_N, chunk_size=256),
    "forgetting": jnp.mean(forgetting, axis=0),
  }
