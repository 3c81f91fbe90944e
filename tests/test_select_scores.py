"""Selection rules and hardness metrics on hand-checkable inputs."""

import jax
import numpy as np
import pytest

from jaxprune.pruning.scores import random_scores, self_supervised_prototypes, supervised_prototypes
from jaxprune.pruning.select import num_kept, select


def test_hard_easy_and_original_order():
  s = np.array([0.5, 0.9, 0.1, 0.7, 0.3])
  np.testing.assert_array_equal(select(s, fraction=0.4, mode="hard"), [1, 3])
  np.testing.assert_array_equal(select(s, fraction=0.4, mode="easy"), [2, 4])
  np.testing.assert_array_equal(select(s, fraction=1.0, mode="hard"), [0, 1, 2, 3, 4])


def test_ties_are_deterministic_lowest_index_first():
  s = np.array([1.0, 2.0, 2.0, 2.0, 0.0])
  np.testing.assert_array_equal(select(s, fraction=0.4, mode="hard"), [1, 2])
  np.testing.assert_array_equal(select(s, fraction=0.6, mode="easy"), [0, 1, 4])


def test_tie_key_breaks_ties_in_a_seeded_order_not_by_class_sorted_index():
  # all scores equal: the kept set is the n_keep smallest ranks of the tie permutation
  key = jax.random.key(3)
  perm = np.asarray(jax.random.permutation(key, 40))
  kept = select(np.zeros(40), fraction=0.25, mode="easy", tie_key=key)
  np.testing.assert_array_equal(kept, np.flatnonzero(perm < 10))
  # scores break ties only where equal: the strictly hardest stay first
  s = np.r_[np.full(38, 1.0), 5.0, 7.0]
  kept = select(s, fraction=0.05, mode="hard", tie_key=key)
  np.testing.assert_array_equal(kept, [38, 39])
  # a class-sorted dataset with an integer score (forgetting-like, all ties): by index, the
  # budget left after the quotas goes to class 0; with tie_key it is spread over both classes
  y = np.repeat([0, 1], 50)
  by_index = select(np.zeros(100), fraction=0.5, mode="easy", labels=y, class_balance=0.5)
  assert np.bincount(y[by_index]).tolist() == [38, 12]  # quotas 12 + 26 more for class 0
  shuffled = select(
    np.zeros(100), fraction=0.5, mode="easy", labels=y, class_balance=0.5, tie_key=key
  )
  counts = np.bincount(y[shuffled], minlength=2)
  assert counts.sum() == 50 and counts.min() >= 18


def test_num_kept_rounds_and_keeps_one():
  assert num_kept(10, 0.25) == 3  # 2.5 rounds half up
  assert num_kept(10, 0.01) == 1
  assert num_kept(1797, 0.5) == 899


def test_random_mode_uses_key():
  s = np.arange(100.0)
  a = select(s, fraction=0.3, mode="random", key=jax.random.key(0))
  b = select(s, fraction=0.3, mode="random", key=jax.random.key(0))
  c = select(s, fraction=0.3, mode="random", key=jax.random.key(1))
  assert len(a) == 30 and np.all(np.diff(a) > 0)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  with pytest.raises(ValueError, match="needs a key"):
    select(s, fraction=0.3, mode="random")


def test_class_balance_quota():
  # class 0 has the 6 hardest examples, class 1 the 4 easiest
  s = np.array([10, 9, 8, 7, 6, 5, 4, 3, 2, 1], float)
  y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
  np.testing.assert_array_equal(select(s, fraction=0.5, mode="hard"), [0, 1, 2, 3, 4])
  # balance 1: class 1 keeps floor(1 * 0.5 * 4) = 2 (its hardest: idx 6, 7), class 0 keeps 3
  kept = select(s, fraction=0.5, mode="hard", labels=y, class_balance=1.0)
  np.testing.assert_array_equal(kept, [0, 1, 2, 6, 7])
  # balance 0.5: class 1 keeps at least floor(0.5 * 0.5 * 4) = 1
  kept = select(s, fraction=0.5, mode="hard", labels=y, class_balance=0.5)
  np.testing.assert_array_equal(kept, [0, 1, 2, 3, 6])


