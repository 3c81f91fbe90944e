"""End to end: scripts/train_dmdp.py on a short noisy-DMC run, its resume, and config errors."""
import dataclasses
import importlib.util
import json
import os

import numpy as np
import pytest

from jaxprune.dmdp import experiment

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "scripts", "train_dmdp.py")
# a few hundred env steps: 100-step episodes (50 agent steps), random prefill for the first two,
# 2 updates per 100 env steps, an evaluation at 400 and at the end
FLAGS = ["--preset", "small", "--env", "cheetah_run", "--variant",
         "video_background_noisy_sensor", "--episode_length", "100", "--prefill", "200",
         "--train_every", "100", "--updates", "2", "--updates_per_dispatch", "2", "--batch", "4",
         "--seq_len", "8", "--horizon", "3", "--net_hidden", "16", "--eval_every", "400",
         "--eval_episodes", "1", "--checkpoint_every", "200", "--progress", "false"]


def _script():
  spec = importlib.util.spec_from_file_location("train_dmdp_script", SCRIPT)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def _rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  script = _script()
  full = str(tmp_path_factory.mktemp("full"))
  part = str(tmp_path_factory.mktemp("part"))
  script.main(FLAGS + ["--env_steps", "600", "--workdir", full])
  script.main(FLAGS + ["--env_steps", "400", "--workdir", part])
  # a crash after the checkpoint at 400 leaves records the resumed run must not duplicate
  with open(os.path.join(part, "metrics.jsonl"), "a") as f:
    f.write(json.dumps({"kind": "episode", "env_steps": 500, "episode": 5, "return": -1.0,
                        "clean_return": -1.0}) + "\n")
  script.main(FLAGS + ["--env_steps", "600", "--workdir", part])
  return full, part


def test_outputs_written(runs):
  full, _ = runs
  for name in ("config.json", "model_config.json", "metrics.jsonl", "returns.png",
               "summary.json"):
    assert os.path.getsize(os.path.join(full, name)) > 0, name
  pics = sorted(os.listdir(os.path.join(full, "pictures")))
  assert pics == ["eval_00000400.gif", "eval_00000400.png", "eval_00000600.gif",
                  "eval_00000600.png", "factors_00000400.png", "factors_00000600.png"]
  import imageio.v2 as imageio
  gif = imageio.mimread(os.path.join(full, "pictures", "eval_00000600.gif"))
  assert len(gif) == 50 and gif[0].shape[:2] == (64, 64)  # 50 agent steps, 32 px x 2
  summary = json.load(open(os.path.join(full, "summary.json")))
  assert summary["env_steps"] == 600 and summary["episodes"] == 6
  assert summary["updates"] == 2 * 5  # trained at 200 (end of the prefill), 300, ..., 600
  rows = _rows(full)
  train = [r for r in rows if r["kind"] == "train"]
  assert [r["env_steps"] for r in train] == [200, 300, 400, 500, 600][:len(train)]
  for r in train:
    for k in ("loss", "recon_nll", "kl_x", "kl_y", "actor_loss", "value_loss"):
      assert np.isfinite(r[k]), (k, r)
  # noisy sensor: the env's reward is the noisy one, the clean one is logged beside it
  ep = [r for r in rows if r["kind"] == "episode"]
  assert len(ep) == 6 and any(abs(r["return"] - r["clean_return"]) > 1e-6 for r in ep)
  # checkpoints and their replay buffers: the last two, matched by update step
  ckpts = sorted(int(s) for s in os.listdir(os.path.join(full, "checkpoints")) if s.isdigit())
  reps = sorted(int(p.split(".")[0]) for p in os.listdir(os.path.join(full, "replay")))
  assert ckpts == reps and ckpts[-1] == summary["updates"]


def test_resume_continues_like_an_uninterrupted_run(runs):
  full, part = runs
  a, b = _rows(full), _rows(part)
  assert [(r["kind"], r["env_steps"]) for r in a] == [(r["kind"], r["env_steps"]) for r in b]
  assert all(r.get("return", 0) != -1.0 for r in b)  # the stale record was dropped
  for ra, rb in zip(a, b):
    for k in ("return", "clean_return", "return_mean", "loss", "actor_loss"):
      if k in ra:
        np.testing.assert_allclose(rb[k], ra[k], rtol=1e-4, atol=1e-5, err_msg=f"{ra} vs {rb}")


@pytest.mark.parametrize("kw,msg", [
    (dict(preset="huge"), "preset"),
    (dict(model="planet"), "model"),
    (dict(seq_len=200, episode_length=100), "seq_len"),
    (dict(updates=3, updates_per_dispatch=2), "multiple"),
    (dict(batch=0), "batch"),
])
def test_bad_config(kw, msg):
  cfg = dataclasses.replace(experiment.RunConfig(preset="small"), **kw)
  with pytest.raises(ValueError, match=msg):
    experiment.resolve(cfg)
