"""Training throughput: the scanned loop (K steps per dispatch, lax.scan) against a plain
per-step jitted Python loop, same model, same on-device data, same steps, in one run.

  python scripts/bench_train.py                        # SmallCNN on digits, batch 64
  python scripts/bench_train.py --model resnet18 --data cifar10 --data_dir ~/tensorflow_datasets
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxprune.pruning import classifiers as classify  # noqa: E402
from jaxprune.pruning import data as data_lib  # noqa: E402
from jaxprune.core.loop import create_state, make_data_step, make_update, run_steps, to_device  # noqa


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--data", default="digits")
  p.add_argument("--data_dir", default=None)
  p.add_argument("--model", default="cnn")
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--steps", type=int, default=400)
  p.add_argument("--k", type=int, default=50, help="steps per dispatch of the scanned loop")
  p.add_argument("--repeats", type=int, default=3)
  a = p.parse_args()
  train = data_lib.load(a.data, data_dir=a.data_dir)
  cfg = classify.ClassifierConfig(model=a.model, steps=a.steps, batch_size=a.batch_size)
  clf = classify.build(cfg, num_classes=int(train.labels.max()) + 1,
                       image_shape=train.images.shape[1:])
  data = to_device(train.images, train.labels)
  step = make_data_step(make_update(clf.loss_fn, clf.optimizer), batch_size=a.batch_size,
                        preprocess=clf.preprocess)
  fresh = lambda: create_state(clf.init_fn(jax.random.key(0)), clf.optimizer, jax.random.key(1))
  n_disp = a.steps // a.k

  per_step = jax.jit(step, donate_argnums=0)
  scanned = jax.jit(lambda s, d: run_steps(lambda st, _: step(st, d), s, length=a.k),
                    donate_argnums=0)

  def loop_per_step():
    s = fresh()
    for _ in range(n_disp * a.k):
      s, m = per_step(s, data)
    return jax.block_until_ready(s)

  def loop_scanned():
    s = fresh()
    for _ in range(n_disp):
      s, m = scanned(s, data)
    return jax.block_until_ready(s)

  out = {}
  for name, fn in (("per-step jit", loop_per_step), ("scanned", loop_scanned)):
    fn()  # compile
    ts = []
    for _ in range(a.repeats):
      t = time.perf_counter()
      fn()
      ts.append(time.perf_counter() - t)
    out[name] = n_disp * a.k * a.batch_size / min(ts)
  a1, a2 = out["per-step jit"], out["scanned"]
  params = sum(x.size for x in jax.tree.leaves(fresh().params))
  print(f"{a.model} ({params:,} params) on {train.name}, batch {a.batch_size}, "
        f"{n_disp * a.k} steps, {jax.devices()[0].platform}")
  print(f"per-step jitted Python loop: {a1:10.0f} examples/s")
  print(f"scanned loop (K={a.k}):       {a2:10.0f} examples/s")
  print(f"scanned / per-step: {a2 / a1:.2f}x")


if __name__ == "__main__":
  main()
