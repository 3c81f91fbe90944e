"""World-model updates per second (forward, backward, Adam) of the Denoised MDP world model.

  python scripts/bench_dmdp.py                         # 16 x 50 and 50 x 50, 64x64x3, preset 2b
  python scripts/bench_dmdp.py --preset dreamer --sizes 16x50

Each size runs in its own subprocess so that its peak RSS is its own. The update is the shared
loop's ``make_update`` on ``make_loss_fn`` (Adam, clip 100), jitted once with the state donated;
timings exclude compilation (median of ``--repeats`` updates after one warm-up). The ratio is to
the refs' figure for the authors' PyTorch release on this machine (2.75 s per world-model update
at 16 x 50, 10.7 s at 50 x 50; torch 2.13 CPU, 2 threads): measured in another run, not this one.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

REFERENCE_S = {(16, 50): 2.75, (50, 50): 10.7}  # refs: PyTorch release, world model only


def run_one(preset: str, b: int, t: int, repeats: int, method: str) -> dict:
  import jax
  import numpy as np

  from jaxprune import dmdp
  from jaxprune.core.loop import create_state, make_update

  cfg = dmdp.preset(preset, deconv_method=method)
  opt = dmdp.make_optimizer()
  state = create_state(dmdp.init(cfg, jax.random.key(0)), opt, jax.random.key(1))
  r = np.random.default_rng(0)
  batch = jax.device_put({
      "image": r.integers(0, 256, (b, t, 64, 64, 3), dtype=np.uint8),
      "action": r.uniform(-1, 1, (b, t, cfg.action_dim)).astype(np.float32),
      "reward": r.normal(size=(b, t)).astype(np.float32)})
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
  return {"preset": preset, "batch": b, "T": t, "method": method,
          "params": dmdp.num_params(state.params), "first_call_s": compile_s,
          "s_per_update": float(np.median(times)), "times": times,
          "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
          "device": str(jax.devices()[0].platform), "loss": float(m["loss"])}


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--preset", default="2b", choices=["2b", "2c", "dreamer"])
  p.add_argument("--sizes", default="16x50,50x50", help="comma-separated BxT")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--method", default="auto", choices=["auto", "col2im", "subpixel"],
                 help="transposed-conv formulation of the decoder")
  p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one size
  a = p.parse_args()
  if a.one:
    b, t = map(int, a.one.split("x"))
    print(json.dumps(run_one(a.preset, b, t, a.repeats, a.method)))
    return
  rows = []
  for size in a.sizes.split(","):
    cmd = [sys.executable, __file__, "--preset", a.preset, "--repeats", str(a.repeats),
           "--method", a.method, "--one", size]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows.append(json.loads(out.strip().splitlines()[-1]))
    r = rows[-1]
    ref = REFERENCE_S.get((r["batch"], r["T"]))
    ratio = f"{r['s_per_update'] / ref:.2f}x the refs' 2.75 s" if ref else ""
    if ref:
      ratio = (f"{r['s_per_update'] / ref:.2f}x the refs' PyTorch figure ({ref} s, measured in "
               "another run)")
    print(f"{a.preset} {r['batch']:>3} x {r['T']}: {r['s_per_update']:.2f} s/update "
          f"({1 / r['s_per_update']:.2f} updates/s; runs {', '.join(f'{x:.2f}' for x in r['times'])}"
          f"), first call {r['first_call_s']:.1f} s, peak RSS {r['peak_rss_gib']:.2f} GiB, "
          f"{r['params']:,} params, {r['device']}; {ratio}", flush=True)
  if any((r["batch"], r["T"]) == (16, 50) for r in rows):
    r = next(r for r in rows if (r["batch"], r["T"]) == (16, 50))
    target = 1.5 * REFERENCE_S[(16, 50)]
    print(f"target <= {target:.2f} s/update at 16 x 50 (1.5x the refs' 2.75 s): "
          f"{'met' if r['s_per_update'] <= target else 'MISSED'}")


if __name__ == "__main__":
  main()
