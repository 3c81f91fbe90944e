"""Denoised MDP agent: lambda-returns, the tanh-Gaussian actor, gradient isolation of the one
combined update, acting, and a small learning check. Tiny sizes (compilation dominates)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxprune import dmdp
from jaxprune.core.loop import create_state, make_update, run_steps
from jaxprune.dmdp import model as wm_module
from jaxprune.dmdp.model import WorldModel

KEY = jax.random.key(0)
CFG = dmdp.tiny()  # 2b: x and y
AC = dmdp.AgentConfig(horizon=4, actor_hidden=16, actor_layers=2, value_hidden=16, value_layers=2)


def _batch(b=3, t=5, seed=0):
  r = np.random.default_rng(seed)
  return {
    "image": r.integers(
      0, 256, (b, t, CFG.image_size, CFG.image_size, CFG.channels), dtype=np.uint8
    ),
    "action": r.uniform(-1, 1, (b, t, CFG.action_dim)).astype(np.float32),
    "reward": r.normal(size=(b, t)).astype(np.float32),
  }


def _random_params(seed=0):
  """Random parameters of the agent's shapes (numpy: no compilation): kernels N(0, 1/fan_in),
  biases N(0, 0.05^2), so gradient tests exercise every parameter."""
  shapes = jax.eval_shape(lambda k: dmdp.init_agent(CFG, AC, k), KEY)
  rng = np.random.default_rng(seed)

  def draw(s):
    std = 1.0 / math.sqrt(math.prod(s.shape[:-1])) if len(s.shape) > 1 else 0.05
    return jnp.asarray(rng.normal(0.0, std, s.shape).astype(np.float32))

  return jax.tree.map(draw, shapes)


@pytest.fixture(scope="module")
def params():
  return _random_params()


# ---------------------------------------------------------------------------------------------
# lambda-return and the actor's distribution


def _lambda_return_loop(r, v, d, boot, lam):
  h = len(r)
  out = np.zeros_like(r)
  nxt = boot
  for t in reversed(range(h)):
    v_next = v[t + 1] if t + 1 < h else boot
    nxt = r[t] + d[t] * ((1 - lam) * v_next + lam * nxt)
    out[t] = nxt
  return out


@pytest.mark.parametrize("lam", [0.0, 0.95, 1.0])
def test_lambda_return_equals_python_loop(lam):
  rng = np.random.default_rng(0)
  h, b = 6, 3
  r, v = rng.normal(size=(h, b)), rng.normal(size=(h, b))
  d = rng.uniform(0.5, 1.0, (h, b))  # non-constant discounts
  boot = rng.normal(size=b)
  got = dmdp.lambda_return(r, v, d, boot, lam=lam)
  np.testing.assert_allclose(got, _lambda_return_loop(r, v, d, boot, lam), rtol=1e-5, atol=1e-5)
  if lam == 0.0:  # one-step TD targets
    np.testing.assert_allclose(got, r + d * np.concatenate([v[1:], boot[None]]), rtol=1e-5)
  if lam == 1.0:  # discounted Monte-Carlo return bootstrapped at the end
    np.testing.assert_allclose(got[-1], r[-1] + d[-1] * boot, rtol=1e-5)
  with pytest.raises(ValueError, match="bootstrap"):
    dmdp.lambda_return(r, v, d, boot[:2], lam=lam)
  with pytest.raises(ValueError, match="share a shape"):
    dmdp.lambda_return(r, v[:-1], d, boot, lam=lam)


def test_tanh_gaussian_actions_bounded_log_prob_finite():
  ac = dmdp.AgentConfig()
  raw = jnp.array([[0.0, 0.0, 0.0, 0.0], [1e3, -1e3, 50.0, -50.0], [-7.0, 3.0, -1e3, 1e3]])
  dist = dmdp.tanh_gauss_from(ac, raw)
  np.testing.assert_allclose(dist.std[0], 5.0 + 1e-4, rtol=1e-5)  # init std 5 at raw 0
  assert float(jnp.abs(dist.mean).max()) <= 5.0 and float(dist.std.min()) >= 0.99999e-4
  np.testing.assert_allclose(dist.mean[2, 0], 5 * math.tanh(-7 / 5), rtol=1e-5)
  keys = jax.random.split(KEY, 200)
  a, logp = jax.vmap(lambda k: dmdp.sample_action(dist, k))(keys)
  assert a.shape == (200, 3, 2) and logp.shape == (200, 3)
  assert float(jnp.abs(a).max()) <= 1.0 and bool(jnp.all(jnp.isfinite(logp)))
  np.testing.assert_allclose(dmdp.mode_action(dist), jnp.tanh(dist.mean))


def test_sample_action_log_prob_matches_change_of_variables():
  dist = dmdp.TanhGauss(jnp.array([[0.3, -1.0]]), jnp.array([[0.8, 2.0]]))
  a, logp = dmdp.sample_action(dist, KEY)
  u = np.arctanh(np.asarray(a, np.float64))
  m, s = np.asarray(dist.mean, np.float64), np.asarray(dist.std, np.float64)
  ref = np.sum(
    -0.5 * ((u - m) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi) - np.log(1 - np.tanh(u) ** 2),
    -1,
  )
  np.testing.assert_allclose(logp, ref, rtol=1e-4)


def test_config_errors():
  with pytest.raises(ValueError, match="horizon"):
    dmdp.AgentConfig(horizon=1)
  with pytest.raises(ValueError, match="lam"):
    dmdp.AgentConfig(lam=1.5)
  with pytest.raises(ValueError, match="actor_lr"):
    dmdp.AgentConfig(actor_lr=0.0)


# ---------------------------------------------------------------------------------------------
# gradient isolation and the combined update


def _record_grads() -> optax.GradientTransformation:
  """A no-op transformation that keeps the raw gradients in its state (to read them back)."""
  return optax.GradientTransformation(
    lambda p: jax.tree.map(jnp.zeros_like, p), lambda g, state, params=None: (g, g)
  )


@pytest.fixture(scope="module")
def run(params):
  """Three updates through ``make_update`` + ``run_steps`` (one compilation), recording every
  step's parameters and raw gradients; and, at the initial parameters and the first step's key,
  the gradients of the plain world-model loss and of each imagination loss alone."""
  opt = optax.chain(_record_grads(), dmdp.agent_optimizer(AC))
  state = create_state(params, opt, jax.random.key(1))
  update = make_update(dmdp.agent_loss_fn(CFG, AC), opt)

  def step(state, batch):
    new, metrics = update(state, batch)
    return new, (metrics, new.params, new.opt_state[0])

  batches = jax.tree.map(
    lambda *v: jnp.stack([jnp.asarray(x) for x in v]), *[_batch(seed=s) for s in range(3)]
  )
  new, (metrics, params_K, grads_K) = jax.jit(lambda s, b: run_steps(step, s, b))(state, batches)

  @jax.jit
  def part_grads(p, batch, key):
    k_model, k_imag = jax.random.split(key)
    g_model = jax.grad(lambda m: dmdp.world_model_loss(CFG, m, batch, k_model)[0])(p["model"])
    start = dmdp.posterior_start(CFG, p["model"], batch, k_model)
    # both imagination losses' gradients in one (vmapped) backward pass
    g_parts = jax.jacrev(
      lambda p: jnp.stack(dmdp.imagination_losses(CFG, AC, p, start, k_imag)[:2])
    )(p)
    return g_model, jax.tree.map(lambda g: g[0], g_parts), jax.tree.map(lambda g: g[1], g_parts)

  key0 = jax.random.fold_in(state.key, 0)  # the first step's key (train.step_key)
  parts = part_grads(params, jax.tree.map(lambda v: v[0], batches), key0)
  first = jax.tree.map(lambda v: v[0], grads_K)
  return jax.device_get(
    {"new": new, "metrics": metrics, "params": params_K, "g_total": first, "parts": parts}
  )


def _zero(tree):
  return all(np.all(np.asarray(v) == 0.0) for v in jax.tree.leaves(tree))


def _nonzero_everywhere(tree):
  """Every parameter array gets some gradient."""
  return all(float(np.abs(v).max()) > 0 for v in jax.tree.leaves(tree))


def _close(got, want, **kw):
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, **kw)


def test_each_loss_moves_only_its_own_parameters(run):
  g_model, g_actor, g_value = run["parts"]
  # the actor loss: exactly zero on the model and value parameters, non-zero on the actor's
  assert _zero(g_actor["model"]) and _zero(g_actor["value"])
  assert _nonzero_everywhere(g_actor["actor"])
  # the value loss: the value parameters only
  assert _zero(g_value["model"]) and _zero(g_value["actor"])
  assert _nonzero_everywhere(g_value["value"])
  # the update's gradient is the three parts side by side; its model part is exactly the plain
  # world-model loss's gradient
  g_total = run["g_total"]
  _close(g_total["model"], g_model, rtol=1e-4, atol=1e-6)
  _close(g_total["actor"], g_actor["actor"], rtol=1e-4, atol=1e-7)
  _close(g_total["value"], g_value["value"], rtol=1e-4, atol=1e-7)


def test_combined_step_equals_three_separate_updates(params, run):
  g_total = run["g_total"]
  g_model, g_actor, g_value = run["parts"]
  opt = dmdp.agent_optimizer(AC)
  first_update = jax.jit(lambda opt, g, p: opt.update(g, opt.init(p), p)[0], static_argnums=0)
  upd = first_update(opt, g_total, params)
  # what the shared loop did in its first step
  _close(
    jax.tree.map(lambda v: v[0], run["params"]),
    optax.apply_updates(params, upd),
    rtol=1e-6,
    atol=1e-7,
  )
  separate = {}
  for name, g, lr in (
    ("model", g_model, AC.model_lr),
    ("actor", g_actor["actor"], AC.actor_lr),
    ("value", g_value["value"], AC.value_lr),
  ):
    o = optax.chain(optax.clip_by_global_norm(AC.grad_clip), optax.adam(lr, eps=AC.adam_eps))
    separate[name] = first_update(o, g, params[name])
  _close(upd, separate, rtol=1e-3, atol=1e-3 * AC.actor_lr)
  # per-group clipping: a huge model gradient does not shrink the actor's step
  big = {**g_total, "model": jax.tree.map(lambda v: 1e6 * v, g_total["model"])}
  _close(first_update(opt, big, params)["actor"], upd["actor"], rtol=1e-5, atol=1e-9)


def test_update_through_the_shared_loop_changes_every_group(params, run):
  new, metrics = run["new"], run["metrics"]
  assert int(new.step) == 3
  for k in ("loss", "model_loss", "actor_loss", "value_loss", "imag_return", "grad_norm"):
    assert metrics[k].shape == (3,) and np.all(np.isfinite(metrics[k])), k
  np.testing.assert_allclose(
    metrics["loss"],
    metrics["model_loss"] + metrics["actor_loss"] + metrics["value_loss"],
    rtol=1e-5,
  )
  for name in ("model", "actor", "value"):
    pairs = list(zip(jax.tree.leaves(new.params[name]), jax.tree.leaves(params[name])))
    assert all(np.all(np.isfinite(a)) for a, _ in pairs)
    assert all(float(np.abs(a - b).max()) > 0 for a, b in pairs), name


# ---------------------------------------------------------------------------------------------
# imagination: the actor reads stop_gradient(features); the dynamics carry the gradient


def _probed_imagine(delta_HxNxF, eps_HxNxA):
  """``model.imagine``'s policy rollout with two probes: ``delta`` is added to the features the
  policy reads (and to nothing else), ``eps`` to the actions the dynamics read."""

  def imagine(cfg, params, start, key, *, policy, horizon):
    model = WorldModel(cfg)

    def body(latent, inp):
      k, d, e = inp
      ka, ks = jax.random.split(k)
      a = policy(latent.features("x") + d, ka) + e
      latent, _ = model.apply(params, latent, a, None, ks, True, method=WorldModel.step)
      return latent, latent

    x0 = dmdp.Latent(start.hx, start.sx)
    x_HxN = jax.lax.scan(body, x0, (jax.random.split(key, horizon), delta_HxNxF, eps_HxNxA))[1]
    return jax.tree.map(lambda v: jnp.swapaxes(v, 0, 1), x_HxN)  # batch-major, as imagine

  return imagine


def test_actor_reads_stopped_features_and_learns_through_the_dynamics(params, monkeypatch):
  """As the release (``get_action(previous_latent_state.detach())``) and Dreamer v1: the actor
  loss has exactly zero gradient w.r.t. the imagined features on their way into the actor (the
  only path of ``delta``), and a non-zero one w.r.t. every step's action through the dynamics,
  the denoised reward and the values of the next states (``eps``)."""
  batch = jax.tree.map(jnp.asarray, _batch(2, 3))
  start = dmdp.posterior_start(CFG, params["model"], batch, KEY)
  n, h = start.hx.shape[0], AC.horizon
  delta = jnp.zeros((h, n, CFG.x_deter + CFG.x_stoch))
  eps = jnp.zeros((h, n, CFG.action_dim))
  plain = dmdp.imagination_losses(CFG, AC, params, start, KEY)[0]

  def actor_loss(delta, eps):
    with monkeypatch.context() as m:
      m.setattr(wm_module, "imagine", _probed_imagine(delta, eps))
      return dmdp.imagination_losses(CFG, AC, params, start, KEY)[0]

  loss, (g_delta, g_eps) = jax.jit(jax.value_and_grad(actor_loss, argnums=(0, 1)))(delta, eps)
  np.testing.assert_allclose(loss, plain, rtol=1e-6)  # the probed rollout is the real one
  assert np.all(np.asarray(g_delta) == 0.0)
  per_step = np.abs(np.asarray(g_eps)).max(axis=(1, 2))
  print("max |d actor loss / d action| per imagined step:", per_step)
  assert np.all(per_step > 1e-6), per_step


# ---------------------------------------------------------------------------------------------
# acting


def test_policy_step_shapes_determinism_and_modes(params):
  b = 2
  obs = _batch(b, 2)["image"]
  state = dmdp.initial_policy_state(CFG, b)
  assert state.action.shape == (b, CFG.action_dim) and state.latent.hx.shape == (b, CFG.x_deter)
  a1, s1 = dmdp.policy_step(CFG, AC, params, state, obs[:, 0], KEY, True)
  a2, s2 = dmdp.policy_step(CFG, AC, params, state, obs[:, 0], KEY, True)
  a3, _ = dmdp.policy_step(CFG, AC, params, state, obs[:, 0], jax.random.key(5), True)
  assert a1.shape == (b, CFG.action_dim) and float(jnp.abs(a1).max()) <= 1.0
  np.testing.assert_array_equal(a1, a2)
  for u, v in zip(jax.tree.leaves(s1), jax.tree.leaves(s2)):
    np.testing.assert_array_equal(u, v)
  assert float(jnp.abs(a1 - a3).max()) > 0
  np.testing.assert_array_equal(s1.action, a1)  # the next step conditions on this action
  assert jax.tree.map(jnp.shape, s1) == jax.tree.map(jnp.shape, state)
  # eval: the mode at the new posterior
  ae, se = dmdp.policy_step(CFG, AC, params, s1, obs[:, 1], KEY, False)
  want = dmdp.mode_action(dmdp.actor_dist(CFG, AC, params["actor"], se.latent.features("x")))
  np.testing.assert_allclose(ae, want, rtol=1e-5, atol=1e-6)
  # the previous action enters the model step
  _, sb = dmdp.policy_step(CFG, AC, params, s1._replace(action=-s1.action), obs[:, 1], KEY, False)
  assert float(jnp.abs(sb.latent.hx - se.latent.hx).max()) > 1e-6
  # one environment: unbatched obs and state give the batched result of B = 1
  one = dmdp.initial_policy_state(CFG)
  au, su = dmdp.policy_step(CFG, AC, params, one, obs[0, 0], KEY, True)
  ab, sb1 = dmdp.policy_step(
    CFG, AC, params, dmdp.initial_policy_state(CFG, 1), obs[:1, 0], KEY, True
  )
  assert au.shape == (CFG.action_dim,) and su.latent.hx.shape == (CFG.x_deter,)
  np.testing.assert_allclose(au, ab[0], rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="obs must be"):
    dmdp.policy_step(CFG, AC, params, state, obs[:, 0, :8], KEY, True)


# ---------------------------------------------------------------------------------------------
# learning: the actor alone climbs the imagined return of a fixed model


def test_actor_learns_on_a_fixed_model(params):
  opt = optax.adam(3e-3)
  batch = jax.tree.map(jnp.asarray, _batch(4, 4))

  @jax.jit
  def train(params):
    start = dmdp.posterior_start(CFG, params["model"], batch, KEY)

    def actor_loss(actor_p):
      return dmdp.imagination_losses(CFG, AC, {**params, "actor": actor_p}, start, KEY)[0]

    def body(carry, _):
      p, s = carry
      loss, g = jax.value_and_grad(actor_loss)(p)
      u, s = opt.update(g, s, p)
      return (optax.apply_updates(p, u), s), loss

    return jax.lax.scan(body, (params["actor"], opt.init(params["actor"])), length=40)[1]

  losses = np.asarray(train(params))
  print("actor loss", losses[0], "->", losses[-1])
  assert losses[-1] < losses[0] - 0.1 * abs(losses[0]) - 1e-3, losses


# ---------------------------------------------------------------------------------------------
# data parallel: the run's update on 8 devices equals 1 device

_DEVICES_SCRIPT = r"""
import os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"  # before jax starts
import dataclasses
import jax
import numpy as np
from jaxprune import dmdp
from jaxprune.dmdp import agent_state, driver, run_config

