"""The on-device agent loop (jaxprune.dmdp.device_loop) on a toy JAX environment: the replay holds
exactly what a Python loop over the same environment and actions gives, sampling reads finished
episodes only and contiguous chunks, and a seed-vmapped iteration equals each seed run alone."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import dmdp
from jaxprune.dmdp import device_loop as dl

CFG = dmdp.tiny()  # 16 x 16 images, 2 actions
AC = dmdp.AgentConfig(horizon=3, actor_hidden=16, actor_layers=2, value_hidden=16, value_layers=2)


@dataclasses.dataclass(frozen=True)
class PointEnv:
  """A point on a 16 x 16 plane moved by the action; the image shows it as a bright square;
  reward -|p|, clean reward the same plus 1; ``params`` is a brightness."""

  action_dim: int = 2
  episode_steps: int = 6
  observation_shape: tuple = (16, 16, 3)

  def _obs(self, params, p):
    yy, xx = jnp.mgrid[:16, :16]
    c = jnp.round(7.5 + 6 * jnp.tanh(p))
    on = (jnp.abs(yy - c[0]) <= 1) & (jnp.abs(xx - c[1]) <= 1)
    img = jnp.where(on, params, 20).astype(jnp.uint8)
    return jnp.stack([img, img // 2, 255 - img], -1)

  def reset(self, params, key):
    p = jax.random.normal(key, (2,))
    return p, self._obs(params, p)

  def step(self, params, state, action):
    p = state + 0.3 * action
    r = -jnp.linalg.norm(p)
    return p, self._obs(params, p), r, r + 1.0


ENV = PointEnv()
PARAMS = jnp.asarray(250, jnp.int32)
SPEC = dl.LoopSpec(
  wm_cfg=CFG, ag_cfg=AC, num_envs=3, collect_steps=3, updates=2, batch=4, seq_len=4, slots=3
)


@pytest.fixture(scope="module")
def fns():
  init = jax.jit(functools.partial(dl.init_loop, SPEC, ENV))
  it = {
    (r, l): jax.jit(functools.partial(dl.iteration, SPEC, ENV, random=r, learn=l))
    for r, l in [(True, False), (False, True)]
  }
  start = jax.jit(functools.partial(dl.start_episodes, SPEC, ENV))
  return init, it, start


def _episode(fns, key, *, random=True):
  init, it, start = fns
  s = init(PARAMS, key)
  for _ in range(ENV.episode_steps // SPEC.collect_steps):
    s, _ = it[True, False](PARAMS, s)
  return s


@pytest.mark.slow  # ~40 s of compiling the loop on 2 cores
def test_replay_holds_what_a_python_loop_gives(fns):
  s = _episode(fns, jax.random.key(1))
  rep = jax.device_get(s.replay)
  assert int(rep.started) == 1 and int(s.t) == ENV.episode_steps
  slot = 0
  # the reset observation, then each action replayed through env.step one environment at a time
  for n in range(SPEC.num_envs):
    k = jax.random.split(jax.random.fold_in(jax.random.fold_in(s.key, 1), 1), SPEC.num_envs)[n]
    p, obs = ENV.reset(PARAMS, k)
    np.testing.assert_array_equal(rep.image[slot, n, 0], obs)
    assert rep.reward[slot, n, 0] == 0 and not rep.action[slot, n, 0].any()
    total = 0.0
    for t in range(1, ENV.episode_steps + 1):
      a = rep.action[slot, n, t]
      assert np.all(np.abs(a) <= 1) and a.any()
      p, obs, r, _ = ENV.step(PARAMS, p, jnp.asarray(a))
      np.testing.assert_array_equal(rep.image[slot, n, t], obs)
      np.testing.assert_allclose(rep.reward[slot, n, t], r, rtol=1e-6)
      total += float(r)
    np.testing.assert_allclose(s.ret_N[n], total, rtol=1e-5)
    np.testing.assert_allclose(s.clean_N[n], total + ENV.episode_steps, rtol=1e-5)


@pytest.mark.slow  # ~40 s of compiling the loop on 2 cores
def test_sampling_reads_finished_episodes_in_contiguous_chunks(fns):
  init, it, start = fns
  s = _episode(fns, jax.random.key(2))
  s = start(PARAMS, s)  # episode 2 begins: episode 1 is finished, slot 1 being written
  # mark every row with (slot, env, t) in the reward to read back what was sampled
  e, n, rows = s.replay.reward.shape
  code = jnp.arange(e)[:, None, None] * 1000 + jnp.arange(n)[None, :, None] * 100
  code = code + jnp.arange(rows)[None, None, :]
  rep = s.replay.replace(reward=code.astype(jnp.float32))
  b = dl.replay_sample(rep, jax.random.key(0), batch=256, length=4)
  r = np.asarray(b["reward"]).astype(int)
  assert b["image"].shape == (256, 4, 16, 16, 3) and b["action"].shape == (256, 4, 2)
  assert (r // 1000 == 0).all()  # slot 0 only: the episode in progress (slot 1) is never read
  assert (np.diff(r, axis=1) == 1).all()  # consecutive rows of one episode
  starts = r[:, 0] % 100
  assert starts.min() == 0 and starts.max() == rows - 4  # every start is reachable
  assert set(r[:, 0] // 100 % 10) == set(range(n))  # every environment
  # the image rows are the ones the codes name
  full = np.asarray(s.replay.image)
  i = 7
  sl, en, t0 = r[i, 0] // 1000, r[i, 0] // 100 % 10, r[i, 0] % 100
  np.testing.assert_array_equal(b["image"][i], full[sl, en, t0 : t0 + 4])


@pytest.mark.slow  # ~40 s of compiling the loop on 2 cores
def test_ring_replay_wraps_and_keeps_the_newest(fns):
  init, it, start = fns
  s = _episode(fns, jax.random.key(3))
  for _ in range(SPEC.slots + 1):  # more episodes than slots
    s = start(PARAMS, s)
  assert int(s.replay.started) == SPEC.slots + 2
  e = SPEC.slots
  cur = (int(s.replay.started) - 1) % e
  rep = s.replay.replace(
    reward=jnp.broadcast_to(jnp.arange(e)[:, None, None], s.replay.reward.shape)
  )
  r = np.asarray(dl.replay_sample(rep, jax.random.key(1), batch=512, length=2)["reward"])
  assert cur not in set(r[:, 0].astype(int)) and len(set(r[:, 0].astype(int))) == e - 1


@pytest.mark.slow
def test_learning_iteration_runs_and_is_finite(fns):
  init, it, start = fns
  s = start(PARAMS, _episode(fns, jax.random.key(4)))
  s2, m = it[False, True](PARAMS, s)
  assert int(s2.train.step) == SPEC.updates and m["loss"].shape == (SPEC.updates,)
  assert np.isfinite(np.asarray(m["loss"])).all()
  assert int(s2.t) == SPEC.collect_steps
  # the policy acted: actions within [-1, 1], not all equal across environments
  a = np.asarray(s2.replay.action[1, :, 1 : 1 + SPEC.collect_steps])
  assert np.all(np.abs(a) <= 1) and np.ptp(a[:, 0, 0]) > 0
  changed = jax.tree_util.tree_flatten_with_path(
    jax.tree.map(lambda x, y: bool(jnp.any(x != y)), s.train.params, s2.train.params)
  )[0]
  same = [jax.tree_util.keystr(k) for k, v in changed if not v]
  # the priors get no gradient while the KL is under the free nats (a fresh model's is)
  assert all("_prior" in k for k in same), same


@pytest.mark.slow
def test_seed_vmapped_iteration_equals_each_seed_alone(fns):
  init, it, start = fns
  keys = jnp.stack([jax.random.key(10), jax.random.key(11)])
  vinit = jax.jit(jax.vmap(functools.partial(dl.init_loop, SPEC, ENV), in_axes=(None, 0)))
  viter = jax.jit(dl.seeds_fn(functools.partial(dl.iteration, SPEC, ENV, random=False, learn=True)))
  vs = vinit(PARAMS, keys)
  vs, vm = viter(PARAMS, vs)
  for i in range(2):
    s1 = init(PARAMS, keys[i])
    s1, m1 = it[False, True](PARAMS, s1)
    np.testing.assert_allclose(vm["loss"][i], m1["loss"], rtol=2e-4, atol=1e-5)
    np.testing.assert_array_equal(vs.replay.image[i], s1.replay.image)
    for a, b in zip(jax.tree.leaves(vs.train.params), jax.tree.leaves(s1.train.params)):
      np.testing.assert_allclose(a[i], b, rtol=2e-3, atol=2e-5)
