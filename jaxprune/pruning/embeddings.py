"""Embeddings for the prototype metric: standardised pixels, or a SimCLR encoder trained
through the shared loop (``scripts/prune.py --embedding ssl``)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import jax
import numpy as np
import optax

from jaxprune.models import Encoder, embed, simclr_loss, to_float
from jaxprune.core.loop import create_state, make_data_step, make_update, to_device
from jaxprune.core.run import fit


@dataclass(frozen=True)
class SSLConfig:
  """SimCLR training for embeddings (small defaults that suit the bundled digits on a CPU)."""

  steps: int = 400
  batch_size: int = 256
  lr: float = 2e-3
  width: int = 32
  embed_dim: int = 64
  temperature: float = 0.2
  steps_per_dispatch: int = 20


def ssl_embeddings(images_uint8, *, cfg: SSLConfig = SSLConfig(), seed: int = 0,
                   workdir: str | None = None, progress: bool = True) -> np.ndarray:
  """Train a SimCLR encoder on the images and return their backbone representations (N x D).

  With ``workdir``, training checkpoints go to ``workdir/ssl`` and an interrupted run resumes.
  """
  images_uint8 = np.asarray(images_uint8)
  if images_uint8.ndim != 4:
    raise ValueError(f"images must be N x H x W x C, got shape {images_uint8.shape}")
  encoder = Encoder(cfg.embed_dim, cfg.width)
  k_init, k_run = jax.random.split(jax.random.key(seed))
  params = encoder.init(k_init, to_float(images_uint8[:2]))["params"]
  opt = optax.adam(optax.cosine_decay_schedule(cfg.lr, cfg.steps))
  step = make_data_step(make_update(simclr_loss(encoder, temperature=cfg.temperature), opt),
                        batch_size=min(cfg.batch_size, len(images_uint8)),
                        preprocess=lambda im, key: to_float(im))
  state, _ = fit(step, create_state(params, opt, k_run),
                 to_device(images_uint8, np.zeros(len(images_uint8), np.int32)),
                 num_steps=cfg.steps, steps_per_dispatch=cfg.steps_per_dispatch,
                 log_every=cfg.steps_per_dispatch, ckpt_every=max(cfg.steps // 4, 1),
                 workdir=None if workdir is None else os.path.join(workdir, "ssl"),
                 progress=progress, desc="SimCLR encoder")
  return embed(encoder, state.params, to_float(images_uint8))
