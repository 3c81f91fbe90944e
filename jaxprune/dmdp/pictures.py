"""Factor-decoding pictures: a sequence reconstructed from all factors and from each alone.

"From x alone" decodes ``[x_t, y_0, z_0]``: x follows the sequence, every other factor is frozen at
its first-step value; likewise for y and z. Rows of the grid: the observation, all factors, then
one row per factor; columns: time steps.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.core.cache import memoize
from jaxprune.dmdp import model as wm
from jaxprune.dmdp.config import WorldModelConfig
from jaxprune.dmdp.rssm import Latent


def freeze_others(latent_BxT: Latent, factor: str) -> Latent:
  """``latent`` with every factor except ``factor`` held at its t = 0 value (B x T x ..., as
  :func:`~jaxprune.dmdp.model.observe` returns it)."""
  out = {}
  for f in "xyz":
    for part in "hs":
      v = getattr(latent_BxT, part + f)
      if v is not None and f != factor:
        v = jnp.broadcast_to(v[:, :1], v.shape)
      out[part + f] = v
  return Latent(**out)


def factor_reconstructions(cfg: WorldModelConfig, params, image_TxHxWxC, action_TxA, key):
  """``{"observation", "all", "x", "y", ("z")}`` -> T x H x W x C float images in [-0.5, 0.5],
  decoded from the posterior of one sequence (one jitted program per config and shape)."""
  rows = _reconstruct_fn(cfg)(params, jnp.asarray(image_TxHxWxC), jnp.asarray(action_TxA), key)
  return {k: rows[k] for k in ROW_LABELS if k in rows}  # jit returns dicts with sorted keys


@memoize
def _reconstruct_fn(cfg: WorldModelConfig):
  return jax.jit(functools.partial(_reconstruct, cfg))


def _reconstruct(cfg: WorldModelConfig, params, image_TxHxWxC, action_TxA, key):
  image = wm.to_centered_float(image_TxHxWxC)[None]  # 1 x T x ...
  e = wm.encode_images(cfg, params, image)
  a = jnp.asarray(action_TxA, jnp.float32)[None]
  latent, _ = wm.observe(cfg, params, e, a, key)  # 1 x T
  rows = {"observation": image[0], "all": wm.decode(cfg, params, latent)[0]}
  for f in "xyz":
    if getattr(latent, "s" + f) is not None:
      rows[f] = wm.decode(cfg, params, freeze_others(latent, f))[0]
  return rows


def grid(rows: dict, pad: int = 1) -> np.ndarray:
  """Rows of T x H x W x C images in [-0.5, 0.5] -> one uint8 image (R(H+pad) x T(W+pad) x C)."""
  imgs = np.stack([np.asarray(v) for v in rows.values()])  # R x T x H x W x C
  r, t, h, w, c = imgs.shape
  imgs = np.clip((imgs + 0.5) * 255.0, 0, 255).astype(np.uint8)
  out = np.full((r * (h + pad) + pad, t * (w + pad) + pad, c), 255, np.uint8)
  for i in range(r):
    for j in range(t):
      y, x = pad + i * (h + pad), pad + j * (w + pad)
      out[y : y + h, x : x + w] = imgs[i, j]
  return out


ROW_LABELS = {
  "observation": "observed",
  "all": "all factors",
  "x": "x alone",
  "y": "y alone",
  "z": "z alone",
}


def save_factor_pictures(
  path: str,
  cfg: WorldModelConfig,
  params,
  image_TxHxWxC,
  action_TxA,
  key: jax.Array,
  *,
  scale: int = 2,
  title: str | None = None,
) -> list[str]:
  """Write the grid of :func:`factor_reconstructions` as a labelled PNG (:func:`save_rows_picture`);
  returns the row names."""
  rows = factor_reconstructions(cfg, params, image_TxHxWxC, action_TxA, key)
  return save_rows_picture(path, rows, scale=scale, title=title)


def save_rows_picture(
  path: str, rows: dict, *, scale: int = 2, title: str | None = None, first_step: int = 0
) -> list[str]:
  """Write rows of T x H x W x C images in [-0.5, 0.5] as a PNG (atomically), rows labelled
  (observed / all factors / x alone / y alone / z alone), columns by time step (from
  ``first_step``); returns the row names."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from jaxprune.core.io import save_figure

  if not path.endswith(".png"):
    raise ValueError(f"path must end in .png, got {path!r}")
  pad = 1
  g = grid(rows, pad=pad)
  t, h, w = np.asarray(rows["observation"]).shape[:3]
  fig, ax = plt.subplots(figsize=(scale * g.shape[1] / 80 + 1.2, scale * g.shape[0] / 80 + 0.6))
  ax.imshow(g[..., 0] if g.shape[-1] == 1 else g, cmap="gray", interpolation="nearest")
  ax.set_yticks([pad + i * (h + pad) + h / 2 for i in range(len(rows))])
  ax.set_yticklabels([ROW_LABELS.get(r, r) for r in rows], fontsize=8)
  ax.set_xticks([pad + j * (w + pad) + w / 2 for j in range(t)])
  ax.set_xticklabels([str(first_step + j) for j in range(t)], fontsize=7)
  ax.set_xlabel("time step (agent steps)", fontsize=8)
  ax.tick_params(length=0)
  for spine in ax.spines.values():
    spine.set_visible(False)
  if title:
    ax.set_title(title, fontsize=9)
  save_figure(path, fig)
  plt.close(fig)
  return list(rows)
