"""The Denoised MDP representation test (jaxprune.dmdp.disentangle, scripts/disentangle.py)."""

import dataclasses
import importlib.util
import json
import os

import jax
import numpy as np
import pytest

from jaxprune.dmdp import disentangle as dis
from jaxprune.dmdp import disentangle_config
from jaxprune.dmdp.disentangle_config import DisentangleConfig

QUICK = disentangle_config.quick(DisentangleConfig())
SCRIPT = os.path.join(os.path.dirname(__file__), "..", "scripts", "disentangle.py")


def disentangle_main(argv):
  spec = importlib.util.spec_from_file_location("disentangle_script", SCRIPT)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  mod.main(argv)


def test_probe_table_finds_the_factor_that_holds_the_target():
  # 2 seeds, 5 probe episodes of 12 frames; "x" holds the target linearly, "y" is noise
  rng = np.random.default_rng(0)
  e, t = 5, 12
  target = rng.normal(size=(e, t, 2)).astype(np.float32)
  noise = rng.normal(size=(e, t, 1)).astype(np.float32)
  mix = rng.normal(size=(2, 2, 6)).astype(np.float32)
  feats = {
    "x": np.einsum("etk,skf->setf", target, mix),
    "y": rng.normal(size=(2, e, t, 4)).astype(np.float32),
  }
  feats["all"] = np.concatenate([feats["x"], feats["y"]], axis=-1)
  cfg = DisentangleConfig(burn_in=2, mlp_steps=40)
  rows = dis.probe_table(
    cfg, feats, {"qpos": target, "sensor_noise": noise}, ("x", "y", "all"), jax.random.key(0)
  )
  get = {(r["factor"], r["probe"], r["target"]): r for r in rows}
  assert len(rows) == 3 * 2 * 2
  assert get[("x", "ridge", "qpos")]["mean"] > 0.999
  assert get[("all", "ridge", "qpos")]["mean"] > 0.99  # the zero padding changes nothing
  assert get[("y", "ridge", "qpos")]["mean"] < 0.2
  assert get[("x", "ridge", "sensor_noise")]["mean"] < 0.2
  assert len(get[("x", "ridge", "qpos")]["r2"]) == 2  # one value per seed
  assert len(get[("x", "ridge", "qpos")]["columns"]) == 2  # one per target column


def test_split_and_claims_by_hand():
  assert dis.split_episodes(5) == (slice(0, 3), slice(3, 4), slice(4, 5))
  assert dis.split_episodes(15) == (slice(0, 9), slice(9, 12), slice(12, 15))
  row = lambda m, f, t, v: {"model": m, "factor": f, "probe": "ridge", "target": t, "mean": v}
  rows = [
    row("dmdp", "x", "qpos", 0.80),
    row("dmdp", "y", "qpos", 0.10),
    row("dmdp", "x", "background_intensity", 0.30),
    row("dmdp", "y", "background_intensity", 0.60),
    row("dreamer", "x", "qpos", 0.85),
    row("dreamer", "x", "background_intensity", 0.70),
  ]
  c = dis.check_claims(rows)["ridge"]
  assert c["x_joints_vs_dreamer"]["difference"] == pytest.approx(-0.05)
  assert not c["x_joints_vs_dreamer"]["holds"]
  assert c["noise_in_y_or_z/dmdp/background_intensity"]["holds"]
  assert c["noise_in_y_or_z/dmdp/background_intensity"]["difference"] == pytest.approx(0.3)


def test_bad_input_is_named(tmp_path):
  with pytest.raises(ValueError, match="probe_episodes must be >= 3"):
    DisentangleConfig(probe_episodes=2)
  with pytest.raises(ValueError, match="need >= 3 probe episodes"):
    dis.split_episodes(2)
  with pytest.raises(ValueError, match="unknown factor 'w'"):
    DisentangleConfig(factors=("x", "w"))
  with pytest.raises(ValueError, match="model 'dreamer' has no factor y"):
    dis.factors_to_probe(DisentangleConfig(factors=("x", "y")), "dreamer", ("x",))
  # run() checks every model's factors before it collects anything
  cfg = dataclasses.replace(QUICK, factors=("y",), workdir=str(tmp_path / "w"))
  with pytest.raises(ValueError, match="has no factor y"):
    dis.run(cfg)
  assert not os.path.exists(tmp_path / "w")