assert jax.device_count() == 8
cfg = dataclasses.replace(run_config.small(env="reacher_easy"), batch=8, seq_len=5,
                          world_model=dmdp.tiny(), agent=dmdp.AgentConfig(
                              horizon=4, actor_hidden=16, actor_layers=2, value_hidden=16,
                              value_layers=2))
r = np.random.default_rng(0)
w = cfg.world_model
batches = {"image": r.integers(0, 256, (1, 8, 5, w.image_size, w.image_size, 3), np.uint8),
           "action": r.uniform(-1, 1, (1, 8, 5, w.action_dim)).astype(np.float32),
           "reward": r.normal(size=(1, 8, 5)).astype(np.float32)}
mesh8 = agent_state.batch_mesh(cfg.batch)
mesh1 = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                      devices=jax.devices()[:1])
assert mesh8.size == 8
state8 = agent_state.init_state(cfg, mesh8)
# a copy (device 0's buffers would be shared, and the 8-device dispatch donates them)
state1 = jax.tree.map(lambda v: v.copy(), state8)
replicated1 = jax.sharding.NamedSharding(mesh1, jax.sharding.PartitionSpec())
states = {1: jax.device_put(state1, replicated1),
          8: state8}
out = {}
for n, mesh in ((1, mesh1), (8, mesh8)):
  dispatch = driver.train_dispatch(cfg.world_model, cfg.agent, mesh)
  if n == 8:  # the batch axis (1 of K x B x ...) of image, action, reward is on "data"
    text = dispatch.lower(states[n], batches).as_text()
    assert text.count('{"data"}') + text.count("devices=[1,8") >= 3, text[:3000]
  state, m = dispatch(states[n], batches)
  assert all(len(v.sharding.device_set) == n for v in jax.tree.leaves(state.params))
  out[n] = jax.device_get((state.params, m))
