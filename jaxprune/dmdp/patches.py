"""im2col and its adjoint col2im (overlap-add), each with the other as its derivative.

``im2col(x, q, ho, wo)``: N x H x W x C -> N x ho x wo x (q q C), the stride-1 ``q x q``
patches, ``out[:, i, j, (a, b, c)] = x[:, i + a, j + b, c]`` (H >= ho + q - 1, W >= wo + q - 1;
rows and columns past the last patch are never read).

``col2im(p, q, h, w)``: its adjoint, N x ho x wo x (q q C) -> N x h x w x C, every patch added
back where it came from: ``out[:, i + a, j + b] += p[:, i, j, (a, b)]``.

Both are linear, and each is the other's transpose, so each one's reverse-mode derivative is
the other one (a ``jax.custom_vjp``). Written this way because of how XLA:CPU runs the
derivatives JAX would derive itself: the transpose of a sum of shifted slices is an ``add`` of
``q q`` zero-padded copies, each as large as the whole input (0.6 s for the decoder's last layer
at 16 x 50, more than its matmuls), and the transpose of a concatenation of slices is one
padded copy per slice. The overlap-add here is one loop fusion (a sum of padded slices), and
the patches are one concatenation. Forward-mode (``jax.jvp``) is not defined through them.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp


def _im2col(x_NxHxWxC, q: int, ho: int, wo: int):
  n, h, w, c = x_NxHxWxC.shape
  if h < ho + q - 1 or w < wo + q - 1:
    raise ValueError(
      f"{q}x{q} patches at {ho} x {wo} positions need {ho + q - 1} x {wo + q - 1}, got {h} x {w}"
    )
  return jnp.concatenate(
    [x_NxHxWxC[:, a : a + ho, b : b + wo] for a in range(q) for b in range(q)], axis=-1
  )


def _col2im(p_NxHoxWoxQQC, q: int, h: int, w: int):
  n, ho, wo, qqc = p_NxHoxWoxQQC.shape
  c = qqc // (q * q)
  if qqc != q * q * c or h < ho + q - 1 or w < wo + q - 1:
    raise ValueError(
      f"col2im of {p_NxHoxWoxQQC.shape} with {q}x{q} patches into {h} x {w}: the channels must "
      f"be a multiple of {q * q} and the image at least {ho + q - 1} x {wo + q - 1}"
    )
  blocks = p_NxHoxWoxQQC.reshape(n, ho, wo, q * q, c)
  return sum(
    jnp.pad(blocks[:, :, :, a * q + b], ((0, 0), (a, h - ho - a), (b, w - wo - b), (0, 0)))
    for a in range(q)
    for b in range(q)
  )


@partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def im2col(x_NxHxWxC, q: int, ho: int, wo: int):
  """Stride-1 ``q x q`` patches at ``ho x wo`` positions: N x ho x wo x (q q C), order (a, b, c)."""
  return _im2col(x_NxHxWxC, q, ho, wo)


def _im2col_fwd(x, q, ho, wo):
  return _im2col(x, q, ho, wo), x.shape[1:3]


def _im2col_bwd(q, ho, wo, hw, g):
  return (col2im(g, q, *hw),)


im2col.defvjp(_im2col_fwd, _im2col_bwd)


@partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def col2im(p_NxHoxWoxQQC, q: int, h: int, w: int):
  """Overlap-add of patches (the adjoint of :func:`im2col`): N x h x w x C."""
  return _col2im(p_NxHoxWoxQQC, q, h, w)


def _col2im_fwd(p, q, h, w):
  return _col2im(p, q, h, w), p.shape[1:3]


def _col2im_bwd(q, h, w, hw, g):
  return (im2col(g, q, *hw),)


col2im.defvjp(_col2im_fwd, _col2im_bwd)
