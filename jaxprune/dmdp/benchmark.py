"""The Denoised MDP world-model update (forward, backward, Adam), jaxprune beside the authors'
PyTorch release (github.com/facebookresearch/denoised_mdp), measured in the same run.

Every (round, size, side) runs in its own subprocess, so each peak RSS is its own:

* ours, ``python -m jaxprune.dmdp.benchmark ...`` (:func:`time_update`): the shared loop's
  ``make_update`` on ``make_loss_fn`` (Adam, clip 100), jitted once with the state donated, on
  JAX's default backend;
* the release, ``scripts/release_dmdp_timer.py`` under the release's own interpreter
  (``--release_python``): its ``VariationalModelLearning.train_step(..., grad_update=True)``
  (world model only, clip 100, Adam) on its default DMC model, the same 6,562,501 parameters as
  our ``dmdp`` preset, with ``--threads`` torch threads on ``--device``.

Both sides take the same B x T random batch of 64x64x3 images, run ``warmups`` untimed updates
(ours is compiled ahead of them) and report the median of ``repeats`` timed ones. Rounds
interleave the sides (jaxprune first in odd rounds, the release first in even ones) so neither
always gets the warmer machine; the table gives, per size, the median over rounds of each side's
per-round median, the range of those medians, their ratio (release / jaxprune: > 1 means
jaxprune is faster), both peak RSS (max over rounds) and both parameter counts.

Threads: the release runs ``torch.set_num_threads(threads)``; XLA's CPU client has no thread
cap (no flag short of ``taskset``), so ours uses every core the process may run on. On a 2-core
machine with ``--threads 2`` the two are the same.

Build the peer once (a git-ignored checkout and virtualenv; nothing of the release is committed):

  bash scripts/setup_dmdp_release.sh      # -> refs_release/venv, refs_release/denoised_mdp

Without it (or for ``--model`` other than ``dmdp``, which has no counterpart in the release) the
peer is skipped with a message and only ours is timed.

Measure on an idle machine: torch's threads spin when the cores are shared (issue 28: with other
work on the same 2 cores of an AMD EPYC the release's updates took 2.1-15 s, against 2.1-2.3 s
idle), so only an
idle, interleaved comparison means anything.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from jaxprune.core.io import atomic_path
from jaxprune.core.machine import cpu_model, own_peak_rss_gib
from jaxprune.dmdp.benchmark_config import BenchConfig, parse_size
from jaxprune.dmdp.salts import INIT_SALT, TRAIN_SALT

IMAGE_SIZE = 64
IMPLS = ("jaxprune", "release")  # the order of odd rounds; even rounds run it reversed
RELEASE_MODEL = "dmdp"  # the release's default DMC world model is our dmdp preset
RELEASE_TIMER = Path(__file__).resolve().parents[2] / "scripts" / "release_dmdp_timer.py"
SETUP_COMMAND = "bash scripts/setup_dmdp_release.sh"


def time_update(
  model: str,
  b: int,
  t: int,
  *,
  repeats: int,
  warmups: int,
  method: str,
  seed: int,
  pixel_chunk: int = 0,
) -> dict:
  """Compile and time the world-model update at ``b x t`` in this process: ``warmups`` untimed
  updates after compiling ahead of time, then the median of ``repeats`` timed ones."""
  import jax
  import numpy as np

  from jaxprune import dmdp
  from jaxprune.core.loop import create_state, make_update

  cfg = dmdp.preset(model, deconv_method=method, pixel_chunk=pixel_chunk)
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
  params = dmdp.num_params(state.params)
  t0 = time.perf_counter()
  update = update.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  rss_compiled = own_peak_rss_gib()
  temp_gib = update.memory_analysis().temp_size_in_bytes / 2**30
  times = []
  for _ in range(warmups + repeats):
    t0 = time.perf_counter()
    state, m = update(state, batch)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t0)
  timed = times[warmups:]
  return {
    "impl": "jaxprune",
    "model": model,
    "batch": b,
    "T": t,
    "method": method,
    "pixel_chunk": pixel_chunk,
    "params": params,
    "first_call_s": compile_s + times[0],
    "s_per_update": statistics.median(timed),
    "times": timed,
    "peak_rss_gib": own_peak_rss_gib(),
    # where the memory goes: the process's peak once init and compilation are done (before any
    # update), and XLA's scratch buffer for one update
    "compile_s": compile_s,
    "peak_rss_compiled_gib": rss_compiled,
    "xla_temp_gib": temp_gib,
    "device": jax.default_backend(),
    "jax": jax.__version__,
    "loss": float(m["loss"]),
  }


def our_command(cfg: BenchConfig, b: int, t: int) -> list[str]:
  """The subprocess that times our update at ``b x t`` (see ``__main__`` below)."""
  args = [cfg.model, b, t, cfg.repeats, cfg.warmups, cfg.method, cfg.seed, cfg.pixel_chunk]
  return [sys.executable, "-m", "jaxprune.dmdp.benchmark", *map(str, args)]


def release_command(cfg: BenchConfig, b: int, t: int) -> list[str]:
  """The subprocess that times the release's update at ``b x t`` under its own interpreter."""
  flags = {
    "release_dir": os.path.abspath(cfg.release_dir),
    "batch": b,
    "T": t,
    "repeats": cfg.repeats,
    "warmups": cfg.warmups,
    "threads": cfg.threads,
    "seed": cfg.seed,
    "device": cfg.device,
  }
  argv = [a for k, v in flags.items() for a in (f"--{k}", str(v))]
  return [os.path.abspath(cfg.release_python), str(RELEASE_TIMER), *argv]


