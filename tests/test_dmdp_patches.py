"""im2col / col2im (jaxprune.dmdp.patches) and the world-model update built on them (issue 28):
values against a Python loop, each one's derivative is the other, and the update's loss and
gradients equal those of the pixel layers as they were before (tests/dmdp_conv_before.py)."""

import itertools

import dmdp_conv_before as before
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import dmdp
from jaxprune.dmdp import conv
from jaxprune.dmdp.patches import col2im, im2col

KEY = jax.random.key(0)


def _im2col_loop(x, q, ho, wo):
  n, _, _, c = x.shape
  out = np.zeros((n, ho, wo, q * q * c), x.dtype)
  for i, j, a, b in itertools.product(range(ho), range(wo), range(q), range(q)):
    out[:, i, j, (a * q + b) * c : (a * q + b + 1) * c] = x[:, i + a, j + b]
  return out


def _col2im_loop(p, q, h, w):
  n, ho, wo, qqc = p.shape
  c = qqc // (q * q)
  out = np.zeros((n, h, w, c), p.dtype)
  for i, j, a, b in itertools.product(range(ho), range(wo), range(q), range(q)):
    out[:, i + a, j + b] += p[:, i, j, (a * q + b) * c : (a * q + b + 1) * c]
  return out


# (q, ho, wo, h, w, c): square, not square, rows past the last patch (never read), q = 1
SHAPES = [(2, 3, 3, 4, 4, 2), (3, 2, 4, 5, 6, 3), (2, 3, 2, 5, 4, 1), (1, 3, 2, 3, 2, 2)]


@pytest.mark.parametrize("q,ho,wo,h,w,c", SHAPES)
def test_im2col_and_col2im_equal_a_python_loop(q, ho, wo, h, w, c):
  r = np.random.default_rng(0)
  x = r.normal(size=(2, h, w, c)).astype(np.float32)
  p = r.normal(size=(2, ho, wo, q * q * c)).astype(np.float32)
  np.testing.assert_array_equal(jax.jit(im2col, static_argnums=(1, 2, 3))(x, q, ho, wo),
                                _im2col_loop(x, q, ho, wo))  # fmt: skip
  np.testing.assert_allclose(
    jax.jit(col2im, static_argnums=(1, 2, 3))(p, q, h, w), _col2im_loop(p, q, h, w), atol=1e-6
  )


@pytest.mark.parametrize("q,ho,wo,h,w,c", SHAPES)
def test_each_ones_gradient_is_the_other(q, ho, wo, h, w, c):
  r = np.random.default_rng(1)
  x = r.normal(size=(2, h, w, c)).astype(np.float32)
  p = r.normal(size=(2, ho, wo, q * q * c)).astype(np.float32)
  # adjoint: <im2col(x), p> = <x, col2im(p)>
  np.testing.assert_allclose(
    jnp.vdot(im2col(x, q, ho, wo), p), jnp.vdot(x, col2im(p, q, h, w)), rtol=1e-5
  )
  gx = jax.grad(lambda x: jnp.vdot(im2col(x, q, ho, wo), p))(x)
  np.testing.assert_allclose(gx, _col2im_loop(p, q, h, w), atol=1e-6)
  gp = jax.grad(lambda p: jnp.vdot(col2im(p, q, h, w), x))(p)
  np.testing.assert_array_equal(gp, _im2col_loop(x, q, ho, wo))
  # a second derivative goes through the other custom rule and back
  hess = jax.grad(lambda x: jnp.sum(jax.grad(lambda y: jnp.sum(im2col(y, q, ho, wo) ** 2))(x)))
  np.testing.assert_allclose(hess(x), 2 * _col2im_loop(_im2col_loop(np.ones_like(x), q, ho, wo),
                                                        q, h, w), rtol=1e-6)  # fmt: skip


