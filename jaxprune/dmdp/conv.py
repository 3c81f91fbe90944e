"""Encoder and decoder for pixels, written as matmuls because XLA:CPU convolutions are slow.

Both layers hold the parameters of the flax layer they replace (``kernel`` k x k x Cin x Cout,
``bias`` Cout) and compute the same function (tested equal on small inputs):

* :class:`S2DConv` = ``nn.Conv(f, (k, k), strides=2, padding="VALID")`` for even ``k``:
  space-to-depth(2) turns a stride-2 ``k x k`` convolution into a stride-1 ``k/2 x k/2`` one on
  4 Cin channels, whose patches are ``(k/2)^2`` contiguous slices; one matmul follows.
* :class:`MatmulConvTranspose` = ``nn.ConvTranspose(f, (k, k), strides=2, padding="VALID")``
  (output ``2 (H - 1) + k``) as col2im: one matmul ``x @ W`` gives every input pixel's
  ``k x k`` contribution, grouped by output phase ``(o mod 2)``; each phase is a sum of
  ``ceil(k/2)^2`` shifted copies, and depth-to-space interleaves the four phases. The matmul does
  exactly the transposed convolution's multiply-adds (even ``k``; odd ``k`` pads the kernel with
  zeros to ``k + 1``), against 4x more for XLA's dilated-input convolution, whose CPU kernel is
  also slow (refs: 30 s for 800 images forward + backward). The sub-pixel form (im2col of the
  input, one matmul to the four phases, depth-to-space) is the same function; ``method="auto"``
  picks, per layer, the form whose expanded tensor is smaller, and col2im when the two are
  within 10% (it does fewer multiply-adds).
* the patches and the overlap-add are :mod:`jaxprune.dmdp.patches`, whose derivatives are each
  other (``jax.custom_vjp``): reverse mode (``jax.grad``, ``jax.vjp``, ``jacrev``) works through
  these layers, forward mode (``jax.jvp``, ``jacfwd``, ``jax.hessian``) raises.
* the 96-pixel encoder's final 3x3 layer (stride 1, VALID) is
  :class:`jaxprune.models.layers.PatchConv` (im2col + matmul).

Every layer takes its weight and bias initialisers (the encoder and decoder pass the ones
``cfg.init`` names, see :mod:`jaxprune.dmdp.rssm`).
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax.numpy as jnp

from jaxprune.dmdp.config import WorldModelConfig, decoder_channels
from jaxprune.dmdp.patches import col2im, im2col
from jaxprune.dmdp.rssm import Init, bias_init, dense, kernel_init
from jaxprune.models.layers import PatchConv


def space_to_depth(x_NxHxWxC):
  """N x 2H' x 2W' x C -> N x H' x W' x 4C, channels ordered (row phase, col phase, c)."""
  n, h, w, c = x_NxHxWxC.shape
  x = x_NxHxWxC.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, h // 2, w // 2, 4 * c)


def depth_to_space(x_NxHxWx4C):
  """Inverse of :func:`space_to_depth`."""
  n, h, w, c4 = x_NxHxWx4C.shape
  x = x_NxHxWx4C.reshape(n, h, w, 2, 2, c4 // 4).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, 2 * h, 2 * w, c4 // 4)


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
    patches = im2col(xs, q, ho, wo)  # N x ho x wo x (q*q*4C), order (a, b, p, r, c)
    # kernel row i = 2a + p, col j = 2b + r
    kmat = kernel.reshape(q, 2, q, 2, c, self.features).transpose(0, 2, 1, 3, 4, 5)
    y = patches.reshape(n * ho * wo, -1) @ kmat.reshape(q * q * 4 * c, self.features)
    return y.reshape(n, ho, wo, self.features) + bias


class MatmulConvTranspose(nn.Module):
  """``k x k`` stride-2 VALID transposed convolution (flax convention) as col2im + matmul."""

  features: int
  kernel_size: int = 5
  # "col2im": x @ W, then the overlap-add; "subpixel": im2col of the input, one matmul,
  # depth-to-space; "auto": whichever expands to the smaller tensor, col2im within 10% (same
  # function either way)
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
    if method == "auto":
      # the formulation whose expanded tensor (patches of the input / of the output's phases) is
      # smaller; within 10%, col2im, which does fewer multiply-adds (h w against (h + q - 1)
      # (w + q - 1) positions)
      sub = (h + q - 1) * (w + q - 1) * c
      method = "col2im" if h * w * 4 * f <= 1.1 * sub else "subpixel"
    if method == "subpixel":
      # phase p of output row 2m + p reads input rows m - a, a < q, with tap 2a + p: a stride-1
      # q x q correlation of the input padded by q - 1, kernel row j = q - 1 - a
      xp = jnp.pad(x_NxHxWxC, ((0, 0), (q - 1, q - 1), (q - 1, q - 1), (0, 0)))
      hp, wp_ = h + q - 1, w + q - 1
      patches = im2col(xp, q, hp, wp_)  # N x hp x wp x (q*q*C), order (i, j, c)
      km = wp.reshape(q, 2, q, 2, c, f)[::-1, :, ::-1].transpose(0, 2, 4, 1, 3, 5)
      y = patches.reshape(n * hp * wp_, q * q * c) @ km.reshape(q * q * c, 4 * f)
      y = depth_to_space(y.reshape(n, hp, wp_, 4 * f))[:, : 2 * (h - 1) + k, : 2 * (w - 1) + k]
      return y + bias
    # tap t = 2 a + p lands on output 2 (i + a) + p: phase p, shift a
    wm = wp.reshape(q, 2, q, 2, c, f).transpose(4, 0, 2, 1, 3, 5).reshape(c, q * q * 4 * f)
    # 2-D operands: XLA:CPU runs the backward of a 4-D x 2-D dot far slower
    z = (x_NxHxWxC.reshape(n * h * w, c) @ wm).reshape(n, h, w, q * q * 4 * f)
    y = col2im(z, q, h + q - 1, w + q - 1)  # N x hp x wp x (2*2*f), phases (p, r)
    y = depth_to_space(y)[:, : 2 * (h - 1) + k, : 2 * (w - 1) + k]
    return y + bias


def _conv_inits(init: Init, fan_in: int) -> dict:
  return {"kernel_init": kernel_init(init, fan_in), "bias_init": bias_init(init, fan_in)}


class PixelEncoder(nn.Module):
  """Pixels N x H x W x C in [-0.5, 0.5] -> embedding N x embed_size: stride-2 convs (ReLU),
  an optional 3x3 conv (ReLU), flatten, dense (no activation). Init: ``cfg.init`` (torch: fan-in
  k^2 C_in)."""

  cfg: WorldModelConfig

  @nn.compact
  def __call__(self, x_NxHxWxC):
    c = self.cfg
    for i, k in enumerate(c.encoder_kernels):
      conv = S2DConv(
        c.cnn_depth * 2**i, k, **_conv_inits(c.init, k * k * x_NxHxWxC.shape[-1]), name=f"conv{i}"
      )
      x_NxHxWxC = nn.relu(conv(x_NxHxWxC))
    if c.encoder_final_3x3:
      ch = x_NxHxWxC.shape[-1]
      conv = PatchConv(ch, 3, padding="VALID", **_conv_inits(c.init, 9 * ch), name="conv_final")
      x_NxHxWxC = nn.relu(conv(x_NxHxWxC))
    flat = x_NxHxWxC.reshape(x_NxHxWxC.shape[0], -1)
    return dense(c.embed_size, flat.shape[-1], c.init, name="dense")(flat)


class PixelDecoder(nn.Module):
  """Features N x F -> mean image N x H x W x C: dense, ReLU, reshape 1x1, transposed convs
  (ReLU between them). Init: ``cfg.init`` (torch: a transposed conv's fan-in is k^2 C_out, as
  PyTorch computes it from its ``ConvTranspose2d`` weight, C_in x C_out x k x k)."""

  cfg: WorldModelConfig

  @nn.compact
  def __call__(self, feat_NxF):
    c = self.cfg
    x = nn.relu(dense(c.decoder_hidden, feat_NxF.shape[-1], c.init, name="dense")(feat_NxF))
    x = x[:, None, None, :]
    chans = decoder_channels(c)
    for i, (k, f) in enumerate(zip(c.decoder_kernels, chans)):
      deconv = MatmulConvTranspose(
        f, k, c.deconv_method, **_conv_inits(c.init, k * k * f), name=f"deconv{i}"
      )
      x = deconv(x)
      if i < len(chans) - 1:
        x = nn.relu(x)
    return x
