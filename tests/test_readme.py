"""The README's code blocks run as written (each in a fresh process, in a temporary directory)."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _blocks() -> list[str]:
  with open(os.path.join(ROOT, "README.md")) as f:
    return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def _case(block: str):
  slow = "dmdp" in block  # compiles the full 64 px agent: over a minute of CPU
  return pytest.param(block, marks=[pytest.mark.slow] if slow else [], id=block.split("\n")[0])


def test_readme_has_the_three_examples():
  blocks = _blocks()
  assert len(blocks) == 3
  assert "jaxprune.kmeans" in blocks[0] and "fit(" in blocks[1] and "dmdp.observe" in blocks[2]


@pytest.mark.parametrize("block", [_case(b) for b in _blocks()])
def test_readme_block_runs(block, tmp_path):
  # the loop example writes its Run under /tmp/jaxprune_readme_run: point it into tmp_path
  code = block.replace("/tmp/jaxprune_readme_run", str(tmp_path / "run"))
  env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
  env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
  out = subprocess.run(
    [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
  )
  assert out.returncode == 0, out.stderr[-3000:]
  if "fit(" in block:  # the loop: trained to the end, and a rerun resumes there (no new steps)
    assert out.stdout.startswith("200 [{'step': 200"), out.stdout
    again = subprocess.run(
      [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert again.returncode == 0 and again.stdout.strip() == "200 []", again.stdout
