"""The world-model benchmark (jaxprune.dmdp.benchmark): the release peer's plumbing, the
interleaving of the sides, the table and the rows file. No test asserts a time."""

import os
import sys

import pytest

from jaxprune.core.config import parse
from jaxprune.core.io import read_jsonl
from jaxprune.dmdp import benchmark
from jaxprune.dmdp.benchmark_config import BenchConfig

DMDP_PARAMS = 6_562_501  # our dmdp preset and the release's default DMC world model


def fake_peer(tmp_path):
  """A release interpreter and checkout that pass the presence checks (never run here)."""
  python = tmp_path / "venv" / "bin" / "python"
  python.parent.mkdir(parents=True)
  python.write_text("#!/bin/sh\nexit 1\n")
  python.chmod(0o755)
  checkout = tmp_path / "denoised_mdp"
  checkout.mkdir()
  (checkout / "config.py").write_text("")
  return ["--release_python", str(python), "--release_dir", str(checkout)]


# per-round medians (s) and peak RSS (GiB) the fake children report
OURS_S, RELEASE_S = {1: 2.0, 2: 2.2, 3: 1.9}, {1: 3.0, 2: 2.5, 3: 4.0}
OURS_RSS, RELEASE_RSS = {1: 3.0, 2: 3.3, 3: 3.1}, {1: 1.2, 2: 1.1, 3: 1.0}


def fake_children(monkeypatch, release_params=DMDP_PARAMS):
  """Replace the subprocesses by rows made up from the command; returns the calls made."""
  calls, rnd = [], {}

  def run_child(cmd):
    if cmd[1] == str(benchmark.RELEASE_TIMER):
      impl, b, t = "release", int(cmd[cmd.index("--batch") + 1]), int(cmd[cmd.index("--T") + 1])
    else:
      assert cmd[1:3] == ["-m", "jaxprune.dmdp.benchmark"]
      impl, b, t = "jaxprune", int(cmd[4]), int(cmd[5])
    calls.append((impl, b, t, cmd))
    r = rnd[impl, b, t] = rnd.get((impl, b, t), 0) + 1  # the round, as the child cannot know it
    scale = b * t / 8
    seconds, rss = (OURS_S, OURS_RSS) if impl == "jaxprune" else (RELEASE_S, RELEASE_RSS)
    row = {
      "impl": impl,
      "batch": b,
      "T": t,
      "s_per_update": seconds[r] * scale,
      "times": [seconds[r] * scale] * 2,
      "first_call_s": 9.0,
      "peak_rss_gib": rss[r],
      "params": DMDP_PARAMS if impl == "jaxprune" else release_params,
      "device": "cpu",
    }
    row.update({"jax": "0.1"} if impl == "jaxprune" else {"torch": "2.0", "threads": 3})
    return row

  monkeypatch.setattr(benchmark, "run_child", run_child)
  return calls


