"""The fair k-means benchmark's plumbing (jaxprune/pruning/converge_benchmark.py): kernels per
peer, the target's iteration count, time to target, the verdict on the fixed point."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxprune.pruning import converge_benchmark as cb


def test_kernel_env_sets_unsets_or_keeps(monkeypatch):
  monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
  monkeypatch.setenv("OPENBLAS_L2_SIZE", "512")
  assert cb.kernel_env("env")["OPENBLAS_CORETYPE"] == "Haswell"
  unset = cb.kernel_env("unset")
  assert "OPENBLAS_CORETYPE" not in unset and "OPENBLAS_L2_SIZE" not in unset
  forced = cb.kernel_env("SkylakeX")
  assert forced["OPENBLAS_CORETYPE"] == "SkylakeX" and "OPENBLAS_L2_SIZE" not in forced
  assert cb.kernel_candidates()[:2] == ["env", "unset"]


def test_kernel_of_names_each_peers_library():
  libs = [
    {"lib": "faiss_cpu.libs/libopenblaso-r0.3.15.so", "arch": "SkylakeX", "version": "0.3.15"},
    {"lib": "scipy.libs/libscipy_openblas-6cd.so", "arch": "Haswell", "version": "0.3.30"},
  ]
  assert cb.kernel_of("faiss", libs) == "OpenBLAS 0.3.15 SkylakeX"
  assert cb.kernel_of("sklearn-lloyd", libs) == "OpenBLAS 0.3.30 Haswell"
  assert cb.kernel_of("jaxprune-auto", libs) == "XLA (no OpenBLAS)"
  assert cb.kernel_of("faiss", libs[1:]) == "unknown"


def test_time_to_target():
  # scikit-learn's / faiss's records: (seconds, the inertia of that iteration's assignment)
  traj = [(0.1, 100.0), (0.2, 50.0), (0.3, 20.2), (0.4, 20.0)]
  assert cb.time_to_target({"trajectory": traj}, 20.2) == 0.3
  assert cb.time_to_target({"trajectory": traj}, 1.0) is None
  # jaxprune: its own run of that many iterations counts only if it got there
  assert cb.time_to_target({"target_seconds": 1.5, "target_inertia": 20.1}, 20.2) == 1.5
  assert cb.time_to_target({"target_seconds": 1.5, "target_inertia": 30.0}, 20.2) is None


def _row(peer, secs, same=True, target=None, **kw):
  return {"dataset": "d", "peer": peer, "seconds": secs, "same_fixed_point": same,
          "seconds_to_target": target, **kw}  # fmt: skip


def test_ratios_take_the_fastest_peer():
  rows = [
    _row("jaxprune-auto", 2.0, target=1.0),
    _row("jaxprune-lloyd", 3.0),
    _row("sklearn-lloyd", 5.0, target=4.0),
    _row("faiss", 4.0, same=False, target=None),
  ]
  q = cb.ratios(rows)
  # faiss is faster but stopped elsewhere: the fixed-point ratio takes the fastest peer there
  assert q["best_peer"] == "sklearn-lloyd" and q["best_over_auto"] == 2.5
  assert q["best_peer_target"] == "sklearn-lloyd" and q["best_over_auto_target"] == 4.0
  assert q["lloyd_over_auto"] == 1.5
  assert cb.ratios(rows[1:]) == {}
  # no peer at the same fixed point: no fixed-point ratio, the target's still
  q = cb.ratios([rows[0], _row("faiss", 4.0, same=False, target=3.0)])
  assert "best_peer" not in q and q["best_over_auto_target"] == 3.0


@pytest.mark.slow  # a whole (tiny) run: every peer in its own process
def test_converge_run_end_to_end(tmp_path):
  out = tmp_path / "c.json"
  cmd = [
    sys.executable, "scripts/bench_kmeans.py", "--n", "3000", "--d", "16", "--kmeans.k", "30",
    "--kmeans.max_iter", "40", "--data", "blobs", "--out", str(out),
    "--data_dir", str(tmp_path / "data"),
    "--peers", "jaxprune-auto", "jaxprune-lloyd", "sklearn-lloyd", "faiss",
  ]  # fmt: skip
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  r = subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  res = json.loads(out.read_text())
  by = {row["peer"]: row for row in res["rows"]}
  assert set(by) == {"jaxprune-auto", "jaxprune-lloyd", "sklearn-lloyd", "faiss"}
  # jaxprune's bounds reach Lloyd's own fixed point (the evaluator's float64 inertia)
  assert by["jaxprune-auto"]["same_fixed_point"] and by["jaxprune-lloyd"]["rel_to_lloyd"] == 0
  assert by["faiss"]["n_iter"] == by["jaxprune-lloyd"]["n_iter"]  # it runs Lloyd's iterations
  assert by["sklearn-lloyd"]["kernel"].startswith("OpenBLAS")
  assert np.isfinite(by["sklearn-lloyd"]["inertia64"])
  assert set(res["kernels"]) == {"sklearn", "faiss"}
  md = (tmp_path / "c.md").read_text()
  assert md.count("| blobs | jaxprune-") == 2 and md.count("| blobs |") == 5  # + the summary