def test_vmap_and_bad_shapes():
  x = jax.random.normal(KEY, (3, 2, 5, 5, 2))  # a leading axis for vmap
  out = jax.vmap(lambda v: im2col(v, 2, 4, 4))(x)
  np.testing.assert_array_equal(out[1], _im2col_loop(np.asarray(x[1]), 2, 4, 4))
  # the custom derivatives under vmap: per-example gradients of <im2col(x), p>
  p = jax.random.normal(jax.random.key(3), (3, 2, 4, 4, 8))
  g = jax.jit(jax.vmap(jax.grad(lambda v, q: jnp.vdot(im2col(v, 2, 4, 4), q))))(x, p)
  np.testing.assert_allclose(g[2], _col2im_loop(np.asarray(p[2]), 2, 5, 5), atol=1e-6)
  gp = jax.vmap(jax.grad(lambda q, v: jnp.vdot(col2im(q, 2, 5, 5), v)))(p, x)
  np.testing.assert_array_equal(gp[0], _im2col_loop(np.asarray(x[0]), 2, 4, 4))
  with pytest.raises(ValueError, match="need 5 x 5, got 4 x 5"):
    im2col(x[0, :, :4], 2, 4, 4)
  with pytest.raises(ValueError, match="multiple of 4"):
    col2im(jnp.zeros((1, 2, 2, 6)), 2, 3, 3)


def test_world_model_update_equals_the_previous_formulation(monkeypatch):
  """The loss and every gradient of the full 64x64 world model (the preset's layer shapes, so
  'auto' picks col2im, sub-pixel and col2im for the three upsampling layers) equal those of the
  pixel layers before issue 28, from the same parameters and batch."""
  cfg = dmdp.preset("dmdp")
  params = dmdp.init(cfg, KEY)
  r = np.random.default_rng(0)
  batch = {
    "image": r.integers(0, 256, (2, 2, 64, 64, 3), dtype=np.uint8),
    "action": r.uniform(-1, 1, (2, 2, cfg.action_dim)).astype(np.float32),
    "reward": r.normal(size=(2, 2)).astype(np.float32),
  }
  loss = dmdp.make_loss_fn(cfg)

  def value_and_grad():
    f = jax.jit(jax.value_and_grad(loss, has_aux=True))
    (value, metrics), grads = f(params, batch, jax.random.key(1))
    return value, metrics, grads

  new = value_and_grad()
  monkeypatch.setattr(conv, "S2DConv", before.S2DConv)
  monkeypatch.setattr(conv, "MatmulConvTranspose", before.MatmulConvTranspose)
  old = value_and_grad()
  np.testing.assert_allclose(new[0], old[0], rtol=1e-6)
  for k in old[1]:
    np.testing.assert_allclose(new[1][k], old[1][k], rtol=1e-5, atol=1e-6, err_msg=k)
  flat_new = jax.tree_util.tree_leaves_with_path(new[2])
  flat_old = dict(jax.tree_util.tree_leaves_with_path(old[2]))
  assert len(flat_new) == len(flat_old)
  for path, g in flat_new:
    ref = flat_old[path]
    scale = float(jnp.max(jnp.abs(ref))) + 1e-12
    np.testing.assert_allclose(g, ref, atol=1e-4 * scale, err_msg=jax.tree_util.keystr(path))


def test_pixel_chunks_give_the_same_loss_and_gradients():
  """``pixel_chunk`` (the encoder and decoder in rematerialised chunks, a chunk that does not
  divide B x T) changes memory, not values; a bad value is refused."""
  cfg = dmdp.tiny(dmdp.preset("dmdp"))
  params = dmdp.init(cfg, KEY)
  r = np.random.default_rng(2)
  batch = {
    "image": r.integers(0, 256, (3, 5, cfg.image_size, cfg.image_size, 3), dtype=np.uint8),
    "action": r.uniform(-1, 1, (3, 5, cfg.action_dim)).astype(np.float32),
    "reward": r.normal(size=(3, 5)).astype(np.float32),
  }

  def value_and_grad(c):
    f = jax.jit(jax.value_and_grad(dmdp.make_loss_fn(c), has_aux=True))
    return f(params, batch, jax.random.key(1))

  # the chunked path is taken: a loop over chunks under a checkpoint
  jaxpr = str(jax.make_jaxpr(dmdp.make_loss_fn(cfg.replace(pixel_chunk=4)))(params, batch, KEY))
  assert "checkpoint" in jaxpr or "remat" in jaxpr
  (l0, _), g0 = value_and_grad(cfg)
  (l1, _), g1 = value_and_grad(cfg.replace(pixel_chunk=4))  # 15 images: chunks 4, 4, 4, 3 + pad
  np.testing.assert_allclose(l1, l0, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  with pytest.raises(ValueError, match="pixel_chunk must be >= 0"):
    cfg.replace(pixel_chunk=-1)