def peer_skip_reason(cfg: BenchConfig) -> str | None:
  """Why the release cannot be timed beside ours (None when it can)."""
  if cfg.model != RELEASE_MODEL:
    return (
      f"--model {cfg.model} has no counterpart in the release (its default DMC world model is "
      f"our {RELEASE_MODEL} preset, 6,562,501 parameters); timing jaxprune only"
    )
  missing = []
  if not (os.path.isfile(cfg.release_python) and os.access(cfg.release_python, os.X_OK)):
    missing.append(f"--release_python {cfg.release_python} (no such executable)")
  if not os.path.isfile(os.path.join(cfg.release_dir, "config.py")):
    missing.append(f"--release_dir {cfg.release_dir} (no checkout of the release)")
  if not RELEASE_TIMER.is_file():
    missing.append(f"{RELEASE_TIMER} (the release's timer script)")
  if not missing:
    return None
  return (
    f"missing {'; '.join(missing)}. Build it with `{SETUP_COMMAND}` (-> refs_release/venv and "
    "refs_release/denoised_mdp, the defaults of --release_python and --release_dir; "
    f"`DEST=DIR {SETUP_COMMAND}` builds DIR/venv and DIR/denoised_mdp); timing jaxprune only"
  )


def run_child(cmd: list[str]) -> dict:
  """Run one timing subprocess; its row is the JSON on the last line of its stdout (the lines
  before it are its logs)."""
  proc = subprocess.run(cmd, capture_output=True, text=True)
  lines = proc.stdout.strip().splitlines()
  if proc.returncode != 0 or not lines:
    raise RuntimeError(
      f"{shlex.join(cmd)} failed (exit status {proc.returncode}); the end of its stderr:\n"
      f"{proc.stderr[-4000:]}"
    )
  try:
    return json.loads(lines[-1])
  except json.JSONDecodeError as e:
    raise RuntimeError(
      f"{shlex.join(cmd)}: its last stdout line is not a JSON row: {lines[-1][:200]!r}"
    ) from e


def run(cfg: BenchConfig) -> list[dict]:
  """Time every size on both sides, ``cfg.rounds`` interleaved rounds, one subprocess each; print
  a line per run and the table per size; write both to ``cfg.out`` if given. Returns the runs'
  rows (``impl``, ``round``, ``batch``, ``T``, ``s_per_update``, ``peak_rss_gib``, ...)."""
  skip = peer_skip_reason(cfg)
  if skip:
    print(f"release peer skipped: {skip}", flush=True)
  impls = IMPLS[:1] if skip else IMPLS
  rows = []
  for rnd in range(1, cfg.rounds + 1):
    order = impls if rnd % 2 == 1 else impls[::-1]
    for size in cfg.sizes:
      b, t = parse_size(size)
      for impl in order:
        cmd = our_command(cfg, b, t) if impl == "jaxprune" else release_command(cfg, b, t)
        row = run_child(cmd)
        if (row.get("impl"), row.get("batch"), row.get("T")) != (impl, b, t):
          raise RuntimeError(f"{shlex.join(cmd)} timed something else: {json.dumps(row)[:300]}")
        rows.append({"kind": "run", "round": rnd, **row})
        print(f"round {rnd}/{cfg.rounds}  {_run_line(rows[-1])}", flush=True)
  summary = summarize(rows)
  print(format_table(cfg, summary), flush=True)
  if cfg.out:
    with atomic_path(cfg.out) as tmp, open(tmp, "w") as f:
      f.writelines(json.dumps(r, allow_nan=False) + "\n" for r in rows + summary)
    print(f"rows: {cfg.out}")
  return rows


