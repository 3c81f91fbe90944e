"""Pure JAX image augmentations on float32 batches ``x_NxHxWxC`` (jittable, vmappable over keys).

Every image in a batch draws its own random parameters from ``key``; same key, same output.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.models.images import check_images

# ITU-R 601 luma weights, for the greyscale image used by contrast and saturation jitter.
_LUMA = (0.299, 0.587, 0.114)


def _flip(key, x_NxHxWxC):
  """Horizontal flip of each image with probability 0.5."""
  flip_N = jax.random.bernoulli(key, 0.5, x_NxHxWxC.shape[:1])
  return jnp.where(flip_N[:, None, None, None], x_NxHxWxC[:, :, ::-1, :], x_NxHxWxC)


def random_crop_flip(key: jax.Array, x, *, pad: int = 4) -> jax.Array:
  """CIFAR augmentation: reflect-pad by ``pad``, random H x W crop and random flip per image."""
  check_images(x)
  if not isinstance(pad, (int, np.integer)) or pad < 0:
    raise ValueError(f"pad must be a non-negative integer, got {pad!r}")
  n, h, w, c = x.shape
  if pad >= min(h, w):
    raise ValueError(
      f"pad must be smaller than the image size {(h, w)} for reflect padding, got pad={pad}"
    )
  crop_key, flip_key = jax.random.split(key)
  xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
  offsets_Nx2 = jax.random.randint(crop_key, (n, 2), 0, 2 * pad + 1)
  crop = jax.vmap(lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, c)))
  return _flip(flip_key, crop(xp, offsets_Nx2))


def _resized_crop(key, img_HxWxC, min_scale):
  """One random crop (area fraction in [min_scale, 1], aspect in [3/4, 4/3]) resized to H x W."""
  h, w, _ = img_HxWxC.shape
  k_area, k_ratio, k_y, k_x = jax.random.split(key, 4)
  area = jax.random.uniform(k_area, (), minval=min_scale, maxval=1.0)
  # Aspect ratios limited to those whose crop fits in the image (ratio in [area, 1 / area]), so
  # the area is exact and area 1 is the whole image.
  log_area = jnp.log(area)
  log_ratio = jax.random.uniform(
    k_ratio,
    (),
    minval=jnp.maximum(np.log(3 / 4), log_area),
    maxval=jnp.minimum(np.log(4 / 3), -log_area),
  )
  ratio = jnp.exp(log_ratio)  # crop width / height, relative to the image's own aspect
  ch = jnp.clip(h * jnp.sqrt(area / ratio), 1.0, h)
  cw = jnp.clip(w * jnp.sqrt(area * ratio), 1.0, w)
  y0 = jax.random.uniform(k_y, ()) * (h - ch)
  x0 = jax.random.uniform(k_x, ()) * (w - cw)
  # scale_and_translate maps input coordinate u to output coordinate u * scale + translation.
  scale = jnp.stack([h / ch, w / cw])
  translation = -jnp.stack([y0, x0]) * scale
  return jax.image.scale_and_translate(
    img_HxWxC, img_HxWxC.shape, (0, 1), scale, translation, method="linear"
  )


def _colour_jitter(key, img_HxWxC, strength):
  """Brightness and contrast (and saturation for C == 3), factors in [1 - s, 1 + s]."""
  factors = jax.random.uniform(key, (3,), minval=1.0 - strength, maxval=1.0 + strength)
  img = img_HxWxC * factors[0]
  c = img.shape[-1]
  grey_HxWx1 = (img @ jnp.asarray(_LUMA, img.dtype))[..., None] if c == 3 else img
  img = (img - jnp.mean(grey_HxWx1)) * factors[1] + jnp.mean(grey_HxWx1)
  if c == 3:
    grey_HxWx1 = (img @ jnp.asarray(_LUMA, img.dtype))[..., None]
    img = grey_HxWx1 + (img - grey_HxWx1) * factors[2]
  return img


def simclr_augment(
  key: jax.Array, x, *, crop_min_scale: float = 0.3, jitter: float = 0.4
) -> jax.Array:
  """SimCLR view of images in [0, 1]: random resized crop, flip, colour jitter; clipped to [0, 1].

  ``x_NxHxWxC -> N x H x W x C``. ``crop_min_scale``: smallest crop area as a fraction of the
  image; ``jitter``: brightness / contrast / saturation factors are drawn in [1 - j, 1 + j].
  """
  check_images(x)
  if not 0.0 < crop_min_scale <= 1.0:
    raise ValueError(f"crop_min_scale must be in (0, 1], got {crop_min_scale}")
  if not 0.0 <= jitter < 1.0:
    raise ValueError(f"jitter must be in [0, 1), got {jitter}")
  n = x.shape[0]
  crop_key, flip_key, jitter_key = jax.random.split(key, 3)
  x = x.astype(jnp.float32)
  x = jax.vmap(_resized_crop, in_axes=(0, 0, None))(
    jax.random.split(crop_key, n), x, crop_min_scale
  )
  x = _flip(flip_key, x)
  x = jax.vmap(_colour_jitter, in_axes=(0, 0, None))(jax.random.split(jitter_key, n), x, jitter)
  return jnp.clip(x, 0.0, 1.0)
