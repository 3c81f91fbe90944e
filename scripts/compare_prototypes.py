"""Is the pruning result the metric's code? SSL prototypes from our k-means against scikit-learn's
KMeans on the same whitened features, the same pool (the whole split), the same selection and
readout: keep-hard minus random for each, and the overlap of the kept subsets.

  python scripts/readout_grid.py --features ssl --workdir runs/readout_grid_ssl   # features first
  python scripts/compare_prototypes.py --workdir runs/readout_grid_ssl --features ssl

scikit-learn's KMeans (k-means++, one init, Lloyd) runs on the L2-normalised features (the cosine
geometry); the hardness is 1 - cos to the nearest of its centroids, normalised. Ours is
jaxprune's spherical k-means (cosine). Writes compare_prototypes_<features>.csv to --workdir
(one row per scorer seed and fraction) and prints the table, with the Jaccard overlap of the
two implementations' kept subsets beside that of two seeds of one implementation.
"""

import dataclasses
import os

import numpy as np

from jaxprune.core import io
from jaxprune.core.config import parse
from jaxprune.core.run import cli
from jaxprune.pruning import keys, readout_grid
from jaxprune.pruning.readout_grid_config import ReadoutGridConfig
from jaxprune.pruning.scores import self_supervised_prototypes
from jaxprune.pruning.select import select


@dataclasses.dataclass(frozen=True)
class CompareConfig:
  """SSL prototypes: jaxprune's k-means against scikit-learn's, same features and readout."""

  workdir: str = "runs/readout_grid_ssl"
  """a readout grid's workdir (its config.json and features_<features>.npz are read)"""
  features: str = "ssl"
  """the feature set"""
  seeds: int = 3
  """scorer seeds (k-means inits) per implementation"""


def sklearn_scores(x: np.ndarray, k: int, seed: int) -> np.ndarray:
  from sklearn.cluster import KMeans

  xn = x / np.linalg.norm(x, axis=1, keepdims=True)
  c = KMeans(n_clusters=k, init="k-means++", n_init=1, random_state=seed).fit(xn).cluster_centers_
  c = c / np.linalg.norm(c, axis=1, keepdims=True)
  return 1.0 - (xn @ c.T).max(1)


def main(argv=None):
  cc = parse(CompareConfig, argv, description=__doc__)
  stored = io.read_json(os.path.join(cc.workdir, "config.json"))
  cfg = ReadoutGridConfig(
    **{
      k: tuple(v) if isinstance(v, list) else v
      for k, v in stored.items()
      if k not in ("ssl",) and k in {f.name for f in dataclasses.fields(ReadoutGridConfig)}
    }
  )
  train, test = readout_grid.load_data(cfg)
  path = os.path.join(cc.workdir, f"features_{cc.features}.npz")
  if not os.path.exists(path):
    raise SystemExit(f"{path} does not exist: run scripts/readout_grid.py on {cc.workdir} first")
  with np.load(path) as z:
    x, xt = z["train"], z["test"]
  y = train.labels.astype(np.int32)
  n = len(x)
  k = cfg.k or int(y.max()) + 1
  rows, kept_sets = [], {}
  for s in range(cc.seeds):
    ours = np.asarray(
      self_supervised_prototypes(
        x, k=k, key=readout_grid._key(keys.KMEANS, cfg, n, -1, s), distance=cfg.distance
      )[0]
    )
    theirs = sklearn_scores(x, k, s)
    tie = readout_grid._key(keys.TIES, cfg, n, -1, s)
    for f in cfg.fractions:
      sel = lambda sc, mode, key=None: select(
        sc, fraction=f, mode=mode, key=key, labels=y, class_balance=cfg.class_balance, tie_key=tie
      )
      rand = sel(np.zeros(n), "random", readout_grid._key(keys.SELECT, cfg, n, -1, s))
      acc = {}
      kept = {}
      for name, sc in (("jaxprune", ours), ("sklearn", theirs)):
        kept[name] = sel(sc, "hard")
        acc[name] = readout_grid.fit_subset(
          cfg, x[kept[name]], y[kept[name]], xt, test.labels, num_classes=k
        )["acc"]
      acc["random"] = readout_grid.fit_subset(
        cfg, x[rand], y[rand], xt, test.labels, num_classes=k
      )["acc"]
      a, b = set(kept["jaxprune"].tolist()), set(kept["sklearn"].tolist())
      kept_sets["jaxprune", s, f], kept_sets["sklearn", s, f] = a, b
      rows.append(
        {
          "seed": s,
          "fraction": f,
          "n_kept": len(a),
          "acc_jaxprune": acc["jaxprune"],
          "acc_sklearn": acc["sklearn"],
          "acc_random": acc["random"],
          "jaccard": len(a & b) / len(a | b),
        }
      )
      r = rows[-1]
      ours_d, theirs_d = (100 * (r[f"acc_{i}"] - r["acc_random"]) for i in ("jaxprune", "sklearn"))
      print(
        f"seed {s} f {f:.4f}: hard - random jaxprune {ours_d:+.1f}"
        f", sklearn {theirs_d:+.1f}; kept-set Jaccard "
        f"{r['jaccard']:.2f}",
        flush=True,
      )
  io.save_csv(
    os.path.join(cc.workdir, f"compare_prototypes_{cc.features}.csv"),
    {c: [r[c] for r in rows] for c in rows[0]},
  )
  for f in cfg.fractions:
    rs = [r for r in rows if r["fraction"] == f]
    d = lambda impl: 100 * np.array([r[f"acc_{impl}"] - r["acc_random"] for r in rs])
    # how much two seeds of one implementation agree: the yardstick for the Jaccard above
    own = {
      impl: np.mean(
        [
          len(kept_sets[impl, s, f] & kept_sets[impl, s + 1, f])
          / len(kept_sets[impl, s, f] | kept_sets[impl, s + 1, f])
          for s in range(cc.seeds - 1)
        ]
      )
      for impl in ("jaxprune", "sklearn")
    }
    print(
      f"f = {f:.4f}: seed-to-seed Jaccard within jaxprune {own['jaxprune']:.2f}, within "
      f"scikit-learn {own['sklearn']:.2f}"
    )
    print(
      f"f = {f:.4f}: keep-hard minus random, jaxprune {d('jaxprune').mean():+.1f} "
      f"(seeds {np.round(d('jaxprune'), 1).tolist()}), scikit-learn {d('sklearn').mean():+.1f} "
      f"(seeds {np.round(d('sklearn'), 1).tolist()}); Jaccard "
      f"{np.mean([r['jaccard'] for r in rs]):.2f}"
    )


if __name__ == "__main__":
  cli(main)
