"""World-model updates per second (forward, backward, Adam) of the Denoised MDP world model.

Each size runs in its own subprocess (``python -m jaxprune.dmdp.benchmark ...``) so that its peak
RSS is its own. The update is the shared loop's ``make_update`` on ``make_loss_fn`` (Adam, clip
100), jitted once with the state donated; timings exclude compilation (median of ``repeats``
updates after one warm-up). The ratio is to the refs' figure for the authors' PyTorch release on
this machine (2.75 s per world-model update at 16 x 50, 10.7 s at 50 x 50; torch 2.13 CPU, 2
threads): measured in another run, not this one.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

from jaxprune.dmdp.benchmark_config import BenchConfig, parse_size
from jaxprune.dmdp.salts import INIT_SALT, TRAIN_SALT

REFERENCE_S = {(16, 50): 2.75, (50, 50): 10.7}  # refs: PyTorch release, world model only
IMAGE_SIZE = 64


def time_update(model: str, b: int, t: int, repeats: int, method: str, seed: int) -> dict:
  """Compile and time the world-model update at ``b x t`` in this process."""
  import jax
  import numpy as np

  from jaxprune import dmdp
  from jaxprune.core.loop import create_state, make_update

  cfg = dmdp.preset(model, deconv_method=method)
  opt = dmdp.make_optimizer()
  key = jax.random.key(seed)
  state = create_state(
    dmdp.init(cfg, jax.random.fold_in(key, INIT_SALT)), opt, jax.random.fold_in(key, TRAIN_SALT)
  )
  r = np.random.default_rng(seed)
  batch = jax.device_put(
    {
      "image": r.integers(0, 256, (b, t, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8),
      "action": r.uniform(-1, 1, (b, t, cfg.action_dim)).astype(np.float32),
      "reward": r.normal(size=(b, t)).astype(np.float32),
    }
  )
  update = jax.jit(make_update(dmdp.make_loss_fn(cfg), opt), donate_argnums=0)
  t0 = time.perf_counter()
  state, m = update(state, batch)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    state, m = update(state, batch)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t0)
  return {
    "model": model,
    "batch": b,
    "T": t,
    "method": method,
    "params": dmdp.num_params(state.params),
    "first_call_s": compile_s,
    "s_per_update": float(np.median(times)),
    "times": times,
    "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    "device": str(jax.devices()[0].platform),
    "loss": float(m["loss"]),
  }


def run(cfg: BenchConfig) -> list[dict]:
  """Time every size (one subprocess each) and print a line per size; returns the rows."""
  rows = []
  for size in cfg.sizes:
    b, t = parse_size(size)
    cmd = [
      sys.executable,
      "-m",
      "jaxprune.dmdp.benchmark",
      cfg.model,
      str(b),
      str(t),
      str(cfg.repeats),
      cfg.method,
      str(cfg.seed),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows.append(json.loads(out.strip().splitlines()[-1]))
    r = rows[-1]
    ref = REFERENCE_S.get((r["batch"], r["T"]))
    ratio = (
      (
        f"{r['s_per_update'] / ref:.2f}x the refs' PyTorch figure ({ref} s, measured in "
        "another run)"
      )
      if ref
      else ""
    )
    runs = ", ".join(f"{x:.2f}" for x in r["times"])
    print(
      f"{cfg.model} {r['batch']:>3} x {r['T']}: {r['s_per_update']:.2f} s/update "
      f"({1 / r['s_per_update']:.2f} updates/s; runs {runs}), first call "
      f"{r['first_call_s']:.1f} s, peak RSS {r['peak_rss_gib']:.2f} GiB, {r['params']:,} "
      f"params, {r['device']}; {ratio}",
      flush=True,
    )
  r = next((r for r in rows if (r["batch"], r["T"]) == (16, 50)), None)
  if r is not None:
    target = 1.5 * REFERENCE_S[(16, 50)]
    print(
      f"target <= {target:.2f} s/update at 16 x 50 (1.5x the refs' 2.75 s): "
      f"{'met' if r['s_per_update'] <= target else 'MISSED'}"
    )
  return rows


if __name__ == "__main__":  # one size, in the subprocess run() starts
  model, b, t, repeats, method, seed = sys.argv[1:]
  print(json.dumps(time_update(model, int(b), int(t), int(repeats), method, int(seed))))