@pytest.mark.slow  # 150 CPU-s: in CI's slow run, out of the README's default run
def test_quick_end_to_end_and_resume(tmp_path, capsys):
  w = str(tmp_path / "d")
  disentangle_main(["--preset", "quick", "--workdir", w])
  out = capsys.readouterr().out
  for f in ("table.md", "r2.csv", "r2.png", "r2_mlp.png", "r2_trend.png", "summary.json"):
    assert os.path.getsize(os.path.join(w, f)) > 0, f
  pics = sorted(os.listdir(os.path.join(w, "pictures")))
  assert pics == [f"walker_walk_video_background_noisy_sensor_{m}.png" for m in QUICK.models]
  summary = json.load(open(os.path.join(w, "summary.json")))
  rows = summary["rows"]
  # dmdp: x y all; dmdp_2c: x y z all; dreamer: x all; x 2 probes x 4 targets
  assert len(rows) == (3 + 4 + 2) * 2 * 4
  assert {r["target"] for r in rows} == {"qpos", "qvel", "background_intensity", "sensor_noise"}
  assert all(len(r["r2"]) == QUICK.seeds for r in rows)
  assert set(summary["claims"]["walker_walk/video_background_noisy_sensor"]) == {"ridge", "mlp"}
  assert "| dmdp_2c | z |" in open(os.path.join(w, "table.md")).read()
  assert "does not hold" in out or "holds" in out
  # the CSV holds every budget: probe_at (2 updates: the ridge probe only) and the final 4
  early = [r for r in summary["trend"] if r["updates"] == 2]
  assert {r["probe"] for r in early} == {"ridge"} and len(early) == len(rows) // 2
  assert {r["updates"] for r in summary["trend"]} == {2, 4}
  assert len(summary["trend"]) == len(rows) + len(early)
  assert len(open(os.path.join(w, "r2.csv")).read().splitlines()) == len(summary["trend"]) + 1
  # a rerun resumes: the data is read back, no model trains again (metrics not appended)
  metrics = os.path.join(w, "models", "walker_walk_video_background_noisy_sensor", "dmdp")
  before = open(os.path.join(metrics, "metrics.jsonl")).read()
  data = os.path.join(w, "data", "walker_walk_video_background_noisy_sensor_16px_random.npz")
  mtime = os.path.getmtime(data)
  disentangle_main(["--preset", "quick", "--workdir", w])
  assert open(os.path.join(metrics, "metrics.jsonl")).read() == before
  assert os.path.getmtime(data) == mtime
  again = json.load(open(os.path.join(w, "summary.json")))
  for a, b in zip(rows, again["rows"]):
    assert a["r2"] == pytest.approx(b["r2"], abs=1e-5)
  # the earlier budget's probes are read back, not lost
  assert len(again["trend"]) == len(summary["trend"])


def test_config_from_dict_round_trip():
  from jaxprune.core.config import from_dict, to_dict
  from jaxprune.dmdp import run_config

  run_cfg = run_config.small(model="dmdp_2c", env="walker_walk", variant="video_background")
  back = from_dict(run_config.RunConfig, json.loads(json.dumps(to_dict(run_cfg))))
  assert back == run_cfg and isinstance(back.world_model.encoder_kernels, tuple)
  assert from_dict(DisentangleConfig, to_dict(QUICK)) == QUICK
  with pytest.raises(ValueError, match="has no field.*colour"):
    from_dict(DisentangleConfig, {"colour": 1})


def test_saved_agent_as_data_policy(tmp_path):
  from jaxprune.core.checkpoint import Checkpointer
  from jaxprune.core.config import to_dict
  from jaxprune.dmdp import agent as agent_lib
  from jaxprune.dmdp import agent_state, run_config, saved_agent
  from jaxprune.dmdp.config import tiny
  from jaxprune.envs import ground_truth

  base = run_config.small(model="dmdp", env="cheetah_run", variant="video_background")
  cfg = dataclasses.replace(base, world_model=tiny(base.world_model, action_dim=6), batch=4)
  state = agent_state.init_state(cfg, agent_state.batch_mesh(cfg.batch))
  w = tmp_path / "agent"
  os.makedirs(w)
  with open(w / "config.json", "w") as f:
    json.dump(to_dict(cfg), f)
  with pytest.raises(Exception, match="no checkpoint"):
    saved_agent.load(str(w))
  ckpt = Checkpointer(str(w / "checkpoints"))
  ckpt.save(7, state, {"position": 0})
  ckpt.close()
  agent = saved_agent.load(str(w))
  assert agent.step == 7 and agent.config == cfg
  for a, b in zip(jax.tree.leaves(agent.params), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(a, b)
  key = jax.random.key(4)
  eps = ground_truth.collect(
    "cheetah_run",
    "video_background",
    num_episodes=1,
    seed=0,
    image_size=16,
    episode_length=8,
    num_background_frames=50,
    policy=saved_agent.policy(agent, key),
  )
  # the recorded actions are the policy's mode after filtering each frame, replayed by hand
  pstate = agent_lib.initial_policy_state(cfg.world_model)
  for t in range(4):
    a, pstate = agent_lib.policy_step(
      cfg.world_model,
      cfg.agent,
      state.params,
      pstate,
      eps["image"][0, t],
      jax.random.fold_in(key, t),
      explore=False,
    )
    np.testing.assert_allclose(eps["action"][0, t + 1], np.asarray(a), atol=1e-6)
  assert np.abs(eps["action"][0, 1:]).max() > 0