def test_rounds_interleave_the_sides_and_the_table_takes_medians_over_rounds(
  tmp_path, monkeypatch, capsys
):
  calls = fake_children(monkeypatch)
  out = tmp_path / "rows" / "bench.jsonl"
  argv = ["--sizes", "2x4", "4x4", "--rounds", "3", "--repeats", "4", "--warmups", "2"]
  argv += ["--threads", "3", "--seed", "7", "--out", str(out), *fake_peer(tmp_path)]
  rows = benchmark.run(parse(BenchConfig, argv))

  j, r = "jaxprune", "release"
  odd = [(j, 2, 4), (r, 2, 4), (j, 4, 4), (r, 4, 4)]
  even = [(r, 2, 4), (j, 2, 4), (r, 4, 4), (j, 4, 4)]
  assert [c[:3] for c in calls] == odd + even + odd  # the release goes first in round 2
  assert [(x["round"], x["impl"], x["batch"]) for x in rows] == [
    (k // 4 + 1, impl, b) for k, (impl, b, _) in enumerate(odd + even + odd)
  ]

  release_cmd = next(c[3] for c in calls if c[0] == "release")
  flags = dict(zip(release_cmd[2::2], release_cmd[3::2]))
  assert flags == {
    "--release_dir": str(tmp_path / "denoised_mdp"),
    "--batch": "2",
    "--T": "4",
    "--repeats": "4",
    "--warmups": "2",
    "--threads": "3",
    "--seed": "7",
    "--device": "cpu",
  }
  assert release_cmd[0] == str(tmp_path / "venv" / "bin" / "python")
  our_cmd = next(c[3] for c in calls if c[0] == "jaxprune")
  assert our_cmd[3:] == ["dmdp", "2", "4", "4", "2", "auto", "7", "0"]

  summary = benchmark.summarize(rows)
  assert [(s["batch"], s["T"]) for s in summary] == [(2, 4), (4, 4)]
  s = summary[0]  # scale 1: the made-up figures themselves
  assert s["jaxprune"]["s_per_update"] == 2.0 and s["jaxprune"]["range"] == [1.9, 2.2]
  assert s["release"]["s_per_update"] == 3.0 and s["release"]["range"] == [2.5, 4.0]
  assert s["speedup"] == pytest.approx(1.5)
  assert s["jaxprune"]["peak_rss_gib"] == 3.3 and s["release"]["peak_rss_gib"] == 1.2
  assert s["memory_ratio"] == pytest.approx(3.3 / 1.2)
  assert s["params_match"] and s["jaxprune"]["params"] == [DMDP_PARAMS]
  assert s["release"]["version"] == "2.0" and s["release"]["threads"] == 3
  assert summary[1]["jaxprune"]["s_per_update"] == 4.0  # scale 2

  text = capsys.readouterr().out
  assert text.count("round 1/3") == text.count("round 2/3") == text.count("round 3/3") == 4
  row = "| 2 x 4 | 2.00 s (1.90-2.20) | 3.00 s (2.50-4.00) | 1.50x | 3.30 / 1.20 GiB (2.75x) |"
  assert row in text
  assert "| 4 x 4 | 4.00 s (3.80-4.40) | 6.00 s (5.00-8.00) | 1.50x |" in text
  assert "torch 2.0 (cpu, 3 threads)" in text and "jax 0.1" in text
  assert benchmark.cpu_model() in text
  assert "WARNING" not in text and "skipped" not in text

  saved = read_jsonl(str(out))
  assert [x["kind"] for x in saved] == ["run"] * 12 + ["summary"] * 2
  assert saved[:12] == rows and saved[12:] == summary
  assert os.listdir(out.parent) == ["bench.jsonl"]  # no temporary file left behind


def test_different_parameter_counts_are_a_loud_warning(tmp_path, monkeypatch, capsys):
  fake_children(monkeypatch, release_params=DMDP_PARAMS + 1)
  argv = ["--sizes", "2x4", "--rounds", "1", *fake_peer(tmp_path)]
  summary = benchmark.summarize(benchmark.run(parse(BenchConfig, argv)))
  assert summary[0]["params_match"] is False
  text = capsys.readouterr().out
  assert "WARNING: at 2 x 4 the two sides have different parameter counts" in text


def test_other_models_skip_the_peer(tmp_path, monkeypatch, capsys):
  calls = fake_children(monkeypatch)
  argv = ["--model", "dreamer", "--sizes", "2x4", "--rounds", "2", *fake_peer(tmp_path)]
  rows = benchmark.run(parse(BenchConfig, argv))
  assert [c[0] for c in calls] == ["jaxprune", "jaxprune"]
  assert [x["impl"] for x in rows] == ["jaxprune", "jaxprune"]
  text = capsys.readouterr().out
  assert "release peer skipped: --model dreamer has no counterpart in the release" in text
  assert benchmark.summarize(rows)[0]["release"] is None and "(release not timed)" in text


def test_a_child_row_is_its_last_stdout_line_and_a_failure_shows_its_stderr():
  logs = "print('a log line'); import sys; print('a warning', file=sys.stderr); print('[1, 2]')"
  assert benchmark.run_child([sys.executable, "-c", logs]) == [1, 2]
  fail = "import sys; print('{}'); print('the reason', file=sys.stderr); sys.exit(3)"
  with pytest.raises(RuntimeError, match="(?s)exit status 3.*the reason"):
    benchmark.run_child([sys.executable, "-c", fail])
  with pytest.raises(RuntimeError, match="not a JSON row"):
    benchmark.run_child([sys.executable, "-c", "print('{}'); print('done')"])


@pytest.mark.parametrize(
  "fields, message",
  [
    ({"rounds": 0}, "rounds must be >= 1"),
    ({"warmups": 0}, "warmups must be >= 1"),
    ({"repeats": 0}, "repeats must be >= 1"),
    ({"threads": 0}, "threads must be >= 1"),
    ({"pixel_chunk": -1}, "pixel_chunk must be >= 0"),
    ({"sizes": ("16x",)}, "sizes must look like 16x50"),
    ({"sizes": ("16x50", "16X50")}, "a size repeats"),
    ({"release_python": ""}, "release_python must not be empty"),
    ({"out": ""}, "out must be a file name"),
  ],
)
def test_bad_configs_say_what_is_wrong(fields, message):
  with pytest.raises(ValueError, match=message):
    BenchConfig(**fields)


@pytest.mark.slow  # a real (tiny) compile and update of the 6.5M-parameter world model
def test_without_the_peer_it_says_how_to_build_it_and_times_ours(tmp_path, capsys):
  out = tmp_path / "bench.jsonl"
  argv = ["--sizes", "2x4", "--repeats", "1", "--rounds", "1", "--warmups", "1"]
  argv += ["--release_python", str(tmp_path / "nope" / "python"), "--out", str(out)]
  rows = benchmark.run(parse(BenchConfig, argv))
  text = capsys.readouterr().out
  assert "release peer skipped: missing --release_python" in text
  assert f"Build it with `{benchmark.SETUP_COMMAND}`" in text
  assert [(r["impl"], r["batch"], r["T"], r["round"]) for r in rows] == [("jaxprune", 2, 4, 1)]
  assert rows[0]["params"] == DMDP_PARAMS  # the release's model size
  assert len(rows[0]["times"]) == 1 and rows[0]["loss"] == rows[0]["loss"]  # not NaN
  assert "| 2 x 4 |" in text and "(release not timed)" in text
  assert [r["kind"] for r in read_jsonl(str(out))] == ["run", "summary"]
