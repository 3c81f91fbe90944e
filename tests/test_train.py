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

from jaxprune.core import run as run_lib
from jaxprune.core.checkpoint import CheckpointError
from jaxprune.core.loop import (
  create_state,
  make_data_step,
  make_update,
  run_steps,
  to_device,
)
from jaxprune.core.run import Dispatcher, NonFiniteError, Run, check_finite_steps, fit

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


def _fit_kw(**kw):
  return {"num_steps": 12, "steps_per_dispatch": 4, "progress": False, **kw}


def test_fit_leaves_the_callers_params_and_state_usable(tmp_path):
  # create_state shares params' arrays and fit donates the state it trains: fit must donate its
  # own copy, or the caller's params (and this state) would be deleted by the first dispatch
  opt = optax.adam(0.05)
  step = make_data_step(make_update(linear_loss, opt), batch_size=16, preprocess=preprocess)
  data = to_device(*tiny_data())
  params = {"w": 0.01 * jax.random.normal(jax.random.key(0), (16, 3)), "b": jnp.zeros(3)}
  w0 = np.asarray(params["w"]).copy()
  state = create_state(params, opt, jax.random.key(1))
  first, _ = fit(step, state, data, **_fit_kw())
  np.testing.assert_array_equal(np.asarray(params["w"]), w0)  # still there, unchanged
  assert int(state.step) == 0 and np.asarray(state.opt_state[0].mu["w"]).sum() == 0
  second, _ = fit(step, state, data, **_fit_kw())  # the same init again: the same result
  third, _ = fit(step, create_state(params, opt, jax.random.key(1)), data, **_fit_kw())
  fourth, _ = fit(step, state, data, workdir=str(tmp_path), **_fit_kw())  # under a Run too
  for other in (second, third, fourth):
    for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(other.params)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.array_equal(np.asarray(first.params["w"]), w0)  # it did train
  # a resumed fit (state restored from the checkpoint) leaves the caller's state alone as well
  fit(step, state, data, workdir=str(tmp_path), **_fit_kw(num_steps=16))
  np.testing.assert_array_equal(np.asarray(state.params["w"]), w0)


def test_fit_killed_with_default_arguments_resumes_past_step_0(tmp_path, monkeypatch):
  # the default checkpoints are timed (every CKPT_SECONDS of wall time): a clock that advances
  # 25 s per reading makes a run of a few dispatches as long as a real one of minutes
  clock = iter(range(0, 10**6, 25))
  monkeypatch.setattr(run_lib, "_now", lambda: float(next(clock)))
  assert run_lib.CKPT_SECONDS == 60.0
  opt = optax.adam(0.05)
  step = make_data_step(make_update(linear_loss, opt), batch_size=16, preprocess=preprocess)
  data = to_device(*tiny_data())
  wd = str(tmp_path / "run")
  # "killed" after step 70 of 100 (10 steps per dispatch by default): no final checkpoint
  part, _ = fit(step, tiny_state(opt), data, num_steps=100, workdir=wd, stop_at=70, progress=False)
  assert int(part.step) == 70
  with Run(wd) as r:
    saved = r.checkpoint_steps()
  # readings: 0 at the start, then one per dispatch boundary and one after each save: 25 (step
  # 10), 50, 75 (step 30: saved, 100), 125, 150, 175 (step 60: saved, 200), 225 (step 70)
  assert saved == [30, 60]
  resumed, rec = fit(step, tiny_state(opt), data, num_steps=100, workdir=wd, progress=False)
  assert rec[0]["step"] == 61  # it went on from step 60, not from 0
  full, _ = fit(step, tiny_state(opt), data, num_steps=100, progress=False)
  for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  rows = [json.loads(l)["step"] for l in open(os.path.join(wd, "metrics.jsonl"))]
  assert rows == list(range(1, 101))


def test_timed_checkpoints_on_the_real_clock(tmp_path):
  opt = optax.sgd(0.1)
  step = make_data_step(make_update(linear_loss, opt), batch_size=16, preprocess=preprocess)
  wd = str(tmp_path)
  # every dispatch boundary is past a 1 ns interval: a save after each dispatch (2 kept)
  fit(step, tiny_state(opt), to_device(*tiny_data()), workdir=wd, ckpt_seconds=1e-9, **_fit_kw())
  with Run(wd) as r:
    assert r.checkpoint_steps() == [8, 12]
  with pytest.raises(ValueError, match="ckpt_seconds"):
    fit(step, tiny_state(opt), to_device(*tiny_data()), ckpt_seconds=0, **_fit_kw())