def summarize(rows: list[dict]) -> list[dict]:
  """One row per size (in the order first timed): per side the median over rounds of the
  per-round medians, their range, peak RSS (max over rounds), parameters, device and version;
  ``speedup`` = release / jaxprune seconds (> 1: jaxprune is faster) and ``memory_ratio`` =
  jaxprune / release peak RSS (> 1: jaxprune takes more), None without the release."""
  out = []
  cpu = cpu_model()
  for b, t in dict.fromkeys((r["batch"], r["T"]) for r in rows):
    s = {"kind": "summary", "batch": b, "T": t, "cpu": cpu}
    for impl in IMPLS:
      runs = [r for r in rows if (r["batch"], r["T"], r["impl"]) == (b, t, impl)]
      if not runs:
        s[impl] = None
        continue
      medians = [r["s_per_update"] for r in runs]
      s[impl] = {
        "s_per_update": statistics.median(medians),
        "range": [min(medians), max(medians)],
        "rounds": len(runs),
        "peak_rss_gib": max(r["peak_rss_gib"] for r in runs),
        "params": sorted({r["params"] for r in runs}),
        "device": runs[0]["device"],
        "version": runs[0].get("jax" if impl == "jaxprune" else "torch"),
        "threads": runs[0].get("threads"),
      }
    ours, ref = s["jaxprune"], s["release"]
    both = ours is not None and ref is not None
    s["speedup"] = ref["s_per_update"] / ours["s_per_update"] if both else None
    s["memory_ratio"] = ours["peak_rss_gib"] / ref["peak_rss_gib"] if both else None
    s["params_match"] = ours["params"] == ref["params"] if both else None
    out.append(s)
  return out


def format_table(cfg: BenchConfig, summary: list[dict]) -> str:
  """The per-size table (markdown) with the machine, the versions and any warnings."""
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  first = summary[0]
  ours, ref = first["jaxprune"], first["release"]
  setup = (
    f"{cfg.model} (deconv {cfg.method}, pixel_chunk {cfg.pixel_chunk}), {cfg.rounds} "
    f"interleaved round(s) x {cfg.repeats} timed update(s) after "
    f"{cfg.warmups} warm-up(s); CPU: {first['cpu']} ({cores} cores); jax {ours['version']} "
    f"({ours['device']}; XLA uses every core)"
  )
  if ref is not None:
    setup += f"; torch {ref['version']} ({ref['device']}, {ref['threads']} threads)"
  lines = [
    "",
    setup,
    "",
    "| B x T | jaxprune s/update | release s/update | release / jaxprune | "
    "peak RSS jaxprune / release | params jaxprune / release |",
    "| --- | --- | --- | --- | --- | --- |",
  ]
  warnings = []
  for s in summary:
    ours, ref = s["jaxprune"], s["release"]
    cells = [f"{s['batch']} x {s['T']}", _seconds(ours), _seconds(ref)]
    if ref is None:
      cells += ["-", f"{ours['peak_rss_gib']:.2f} GiB / -", f"{_params(ours)} / -"]
    else:
      cells += [
        f"{s['speedup']:.2f}x",
        f"{ours['peak_rss_gib']:.2f} / {ref['peak_rss_gib']:.2f} GiB ({s['memory_ratio']:.2f}x)",
        f"{_params(ours)} / {_params(ref)}",
      ]
      if not s["params_match"]:
        warnings.append(
          f"WARNING: at {s['batch']} x {s['T']} the two sides have different parameter counts "
          f"(jaxprune {_params(ours)}, release {_params(ref)}): they are not the same model, "
          "and the ratios compare different work"
        )
    lines.append("| " + " | ".join(cells) + " |")
  lines.append(
    "\ns/update: median over rounds of each round's median (min-max of those medians); "
    "release / jaxprune > 1 means jaxprune is faster; peak RSS: max over rounds "
    "(jaxprune / release > 1 means jaxprune takes more)"
  )
  if ref is None:
    lines.append("(release not timed)")
  return "\n".join(lines + warnings)


def _run_line(r: dict) -> str:
  runs = ", ".join(f"{x:.2f}" for x in r["times"])
  return (
    f"{r['batch']:>3} x {r['T']:<3} {r['impl']:<8} {r['s_per_update']:.2f} s/update (runs "
    f"{runs}), first call {r['first_call_s']:.1f} s, peak RSS {r['peak_rss_gib']:.2f} GiB, "
    f"{r['params']:,} params, {r['device']}"
    + (
      f" (peak RSS {r['peak_rss_compiled_gib']:.2f} GiB after init + compilation, before any "
      f"update; XLA scratch {r['xla_temp_gib']:.2f} GiB)"
      if "peak_rss_compiled_gib" in r
      else ""
    )
  )


def _seconds(side: dict | None) -> str:
  if side is None:
    return "-"
  lo, hi = side["range"]
  return f"{side['s_per_update']:.2f} s ({lo:.2f}-{hi:.2f})"


def _params(side: dict) -> str:
  return "/".join(f"{p:,}" for p in side["params"])


if __name__ == "__main__":  # one size, in the subprocess run() starts
  model, b, t, repeats, warmups, method, seed, chunk = sys.argv[1:]
  row = time_update(
    model,
    int(b),
    int(t),
    repeats=int(repeats),
    warmups=int(warmups),
    method=method,
    seed=int(seed),
    pixel_chunk=int(chunk),
  )
  print(json.dumps(row))
