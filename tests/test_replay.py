"""Episode replay: chunks stay inside episodes and follow the batch convention; eviction;
save / load round trip; clear errors."""

import os

import numpy as np
import pytest

from jaxprune.dmdp.replay import ReplayBuffer

OBS = (2, 2, 3)  # pixels: channel 0 = episode id, channel 1 = step index, channel 2 = 7
A = 2


def _episode(ep, t):
  """Env layout: o_0..o_T encode (ep, i); a_i = (ep, i); r_{i+1} = 100 ep + i + 1."""
  obs = np.zeros((t + 1, *OBS), np.uint8)
  obs[..., 0], obs[..., 2] = ep, 7
  obs[..., 1] = np.arange(t + 1)[:, None, None]
  act = np.stack([np.full(t, ep), np.arange(t)], -1).astype(np.float32)
  rew = (100 * ep + np.arange(1, t + 1)).astype(np.float32)
  return obs, act, rew


def _add_stepwise(buf, ep, t, finish=True):
  obs, act, rew = _episode(ep, t)
  buf.add(obs[0])
  for i in range(t):
    buf.add(obs[i + 1], act[i], rew[i], done=finish and i == t - 1)


def _check_chunks(batch, length):
  img, act, rew = batch["image"], batch["action"], batch["reward"]
  assert img.dtype == np.uint8 and act.dtype == rew.dtype == np.float32
  assert img.shape[1:] == (length, *OBS) and act.shape[1:] == (length, A)
  assert rew.shape[1:] == (length,)
  ep, step = img[..., 0, 0, 0].astype(int), img[..., 0, 0, 1].astype(int)  # B x L
  assert np.all(img[..., 2] == 7)
  assert np.all(ep == ep[:, :1])  # one episode per chunk
  assert np.all(np.diff(step, axis=1) == 1)  # consecutive steps
  # convention: action[:, t] = a_{t-1} (zeros at an episode's first step), reward[:, t] = r_t
  first = step == 0
  np.testing.assert_array_equal(act[..., 0], np.where(first, 0, ep))
  np.testing.assert_array_equal(act[..., 1], np.where(first, 0, step - 1))
  np.testing.assert_array_equal(rew, np.where(first, 0, 100 * ep + step))
  return ep, step


def test_chunks_never_cross_episodes_and_follow_the_convention():
  buf = ReplayBuffer(capacity=1000, obs_shape=OBS, action_dim=A, seed=1)
  lengths = {0: 9, 1: 3, 2: 14, 3: 6, 4: 2}
  for ep, t in lengths.items():
    if ep % 2:
      buf.add_episode(*_episode(ep, t))
    else:
      _add_stepwise(buf, ep, t)
  _add_stepwise(buf, 5, 20, finish=False)  # in progress: never sampled
  assert buf.num_episodes == 5 and buf.num_steps == sum(lengths.values())
  assert buf.current_length == 20 and buf.total_steps == sum(lengths.values()) + 20
  length = 5
  batch = buf.sample(400, length)
  ep, step = _check_chunks(batch, length)
  # only episodes with >= length observations, every valid start, roughly uniformly
  starts = {(e, s) for e, s in zip(ep[:, 0], step[:, 0])}
  valid = {(e, s) for e, t in lengths.items() for s in range(t + 2 - length)}
  assert starts == valid
  counts = np.bincount([sorted(valid).index((e, s)) for e, s in zip(ep[:, 0], step[:, 0])])
  assert counts.min() > 400 / len(valid) / 3
  stacked = buf.sample(3, 4, num_batches=6)
  assert stacked["image"].shape == (6, 3, 4, *OBS) and stacked["reward"].shape == (6, 3, 4)
  _check_chunks({k: v.reshape(18, *v.shape[2:]) for k, v in stacked.items()}, 4)
  # whole episodes, with the first step
  full = buf.sample(20, 15)
  assert np.all(full["image"][:, :, 0, 0, 0] == 2)
  _check_chunks(full, 15)


def test_eviction_drops_the_oldest_episodes():
  buf = ReplayBuffer(capacity=25, obs_shape=OBS, action_dim=A)
  for ep in range(3):
    buf.add_episode(*_episode(ep, 10))
  assert buf.episode_ids == [1, 2] and buf.num_steps == 20 and buf.total_episodes == 3
  _add_stepwise(buf, 3, 5)
  assert buf.episode_ids == [1, 2, 3] and buf.num_steps == 25
  buf.add_episode(*_episode(4, 1))
  assert buf.episode_ids == [2, 3, 4] and buf.num_steps == 16 and buf.total_steps == 36
  assert set(buf.sample(200, 2)["image"][:, 0, 0, 0, 0]) == {2, 3, 4}
  ep = buf.episode(0)
  assert ep["image"].shape == (11, *OBS) and not ep["image"].flags.writeable


