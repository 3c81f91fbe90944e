"""The linear-readout grid (issue 26): data pruning in the perceptron theory's setting on real
data, a softmax readout trained to convergence on frozen features, up to the whole train split.

For each feature set (SimCLR backbone features, pixels), pool draw, pool size (nested within a
draw), scorer seed, metric, mode (keep-hard / keep-easy; random) and fraction: select the
subset (:func:`jaxprune.pruning.select.select`, class balance), fit the readout on it
(:func:`jaxprune.pruning.linear_readout.fit_readout`, L-BFGS to ``|grad| <= tol``) and record
the test accuracy as one per-seed row (:data:`jaxprune.pruning.claims.COLUMNS`, plus
``num_iter`` / ``converged``). The readout is a strongly convex problem solved to tolerance, so
its result does not depend on an initialisation or data order: ``classifier_seed`` is -1 (does
not apply). The noise sources are the pool draw and the scorer seed (k-means init; the linear
scorers' inits and data order; the random subset's draw). The whole split is one pool
(``pool_seed`` -1) and gets ``full_pool_scorer_seeds`` scorer seeds.

Subsets are gathered and zero-padded (weight 0) to the next power of two (at least 64), so one
compilation serves every subset of a size class. The rows are appended to
``per_seed_<features>.jsonl`` as each (pool, draw) unit finishes; a rerun skips the rows stored
(resumable). Features are cached in ``features_<name>.npz``.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxprune.core import io
from jaxprune.core.config import to_dict
from jaxprune.core.run import Run
from jaxprune.models import simclr_features, to_unit_float
from jaxprune.pruning import data as data_lib
from jaxprune.pruning import keys
from jaxprune.pruning.claims import COLUMNS, NOT_APPLICABLE
from jaxprune.pruning.embeddings import train_simclr
from jaxprune.pruning.kmeans import check_embeddings
from jaxprune.pruning.kmeans_config import resolve_k
from jaxprune.pruning.linear_readout import check_readout_inputs, fit_readout, readout_accuracy
from jaxprune.pruning.readout_grid_config import ReadoutGridConfig
from jaxprune.pruning.readout_scores import linear_scores, train_linear_scorers
from jaxprune.pruning.scores import self_supervised_prototypes, supervised_prototypes
from jaxprune.pruning.select import num_kept, select

SEEDED = ("ssl_prototypes", "el2n", "grand", "forgetting")
# a resumed grid may add (or drop) pool draws and scorer seeds: a row's keys depend on its own
# (pool, pool seed, scorer seed) only, so the rows stored stay valid; rows beyond the config's
# seeds are kept in the JSONL but left out of the CSV and the returned rows
MAY_CHANGE = ("pool_draws", "scorer_seeds", "full_pool_scorer_seeds", "progress")
EXTRA_COLUMNS = ("num_iter", "converged")


def whiten(
  train_x: np.ndarray, test_x: np.ndarray, *, rel_eps: float = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
  """PCA-whiten with the train split's statistics: centre, rotate onto the covariance's
  eigenvectors, scale each to unit variance; directions with variance below ``rel_eps`` times
  the largest are dropped (numerically null directions; a large ``rel_eps`` drops signal too:
  1e-3 kept 48 of the 128 SimCLR features' directions and cost their readout ~2.8 points). The
  perceptron theory's inputs are isotropic, and whitening is what makes L-BFGS converge in
  ~50-170 iterations instead of ~500-1,300 on standardised pixels (measured on 3,750 and
  15,000 Fashion-MNIST examples)."""
  mean = train_x.mean(0, dtype=np.float64)
  cov = np.cov(train_x - mean, rowvar=False)
  ev, vecs = np.linalg.eigh(cov)
  keep = ev > rel_eps * ev.max()
  proj = vecs[:, keep] / np.sqrt(ev[keep])
  return (
    ((train_x - mean) @ proj).astype(np.float32),
    ((test_x - mean) @ proj).astype(np.float32),
  )


def load_data(cfg: ReadoutGridConfig) -> tuple[data_lib.Dataset, data_lib.Dataset]:
  """The train / test splits, downsampled to ``cfg.image_size``."""
  train, test = data_lib.load_train_test(cfg.data, data_dir=cfg.data_dir)
  if cfg.image_size is not None:
    train = train._replace(images=data_lib.downsample(train.images, cfg.image_size))
    test = test._replace(images=data_lib.downsample(test.images, cfg.image_size))
  return train, test


def features(
  cfg: ReadoutGridConfig, name: str, train: data_lib.Dataset, test: data_lib.Dataset
) -> tuple[np.ndarray, np.ndarray]:
  """PCA-whitened (:func:`whiten`) ``(train_NxD, test_MxD)`` features of ``name`` ("ssl": the
  backbone of a SimCLR encoder trained on the train split's images, no labels; "pixels"); cached
  in the workdir."""
  path = os.path.join(cfg.workdir, f"features_{name}.npz")
  if os.path.exists(path):
    with np.load(path) as z:
      return z["train"], z["test"]
  if name == "pixels":
    tr = train.images.reshape(train.size, -1).astype(np.float32)
    te = test.images.reshape(test.size, -1).astype(np.float32)
  else:
    encoder, params = train_simclr(
      train.images,
      cfg=cfg.ssl,
      seed=cfg.seed,
      workdir=cfg.workdir,
      overwrite=cfg.overwrite,
      progress=cfg.progress,
    )
    embed = lambda im: np.concatenate(
      [
        np.asarray(simclr_features(encoder, params, to_unit_float(im[i : i + 5000])))
        for i in range(0, len(im), 5000)
      ]
    )
    tr, te = embed(train.images), embed(test.images)
  tr, te = whiten(tr, te, rel_eps=cfg.whiten_rel_eps)
  check_embeddings(tr)
  io.save_npz(path, train=tr, test=te)
  return tr, te


def pool_units(cfg: ReadoutGridConfig, n_train: int) -> list[tuple[int, int, np.ndarray]]:
  """``(pool size, pool seed, indices)`` for every pool and draw, smallest pools first; a pool
  at least as large as the split is the whole split (one unit, pool seed -1)."""
  perms = [np.random.default_rng([cfg.seed, d]).permutation(n_train) for d in range(cfg.pool_draws)]
  units = []
  for n in sorted(cfg.pools):
    if n >= n_train:
      units.append((n_train, NOT_APPLICABLE, np.arange(n_train)))
    else:
      units += [(n, d, perms[d][:n]) for d in range(cfg.pool_draws)]
  return units


def _key(salt: int, cfg: ReadoutGridConfig, pool: int, pool_seed: int, scorer: int) -> jax.Array:
  k = keys.job_key(cfg.seed, salt)
  for v in (pool, pool_seed + 1, scorer + 1):  # -1 (does not apply) folds in as 0
    k = jax.random.fold_in(k, v)
  return k


def pool_scores(
  cfg: ReadoutGridConfig,
  x_NxD: np.ndarray,
  y_N: np.ndarray,
  *,
  num_classes: int,
  pool: int,
  pool_seed: int,
  scorer: int,
) -> dict[str, np.ndarray]:
  """Every seeded metric of ``cfg.scores`` on one pool for one scorer seed (host arrays)."""
  out = {}
  if "ssl_prototypes" in cfg.scores:
    k = resolve_k(cfg.k, n=len(x_NxD), num_classes=num_classes)
    s, _, _ = self_supervised_prototypes(
      x_NxD, k=k, key=_key(keys.KMEANS, cfg, pool, pool_seed, scorer), distance=cfg.distance
    )
    out["ssl_prototypes"] = np.asarray(s)
  wanted = [s for s in ("el2n", "grand", "forgetting") if s in cfg.scores]
  if wanted:
    scorers = train_linear_scorers(
      x_NxD,
      y_N,
      _key(keys.SCORE_MODELS, cfg, pool, pool_seed, scorer),
      num_classes=num_classes,
      num_models=cfg.score_models,
      epochs=cfg.score_epochs,
      score_epoch=cfg.score_epoch,
    )
    lin = linear_scores(scorers, x_NxD, y_N, num_classes=num_classes)
    out.update({s: np.asarray(lin[s]) for s in wanted})
  return out


def fit_subset(
  cfg: ReadoutGridConfig,
  x_NxD: np.ndarray,
  y_N: np.ndarray,
  test_x: np.ndarray,
  test_y: np.ndarray,
  *,
  num_classes: int,
) -> dict:
  """Fit the readout on the subset's rows (padded to a power of two with weight 0); returns
  ``{"acc", "num_iter", "converged"}``."""
  n, d = x_NxD.shape
  bucket = max(64, 1 << (n - 1).bit_length())
  x = np.zeros((bucket, d), np.float32)
  y = np.zeros(bucket, np.int32)
  w = np.zeros(bucket, np.float32)
  x[:n], y[:n], w[:n] = x_NxD, y_N, 1.0
  l2 = cfg.l2 if cfg.l2 is not None else 1.0 / n
  fit = fit_readout(
    x, y, num_classes=num_classes, l2=l2, weights_N=w, tol=cfg.tol, max_iter=cfg.max_iter
  )
  return {
    "acc": float(readout_accuracy(fit.readout, test_x, test_y)),
    "num_iter": int(fit.num_iter),
    "converged": bool(fit.converged),
  }


def _row_key(r: dict) -> tuple:
  return (r["pool"], r["pool_seed"], r["scorer_seed"], r["score"], r["mode"], float(r["fraction"]))


def run_features(
  cfg: ReadoutGridConfig, name: str, train: data_lib.Dataset, test: data_lib.Dataset
) -> list[dict]:
  """The grid of one feature set; returns its per-seed rows (resumes from the stored ones)."""
  tr_x, te_x = features(cfg, name, train, test)
  num_classes = int(train.labels.max()) + 1
  check_readout_inputs(tr_x, train.labels, num_classes=num_classes, l2=cfg.l2 or 1.0)
  path = os.path.join(cfg.workdir, f"per_seed_{name}.jsonl")
  rows = io.read_jsonl(path)
  done = {_row_key(r) for r in rows}
  units = pool_units(cfg, train.size)
  bar = tqdm(units, desc=f"readout grid ({name})", unit="pool", disable=not cfg.progress)
  for pool, pool_seed, idx in bar:
    x, y = tr_x[idx], train.labels[idx].astype(np.int32)
    n_scorers = cfg.full_pool_scorer_seeds if pool_seed == NOT_APPLICABLE else cfg.scorer_seeds
    t0 = time.perf_counter()
    new = []

    def record(score, mode, f, scorer, kept):
      if (pool, pool_seed, scorer, score, mode, float(f)) in done:
        return
      r = fit_subset(cfg, x[kept], y[kept], te_x, test.labels, num_classes=num_classes)
      new.append(
        {
          "pool": pool,
          "score": score,
          "mode": mode,
          "fraction": float(f),
          "n_kept": int(len(kept)),
          "pool_seed": pool_seed,
          "scorer_seed": scorer,
          "classifier_seed": NOT_APPLICABLE,
          **r,
        }
      )

    tie = lambda s: _key(keys.TIES, cfg, pool, pool_seed, s)
    sel = lambda sc, f, mode, s, key=None: select(
      sc, fraction=f, mode=mode, key=key, labels=y, class_balance=cfg.class_balance, tie_key=tie(s)
    )
    record("full", "full", 1.0, NOT_APPLICABLE, np.arange(pool))
    if "supervised_prototypes" in cfg.scores:
      sup = np.asarray(supervised_prototypes(x, y, distance=cfg.distance, num_classes=num_classes))
      for f in cfg.fractions:
        for mode in ("hard", "easy"):
          record("supervised_prototypes", mode, f, NOT_APPLICABLE, sel(sup, f, mode, -1))
    for s in range(n_scorers):
      todo = [
        (sc, m, f)
        for sc in SEEDED
        if sc in cfg.scores
        for m in ("hard", "easy")
        for f in cfg.fractions
        if (pool, pool_seed, s, sc, m, float(f)) not in done
      ]
      if todo:
        scores = pool_scores(
          cfg, x, y, num_classes=num_classes, pool=pool, pool_seed=pool_seed, scorer=s
        )
        for sc, m, f in todo:
          record(sc, m, f, s, sel(scores[sc], f, m, s))
      for f in cfg.fractions:
        key = _key(keys.SELECT, cfg, pool, pool_seed, s)
        record("random", "random", f, s, sel(np.zeros(pool), f, "random", s, key))
    io.append_jsonl(path, new)
    rows += new
    done |= {_row_key(r) for r in new}
    bar.set_postfix(pool=pool, draw=pool_seed, fits=len(new), s=f"{time.perf_counter() - t0:.0f}")
  return [r for r in rows if in_config(cfg, r, train.size)]


def in_config(cfg: ReadoutGridConfig, r: dict, n_train: int) -> bool:
  """Whether a stored row belongs to ``cfg``'s seeds and pools (a resumed grid may have fewer
  draws or scorer seeds than the run that stored it)."""
  full = r["pool_seed"] == NOT_APPLICABLE
  pools = {min(n, n_train) for n in cfg.pools}
  scorers = cfg.full_pool_scorer_seeds if full else cfg.scorer_seeds
  return (
    r["pool"] in pools
    and (full or r["pool_seed"] < cfg.pool_draws)
    and r["scorer_seed"] < scorers
    and (r["score"] in cfg.scores or r["score"] in ("random", "full"))
    and (r["mode"] == "full" or any(abs(r["fraction"] - f) < 1e-12 for f in cfg.fractions))
  )


def expected_rows(cfg: ReadoutGridConfig, n_train: int) -> int:
  """How many per-seed rows a complete grid of one feature set holds."""
  seeded = sum(s in cfg.scores for s in SEEDED)
  total = 0
  for pool, pool_seed, _ in pool_units(cfg, n_train):
    s = cfg.full_pool_scorer_seeds if pool_seed == NOT_APPLICABLE else cfg.scorer_seeds
    per_f = s * (2 * seeded + 1) + 2 * ("supervised_prototypes" in cfg.scores)
    total += 1 + len(cfg.fractions) * per_f
  return total


def check_counts(cfg: ReadoutGridConfig, n_train: int) -> None:
  """Every fraction keeps a distinct, non-empty subset of every pool (host check)."""
  for pool, _, _ in pool_units(cfg, n_train):
    for f in cfg.fractions:
      if num_kept(pool, f) >= pool:
        raise ValueError(f"fraction {f} of a pool of {pool} keeps the whole pool; drop it")


def save_per_seed(path: str, rows: list[dict]) -> None:
  """The per-seed rows as a CSV (claims.COLUMNS, then num_iter, converged), sorted."""
  rows = sorted(rows, key=lambda r: (r["pool"], r["score"], r["mode"], r["fraction"], _row_key(r)))
  cols = COLUMNS + EXTRA_COLUMNS
  io.save_csv(path, {c: [int(r[c]) if c == "converged" else r[c] for r in rows] for c in cols})


def run(cfg: ReadoutGridConfig) -> dict[str, list[dict]]:
  """Run (or resume) the grid of every feature set; writes ``per_seed_<features>.csv`` and the
  config; returns ``{features: per-seed rows}``."""
  with Run(cfg.workdir, config=cfg, may_change=MAY_CHANGE, overwrite=cfg.overwrite) as job:
    train, test = load_data(cfg)
    check_counts(cfg, train.size)
    io.save_json(os.path.join(cfg.workdir, "config.json"), to_dict(cfg))
    out = {}
    for name in cfg.features:
      t0 = time.perf_counter()
      rows = run_features(cfg, name, train, test)
      job.discard_replaced()
      save_per_seed(os.path.join(cfg.workdir, f"per_seed_{name}.csv"), rows)
      out[name] = rows
      io.save_json(
        os.path.join(cfg.workdir, f"timing_{name}.json"),
        {"seconds_this_call": time.perf_counter() - t0, "rows": len(rows)},
      )
  return out
