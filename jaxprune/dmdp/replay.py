"""Episode replay for world-model training: compact uint8 episodes, chunks sampled inside them.

Storage. Each episode is stored *aligned* to the world model's batch convention, one row per
observation (T transitions -> T + 1 rows)::

  image[i]   o_i                              (T + 1) x H x W x C uint8
  action[i]  a_{i-1}, zeros at i = 0          (T + 1) x A float32
  reward[i]  r_i received with o_i, 0 at i = 0  T + 1 float32

so a chunk of ``L`` consecutive rows is directly a batch element (``action[:, t]`` is a_{t-1},
``reward[:, t]`` is r_t). The zero row costs one action and one reward per episode.

Adding. Step by step: ``add(obs)`` starts an episode with its first observation; each
``add(obs, action, reward, done)`` appends the observation reached by ``action`` and the reward
received with it; ``done=True`` finishes the episode (termination or time limit alike: no
discount is stored, the world model does not predict one). Whole episodes: ``add_episode(obs,
action, reward)`` in the environment's layout (T + 1 observations, T actions, T rewards).

Capacity. ``capacity`` bounds the transitions held by finished episodes; when an episode is
finished, the oldest episodes are evicted until the rest fit. The in-progress episode is held on
top of that and is never sampled. An episode longer than ``capacity`` is an error.

Sampling. ``sample(batch_size, length)`` draws chunks uniformly over every valid (episode, start)
pair of the finished episodes (each stored step is equally likely to start a chunk, whatever its
episode's length); a chunk never crosses an episode boundary. The buffer owns a
``numpy.random.Generator`` (seeded at construction); a caller may pass its own instead.

Saving. ``save(path)`` writes one ``.npz`` atomically (temporary file + ``os.replace``):
episodes, the in-progress episode, the counters and the generator's state; ``ReplayBuffer.load``
restores all of it, so a resumed run draws the same samples. ``save(path, belongs_to={...})``
also records what the file belongs to (the agent: its checkpoint's update, env steps and
episodes), read back as ``belongs_to`` (``None`` for files written without it, e.g. by older
versions), so a resume can tell a replay file of another checkpoint from its own.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections import deque

import numpy as np

from jaxprune.core.io import atomic_path

_FORMAT = 1
_FIELDS = ("image", "action", "reward")


class ReplayBuffer:
  """Episodes of uint8 observations ``obs_shape`` (H x W x C) and ``action_dim`` actions."""

  def __init__(
    self, *, capacity: int, obs_shape: tuple[int, ...], action_dim: int, seed: int | None = 0
  ):
    obs_shape = tuple(int(s) for s in obs_shape)
    if capacity < 1:
      raise ValueError(f"capacity must be >= 1 step, got {capacity}")
    if action_dim < 1 or not obs_shape or min(obs_shape) < 1:
      raise ValueError(
        f"need action_dim >= 1 and a non-empty obs_shape of positive sizes, got "
        f"action_dim {action_dim}, obs_shape {obs_shape}"
      )
    self.capacity = int(capacity)
    self.obs_shape = obs_shape
    self.action_dim = int(action_dim)
    self.rng = np.random.default_rng(seed)
    self._episodes: deque[dict] = deque()  # each {"image", "action", "reward", "id"}, aligned
    self._current: list[tuple] | None = None  # rows (obs, action, reward) of the open episode
    self._stored_steps = 0  # transitions held by finished episodes
    self.total_steps = 0  # transitions ever added, including the in-progress episode
    self.total_episodes = 0  # episodes ever finished (their ids are 0, 1, ...)
    self.belongs_to: dict[str, int] | None = None  # set by load(): the saved file's record

  # -------------------------------------------------------------------------------------------
  # sizes

  @property
  def num_episodes(self) -> int:
    """Finished episodes held (sampled from)."""
    return len(self._episodes)

  @property
  def num_steps(self) -> int:
    """Transitions held by finished episodes (bounded by ``capacity``)."""
    return self._stored_steps

  @property
  def current_length(self) -> int:
    """Transitions of the in-progress episode (0 when none is open, or just started)."""
    return 0 if self._current is None else len(self._current) - 1

  @property
  def longest(self) -> int:
    """Observations in the longest held episode (0 when none): chunks up to this length exist."""
    return max((len(e["image"]) for e in self._episodes), default=0)

  @property
  def episode_ids(self) -> list[int]:
    """Ids of the held episodes, oldest first (the i-th finished episode has id i)."""
    return [e["id"] for e in self._episodes]

  def episode(self, i: int) -> dict:
    """The i-th held episode (oldest first), aligned arrays (read-only views)."""
    return {k: v for k, v in self._episodes[i].items()}

  # -------------------------------------------------------------------------------------------
  # adding

  def _check_obs(self, obs, what="obs") -> np.ndarray:
    obs = np.asarray(obs)
    if obs.dtype != np.uint8:
      raise ValueError(f"{what} must be uint8 pixels (stored compactly), got {obs.dtype}")
    if obs.shape[-len(self.obs_shape) :] != self.obs_shape:
      raise ValueError(f"{what} must end in shape {self.obs_shape}, got {obs.shape}")
    return obs

  def _check_action(self, action, lead=()) -> np.ndarray:
    action = np.asarray(action, np.float32)
    if action.shape != (*lead, self.action_dim):
      raise ValueError(f"action must have shape {(*lead, self.action_dim)}, got {action.shape}")
    if not np.all(np.isfinite(action)):
      raise ValueError("action holds NaN or inf")
    return action

  def _check_reward(self, reward, lead=()) -> np.ndarray:
    reward = np.asarray(reward, np.float32)
    if reward.shape != lead:
      raise ValueError(f"reward must have shape {lead}, got {reward.shape}")
    if not np.all(np.isfinite(reward)):
      raise ValueError("reward holds NaN or inf")
    return reward

  def add(self, obs, action=None, reward=None, done: bool = False) -> None:
    """One observation. The first of an episode takes no action or reward (``add(o_0)``); each
    later one is ``add(o_t, a_{t-1}, r_t, done)``; ``done`` finishes the episode."""
    obs = self._check_obs(obs)
    if obs.shape != self.obs_shape:
      raise ValueError(f"obs must have shape {self.obs_shape}, got {obs.shape}")
    if self._current is None:
      if action is not None or reward is not None:
        raise ValueError(
          "no episode is in progress: its first observation takes no action or "
          "reward (call add(obs) after a reset)"
        )
      if done:
        raise ValueError(
          "an episode needs at least one transition; done=True on its first observation"
        )
      self._current = [(obs.copy(), np.zeros(self.action_dim, np.float32), np.float32(0.0))]
      return
    if action is None or reward is None:
      raise ValueError(
        "an episode is in progress: add(obs, action, reward, done) needs the "
        "action that led to obs and the reward received with it"
      )
    row = (obs.copy(), self._check_action(action), self._check_reward(reward))
    if self.current_length + 1 > self.capacity:
      raise ValueError(
        f"the in-progress episode would exceed the capacity of {self.capacity} steps"
      )
    self._current.append(row)
    self.total_steps += 1
    if done:
      rows, self._current = self._current, None
      self._commit(
        np.stack([r[0] for r in rows]),
        np.stack([r[1] for r in rows]),
        np.stack([r[2] for r in rows]),
      )

  def add_episode(self, obs, action, reward) -> None:
    """A whole episode in the environment's layout: ``obs`` (T + 1) x H x W x C uint8 (o_0 ..
    o_T), ``action`` T x A (a_0 .. a_{T-1}), ``reward`` T (r_1 .. r_T). Needs no episode in
    progress (episodes are kept in the order they finish)."""
    if self._current is not None:
      raise ValueError("an episode is in progress (finish it with done=True first)")
    obs = self._check_obs(obs)
    if obs.ndim != len(self.obs_shape) + 1 or obs.shape[0] < 2:
      raise ValueError(f"obs must be (T + 1) x {self.obs_shape} with T >= 1, got {obs.shape}")
    t = obs.shape[0] - 1
    if t > self.capacity:
      raise ValueError(f"episode of {t} steps exceeds the capacity of {self.capacity} steps")
    action = self._check_action(action, (t,))
    reward = self._check_reward(reward, (t,))
    self.total_steps += t
    self._commit(
      obs.copy(),
      np.concatenate([np.zeros((1, self.action_dim), np.float32), action]),
      np.concatenate([np.zeros(1, np.float32), reward]),
    )

  def _commit(self, image, action, reward) -> None:
    for a in (image, action, reward):
      a.setflags(write=False)
    self._episodes.append(
      {"image": image, "action": action, "reward": reward, "id": self.total_episodes}
    )
    self.total_episodes += 1
    self._stored_steps += len(image) - 1
    while self._stored_steps > self.capacity:
      old = self._episodes.popleft()
      self._stored_steps -= len(old["image"]) - 1

  # -------------------------------------------------------------------------------------------
  # sampling

  def sample(
    self,
    batch_size: int,
    length: int,
    *,
    num_batches: int | None = None,
    rng: np.random.Generator | None = None,
  ) -> dict:
    """``{"image": B x L x H x W x C uint8, "action": B x L x A, "reward": B x L}`` (float32),
    chunks of ``length`` consecutive rows of one finished episode, uniform over all valid starts.
    With ``num_batches=K`` every array gets a leading K (stacked batches for ``run_steps``).
    Draws from ``rng`` when given, else from the buffer's own generator."""
    if batch_size < 1 or length < 1 or (num_batches is not None and num_batches < 1):
      raise ValueError(
        f"need batch_size, length (and num_batches) >= 1, got {batch_size}, {length}, {num_batches}"
      )
    rng = self.rng if rng is None else rng
    starts_per_ep = np.array([len(e["image"]) - length + 1 for e in self._episodes], np.int64)
    starts_per_ep = np.maximum(starts_per_ep, 0)
    total = int(starts_per_ep.sum())
    if total == 0:
      raise ValueError(
        f"no finished episode holds a chunk of {length} observations (held: "
        f"{self.num_episodes} episodes, the longest {self.longest} observations; an "
        f"episode of T steps has T + 1)"
      )
    n = batch_size * (num_batches or 1)
    flat = rng.integers(0, total, size=n)
    cum = np.cumsum(starts_per_ep)
    ep = np.searchsorted(cum, flat, side="right")
    start = flat - (cum[ep] - starts_per_ep[ep])
    out = {
      k: np.stack([self._episodes[e][k][s : s + length] for e, s in zip(ep, start)])
      for k in _FIELDS
    }
    if num_batches is not None:
      out = {k: v.reshape(num_batches, batch_size, *v.shape[1:]) for k, v in out.items()}
    return out

  # -------------------------------------------------------------------------------------------
  # saving

  def save(self, path: str, *, belongs_to: dict[str, int] | None = None) -> None:
    """Write the whole buffer (episodes, in-progress episode, counters, RNG) to ``path`` (.npz)
    atomically: a reader sees the previous file or the new one, never half of one. Episodes are
    written as they are held (one array each, no concatenated copy of the buffer in memory).
    ``belongs_to``: names (str) -> int counters of what the file belongs to (e.g. a checkpoint's
    ``update``, ``env_steps``, ``episodes``), stored with it and read back as ``belongs_to``."""
    meta = {
      "format": _FORMAT,
      "capacity": self.capacity,
      "obs_shape": list(self.obs_shape),
      "action_dim": self.action_dim,
      "total_steps": self.total_steps,
      "total_episodes": self.total_episodes,
      "ids": self.episode_ids,
      "open": self._current is not None,
      "rng": self.rng.bit_generator.state,
    }
    if belongs_to is not None:
      record = _check_belongs_to(belongs_to, f"save({path!r}, belongs_to=...)")
      meta["belongs_to"] = {k: int(v) for k, v in record.items()}
    arrays = {"meta": np.array(json.dumps(meta))}
    for i, ep in enumerate(self._episodes):
      for k in _FIELDS:
        arrays[f"{k}_{i}"] = ep[k]
    if self._current is not None:
      for j, k in enumerate(_FIELDS):
        arrays[f"{k}_open"] = np.stack([row[j] for row in self._current])
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
      np.savez(f, **arrays)

  @classmethod
  def load(cls, path: str) -> "ReplayBuffer":
    """The buffer saved at ``path``, exactly as it was (FileNotFoundError when there is none;
    ValueError when the file is damaged or not a replay buffer)."""
    if not os.path.exists(path):
      raise FileNotFoundError(f"no replay buffer at {path}")
    try:
      with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        if meta.get("format") != _FORMAT:
          raise ValueError(f"unknown format {meta.get('format')!r}")
        buf = cls(
          capacity=meta["capacity"],
          obs_shape=tuple(meta["obs_shape"]),
          action_dim=meta["action_dim"],
          seed=None,
        )
        buf.rng.bit_generator.state = meta["rng"]
        for i, ep_id in enumerate(meta["ids"]):
          ep = buf._check_rows(*(z[f"{k}_{i}"] for k in _FIELDS))
          for v in ep.values():
            v.setflags(write=False)
          buf._episodes.append({**ep, "id": int(ep_id)})
          buf._stored_steps += len(ep["image"]) - 1
        if meta["open"]:
          ep = buf._check_rows(*(z[f"{k}_open"] for k in _FIELDS))
          buf._current = [
            (o, a, np.float32(r)) for o, a, r in zip(ep["image"], ep["action"], ep["reward"])
          ]
      if buf._stored_steps > buf.capacity:
        raise ValueError(f"{buf._stored_steps} stored steps exceed the capacity {buf.capacity}")
      buf.total_steps = int(meta["total_steps"])
      buf.total_episodes = int(meta["total_episodes"])
      if meta.get("belongs_to") is not None:
        buf.belongs_to = _check_belongs_to(meta["belongs_to"], "the file's belongs_to record")
    except (ValueError, KeyError, TypeError, OSError, EOFError, zipfile.BadZipFile) as e:
      raise ValueError(
        f"replay file {path} is damaged or not a replay buffer ({type(e).__name__}: {str(e)[:200]})"
      ) from e
    return buf

  def _check_rows(self, image, action, reward) -> dict:
    """Aligned episode arrays read back from a file, checked against this buffer's shapes."""
    n = len(image)
    if (
      n < 1
      or image.dtype != np.uint8
      or image.shape[1:] != self.obs_shape
      or action.shape != (n, self.action_dim)
      or reward.shape != (n,)
    ):
      raise ValueError(
        f"episode arrays of shapes {image.shape} ({image.dtype}), {action.shape}, "
        f"{reward.shape} do not fit obs_shape {self.obs_shape}, action_dim "
        f"{self.action_dim}"
      )
    return {
      "image": image,
      "action": action.astype(np.float32),
      "reward": reward.astype(np.float32),
    }


def _check_belongs_to(record, where: str) -> dict[str, int]:
  """``record`` if it is a dict of str -> int, else ``ValueError`` naming ``where``."""
  ok = isinstance(record, dict) and all(
    isinstance(k, str) and isinstance(v, (int, np.integer)) and not isinstance(v, bool)
    for k, v in record.items()
  )
  if not ok:
    raise ValueError(
      f"{where}: belongs_to must map names to int counters (e.g. {{'update': 10, 'env_steps': "
      f"1000, 'episodes': 10}}), got {record!r}"
    )
  return dict(record)