def test_save_load_round_trip(tmp_path):
  path = str(tmp_path / "replay" / "buffer.npz")
  buf = ReplayBuffer(capacity=40, obs_shape=OBS, action_dim=A, seed=3)
  for ep in range(4):
    _add_stepwise(buf, ep, 8 + ep)
  _add_stepwise(buf, 4, 3, finish=False)
  buf.sample(5, 4)  # advance the generator
  buf.save(path)
  assert not [p for p in os.listdir(tmp_path / "replay") if p.startswith(".tmp")]
  back = ReplayBuffer.load(path)
  for name in (
    "capacity",
    "obs_shape",
    "action_dim",
    "num_episodes",
    "num_steps",
    "total_steps",
    "total_episodes",
    "current_length",
    "episode_ids",
  ):
    assert getattr(back, name) == getattr(buf, name), name
  # same data and generator state: identical samples, also after finishing the open episode
  for b in (buf, back):
    obs, act, rew = _episode(4, 6)
    for i in range(3, 6):
      b.add(obs[i + 1], act[i], rew[i], done=i == 5)
  assert back.episode_ids == buf.episode_ids == [1, 2, 3, 4]
  s1, s2 = buf.sample(32, 5), back.sample(32, 5)
  for k in s1:
    np.testing.assert_array_equal(s1[k], s2[k])
  _check_chunks(s2, 5)
  # an empty buffer round-trips too
  ReplayBuffer(capacity=5, obs_shape=OBS, action_dim=A).save(path)
  empty = ReplayBuffer.load(path)
  assert empty.num_episodes == 0 and empty.current_length == 0
  # an episode opened by its first observation only: still open after loading
  just_reset = ReplayBuffer(capacity=5, obs_shape=OBS, action_dim=A)
  obs, act, rew = _episode(0, 2)
  just_reset.add(obs[0])
  just_reset.save(path)
  back = ReplayBuffer.load(path)
  back.add(obs[1], act[0], rew[0])
  back.add(obs[2], act[1], rew[1], done=True)
  assert back.num_steps == 2 and back.total_steps == 2
  _check_chunks(back.sample(4, 3), 3)


def test_load_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="no replay buffer"):
    ReplayBuffer.load(str(tmp_path / "missing.npz"))
  buf = ReplayBuffer(capacity=40, obs_shape=OBS, action_dim=A)
  buf.add_episode(*_episode(0, 8))
  path = str(tmp_path / "b.npz")
  buf.save(path)
  data = open(path, "rb").read()
  open(path, "wb").write(data[: len(data) // 2])
  with pytest.raises(ValueError, match="damaged"):
    ReplayBuffer.load(path)
  np.savez(path, x=np.zeros(3))
  with pytest.raises(ValueError, match="damaged"):
    ReplayBuffer.load(path)


def test_bad_inputs_raise_clear_errors():
  buf = ReplayBuffer(capacity=10, obs_shape=OBS, action_dim=A)
  obs, act, rew = _episode(0, 4)
  with pytest.raises(ValueError, match="no finished episode"):
    buf.sample(2, 3)
  with pytest.raises(ValueError, match="first observation takes no action"):
    buf.add(obs[0], act[0], rew[0])
  with pytest.raises(ValueError, match="uint8"):
    buf.add(obs[0].astype(np.float32))
  with pytest.raises(ValueError, match="shape"):
    buf.add(obs[0, :1])
  buf.add(obs[0])
  with pytest.raises(ValueError, match="in progress"):
    buf.add(obs[1])
  with pytest.raises(ValueError, match="action must have shape"):
    buf.add(obs[1], act[0, :1], rew[0])
  with pytest.raises(ValueError, match="NaN"):
    buf.add(obs[1], act[0], np.nan)
  with pytest.raises(ValueError, match="in progress"):
    buf.add_episode(obs, act, rew)
  buf.add(obs[1], act[0], rew[0], done=True)
  with pytest.raises(ValueError, match="no finished episode holds a chunk of 3"):
    buf.sample(2, 3)  # one step = 2 observations
  with pytest.raises(ValueError, match="exceeds the capacity"):
    buf.add_episode(*_episode(1, 11))
  with pytest.raises(ValueError, match="reward must have shape"):
    buf.add_episode(obs, act, rew[:-1])
  with pytest.raises(ValueError, match="capacity"):
    ReplayBuffer(capacity=0, obs_shape=OBS, action_dim=A)