@pytest.mark.parametrize("mode", ["hard", "easy"])
@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.7])
@pytest.mark.parametrize("balance", [0.5, 1.0])
def test_class_balance_keeps_every_class_its_share_when_imbalanced(mode, fraction, balance):
  # 60 / 30 / 10 examples; the scores put class 2 at the easy end and class 0 at the hard end,
  # so without balance keep-hard drops class 2 and keep-easy drops class 0 entirely
  y = np.repeat([0, 1, 2], [60, 30, 10])
  s = np.concatenate([np.linspace(2, 3, 60), np.linspace(1, 2, 30), np.linspace(0, 1, 10)])
  loser, n_loser = (2, 10) if mode == "hard" else (0, 60)
  plain = select(s, fraction=fraction, mode=mode)
  starved = len(plain) <= 100 - n_loser  # the budget fits in the other classes
  if starved:
    assert (y[plain] == loser).sum() == 0
  kept = select(s, fraction=fraction, mode=mode, labels=y, class_balance=balance)
  assert len(kept) == len(plain)  # the budget does not change
  counts = np.bincount(y[kept], minlength=3)
  quota = np.floor(balance * fraction * np.array([60, 30, 10]))
  assert np.all(counts >= quota), (counts, quota)
  if starved:
    assert counts[loser] == quota[loser]  # the losing class gets exactly its floor


@pytest.mark.parametrize("f", [0.0, -0.1, 1.01, float("nan"), "half"])
def test_bad_fraction_raises(f):
  with pytest.raises(ValueError, match="fraction"):
    select(np.ones(4), fraction=f)


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match="mode"):
    select(np.ones(4), fraction=0.5, mode="medium")
  with pytest.raises(ValueError, match="NaN"):
    select(np.array([1.0, np.nan]), fraction=0.5)
  with pytest.raises(ValueError, match="one entry per example"):
    select(np.ones(4), fraction=0.5, labels=np.zeros(3, int), class_balance=0.5)
  with pytest.raises(ValueError, match="needs labels"):
    select(np.ones(4), fraction=0.5, class_balance=0.5)


def test_ssl_prototypes_cosine_distance_to_nearest_centroid():
  rng = np.random.default_rng(0)
  dirs = np.eye(3, dtype=np.float32)
  x = np.concatenate([d + 0.05 * rng.standard_normal((30, 3)).astype(np.float32) for d in dirs])
  scores, cluster, res = self_supervised_prototypes(x, k=3, key=jax.random.key(0))
  c = np.asarray(res.centroids)
  xn = x / np.linalg.norm(x, axis=1, keepdims=True)
  np.testing.assert_allclose(np.asarray(scores), 1 - (xn @ c.T).max(1), atol=1e-5)
  assert len(np.unique(np.asarray(cluster))) == 3
  # an outlier between clusters is the hardest example
  x2 = np.concatenate([x, np.ones((1, 3), np.float32)])
  s2, _, _ = self_supervised_prototypes(x2, k=3, key=jax.random.key(0))
  assert int(np.argmax(np.asarray(s2))) == len(x)


def test_ssl_prototypes_euclidean_is_distance_not_squared():
  x = np.array([[0, 0], [2, 0], [10, 0], [12, 0]], np.float32)
  s, _, _ = self_supervised_prototypes(x, k=2, key=jax.random.key(0), distance="euclidean")
  np.testing.assert_allclose(np.asarray(s), [1, 1, 1, 1], atol=1e-5)


def test_supervised_prototypes_hand_checked():
  x = np.array([[1, 0], [0, 1], [1, 1], [3, 3]], np.float32)
  y = np.array([0, 0, 1, 1])
  # class 0 centroid (0.5, 0.5): euclidean distance sqrt(0.5) for both members
  s = np.asarray(supervised_prototypes(x, y, distance="euclidean"))
  np.testing.assert_allclose(s, [np.sqrt(0.5), np.sqrt(0.5), np.sqrt(2), np.sqrt(2)], rtol=1e-5)
  # cosine: class 1 points are parallel -> 0; class 0 at 45 degrees to its centroid
  s = np.asarray(supervised_prototypes(x, y))
  np.testing.assert_allclose(s, [1 - np.cos(np.pi / 4)] * 2 + [0, 0], atol=1e-6)
  with pytest.raises(ValueError, match="one entry per example"):
    supervised_prototypes(x, y[:3])


def test_random_scores():
  a = np.asarray(random_scores(1000, key=jax.random.key(0)))
  assert a.shape == (1000,) and 0 <= a.min() and a.max() < 1
  np.testing.assert_array_equal(a, np.asarray(random_scores(1000, key=jax.random.key(0))))