(p1, m1), (p8, m8) = out[1], out[8]
np.testing.assert_allclose(m8["loss"], m1["loss"], rtol=1e-5)
worst = 0.0
for a, b in zip(jax.tree.leaves(p8), jax.tree.leaves(p1)):
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  worst = max(worst, float(np.abs(a - b).max()))
print("OK", len(jax.tree.leaves(p1)), "arrays, max |diff|", worst)
"""


@pytest.mark.slow  # 8 devices == 1 stays in the default run for the loop and k-means
def test_update_on_8_devices_equals_1_device():
  import subprocess
  import sys

  out = subprocess.run(
    [sys.executable, "-c", _DEVICES_SCRIPT], capture_output=True, text=True, timeout=600
  )
  assert out.returncode == 0 and "OK" in out.stdout, out.stdout[-3000:] + out.stderr[-3000:]
  print(out.stdout.strip())


# ---------------------------------------------------------------------------------------------
# the optional slow target value net (target_every > 0)

AC_T = AC.replace(target_every=3)


@pytest.mark.slow  # moved out of the default run (its 20-minute budget)
def test_slow_target_is_a_copy_refreshed_every_n_updates():
  params = dmdp.init_agent(CFG, AC_T, KEY)
  _close(params["value_target"], params["value"], rtol=0, atol=0)
  assert "value_target" not in dmdp.init_agent(CFG, AC, KEY)
  opt = dmdp.agent_optimizer(AC_T)
  state = opt.init(params)
  # gradients for every group (a made-up one for the target too: it must be ignored)
  grads = jax.tree.map(jnp.ones_like, params)
  step = jax.jit(lambda p, s: opt.update(grads, s, p))
  values, targets = [], []
  for _ in range(6):
    upd, state = step(params, state)
    params = optax.apply_updates(params, upd)
    values.append(params["value"])
    targets.append(params["value_target"])
  first = dmdp.init_agent(CFG, AC_T, KEY)["value"]
  _close(targets[0], first, rtol=0, atol=0)  # updates 1, 2: unchanged
  _close(targets[1], first, rtol=0, atol=0)
  _close(targets[2], values[2], rtol=1e-6, atol=1e-7)  # update 3: the value net's new params
  _close(targets[3], values[2], rtol=1e-6, atol=1e-7)
  _close(targets[5], values[5], rtol=1e-6, atol=1e-7)  # update 6
  leaves = lambda t: np.concatenate([np.ravel(v) for v in jax.tree.leaves(t)])
  assert not np.allclose(leaves(values[5]), leaves(values[2]))  # the value net did move


@pytest.mark.slow  # 52 s: the default run's 20-minute budget (in CI's slow run)
def test_returns_bootstrap_from_the_target_net_when_it_is_on():
  params = dmdp.init_agent(CFG, AC_T, KEY)
  start = dmdp.Latent(
    jnp.asarray(np.random.default_rng(1).normal(size=(6, CFG.x_deter)), jnp.float32),
    jnp.asarray(np.random.default_rng(2).normal(size=(6, CFG.x_stoch)), jnp.float32),
  )
  losses = jax.jit(
    lambda p: dmdp.agent.imagination_losses(CFG, AC_T, p, start, jax.random.key(3))[2]
  )
  shift = lambda tree: jax.tree.map(lambda v: v + 0.5, tree)
  base = losses(params)
  moved_target = losses({**params, "value_target": shift(params["value_target"])})
  moved_value = losses({**params, "value": shift(params["value"])})
  # the returns read the target net only; the value loss's prediction reads the value net
  assert float(moved_target["imag_return"]) != pytest.approx(float(base["imag_return"]))
  assert float(moved_value["imag_return"]) == pytest.approx(float(base["imag_return"]))
  assert float(moved_value["imag_value"]) != pytest.approx(float(base["imag_value"]))
  # and no gradient reaches the target's parameters
  g = jax.grad(lambda p: sum(dmdp.agent.imagination_losses(CFG, AC_T, p, start, KEY)[:2]))(params)
  assert all(float(jnp.max(jnp.abs(v))) == 0.0 for v in jax.tree.leaves(g["value_target"]))
