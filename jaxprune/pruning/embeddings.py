"""Embeddings for the prototype scores: standardised pixels (:func:`data.pixel_embeddings`), or a
SimCLR encoder trained through the shared loop (``scripts/prune.py --embedding ssl``)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import jax
import numpy as np
import optax

from jaxprune.core.cache import memoize
from jaxprune.core.config import check_finite, require, to_dict
from jaxprune.core.loop import create_state, make_data_step, make_update, to_device
from jaxprune.core.run import Run, fit
from jaxprune.models import SimCLREncoder, simclr_features, simclr_loss, to_unit_float
from jaxprune.pruning import keys
from jaxprune.pruning.data import fingerprint

# fields of a stored SSL run that a resumed run may change
SSL_MAY_CHANGE = ("ssl.steps", "ssl.steps_per_dispatch")


@dataclass(frozen=True)
class SSLConfig:
  """SimCLR training for embeddings (small defaults that suit the bundled digits on a CPU)."""

  steps: int = 400
  """SimCLR training steps"""
  batch_size: int = 256
  """images per step (two views each; capped at the dataset's size)"""
  lr: float = 2e-3
  """peak Adam learning rate (cosine decay over steps)"""
  width: int = 32
  """encoder width (channels of its first layer)"""
  embed_dim: int = 64
  """projection head output size (the embeddings are the backbone's 4 * width features)"""
  temperature: float = 0.2
  """NT-Xent temperature"""
  steps_per_dispatch: int = 20
  """optimizer steps per jitted dispatch (lax.scan)"""

  def __post_init__(self):
    check_finite(self)
    require(self.steps >= 1, f"ssl.steps must be >= 1, got {self.steps}")
    require(
      self.batch_size >= 2,
      f"ssl.batch_size must be >= 2 (SimCLR contrasts the images "
      f"of a batch), got {self.batch_size}",
    )
    require(self.lr > 0, f"ssl.lr must be > 0, got {self.lr}")
    require(self.width >= 1, f"ssl.width must be >= 1, got {self.width}")
    require(self.embed_dim >= 1, f"ssl.embed_dim must be >= 1, got {self.embed_dim}")
    require(self.temperature > 0, f"ssl.temperature must be > 0, got {self.temperature}")
    require(
      self.steps_per_dispatch >= 1,
      f"ssl.steps_per_dispatch must be >= 1, got {self.steps_per_dispatch}",
    )


@memoize
def _simclr_fns(cfg: SSLConfig, batch_size: int) -> tuple:
  """``(encoder, optimizer, data step)`` of a SimCLR run (memoised: one compilation per config
  and batch size in a process)."""
  encoder = SimCLREncoder(cfg.embed_dim, cfg.width)
  opt = optax.adam(optax.cosine_decay_schedule(cfg.lr, cfg.steps))
  step = make_data_step(
    make_update(simclr_loss(encoder, temperature=cfg.temperature), opt),
    batch_size=batch_size,
    preprocess=lambda im, key: to_unit_float(im),
  )
  return encoder, opt, step


def ssl_embeddings(
  images_uint8,
  *,
  cfg: SSLConfig = SSLConfig(),
  seed: int = 0,
  workdir: str | None = None,
  overwrite: bool = False,
  progress: bool = True,
) -> np.ndarray:
  """Train a SimCLR encoder on the images and return their backbone representations (N x D).

  Keys: ``fold_in(key(seed), keys.SSL)``. With ``workdir``, the run lives in ``workdir/ssl``
  (checkpoints, metrics): an interrupted run resumes, and a stored run of another seed, SSL
  config or image set is a :class:`jaxprune.core.run.ConfigMismatchError` (``overwrite``
  discards it instead).
  """
  encoder, params = train_simclr(
    images_uint8, cfg=cfg, seed=seed, workdir=workdir, overwrite=overwrite, progress=progress
  )
  return simclr_features(encoder, params, to_unit_float(np.asarray(images_uint8)))


def train_simclr(
  images_uint8,
  *,
  cfg: SSLConfig = SSLConfig(),
  seed: int = 0,
  workdir: str | None = None,
  overwrite: bool = False,
  progress: bool = True,
) -> tuple:
  """Train a SimCLR encoder on the images; returns ``(encoder, params)``, so that other images
  (a test split) can be embedded with the same frozen encoder:
  ``simclr_features(encoder, params, to_unit_float(images))``. Keys, ``workdir`` and
  ``overwrite`` as :func:`ssl_embeddings`, which is this plus the training images' features."""
  images_uint8 = np.asarray(images_uint8)
  if images_uint8.ndim != 4:
    raise ValueError(f"images must be N x H x W x C, got shape {images_uint8.shape}")
  stored = {
    "seed": int(seed),
    "ssl": to_dict(cfg),
    "images": {
      "shape": list(images_uint8.shape),
      "fingerprint": fingerprint(images_uint8, max_rows=1024),
    },
  }
  with contextlib.ExitStack() as stack:  # the run is opened first: a mismatch stops at once
    run = None
    if workdir is not None:
      ssl_dir = os.path.join(workdir, "ssl")
      run = stack.enter_context(
        Run(ssl_dir, config=stored, may_change=SSL_MAY_CHANGE, overwrite=overwrite)
      )
    encoder, opt, step = _simclr_fns(cfg, min(cfg.batch_size, len(images_uint8)))
    k_init, k_run = jax.random.split(keys.job_key(seed, keys.SSL))
    params = encoder.init(k_init, to_unit_float(images_uint8[:2]))["params"]
    data = to_device(images_uint8, np.zeros(len(images_uint8), np.int32))
    state, _ = fit(
      step,
      create_state(params, opt, k_run),
      data,
      num_steps=cfg.steps,
      run=run,
      steps_per_dispatch=cfg.steps_per_dispatch,
      log_every=cfg.steps_per_dispatch,
      ckpt_every=max(cfg.steps // 4, 1),
      progress=progress,
      desc="SimCLR encoder",
    )
  return encoder, state.params
