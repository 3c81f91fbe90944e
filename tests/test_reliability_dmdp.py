"""Issue 25 on the Denoised MDP side: duplicated conditions, replay identity on resume, compare on
a workdir of the wrong kind, the RoboDesk fork's import location. None of these trains anything."""

import dataclasses

import pytest

from jaxprune.dmdp import disentangle_config
from jaxprune.dmdp.disentangle_config import DisentangleConfig

QUICK = disentangle_config.quick(DisentangleConfig())


@pytest.mark.parametrize(
  "field,value,dup",
  [
    ("tasks", ("walker_walk", "cheetah_run", "walker_walk"), "walker_walk"),
    ("variants", ("video_background", "video_background"), "video_background"),
    ("models", ("dmdp", "dreamer", "dmdp"), "dmdp"),
    ("factors", ("x", "x"), "x"),
    ("probes", ("ridge", "ridge"), "ridge"),
    ("probe_at", (2, 2), "2"),
  ],
)
def test_duplicated_conditions_are_refused_at_config_time(field, value, dup):
  with pytest.raises(ValueError, match=rf"{field}.*duplicate.*{dup}"):
    dataclasses.replace(QUICK, **{field: value})


def test_duplicated_tasks_on_the_command_line_stop_before_any_work(tmp_path, capsys):
  from jaxprune.core.config import parse

  w = tmp_path / "w"
  argv = ["--preset", "quick", "--tasks", "walker_walk", "walker_walk", "--workdir", str(w)]
  with pytest.raises((SystemExit, ValueError)) as e:
    parse(DisentangleConfig, argv, presets=disentangle_config.PRESETS)
  text = str(e.value) + capsys.readouterr().err
  assert "tasks" in text and "walker_walk" in text
  assert not w.exists()
