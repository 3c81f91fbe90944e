"""Tests of jaxprune.models: shapes, NT-Xent against numpy, augmentations, classifier loss."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.datasets import load_digits

from jaxprune.models import (
  ClassifierConfig,
  ResNet18,
  SimCLREncoder,
  SmallCNN,
  accuracy,
  build,
  classifier_loss,
  nt_xent,
  random_crop_flip,
  simclr_augment,
  simclr_features,
  simclr_loss,
  to_unit_float,
)


def n_params(params) -> int:
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


def digits(n: int):
  d = load_digits()
  images = (d.images[:n] / 16.0).astype(np.float32)[..., None]  # N x 8 x 8 x 1 in [0, 1]
  return jnp.asarray(images), jnp.asarray(d.target[:n], jnp.int32)


# ---------------------------------------------------------------------------------------------
# shapes


@pytest.mark.parametrize("shape", [(3, 8, 8, 1), (2, 28, 28, 1), (2, 32, 32, 3)])
def test_small_cnn_shapes(shape):
  model = SmallCNN(num_classes=7, width=8)
  logits, variables = model.init_with_output(jax.random.key(0), jnp.ones(shape), train=False)
  assert logits.shape == (shape[0], 7)
  assert logits.dtype == jnp.float32
  assert set(variables) == {"params"}  # no mutable state
  assert model.apply(variables, jnp.ones(shape), train=True).shape == (shape[0], 7)


@pytest.mark.slow  # moved out of the default run (its 20-minute budget)
def test_resnet18_shape_and_parameter_count():
  model = ResNet18(num_classes=10)
  x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3))
  logits, variables = jax.jit(model.init_with_output)(jax.random.key(0), x)
  assert logits.shape == (2, 10)
  assert bool(jnp.all(jnp.isfinite(logits)))
  assert set(variables) == {"params"}
  # CIFAR ResNet-18 with 10 classes: 11,173,962 parameters (GroupNorm has BatchNorm's scale and
  # bias, so the count is the same).
  assert abs(n_params(variables["params"]) - 11_173_962) <= 0.02 * 11_173_962


def test_models_reject_bad_input():
  with pytest.raises(ValueError, match="4-D"):
    SmallCNN(3).init(jax.random.key(0), jnp.ones((8, 8, 1)))
  with pytest.raises(ValueError, match="floating"):
    SmallCNN(3).init(jax.random.key(0), jnp.ones((1, 8, 8, 1), jnp.uint8))


def test_encoder_shapes_and_feature_batches():
  encoder = SimCLREncoder(embed_dim=16, width=8)
  x = jax.random.uniform(jax.random.key(0), (7, 8, 8, 1))
  params = encoder.init(jax.random.key(1), x)["params"]
  assert encoder.apply({"params": params}, x).shape == (7, 16)
  rep = encoder.apply({"params": params}, x, project=False)
  assert rep.shape == (7, 32)
  # 3 batches of 3 (last padded) give the same rows as one pass over all 7.
  got = simclr_features(encoder, params, np.asarray(x), batch_size=3)
  assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (7, 32)
  np.testing.assert_allclose(got, np.asarray(rep), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="batch_size"):
    simclr_features(encoder, params, x, batch_size=0)


# ---------------------------------------------------------------------------------------------
# NT-Xent


def nt_xent_numpy(z1, z2, temperature):
  z = np.concatenate([z1, z2]).astype(np.float64)
  z = z / np.linalg.norm(z, axis=1, keepdims=True)
  n2 = len(z)
  losses = []
  for i in range(n2):
    pos = (i + n2 // 2) % n2
    logits = [z[i] @ z[j] / temperature for j in range(n2) if j != i]
    losses.append(np.log(np.sum(np.exp(logits))) - z[i] @ z[pos] / temperature)
  return np.mean(losses)


def test_nt_xent_matches_numpy():
  z1 = np.array([[1.0, 0.0, 0.0, 0.5], [0.0, 2.0, 0.0, 0.0], [0.3, -1.0, 1.0, 0.0]], np.float32)
  z2 = np.array([[0.9, 0.1, 0.0, 0.4], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 2.0]], np.float32)
  for t in (0.2, 1.0):
    got = float(nt_xent(z1, z2, temperature=t))
    np.testing.assert_allclose(got, nt_xent_numpy(z1, z2, t), rtol=1e-5)


def test_nt_xent_aligned_views_lower_and_finite_grad():
  k1, k2 = jax.random.split(jax.random.key(0))
  z1 = jax.random.normal(k1, (8, 16))
  z2 = jax.random.normal(k2, (8, 16))
  assert float(nt_xent(z1, z1)) < float(nt_xent(z1, z2))
  grads = jax.grad(lambda a, b: nt_xent(a, b))(z1, z2)
  assert bool(jnp.all(jnp.isfinite(grads)))
  with pytest.raises(ValueError, match="same shape"):
    nt_xent(z1, z2[:4])
  with pytest.raises(ValueError, match="temperature"):
    nt_xent(z1, z2, temperature=0.0)


def test_simclr_loss_identity_views():
  encoder = SimCLREncoder(embed_dim=16, width=8)
  x = jax.random.uniform(jax.random.key(0), (6, 8, 8, 1))
  params = encoder.init(jax.random.key(1), x)["params"]
  loss_fn = simclr_loss(encoder, augment=lambda key, images: images)
  loss, metrics = loss_fn(params, {"image": x}, jax.random.key(2))
  z = encoder.apply({"params": params}, x)
  np.testing.assert_allclose(float(loss), float(nt_xent(z, z)), rtol=1e-5)
  assert float(metrics["ssl_accuracy"]) == 1.0  # each view's nearest other sample is its twin


def test_simclr_loss_augmented_grad():
  encoder = SimCLREncoder(embed_dim=16, width=8)
  x, _ = digits(8)
  params = encoder.init(jax.random.key(1), x)["params"]
  loss_fn = jax.jit(simclr_loss(encoder))
  (loss, metrics), grads = jax.jit(jax.value_and_grad(simclr_loss(encoder), has_aux=True))(
    params, {"image": x}, jax.random.key(3)
  )
  assert np.isfinite(float(loss)) and 0.0 <= float(metrics["ssl_accuracy"]) <= 1.0
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  # Different keys give different views, hence different losses.
  assert float(loss_fn(params, {"image": x}, jax.random.key(4))[0]) != float(loss)


# ---------------------------------------------------------------------------------------------
# augmentations


def test_random_crop_flip_pad0_is_identity_or_flip():
  x = jax.random.uniform(jax.random.key(0), (16, 5, 6, 2))
  out = np.asarray(random_crop_flip(jax.random.key(1), x, pad=0))
  xs = np.asarray(x)
  flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, xs)]
  same = [np.array_equal(o, i) for o, i in zip(out, xs)]
  assert all(f or s for f, s in zip(flipped, same))
  assert any(flipped) and any(same)  # 16 coin flips: both outcomes occur for this key


def test_random_crop_flip_pad4_crops_of_reflect_padded():
  x = jax.random.uniform(jax.random.key(0), (6, 8, 8, 3))
  out = random_crop_flip(jax.random.key(2), x, pad=4)
  assert out.shape == x.shape
  np.testing.assert_array_equal(
    np.asarray(out), np.asarray(random_crop_flip(jax.random.key(2), x, pad=4))
  )
  assert not np.array_equal(np.asarray(out), np.asarray(random_crop_flip(jax.random.key(3), x)))
  padded = np.pad(np.asarray(x), ((0, 0), (4, 4), (4, 4), (0, 0)), mode="reflect")
  offsets = set()
  for o, p in zip(np.asarray(out), padded):
    matches = [
      (dy, dx)
      for dy in range(9)
      for dx in range(9)
      for cand in (p[dy : dy + 8, dx : dx + 8], p[dy : dy + 8, dx : dx + 8][:, ::-1])
      if np.array_equal(o, cand)
    ]
    assert matches, "output is not a (flipped) crop of the reflect-padded image"
    offsets.add(matches[0])
  assert len(offsets) > 1  # offsets differ per image


def test_random_crop_flip_jit_vmap_and_errors():
  x = jax.random.uniform(jax.random.key(0), (4, 8, 8, 1))
  keys = jax.random.split(jax.random.key(1), 3)
  outs = jax.jit(jax.vmap(random_crop_flip, in_axes=(0, None)))(keys, x)
  assert outs.shape == (3, 4, 8, 8, 1)
  np.testing.assert_allclose(outs[1], random_crop_flip(keys[1], x))
  with pytest.raises(ValueError, match="pad"):
    random_crop_flip(keys[0], x, pad=8)
  with pytest.raises(ValueError, match="4-D"):
    random_crop_flip(keys[0], x[0])


def test_simclr_augment_range_shape_keys():
  x = jax.random.uniform(jax.random.key(0), (4, 32, 32, 3))
  aug = jax.jit(simclr_augment)
  a, b = aug(jax.random.key(1), x), aug(jax.random.key(2), x)
  assert a.shape == x.shape and a.dtype == jnp.float32
  assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
  assert float(jnp.abs(a - b).mean()) > 1e-3  # different keys, different views
  np.testing.assert_array_equal(np.asarray(a), np.asarray(aug(jax.random.key(1), x)))
  g, _ = digits(4)
  v = simclr_augment(jax.random.key(3), g, crop_min_scale=0.5)
  assert v.shape == g.shape and float(v.min()) >= 0.0 and float(v.max()) <= 1.0


def test_simclr_augment_without_crop_or_jitter_is_identity_or_flip():
  x = jax.random.uniform(jax.random.key(0), (8, 8, 8, 1))
  out = np.asarray(simclr_augment(jax.random.key(1), x, crop_min_scale=1.0, jitter=0.0))
  for o, i in zip(out, np.asarray(x)):
    assert np.allclose(o, i, atol=1e-5) or np.allclose(o, i[:, ::-1], atol=1e-5)
  with pytest.raises(ValueError, match="crop_min_scale"):
    simclr_augment(jax.random.key(1), x, crop_min_scale=0.0)


def test_to_unit_float():
  u = np.array([[0, 128, 255]], np.uint8)
  np.testing.assert_allclose(to_unit_float(u), np.array([[0.0, 128 / 255, 1.0]], np.float32))
  assert to_unit_float(u).dtype == jnp.float32
  with pytest.raises(ValueError, match="uint8"):
    to_unit_float(u.astype(np.float32))


# ---------------------------------------------------------------------------------------------
# classifier loss


def test_classifier_loss_matches_hand_computation():
  x, y = digits(16)
  model = SmallCNN(num_classes=10, width=8)
  params = model.init(jax.random.key(0), x)["params"]
  loss_fn = classifier_loss(model)
  loss, metrics = loss_fn(params, {"image": x, "label": y}, jax.random.key(1))
  logits = np.asarray(model.apply({"params": params}, x), np.float64)
  m = logits.max(axis=1, keepdims=True)
  log_z = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
  expected = np.mean(log_z - logits[np.arange(16), np.asarray(y)])
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  np.testing.assert_allclose(
    float(metrics["accuracy"]), np.mean(logits.argmax(axis=1) == np.asarray(y))
  )
  grads = jax.grad(lambda p: loss_fn(p, {"image": x, "label": y}, jax.random.key(1))[0])(params)
  leaves = jax.tree.leaves(grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  assert any(float(jnp.abs(g).max()) > 0 for g in leaves)
  with pytest.raises(ValueError, match="label"):
    loss_fn(params, {"image": x, "label": y[:3]}, jax.random.key(1))


def test_classifier_loss_adam_lowers_loss():
  x, y = digits(16)
  model = SmallCNN(num_classes=10, width=8)
  params = model.init(jax.random.key(0), x)["params"]
  loss_fn = classifier_loss(model, augment=lambda key, images: random_crop_flip(key, images, pad=1))
  opt = optax.adam(1e-2)
  batch = {"image": x, "label": y}

  @jax.jit
  def step(params, opt_state, key):
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, key)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  eval_fn = jax.jit(classifier_loss(model))
  first = float(eval_fn(params, batch, jax.random.key(0))[0])
  opt_state = opt.init(params)
  for i in range(40):
    params, opt_state, _ = step(params, opt_state, jax.random.fold_in(jax.random.key(1), i))
  last = float(eval_fn(params, batch, jax.random.key(0))[0])
  assert last < 0.7 * first, (first, last)


@pytest.mark.parametrize(
  "shape, k, stride",
  [((2, 8, 8, 3), 3, 1), ((2, 8, 8, 3), 3, 2), ((1, 7, 9, 2), 3, 2), ((2, 28, 28, 1), 5, 2)],
)
def test_patch_conv_equals_flax_conv(shape, k, stride):
  from jaxprune.models.layers import PatchConv

  x = jax.random.normal(jax.random.key(1), shape)
  pc = PatchConv(5, k, stride)
  params = pc.init(jax.random.key(2), x)
  conv = nn.Conv(5, (k, k), strides=stride, padding="SAME")
  np.testing.assert_allclose(
    np.asarray(pc.apply(params, x)), np.asarray(conv.apply(params, x)), atol=1e-5
  )


# ---------------------------------------------------------------------------------------------
# the classifier a job trains: config, build, accuracy


@pytest.mark.parametrize(
  "kw, msg",
  [
    (dict(batch_size=0), "batch_size"),
    (dict(steps=0), "steps"),
    (dict(width=0), "width"),
    (dict(lr=float("nan")), "finite"),
    (dict(lr=0.0), "lr"),
    (dict(model="vgg"), "model"),
    (dict(optimizer="lamb"), "optimizer"),
    (dict(steps_per_dispatch=0), "steps_per_dispatch"),
  ],
)
def test_classifier_config_rejects_bad_values(kw, msg):
  with pytest.raises(ValueError, match=msg):
    ClassifierConfig(**kw)


def test_build_is_memoised_on_values():
  a = build(ClassifierConfig(width=4), num_classes=3, image_shape=(8, 8, 1))
  b = build(ClassifierConfig(width=4), num_classes=3, image_shape=np.zeros((8, 8, 1)).shape)
  c = build(ClassifierConfig(width=8), num_classes=3, image_shape=(8, 8, 1))
  assert a is b and a is not c  # equal configs, the very same functions: shared compilations
  params = a.init_fn(jax.random.key(0))
  assert params["backbone"]["PatchConv_0"]["kernel"].shape == (3, 3, 1, 4)


def test_accuracy_of_stacked_models():
  x, y = digits(12)
  images = np.asarray(np.round(x * 255), np.uint8)
  clf = build(ClassifierConfig(width=4), num_classes=10, image_shape=images.shape[1:])
  params_S = jax.tree.map(
    lambda *a: jnp.stack(a), *[clf.init_fn(jax.random.key(i)) for i in range(2)]
  )
  got = accuracy(clf, params_S, images, np.asarray(y), batch_size=5)  # 3 batches, last short
  for s in range(2):
    p = jax.tree.map(lambda a: a[s], params_S)
    pred = np.argmax(np.asarray(clf.apply_fn(p, to_unit_float(images))), -1)
    assert got[s] == pytest.approx(np.mean(pred == np.asarray(y)))
