"""The pixel layers as they were before issue 28 (concatenated patches, JAX's own derivatives,
the old choice of formulation): the reference that the world-model update's loss and gradients
are checked against in ``test_dmdp_patches.py``. Test support only."""

from typing import Callable

import flax.linen as nn
import jax.numpy as jnp

from jaxprune.dmdp.conv import depth_to_space, space_to_depth


class S2DConv(nn.Module):
  """``k x k`` stride-2 VALID convolution (``k`` even) as space-to-depth + im2col + matmul."""

  features: int
  kernel_size: int = 4
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros

  @nn.compact
  def __call__(self, x_NxHxWxC):
    n, h, w, c = x_NxHxWxC.shape
    k = self.kernel_size
    if k % 2:
      raise ValueError(f"S2DConv needs an even kernel size, got {k}")
    kernel = self.param("kernel", self.kernel_init, (k, k, c, self.features))
    bias = self.param("bias", self.bias_init, (self.features,))
    ho, wo, q = (h - k) // 2 + 1, (w - k) // 2 + 1, k // 2
    # rows past 2 (ho - 1) + k are never read by a VALID stride-2 window
    xs = space_to_depth(x_NxHxWxC[:, : 2 * (ho + q - 1), : 2 * (wo + q - 1)])
    patches = jnp.concatenate(
      [xs[:, a : a + ho, b : b + wo] for a in range(q) for b in range(q)], axis=-1
    )  # N x ho x wo x (q*q*4C), order (a, b, p, r, c)
    # kernel row i = 2a + p, col j = 2b + r
    kmat = kernel.reshape(q, 2, q, 2, c, self.features).transpose(0, 2, 1, 3, 4, 5)
    y = patches.reshape(n * ho * wo, -1) @ kmat.reshape(q * q * 4 * c, self.features)
    return y.reshape(n, ho, wo, self.features) + bias


class MatmulConvTranspose(nn.Module):
  """``k x k`` stride-2 VALID transposed convolution (flax convention) as col2im + matmul."""

  features: int
  kernel_size: int = 5
  # "col2im": x @ W, then the overlap-add; "subpixel": im2col of the input, one matmul,
  # depth-to-space; "auto": whichever expands to the smaller tensor (same function either way)
  method: str = "auto"
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros

  @nn.compact
  def __call__(self, x_NxHxWxC):
    n, h, w, c = x_NxHxWxC.shape
    k, f = self.kernel_size, self.features
    kernel = self.param("kernel", self.kernel_init, (k, k, c, f))
    bias = self.param("bias", self.bias_init, (f,))
    # flax's ConvTranspose (transpose_kernel=False) correlates the dilated input with the kernel:
    # y[2 i + (k - 1 - t)] += x[i] W[t]; with the flipped kernel, y[2 i + t] += x[i] Wf[t].
    wf = kernel[::-1, ::-1]
    if h == 1 and w == 1:  # from a 1x1 map the layer is a dense layer
      y = x_NxHxWxC.reshape(n, c) @ wf.transpose(2, 0, 1, 3).reshape(c, k * k * f)
      return y.reshape(n, k, k, f) + bias
    q = -(-k // 2)
    wp = jnp.pad(wf, ((0, 2 * q - k), (0, 2 * q - k), (0, 0), (0, 0)))
    method = self.method
    if method == "auto":  # the formulation whose expanded tensor (im2col / col2im) is smaller
      sub = (h + q - 1) * (w + q - 1) * c
      method = "subpixel" if sub < h * w * 4 * f else "col2im"
    if method == "subpixel":
      # phase p of output row 2m + p reads input rows m - a, a < q, with tap 2a + p: a stride-1
      # q x q correlation of the input padded by q - 1, kernel row j = q - 1 - a
      xp = jnp.pad(x_NxHxWxC, ((0, 0), (q - 1, q - 1), (q - 1, q - 1), (0, 0)))
      hp, wp_ = h + q - 1, w + q - 1
      patches = jnp.concatenate(
        [xp[:, i : i + hp, j : j + wp_] for i in range(q) for j in range(q)], axis=-1
      )  # N x hp x wp x (q*q*C), order (i, j, c)
      km = wp.reshape(q, 2, q, 2, c, f)[::-1, :, ::-1].transpose(0, 2, 4, 1, 3, 5)
      y = patches.reshape(n * hp * wp_, q * q * c) @ km.reshape(q * q * c, 4 * f)
      y = depth_to_space(y.reshape(n, hp, wp_, 4 * f))[:, : 2 * (h - 1) + k, : 2 * (w - 1) + k]
      return y + bias
    # tap t = 2 a + p lands on output 2 (i + a) + p: phase p, shift a
    wm = wp.reshape(q, 2, q, 2, c, f).transpose(4, 0, 2, 1, 3, 5).reshape(c, q * q * 4 * f)
    # 2-D operands: XLA:CPU runs the backward of a 4-D x 2-D dot far slower
    z = (x_NxHxWxC.reshape(n * h * w, c) @ wm).reshape(n, h, w, q, q, 4 * f)
    hp, wp_ = h + q - 1, w + q - 1
    y = sum(
      jnp.pad(z[:, :, :, a, b], ((0, 0), (a, q - 1 - a), (b, q - 1 - b), (0, 0)))
      for a in range(q)
      for b in range(q)
    )  # N x hp x wp x (2*2*f), phases (p, r)
    y = depth_to_space(y)[:, : 2 * (h - 1) + k, : 2 * (w - 1) + k]
    return y + bias
