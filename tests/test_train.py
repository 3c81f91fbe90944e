"""The shared loop: updates, scan, resume, checkpoints, NaN guard, sharding."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxprune.core.checkpoint import CheckpointError
from jaxprune.core.loop import (
  create_state,
  make_data_step,
  make_update,
  run_steps,
  to_device,
)
from jaxprune.core.run import NonFiniteError, fit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def linear_loss(params, batch, key):
  x = batch["image"].reshape(batch["image"].shape[0], -1)
  logits = x @ params["w"] + params["b"]
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
  return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}


def tiny_data(n=64, seed=0):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 3, n)
  images = (rng.integers(0, 60, (n, 4, 4, 1)) + 60 * labels[:, None, None, None]).astype(np.uint8)
  return images, labels


def tiny_state(opt, seed=0):
  k = jax.random.key(seed)
  params = {"w": 0.01 * jax.random.normal(k, (16, 3)), "b": jnp.zeros(3)}
  return create_state(params, opt, jax.random.key(seed + 1))


def preprocess(images, key):
  return images.astype(jnp.float32) / 255.0


def test_one_update_equals_hand_computed_sgd_and_adam_step():
  # quadratic loss 0.5 * ||w - t||^2 has gradient w - t
  t = jnp.array([1.0, -2.0, 3.0])
  loss = lambda p, b, k: (0.5 * jnp.sum((p["w"] - t) ** 2), {})
  w0 = jnp.array([0.5, 0.5, 0.5])
  st = create_state({"w": w0}, optax.sgd(0.1), jax.random.key(0))
  st2, m = make_update(loss, optax.sgd(0.1))(st, None)
  np.testing.assert_allclose(st2.params["w"], w0 - 0.1 * (w0 - t), rtol=1e-6)
  assert int(st2.step) == 1
  np.testing.assert_allclose(m["loss"], 0.5 * np.sum((w0 - t) ** 2), rtol=1e-6)
  np.testing.assert_allclose(m["grad_norm"], np.linalg.norm(w0 - t), rtol=1e-6)
  # Adam's first step moves every coordinate by lr * g / (|g| + eps) = lr * sign(g)
  st = create_state({"w": w0}, optax.adam(0.01), jax.random.key(0))
  st2, _ = make_update(loss, optax.adam(0.01))(st, None)
  np.testing.assert_allclose(st2.params["w"], w0 - 0.01 * np.sign(w0 - t), rtol=1e-5)


def test_scanned_equals_single_updates():
  opt = optax.adam(0.05)
  update = make_update(linear_loss, opt)
  images, labels = tiny_data()
  batches = {
    "image": jnp.asarray(images[:40].reshape(5, 8, 4, 4, 1) / 255.0, jnp.float32),
    "label": jnp.asarray(labels[:40].reshape(5, 8)),
  }
  s_scan, m_scan = jax.jit(lambda s, b: run_steps(update, s, b))(tiny_state(opt), batches)
  s = tiny_state(opt)
  losses = []
  for i in range(5):
    s, m = jax.jit(update)(s, jax.tree.map(lambda a: a[i], batches))
    losses.append(float(m["loss"]))
  np.testing.assert_allclose(s_scan.params["w"], s.params["w"], rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(m_scan["loss"], losses, rtol=1e-5)
  assert int(s_scan.step) == 5


def test_data_step_epochs_are_permutations():
  opt = optax.sgd(0.0)
  step = make_data_step(make_update(linear_loss, opt), batch_size=8, preprocess=preprocess)
  images, labels = tiny_data(n=40)
  data = to_device(images, labels)
  seen = []
  s = tiny_state(opt)
  for _ in range(10):  # 2 epochs of 5 steps
    s2, _ = step(s, data)
    from jaxprune.core.loop import epoch_batch_indices

    seen.append(np.asarray(epoch_batch_indices(s.key, s.step, n=40, batch_size=8)))
    s = s2
  e1, e2 = np.concatenate(seen[:5]), np.concatenate(seen[5:])
  assert sorted(e1) == list(range(40)) and sorted(e2) == list(range(40))
  assert not np.array_equal(e1, e2)


def test_fit_learns_and_writes_metrics(tmp_path):
  opt = optax.adam(0.05)
  step = make_data_step(make_update(linear_loss, opt), batch_size=16, preprocess=preprocess)
  images, labels = tiny_data()
  state, rec = fit(
    step,
    tiny_state(opt),
    to_device(images, labels),
    num_steps=40,
    workdir=str(tmp_path),
    steps_per_dispatch=4,
    log_every=8,
    progress=False,
  )
  assert int(state.step) == 40
  rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert [r["step"] for r in rows] == list(range(1, 41))
  assert rows[-1]["loss"] < rows[0]["loss"]


def test_resume_equals_uninterrupted(tmp_path):
  opt = optax.adam(0.05)
  step = make_data_step(make_update(linear_loss, opt), batch_size=16, preprocess=preprocess)
  images, labels = tiny_data()
  data = to_device(images, labels)
  kw = dict(num_steps=24, steps_per_dispatch=3, log_every=3, ckpt_every=6, progress=False)
  full, _ = fit(step, tiny_state(opt), data, workdir=str(tmp_path / "a"), **kw)
  # "killed" at step 15: the last checkpoint is step 12, steps 13-15 are lost and redone
  part, _ = fit(step, tiny_state(opt), data, workdir=str(tmp_path / "b"), stop_at=15, **kw)
  assert int(part.step) == 15
  resumed, _ = fit(step, tiny_state(opt), data, workdir=str(tmp_path / "b"), **kw)
  assert int(resumed.step) == 24
  for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  rows = [json.loads(l)["step"] for l in open(tmp_path / "b" / "metrics.jsonl")]
  assert rows == list(range(1, 25))  # no duplicated steps after the resume


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
  opt = optax.adam(0.05)
  step = make_data_step(make_update(linear_loss, opt), batch_size=16, preprocess=preprocess)
  data = to_device(*tiny_data())
  fit(
    step,
    tiny_state(opt),
    data,
    num_steps=6,
    workdir=str(tmp_path),
    ckpt_every=3,
    steps_per_dispatch=3,
    progress=False,
  )
  ck = tmp_path / "checkpoints" / "6"
  for root, _, files in os.walk(ck):
    for f in files:
      p = os.path.join(root, f)
      with open(p, "r+b") as fh:
        fh.truncate(max(0, os.path.getsize(p) // 3))
  with pytest.raises(CheckpointError, match="corrupt"):
    fit(step, tiny_state(opt), data, num_steps=9, workdir=str(tmp_path), progress=False)


def test_nan_stops_the_run_naming_the_step(tmp_path):
  def loss(params, batch, key):
    l, m = linear_loss(params, batch, key)
    # finite for the first 6 steps, then NaN
    return l, {**m, "probe": jnp.where(params["count"] >= 6.5, jnp.nan, 1.0)}

  count_opt = optax.multi_transform(
    {"a": optax.sgd(0.0), "c": optax.sgd(-1.0)}, {"w": "a", "b": "a", "count": "c"}
  )
  params = {"w": jnp.zeros((16, 3)), "b": jnp.zeros(3), "count": jnp.float32(0)}

  def loss2(p, b, k):  # count grows by one per step (gradient 1, lr -1)
    l, m = loss(p, b, k)
    return l + p["count"] - jax.lax.stop_gradient(p["count"]), m

  step = make_data_step(make_update(loss2, count_opt), batch_size=16, preprocess=preprocess)
  st = create_state(params, count_opt, jax.random.key(0))
  with pytest.raises(NonFiniteError, match="at step 8"):
    fit(
      step,
      st,
      to_device(*tiny_data()),
      num_steps=20,
      steps_per_dispatch=5,
      log_every=10,
      progress=False,
    )


def test_bad_batch_size_raises():
  with pytest.raises(ValueError, match="larger than the dataset"):
    from jaxprune.core.loop import steps_per_epoch

    steps_per_epoch(10, 16)


PROG = r"""
import json, jax, jax.numpy as jnp, numpy as np, optax
from tests.test_train import linear_loss, tiny_data, tiny_state, preprocess
from jaxprune.core.sharding import data_mesh
from jaxprune.core.loop import make_data_step, make_update, to_device
from jaxprune.core.run import fit
assert jax.device_count() == 8
out = {}
for n_dev in (1, 8):
  mesh = data_mesh(n_dev)
  opt = optax.adam(0.05)
  step = make_data_step(make_update(linear_loss, opt), batch_size=16, preprocess=preprocess,
                        mesh=mesh)
  s, _ = fit(step, tiny_state(opt), to_device(*tiny_data(), mesh=mesh), num_steps=12,
             steps_per_dispatch=4, mesh=mesh, progress=False)
  out[n_dev] = np.asarray(s.params["w"]).tolist()
print(json.dumps(out))
"""


def test_eight_devices_equal_one():
  env = dict(
    os.environ,
    XLA_FLAGS="--xla_force_host_platform_device_count=8",
    JAX_PLATFORMS="cpu",
    PYTHONPATH=ROOT,
  )
  r = subprocess.run(
    [sys.executable, "-c", PROG], capture_output=True, text=True, env=env, timeout=600
  )
  assert r.returncode == 0, r.stderr[-3000:]
  out = json.loads(r.stdout.strip().splitlines()[-1])
  np.testing.assert_allclose(out["1"], out["8"], rtol=1e-5, atol=1e-6)
  assert np.abs(np.asarray(out["1"])).max() > 0.05  # it trained
