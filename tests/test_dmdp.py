"""Denoised MDP world model: layers, graph, objective, presets, pictures, a short training run."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import dmdp
from jaxprune.core.loop import create_state, make_update, run_steps
from jaxprune.dmdp import config as dcfg
from jaxprune.dmdp.conv import MatmulConvTranspose, S2DConv
from jaxprune.dmdp.model import WorldModel
from jaxprune.models.layers import PatchConv

KEY = jax.random.key(0)
TINY = {name: dmdp.tiny(dmdp.preset(name)) for name in dmdp.MODELS}


def _batch(cfg, b=3, t=5, seed=0):
  r = np.random.default_rng(seed)
  return {
    "image": r.integers(
      0, 256, (b, t, cfg.image_size, cfg.image_size, cfg.channels), dtype=np.uint8
    ),
    "action": r.uniform(-1, 1, (b, t, cfg.action_dim)).astype(np.float32),
    "reward": r.normal(size=(b, t)).astype(np.float32),
  }


def _perturb(params, scale=0.1):
  """Non-zero biases etc., so equality tests exercise every parameter."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(KEY, len(leaves))
  return jax.tree.unflatten(
    tree, [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
  )


# ---------------------------------------------------------------------------------------------
# matmul convolutions equal flax's


@pytest.mark.parametrize("h,w,k", [(16, 16, 4), (15, 17, 4), (9, 8, 2), (12, 12, 6)])
def test_s2d_conv_equals_flax_conv(h, w, k):
  x = jax.random.normal(KEY, (2, h, w, 3))
  p = _perturb(S2DConv(5, k).init(KEY, x))
  ref = nn.Conv(5, (k, k), strides=2, padding="VALID").apply(p, x)
  np.testing.assert_allclose(S2DConv(5, k).apply(p, x), ref, atol=1e-5)


@pytest.mark.parametrize("method", ["col2im", "subpixel", "auto"])
@pytest.mark.parametrize(
  "h,w,k", [(1, 1, 5), (5, 5, 5), (4, 6, 6), (3, 3, 3), (2, 3, 4), (1, 1, 6)]
)
def test_matmul_conv_transpose_equals_flax(h, w, k, method):
  x = jax.random.normal(KEY, (2, h, w, 3))
  m = MatmulConvTranspose(4, k, method=method)
  p = _perturb(m.init(KEY, x))
  ref = nn.ConvTranspose(4, (k, k), strides=(2, 2), padding="VALID").apply(p, x)
  out = m.apply(p, x)
  assert out.shape == ref.shape == (2, 2 * (h - 1) + k, 2 * (w - 1) + k, 4)
  np.testing.assert_allclose(out, ref, atol=1e-5)
  # gradients too (the backward is what the update spends its time in)
  g = lambda f: jax.grad(lambda p, x: jnp.sum(jnp.sin(f(p, x))), argnums=(0, 1))(p, x)
  flax_ct = nn.ConvTranspose(4, (k, k), strides=(2, 2), padding="VALID")
  for a, b in zip(jax.tree.leaves(g(m.apply)), jax.tree.leaves(g(flax_ct.apply))):
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_valid_conv_equals_flax_conv():
  x = jax.random.normal(KEY, (2, 6, 5, 4))
  p = _perturb(PatchConv(3, 3, padding="VALID").init(KEY, x))
  ref = nn.Conv(3, (3, 3), padding="VALID").apply(p, x)
  np.testing.assert_allclose(PatchConv(3, 3, padding="VALID").apply(p, x), ref, atol=1e-5)
  # the 96-pixel encoder's final layer: PatchConv with the release's initialisers, nn.Conv's
  # parameter names and shapes
  inits = dict(bias_init=nn.initializers.constant(0.5))
  pc = PatchConv(3, 3, padding="VALID", **inits).init(KEY, x)
  assert jax.tree.map(jnp.shape, pc) == jax.tree.map(jnp.shape, p)
  np.testing.assert_allclose(pc["params"]["bias"], 0.5)


# ---------------------------------------------------------------------------------------------
# presets, shapes, parameter counts


def test_full_preset_parameter_counts():
  counts = {}
  for name in dmdp.MODELS:
    shapes = jax.eval_shape(lambda k: dmdp.init(dmdp.preset(name), k), KEY)
    counts[name] = dmdp.num_params(shapes)
  print("parameters:", counts)
  # the authors' release: 6.56M (Denoised MDP world model), 6.35M (Dreamer preset)
  assert counts["dmdp"] == 6_562_501 and counts["dreamer"] == 6_346_420
  assert counts["dmdp_2c"] > counts["dmdp"]
  shapes96 = jax.eval_shape(lambda k: dmdp.init(dmdp.robodesk_96(), k), KEY)
  out = jax.eval_shape(
    lambda p: dmdp.decode(dmdp.robodesk_96(), p, dmdp.initial_latent(dmdp.robodesk_96(), 2)),
    shapes96,
  )
  assert out.shape == (2, 96, 96, 3)


# 64 and 96 (the release's and robodesk_96's layouts; the shape tests cover them): slow set
@pytest.mark.parametrize(
  "size",
  [
    pytest.param(32, marks=pytest.mark.slow),
    48,
    pytest.param(64, marks=pytest.mark.slow),
    pytest.param(96, marks=pytest.mark.slow),
  ],
)
def test_kernels_follow_image_size(size):
  # init, encode one batch, observe it, decode: the reconstruction has the input's shape
  cfg = dmdp.with_image_size(dmdp.tiny(), size)
  assert cfg.image_size == size and dcfg.decoder_size(cfg) == size
  params = dmdp.init(cfg, KEY)
  batch = _batch(cfg, b=2, t=2)
  embed = dmdp.encode_images(cfg, params, batch["image"])
  assert embed.shape == (2, 2, cfg.embed_size)
  latent, _ = dmdp.observe(cfg, params, embed, batch["action"], KEY)
  recon = dmdp.decode(cfg, params, latent)
  assert recon.shape == batch["image"].shape and np.isfinite(np.asarray(recon)).all()
  # the encoder's last spatial size, by hand: (s - 4) // 2 + 1 per layer
  assert dcfg.encoder_size(cfg) == {32: 2, 48: 1, 64: 2, 96: 2}[size]


def test_image_size_layouts_keep_the_release_and_robodesk_shapes():
  # the 64-pixel architecture of the release and robodesk_96's, as they were written by hand
  old64 = dmdp.WorldModelConfig(encoder_kernels=(4, 4, 4, 4), decoder_kernels=(5, 5, 6, 6))
  old96 = dmdp.dmdp().replace(
    image_size=96, decoder_kernels=(3, 5, 5, 6, 6), encoder_final_3x3=True, alpha=2.0
  )
  assert dmdp.with_image_size(dmdp.dmdp(), 64) == old64 == dmdp.dmdp()
  assert dmdp.robodesk_96() == old96
  shapes = lambda cfg: jax.tree.map(jnp.shape, jax.eval_shape(lambda k: dmdp.init(cfg, k), KEY))
  assert shapes(dmdp.with_image_size(dmdp.dmdp(), 64)) == shapes(old64)
  assert shapes(dmdp.with_image_size(dmdp.dmdp(), 96, alpha=2.0)) == shapes(old96)
  assert dmdp.IMAGE_SIZES == (16, 32, 48, 64, 96)
  with pytest.raises(ValueError, match="supported image sizes"):
    dmdp.with_image_size(dmdp.dmdp(), 50)
  with pytest.raises(ValueError, match=r"conv_layout\(32\)"):
    dmdp.dmdp(image_size=32)  # the 64-pixel kernels: the error names the helper


@pytest.mark.parametrize("name", ["dmdp", "dmdp_2c", "dreamer"])
def test_shapes_of_every_output(name):
  cfg = TINY[name]
  b, t = 3, 5
  params = dmdp.init(cfg, KEY)
  batch = _batch(cfg, b, t)
  e = dmdp.encode_images(cfg, params, batch["image"])
  assert e.shape == (b, t, cfg.embed_size)
  # batch-major in and out, like the replay's batches
  latent, stats = dmdp.observe(cfg, params, e, jnp.asarray(batch["action"]), KEY)
  dims = dcfg.feature_dims(cfg)
  for f in "xyz":
    h, s = getattr(latent, "h" + f), getattr(latent, "s" + f)
    if f in dims:
      assert h.shape == (b, t, getattr(cfg, f + "_deter"))
      assert s.shape == (b, t, getattr(cfg, f + "_stoch"))
      for g in (stats.prior[f], stats.post[f]):
        assert g.mean.shape == g.std.shape == s.shape
        assert float(g.std.min()) >= cfg.min_std
    else:
      assert h is None and s is None and f not in stats.prior
  assert dmdp.features(latent).shape == (b, t, sum(dims.values()))
  img = dmdp.decode(cfg, params, latent)
  assert img.shape == (b, t, cfg.image_size, cfg.image_size, cfg.channels)
  full, denoised = dmdp.reward(cfg, params, latent)
  assert full.shape == denoised.shape == (b, t)
  last = jax.tree.map(lambda v: v[:, -1], latent)
  xs = dmdp.imagine(cfg, params, last, KEY, actions=jnp.zeros((b, 4, cfg.action_dim)))
  assert xs.hx.shape == (b, 4, cfg.x_deter) and xs.sy is None and xs.sz is None
  pol = lambda feat, k: jnp.tanh(feat[:, : cfg.action_dim])
  xs2 = dmdp.imagine(cfg, params, last, KEY, policy=pol, horizon=3)
  assert xs2.sx.shape == (b, 3, cfg.x_stoch)
  assert dmdp.denoised_reward(cfg, params, xs2).shape == (b, 3)
  loss, metrics = dmdp.world_model_loss(cfg, params, batch, KEY)
  assert loss.shape == () and np.isfinite(float(loss))
  assert {"recon_nll", "reward_nll", "kl_x", "kl_y", "kl_z", "kl_loss"} <= set(metrics)
  print(name, "tiny parameters:", dmdp.num_params(params))


def test_dreamer_has_no_y_or_z_parameters():
  for cfg in (dmdp.dreamer(), TINY["dreamer"]):
    params = jax.eval_shape(lambda k: dmdp.init(cfg, k), KEY)["params"]
    names = set(params)
    assert not any(n.startswith(("y_", "z_", "reward_y")) for n in names), names
    assert {"x_gru", "x_prior", "x_in", "reward_x", "encoder", "decoder"} <= names
    assert params["xy_post_out"]["kernel"].shape[-1] == 2 * cfg.x_stoch


def test_bad_inputs_raise_clear_errors():
  cfg = TINY["dmdp"]
  params = dmdp.init(cfg, KEY)
  bad = _batch(cfg)
  bad["action"] = bad["action"][..., :1]
  with pytest.raises(ValueError, match="action"):
    dmdp.world_model_loss(cfg, params, bad, KEY)
  with pytest.raises(ValueError, match="image"):
    dmdp.world_model_loss(cfg, params, {**_batch(cfg), "image": np.zeros((2, 3, 8, 8, 3))}, KEY)
  with pytest.raises(ValueError, match="decoder_kernels"):
    dmdp.dmdp(image_size=50)
  with pytest.raises(ValueError, match="both be 0"):
    dmdp.dmdp(y_deter=0)
  with pytest.raises(ValueError, match="preset"):
    dmdp.preset("2d")
  # non-finite hyper-parameters are rejected where the config is made, naming the field
  for field in ("beta_y", "beta_z", "alpha", "free_nats", "min_std"):
    with pytest.raises(ValueError, match=field):
      dmdp.dmdp(**{field: float("nan")})
  with pytest.raises(ValueError, match="actor_lr"):
    dmdp.AgentConfig(actor_lr=float("inf"))


def test_one_name_per_model_and_centered_pixels():
  assert dmdp.MODELS == ("dmdp", "dmdp_2c", "dreamer") and set(dmdp.PRESETS) == set(dmdp.MODELS)
  assert dmdp.preset("dmdp") == dmdp.dmdp() and dmdp.preset("dreamer") == dmdp.dreamer()
  assert dmdp.preset("dmdp_2c", beta_z=0.5) == dmdp.dmdp_2c(beta_z=0.5)
  # the world model's pixels are centred: uint8 -> [-0.5, 0.5]; floats are taken as scaled
  u = np.array([[0, 51, 255]], np.uint8)
  np.testing.assert_allclose(dmdp.to_centered_float(u), [[-0.5, 0.2 - 0.5, 0.5]], atol=1e-7)
  assert dmdp.to_centered_float(u).dtype == jnp.float32
  np.testing.assert_array_equal(dmdp.to_centered_float(np.float32([0.25])), [0.25])


# ---------------------------------------------------------------------------------------------
# initialisation: the release's (PyTorch defaults) or Flax's


def _init_params():
  """``{init: ((world-model cfg, 96-pixel cfg), params)}``: the agent of the small preset's 2c
  model (all of the world model's layers, actor, value) and a tiny 96-pixel encoder (its final
  3x3 conv), for both inits, in one compilation. The key is an "rbg" key: it compiles ~3x faster
  than threefry here, and the initialisers draw the same way from either."""
  from jaxprune.dmdp import run_config

  small = run_config.small(model="dmdp_2c")
  rd = dmdp.robodesk_96(dmdp.tiny(), encoder_kernels=(4, 4, 4, 4))
  cfgs = {i: (small.world_model.replace(init=i), rd.replace(init=i)) for i in ("torch", "flax")}

  def init(key):
    return {
      i: {
        "agent": dmdp.init_agent(wm, small.agent.replace(init=i), key),
        "rd": dmdp.PixelEncoder(r).init(key, jnp.zeros((1, 96, 96, 3))),
      }
      for i, (wm, r) in cfgs.items()
    }

  params = jax.device_get(jax.jit(init)(jax.random.key(0, impl="rbg")))
  return {i: (cfgs[i], params[i]) for i in cfgs}


def _torch_bounds(tree, wm, rd):
  """``{path: (array, bound)}`` of every parameter, the bound written from PyTorch's rules for the
  release's layers: Linear / Conv2d 1/sqrt(fan_in), fan_in = inputs (x k^2); ConvTranspose2d
  fan_in = k^2 C_out; GRUCell 1/sqrt(hidden); the posterior's first Linear reads
  [states, embedding] (jaxprune splits it in two parts), so its fan_in is the sum."""
  xy = lambda c: c.embed_size + c.x_deter + c.y_deter + c.z_deter + c.z_stoch
  z = lambda c: c.embed_size + c.x_deter + c.x_stoch + c.y_deter + c.y_stoch + c.z_deter
  leaves = jax.tree.flatten_with_path(tree)[0]
  kernels = {path[:-1]: w.shape for path, w in leaves if w.ndim > 1}  # each layer's kernel
  out = {}
  for path, v in leaves:
    names = [str(getattr(k, "key", k)) for k in path]
    cfg = rd if names[0] == "rd" else wm
    layer, kshape = names[-2], kernels[path[:-1]]
    if len(kshape) == 4:
      fan_in = kshape[0] * kshape[1] * (kshape[3] if layer.startswith("deconv") else kshape[2])
    elif any(n.endswith("_gru") for n in names):
      fan_in = kshape[1] // 3
    elif layer.startswith("xy_post_") and layer != "xy_post_out":
      fan_in = xy(cfg)
    elif layer.startswith("z_post_") and layer != "z_post_out":
      fan_in = z(cfg)
    else:
      fan_in = kshape[0]
    out["/".join(names)] = (np.asarray(v), 1.0 / np.sqrt(fan_in))
  return out


@pytest.fixture(scope="module")
def init_params():
  return _init_params()


def test_torch_init_is_pytorchs_default_everywhere(init_params):
  (wm, rd), tree = init_params["torch"]
  bounds = _torch_bounds(tree, wm, rd)
  assert any("conv_final" in k for k in bounds) and any("z_gru" in k for k in bounds)
  # a few layers: U(-b, b) has std b / sqrt(3) and reaches |w| ~ b
  for name, fan_in in (
    ("agent/model/params/encoder/conv1/kernel", 4 * 4 * 16),  # 4x4 conv, 16 -> 32 channels
    ("agent/model/params/decoder/deconv0/kernel", 5 * 5 * 32),  # transposed: k^2 C_out
    ("agent/model/params/decoder/dense/kernel", 64 + 64 + 64 + 3 * 8),  # all factors' features
    ("agent/model/params/x_gru/hidden/kernel", 64),  # GRU: 1/sqrt(hidden)
    ("agent/model/params/x_gru/input/kernel", 64),
    ("agent/model/params/xy_post_embed/kernel", 256 + 64 + 64 + 64 + 8),  # [states, e_t]
    ("agent/actor/params/mlp/hidden1/kernel", 128),
  ):
    w, b = bounds[name]
    assert b == pytest.approx(1 / np.sqrt(fan_in)), name
    assert float(np.abs(w).max()) <= b and float(np.abs(w).max()) > 0.97 * b, name
    np.testing.assert_allclose(w.std(), b / np.sqrt(3), rtol=0.05, err_msg=name)
  # every parameter within its bound; pooled over the tree, w / b is U(-1, 1): std 1/sqrt(3)
  kern = np.concatenate([(w / b).ravel() for k, (w, b) in bounds.items() if w.ndim > 1])
  bias = np.concatenate([(w / b).ravel() for k, (w, b) in bounds.items() if w.ndim == 1])
  for name, u in (("kernels", kern), ("biases", bias)):
    assert float(np.abs(u).max()) <= 1.0 + 1e-6 and float(np.abs(u).max()) > 0.99, name
    np.testing.assert_allclose(u.std(), 1 / np.sqrt(3), rtol=0.03, err_msg=name)
    np.testing.assert_allclose(u.mean(), 0.0, atol=0.02, err_msg=name)
  # biases are drawn, not zero (PyTorch's default), in every layer that has one
  assert all(np.all(w != 0) for k, (w, b) in bounds.items() if w.ndim == 1)


def test_flax_init_keeps_the_old_statistics(init_params):
  (wm, rd), tree = init_params["flax"]
  (_, _), torch_tree = init_params["torch"]
  leaves = jax.tree.flatten_with_path(tree)[0]
  assert [p for p, _ in leaves] == [p for p, _ in jax.tree.flatten_with_path(torch_tree)[0]]
  assert jax.tree.map(np.shape, tree) == jax.tree.map(np.shape, torch_tree)
  # lecun_normal: truncated normal at 2 std, std 1/sqrt(prod(shape[:-1])) (Flax's fan-in); zero
  # biases
  kern = []
  for path, w in leaves:
    if w.ndim == 1:
      assert not np.any(w), path
    else:
      u = w * np.sqrt(np.prod(w.shape[:-1]))
      assert float(np.abs(u).max()) <= 2.0 / 0.87962566 + 1e-5, path
      kern.append(u.ravel())
  np.testing.assert_allclose(np.concatenate(kern).std(), 1.0, rtol=0.03)
  # Flax's std is ~sqrt(3) = 1.7x the torch one on a dense layer
  name = ("agent", "model", "params", "reward_x", "hidden0", "kernel")
  get = lambda t: np.asarray(t[name[0]][name[1]][name[2]][name[3]][name[4]][name[5]])
  np.testing.assert_allclose(get(tree).std() / get(torch_tree).std(), np.sqrt(3), rtol=0.05)


def test_init_is_a_config_choice_with_release_default():
  from jaxprune.dmdp import run_config

  assert dmdp.WorldModelConfig().init == "torch" and dmdp.AgentConfig().init == "torch"
  for preset in (run_config.full, run_config.small):
    for model in dmdp.MODELS:
      cfg = preset(model=model)
      assert cfg.world_model.init == "torch" and cfg.agent.init == "torch", (preset, model)
  with pytest.raises(ValueError, match="init"):
    dmdp.dmdp(init="xavier")
  with pytest.raises(ValueError, match="init"):
    dmdp.AgentConfig(init="xavier")


# ---------------------------------------------------------------------------------------------
# one step definition: scan == Python loop; the factor graph


def test_observe_scan_equals_python_loop():
  cfg = TINY["dmdp_2c"]
  params = _perturb(dmdp.init(cfg, KEY), 0.05)
  b, t = 2, 4
  batch = _batch(cfg, b, t)
  e_BxT = dmdp.encode_images(cfg, params, batch["image"])
  latent, stats = dmdp.observe(cfg, params, e_BxT, jnp.asarray(batch["action"]), KEY)
  # the reference loop runs over time: time-major
  e = jnp.swapaxes(e_BxT, 0, 1)
  a = jnp.swapaxes(jnp.asarray(batch["action"]), 0, 1)
  model = WorldModel(cfg)
  obs = model.apply(params, e.reshape(t * b, -1), method=WorldModel.project)
  obs = jax.tree.map(lambda o: o.reshape(t, b, -1), obs)
  keys = jax.random.split(KEY, t)
  cur, outs = dmdp.initial_latent(cfg, b), []
  for i in range(t):
    cur, st = model.apply(
      params, cur, a[i], jax.tree.map(lambda o: o[i], obs), keys[i], method=WorldModel.step
    )
    outs.append((cur, st))
  loop = jax.tree.map(lambda *v: jnp.stack(v, axis=1), *outs)  # B x T, as observe returns
  for got, want in zip(jax.tree.leaves((latent, stats)), jax.tree.leaves(loop)):
    np.testing.assert_allclose(got, want, atol=1e-5)


def _prior_rollout(cfg, params, actions_BxTxA, prev):
  return dmdp.open_loop(cfg, params, prev, actions_BxTxA, KEY)[1].prior


def test_graph_y_prior_ignores_action_x_prior_uses_it():
  cfg = TINY["dmdp_2c"]
  params = _perturb(dmdp.init(cfg, KEY), 0.05)
  b = 2
  prev = jax.tree.map(lambda v: jax.random.normal(KEY, v.shape), dmdp.initial_latent(cfg, b))
  acts = jax.random.normal(KEY, (b, 4, cfg.action_dim))

  def prior_sum(a, f):
    g = _prior_rollout(cfg, params, a, prev)[f]
    return jnp.sum(g.mean) + jnp.sum(g.std)

  gy = jax.grad(prior_sum)(acts, "y")
  gx = jax.grad(prior_sum)(acts, "x")
  gz = jax.grad(prior_sum)(acts, "z")
  assert np.all(np.asarray(gy) == 0.0)  # exactly zero: y's prior sees no action, no x
  assert float(jnp.abs(gx).max()) > 1e-4 and float(jnp.abs(gz).max()) > 1e-4
  # one step, posterior mode: y's prior at t still does not read a_{t-1}
  obs = WorldModel(cfg).apply(params, jnp.ones((b, cfg.embed_size)), method=WorldModel.project)
  step_y = lambda a: (
    WorldModel(cfg)
    .apply(params, prev, a, obs, KEY, method=WorldModel.step)[1]
    .prior["y"]
    .mean.sum()
  )
  assert np.all(np.asarray(jax.grad(step_y)(acts[:, 0])) == 0.0)


def test_graph_y_prior_ignores_x_state():
  cfg = TINY["dmdp"]
  params = _perturb(dmdp.init(cfg, KEY), 0.05)
  prev = jax.tree.map(lambda v: jax.random.normal(KEY, v.shape), dmdp.initial_latent(cfg, 2))
  a = jnp.ones((2, cfg.action_dim))

  def y_prior(hx, sx):
    p = prev._replace(hx=hx, sx=sx)
    return (
      WorldModel(cfg)
      .apply(params, p, a, None, KEY, method=WorldModel.step)[1]
      .prior["y"]
      .mean.sum()
    )

  for g in jax.grad(y_prior, argnums=(0, 1))(prev.hx, prev.sx):
    assert np.all(np.asarray(g) == 0.0)


def test_z_switch_drops_y_from_z_prior():
  for uses_y in (True, False):
    cfg = TINY["dmdp_2c"].replace(z_prior_uses_y=uses_y)
    params = _perturb(dmdp.init(cfg, KEY), 0.05)
    prev = jax.tree.map(lambda v: jax.random.normal(KEY, v.shape), dmdp.initial_latent(cfg, 2))
    a = jnp.ones((2, cfg.action_dim))

    def z_prior(hy):
      out = WorldModel(cfg).apply(
        params, prev._replace(hy=hy), a, None, KEY, method=WorldModel.step
      )
      return out[1].prior["z"].mean.sum()

    g = np.asarray(jax.grad(z_prior)(prev.hy))
    assert (np.abs(g).max() > 1e-5) == uses_y


def test_reward_reads_x_and_y_only():
  cfg = TINY["dmdp_2c"]
  params = _perturb(dmdp.init(cfg, KEY), 0.05)
  lat = jax.tree.map(lambda v: jax.random.normal(KEY, v.shape), dmdp.initial_latent(cfg, 3))
  lat2 = lat._replace(hz=lat.hz + 5.0, sz=-lat.sz)
  np.testing.assert_array_equal(dmdp.reward(cfg, params, lat)[0], dmdp.reward(cfg, params, lat2)[0])
  lat3 = lat._replace(sy=lat.sy + 1.0)
  full, den = dmdp.reward(cfg, params, lat)
  full3, den3 = dmdp.reward(cfg, params, lat3)
  assert float(jnp.abs(full - full3).max()) > 1e-4  # f_y reads y
  np.testing.assert_array_equal(den, den3)  # the denoised reward is f_x alone
  np.testing.assert_allclose(den, dmdp.denoised_reward(cfg, params, lat), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# objective


def test_kl_zero_when_posterior_equals_prior_and_matches_closed_form():
  g = dmdp.Gauss(jax.random.normal(KEY, (3, 4, 5)), jnp.full((3, 4, 5), 0.7))
  np.testing.assert_allclose(dmdp.kl_gauss(g, g), 0.0, atol=1e-6)
  q = dmdp.Gauss(jnp.array([1.0]), jnp.array([2.0]))
  p = dmdp.Gauss(jnp.array([0.0]), jnp.array([1.0]))
  want = np.log(1 / 2) + (4 + 1) / 2 - 0.5
  np.testing.assert_allclose(dmdp.kl_gauss(q, p), want, rtol=1e-6)


def test_free_nats_clamp_acts_on_x_only():
  cfg = TINY["dmdp_2c"].replace(free_nats=3.0, alpha=2.0, beta_y=0.5, beta_z=0.25)
  t, b = 4, 2
  prior = {f: dmdp.Gauss(jnp.zeros((t, b, 4)), jnp.ones((t, b, 4))) for f in "xyz"}
  small = {f: dmdp.Gauss(jnp.full((t, b, 4), 0.5), jnp.ones((t, b, 4))) for f in "xyz"}  # 0.5 nat
  terms = dmdp.kl_terms(cfg, dmdp.StepStats(prior, small))
  np.testing.assert_allclose(terms["kl_x"], 0.5, rtol=1e-6)
  np.testing.assert_allclose(terms["kl_x_clamped"], 3.0, rtol=1e-6)
  np.testing.assert_allclose(terms["kl_y"], 0.5, rtol=1e-6)  # not clamped
  np.testing.assert_allclose(terms["kl_z"], 0.5, rtol=1e-6)
  np.testing.assert_allclose(terms["kl_loss"], 2.0 * (3.0 + 0.5 * 0.5 + 0.25 * 0.5), rtol=1e-6)
  equal = dmdp.kl_terms(cfg.replace(free_nats=0.0), dmdp.StepStats(prior, prior))
  for k in ("kl_x", "kl_y", "kl_z", "kl_loss"):
    np.testing.assert_allclose(equal[k], 0.0, atol=1e-7)
  # the clamp has no gradient below free nats; y still has one
  gx = jax.grad(
    lambda m: dmdp.kl_terms(
      cfg, dmdp.StepStats(prior, {**small, "x": dmdp.Gauss(m, small["x"].std)})
    )["kl_loss"]
  )(small["x"].mean)
  gy = jax.grad(
    lambda m: dmdp.kl_terms(
      cfg, dmdp.StepStats(prior, {**small, "y": dmdp.Gauss(m, small["y"].std)})
    )["kl_loss"]
  )(small["y"].mean)
  assert np.all(np.asarray(gx) == 0.0) and float(jnp.abs(gy).max()) > 0


def test_partial_free_nats_on_x_by_hand():
  """The release's ``beta_free_nats_x``: alpha * b_fn * mean(max(KL_x, fn)) + alpha * (beta_x -
  b_fn) * mean(KL_x) (+ the y, z terms). KL(N(m, 1) || N(0, 1)) over 4 dims is 2 m^2."""
  t, b, d = 2, 1, 4
  prior = {f: dmdp.Gauss(jnp.zeros((t, b, d)), jnp.ones((t, b, d))) for f in "xyz"}
  m_x = jnp.array([0.5, np.sqrt(2.0)]).reshape(t, b, 1) * jnp.ones((t, b, d))  # KL_x 0.5, 4
  post = {
    "x": dmdp.Gauss(m_x, jnp.ones((t, b, d))),
    "y": dmdp.Gauss(jnp.full((t, b, d), 0.5), jnp.ones((t, b, d))),  # KL_y 0.5 every step
    "z": dmdp.Gauss(jnp.full((t, b, d), 1.0), jnp.ones((t, b, d))),  # KL_z 2 every step
  }
  stats = dmdp.StepStats(prior, post)
  base = TINY["dmdp_2c"].replace(alpha=2.0, beta_y=0.5, beta_z=0.25, free_nats=3.0)
  # clamped mean (3 + 4) / 2 = 3.5, raw mean (0.5 + 4) / 2 = 2.25, y 0.5, z 2
  yz = 0.5 * 0.5 + 0.25 * 2.0
  cases = [
    (dict(), 2.0 * (3.5 + yz)),  # None: all of beta_x = 1 gets free nats (the old objective)
    (dict(beta_free_nats_x=1.0), 2.0 * (3.5 + yz)),
    (dict(beta_free_nats_x=0.25), 2.0 * (0.25 * 3.5 + 0.75 * 2.25 + yz)),
    (dict(beta_free_nats_x=0.0), 2.0 * (2.25 + yz)),  # no free nats at all
    (dict(beta_x=0.5, beta_free_nats_x=0.25), 2.0 * (0.25 * 3.5 + 0.25 * 2.25 + yz)),
    (dict(beta_x=0.5), 2.0 * (0.5 * 3.5 + yz)),
  ]
  for kw, want in cases:
    got = dmdp.kl_terms(base.replace(**kw), stats)
    np.testing.assert_allclose(got["kl_loss"], want, rtol=1e-5, err_msg=str(kw))
    np.testing.assert_allclose(got["kl_x"], 2.25, rtol=1e-5)
    np.testing.assert_allclose(got["kl_x_clamped"], 3.5, rtol=1e-5)
  # below free nats the clamped part has no gradient; the unclamped part has: at the first step
  # (m = 0.5 per dim) d/dm of alpha (beta_x - b_fn) mean_t(sum_d m^2 / 2) = 2 * 0.75 * m / 2
  grad = lambda cfg: jax.grad(
    lambda m: dmdp.kl_terms(
      cfg, dmdp.StepStats(prior, {**post, "x": dmdp.Gauss(m, post["x"].std)})
    )["kl_loss"]
  )(m_x)
  assert np.all(np.asarray(grad(base)[0]) == 0.0)
  np.testing.assert_allclose(grad(base.replace(beta_free_nats_x=0.25))[0], 0.375, rtol=1e-5)
  with pytest.raises(ValueError, match="beta_free_nats_x"):
    dmdp.dmdp(beta_free_nats_x=0.5, beta_x=0.25)
  with pytest.raises(ValueError, match="beta_free_nats_x"):
    dmdp.dmdp(beta_free_nats_x=-0.1)
  with pytest.raises(ValueError, match="beta_x"):
    dmdp.dmdp(beta_x=float("nan"))


def test_loss_terms_add_up():
  cfg = TINY["dmdp_2c"]
  params = dmdp.init(cfg, KEY)
  loss, m = dmdp.world_model_loss(cfg, params, _batch(cfg), KEY)
  np.testing.assert_allclose(loss, m["recon_nll"] + m["reward_nll"] + m["kl_loss"], rtol=1e-6)


def test_update_compiles_once_and_scans():
  cfg = TINY["dmdp"]
  traces = []
  base = dmdp.make_loss_fn(cfg)

  def loss_fn(params, batch, key):
    traces.append(1)
    return base(params, batch, key)

  opt = dmdp.make_optimizer()
  state = create_state(dmdp.init(cfg, KEY), opt, jax.random.key(1))
  update = jax.jit(make_update(loss_fn, opt), donate_argnums=0)
  for seed in range(3):
    state, m = update(state, jax.tree.map(jnp.asarray, _batch(cfg, seed=seed)))
  assert len(traces) == 1 and int(state.step) == 3
  batch = jax.tree.map(jnp.asarray, _batch(cfg))
  hlo = jax.jit(make_update(base, opt)).lower(state, batch).as_text()
  assert "while" in hlo  # the time loop is a scan inside the jitted update


# ---------------------------------------------------------------------------------------------
# pictures


def test_factor_pictures_png(tmp_path):
  cfg = TINY["dmdp_2c"]
  params = dmdp.init(cfg, KEY)
  batch = _batch(cfg, 1, 4)
  path = str(tmp_path / "factors.png")
  rows = dmdp.save_factor_pictures(path, cfg, params, batch["image"][0], batch["action"][0], KEY)
  assert rows == ["observation", "all", "x", "y", "z"]
  from PIL import Image

  img = np.asarray(Image.open(path))
  # the labelled figure holds the grid (5 rows x 4 steps of 16x16 images, 1-pixel gaps) plus
  # its row labels and time axis
  rec = dmdp.factor_reconstructions(cfg, params, batch["image"][0], batch["action"][0], KEY)
  from jaxprune.dmdp.pictures import ROW_LABELS, grid

  assert grid(rec).shape == (5 * 17 + 1, 4 * 17 + 1, 3)
  assert img.shape[0] > 2 * (5 * 17 + 1) and img.shape[1] > 2 * (4 * 17 + 1)
  assert [ROW_LABELS[r] for r in rows] == [
    "observed",
    "all factors",
    "x alone",
    "y alone",
    "z alone",
  ]
  assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
  # "x alone": y and z frozen at their first step
  rec = dmdp.factor_reconstructions(cfg, params, batch["image"][0], batch["action"][0], KEY)
  assert rec["x"].shape == (4, 16, 16, 3)
  np.testing.assert_allclose(rec["x"][0], rec["all"][0], atol=1e-6)


# ---------------------------------------------------------------------------------------------
# a short training run on a controllable sprite + uncontrollable background


def sprite_task(rng, n, t, *, size=16, sprite=4, blob=4):
  """A red sprite moved by the action (p_t = p_{t-1} + 2 a_{t-1}) and a blue blob on its own
  random walk; reward 1 - L1 distance of the sprite to the centre (scaled).
  Returns (batch, sprite positions n x t x 2, blob positions n x t x 2)."""
  hi_s, hi_b = size - sprite, size - blob
  act = rng.uniform(-1, 1, (n, t, 2)).astype(np.float32)
  act[:, 0] = 0
  p = np.zeros((n, t, 2), np.float32)
  q = np.zeros((n, t, 2), np.float32)
  p[:, 0], q[:, 0] = rng.uniform(0, hi_s, (n, 2)), rng.uniform(0, hi_b, (n, 2))
  for i in range(1, t):
    p[:, i] = np.clip(p[:, i - 1] + 2.0 * act[:, i], 0, hi_s)
    q[:, i] = np.clip(q[:, i - 1] + rng.uniform(-2, 2, (n, 2)), 0, hi_b)
  img = np.zeros((n, t, size, size, 3), np.uint8)
  img[..., 1] = 40
  pi, qi = np.rint(p).astype(int), np.rint(q).astype(int)
  for a in range(n):
    for b in range(t):
      y, x = qi[a, b]
      img[a, b, y : y + blob, x : x + blob, 2] = 255
      y, x = pi[a, b]
      img[a, b, y : y + sprite, x : x + sprite, 0] = 255
  c = hi_s / 2
  reward = (1.0 - np.abs(p - c).sum(-1) / c).astype(np.float32)
  return {"image": img, "action": act, "reward": reward}, p, q


def _probe_r2(feat_NxF, target_Nx2):
  """Least-squares linear probe fitted on one half; R^2 (mean of the 2 coordinates) on the other."""
  x = np.concatenate([feat_NxF, np.ones((len(feat_NxF), 1))], 1)
  n = len(x) // 2
  w, *_ = np.linalg.lstsq(x[:n], target_Nx2[:n], rcond=None)
  res = target_Nx2[n:] - x[n:] @ w
  total = ((target_Nx2[n:] - target_Nx2[n:].mean(0)) ** 2).sum(0)
  return float(np.mean(1 - (res**2).sum(0) / total))


def test_training_lowers_loss_and_x_holds_the_sprite():
  # free nats 1 (not 3): with tiny latents, 3 free nats would let x hold anything at no cost
  cfg = dmdp.tiny(free_nats=1.0)
  rng = np.random.default_rng(0)
  b, t, k, dispatches = 16, 8, 25, 48
  opt = dmdp.make_optimizer(learning_rate=3e-3)
  state = create_state(dmdp.init(cfg, KEY), opt, jax.random.key(1))
  update = make_update(dmdp.make_loss_fn(cfg), opt)
  dispatch = jax.jit(lambda s, batches: run_steps(update, s, batches), donate_argnums=0)
  losses = []
  for _ in range(dispatches):
    data, _, _ = sprite_task(rng, b * k, t)
    batches = jax.tree.map(lambda v: jnp.asarray(v).reshape(k, b, *v.shape[1:]), data)
    state, metrics = dispatch(state, batches)
    losses.append(np.asarray(metrics["loss"]))
  assert dispatch._cache_size() == 1
  first, last = float(np.mean(losses[0])), float(np.mean(losses[-1]))
  assert last < first - 20, (first, last)
  assert float(np.mean(metrics["reward_mse"])) < 0.1
  data, p, q = sprite_task(np.random.default_rng(1), 256, t)
  e = dmdp.encode_images(cfg, state.params, data["image"])
  lat, st = dmdp.observe(cfg, state.params, e, jnp.asarray(data["action"]), jax.random.key(3))
  # rows in time-major order (as before observe was batch-major: the probe's split is unchanged)
  fx = np.swapaxes(np.asarray(jnp.concatenate([lat.hx, st.post["x"].mean], -1)), 0, 1)
  fx = fx.reshape(-1, 20)
  tm = lambda v: np.swapaxes(v, 0, 1).reshape(-1, 2)
  r2_sprite, r2_bg = _probe_r2(fx, tm(p)), _probe_r2(fx, tm(q))
  print(
    f"loss {first:.1f} -> {last:.1f}; probe R^2 from x: sprite {r2_sprite:.2f}, "
    f"background {r2_bg:.2f}"
  )
  assert r2_sprite > r2_bg + 0.2, (r2_sprite, r2_bg)
