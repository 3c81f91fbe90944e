"""Layers that run fast on XLA:CPU.

``PatchConv`` is a drop-in for ``nn.Conv(features, (k, k), strides=s, padding="SAME" | "VALID")``
(same parameter names and shapes, same output) written as im2col + one matmul. Why: XLA:CPU runs a
convolution inside a ``while`` loop -- and so inside ``lax.scan``, which is how the shared loop
runs K steps per dispatch -- about 10x slower than the same convolution at top level (measured
here: the SmallCNN digits update takes 6.4 ms alone, 70 ms per step inside a scan); as shifted
slices and a matmul the step takes 2.4 ms scanned. For small kernels and images the im2col
buffer (N x H' x W' x k*k*C) is small.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


def _same_pads(size: int, k: int, s: int) -> tuple[int, int, int]:
  out = -(-size // s)
  total = max((out - 1) * s + k - size, 0)
  return out, total // 2, total - total // 2


class PatchConv(nn.Module):
  """``k x k`` convolution, stride ``strides``, SAME or VALID padding, as im2col + matmul."""

  features: int
  kernel_size: int = 3
  strides: int = 1
  padding: str = "SAME"
  use_bias: bool = True
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros

  @nn.compact
  def __call__(self, x_NxHxWxC):
    n, h, w, c = x_NxHxWxC.shape
    k, s = self.kernel_size, self.strides
    if self.padding == "SAME":
      ho, top, bottom = _same_pads(h, k, s)
      wo, left, right = _same_pads(w, k, s)
    elif self.padding == "VALID":
      ho, wo, top, bottom, left, right = (h - k) // s + 1, (w - k) // s + 1, 0, 0, 0, 0
    else:
      raise ValueError(f"padding must be SAME or VALID, got {self.padding!r}")
    xp = jnp.pad(x_NxHxWxC, ((0, 0), (top, bottom), (left, right), (0, 0)))
    cols = [
      xp[:, i : i + (ho - 1) * s + 1 : s, j : j + (wo - 1) * s + 1 : s, :]
      for i in range(k)
      for j in range(k)
    ]
    patches = jnp.concatenate(cols, axis=-1)  # N x H' x W' x (k*k*C), order (i, j, c)
    kernel = self.param("kernel", self.kernel_init, (k, k, c, self.features))
    # 2-D operands: XLA:CPU runs the backward of a 4-D x 2-D dot far slower
    y = (
      patches.reshape(n * ho * wo, k * k * c) @ kernel.reshape(k * k * c, self.features)
    ).reshape(n, ho, wo, self.features)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,))
    return y