def test_float_features_train_through_the_data_step():
  """sklearn's digits as float32 rows (N x 64) through to_device + make_data_step + fit."""
  from sklearn.datasets import load_digits

  d = load_digits()
  x = (d.data / 16.0).astype(np.float32)
  y = d.target

  def loss_fn(params, batch, key):
    assert batch["image"].shape == (64, 64) and batch["image"].dtype == jnp.float32
    assert batch["label"].shape == (64,) and batch["index"].shape == (64,)
    logits = batch["image"] @ params["w"] + params["b"]
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    # the batch is the dataset's rows at batch["index"], unchanged (no preprocessing for floats)
    return loss, {"rows_match": jnp.all(batch["image"] == data.images[batch["index"]])}

  data = to_device(x, y)
  assert data.images.dtype == jnp.float32 and data.images.shape == (1797, 64)
  opt = optax.adam(0.02)
  step = make_data_step(make_update(loss_fn, opt), batch_size=64)  # default preprocess
  params = {"w": jnp.zeros((64, 10)), "b": jnp.zeros(10)}
  state, rec = fit(
    step, create_state(params, opt, jax.random.key(0)), data, num_steps=150, progress=False
  )
  assert all(r["rows_match"] == 1.0 for r in rec)
  assert np.mean([r["loss"] for r in rec[-10:]]) < 0.5 * np.mean([r["loss"] for r in rec[:10]])
  # the full-data loss and accuracy, computed with numpy from the trained params
  logits = x @ np.asarray(state.params["w"]) + np.asarray(state.params["b"])
  logp = logits - logits.max(1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(1, keepdims=True))
  assert -logp[np.arange(len(y)), y].mean() < 0.5 * np.log(10)
  assert (logits.argmax(1) == y).mean() > 0.9
  # float64 features are stored as float32, and train to the same params
  state64, _ = fit(
    step,
    create_state(params, opt, jax.random.key(0)),
    to_device(x.astype(np.float64), y),
    num_steps=150,
    progress=False,
  )
  np.testing.assert_array_equal(np.asarray(state64.params["w"]), np.asarray(state.params["w"]))


def test_default_preprocess_scales_uint8_images():
  opt = optax.adam(0.05)
  data = to_device(*tiny_data())
  by_hand = make_data_step(make_update(linear_loss, opt), batch_size=16, preprocess=preprocess)
  default = make_data_step(make_update(linear_loss, opt), batch_size=16)
  a, _ = fit(by_hand, tiny_state(opt), data, **_fit_kw())
  b, _ = fit(default, tiny_state(opt), data, **_fit_kw())
  np.testing.assert_array_equal(np.asarray(a.params["w"]), np.asarray(b.params["w"]))


@pytest.mark.parametrize(
  "features,labels,needle",
  [
    (np.zeros((4, 3), np.int16), np.zeros(4, int), "cast integer features to float32"),
    (np.array([[0.0, np.nan]] * 4), np.zeros(4, int), "4 NaN or inf"),
    (np.zeros((4, 3), np.float32), np.zeros(5, int), "labels 5|labels \\(5,\\)"),
    (np.zeros((4, 3), np.float32), np.zeros(4), "labels must be integers"),
  ],
)
def test_to_device_refuses_bad_input(features, labels, needle):
  with pytest.raises(ValueError, match=needle):
    to_device(features, labels)


def test_dispatcher_data_source_per_dispatch_equals_a_python_loop():
  # the agent's way: batches stacked K x B x ... sampled on the host for every dispatch
  opt = optax.sgd(0.1)
  update = make_update(linear_loss, opt)
  images, labels = tiny_data()
  x = images.reshape(-1, 16).astype(np.float32) / 255.0
  dispatch = jax.jit(lambda s, b: run_steps(update, s, b), donate_argnums=0)
  rng = np.random.default_rng(0)
  drawn = []

  def sample(k):  # a data source: a fresh draw per dispatch
    idx = rng.integers(0, len(x), (k, 8))
    drawn.append(idx)
    return ({"image": x[idx], "label": labels[idx]},)

  d = Dispatcher(dispatch)
  state = tiny_state(opt)
  ends = []
  for at, end, state in d.run(state, start=0, stop=10, per_dispatch=4, args=sample):
    ends.append((at, end))
  assert ends == [(0, 4), (4, 8), (8, 10)] and d.num_pending == 3
  fetched = d.fetch()
  assert d.num_pending == 0 and [at for at, _ in fetched] == [0, 4, 8]
  s = tiny_state(opt)
  losses = []
  for idx in np.concatenate(drawn):
    s, m = jax.jit(update)(s, {"image": x[idx], "label": labels[idx]})
    losses.append(float(m["loss"]))
  np.testing.assert_allclose(np.concatenate([m["loss"] for _, m in fetched]), losses, rtol=1e-5)
  np.testing.assert_allclose(state.params["w"], s.params["w"], rtol=1e-5, atol=1e-7)


def test_dispatcher_nan_guard_then_extra_checks_in_order():
  fetched = [
    (10, {"a": np.array([1.0, 2.0]), "b": np.array([[1.0, 1.0], [1.0, 1.0]])}),
    (12, {"a": np.array([3.0, 4.0]), "b": np.array([[1.0, np.inf], [np.nan, 1.0]])}),
  ]
  check_finite_steps(fetched[:1], lambda n: f"step {n}")
  # the first bad step is 13 (dispatch at 12, row 0); a trailing (model) axis counts as one step
  with pytest.raises(NonFiniteError, match=r"non-finite b at update 13 \(phase 2\)"):
    check_finite_steps(fetched, lambda n: f"update {n} (phase 2)")

  class TooBig(Exception):
    pass

  seen = []

  def check(m, at):  # an extra per-record guard, called per dispatch in order
    seen.append(at)
    if (m["a"] > 2.5).any():
      raise TooBig(f"a = {m['a'].max()} after {at}")

  pending = iter(fetched + fetched[:1])
  d = Dispatcher(lambda state, _: (state, dict(next(pending)[1])), checks=[check])
  d.issue(0, 10, None)
  assert [at for at, _ in d.fetch()] == [10]  # finite, and the check let it pass
  assert seen == [10]
  d.issue(0, 12, None)
  d.issue(0, 14, None)  # never fetched: keep_newest leaves it
  with pytest.raises(NonFiniteError, match="at step 13"):  # the NaN guard comes first
    d.fetch(keep_newest=True)
  assert d.num_pending == 1 and seen == [10]


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
