"""Image batch conventions shared by the models: uint8 ``N x H x W x C`` on the host and on
device (compact), float32 in [0, 1] inside the models."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def check_images(x, *, name: str = "images") -> None:
  """Raise ``ValueError`` unless ``x`` is a 4-D N x H x W x C floating-point array."""
  shape = getattr(x, "shape", None)
  if shape is None or len(shape) != 4:
    raise ValueError(f"{name} must be a 4-D array of shape (N, H, W, C), got shape {shape}")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"{name} must be floating point (e.g. float32 in [0, 1]), got {x.dtype}")


def to_unit_float(images_uint8) -> jax.Array:
  """uint8 images (any shape) -> float32 in [0, 1]."""
  dtype = getattr(images_uint8, "dtype", None)
  if dtype != np.uint8:
    raise ValueError(f"to_unit_float expects uint8 images (values 0..255), got dtype {dtype}")
  return jnp.asarray(images_uint8, jnp.float32) / 255.0
