"""End to end: scripts/train_dmdp.py on a short noisy-DMC run, its resume after a kill, a changed
config on resume, a NaN loss, and config errors (all before any environment is built)."""

import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import warnings
from typing import get_args

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune.core import cache
from jaxprune.core.run import ConfigMismatchError, NonFiniteError, Run
from jaxprune.dmdp import config as wm_config
from jaxprune.dmdp import driver, run_config

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "scripts", "train_dmdp.py")
# a few hundred env steps (the quick overlay): 100-step episodes (50 agent steps), random prefill
# for the first two, 2 updates per 100 env steps, an evaluation at 400 and at the end
QUICK = ["small", "cheetah_run", "video_background_noisy_sensor", "quick"]
FLAGS = ["--preset", *QUICK, "--progress", "false"]


def _script():
  spec = importlib.util.spec_from_file_location("train_dmdp_script", SCRIPT)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def _rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


class _Killed(BaseException):
  """Stands for SIGKILL: nothing after the checkpoint runs (BaseException: no handler eats it)."""


def _dead_pid() -> int:
  p = subprocess.Popen([sys.executable, "-c", "pass"])
  p.wait()
  return p.pid


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  script = _script()
  full = str(tmp_path_factory.mktemp("full"))
  part = str(tmp_path_factory.mktemp("part"))
  script.main(FLAGS + ["--env_steps", "600", "--workdir", full])
  # the same run, killed right after its first checkpoint (env step 200, update 2) ...
  save = Run.save

  def save_then_die(self, *a, **kw):
    save(self, *a, **kw)
    raise _Killed

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(Run, "save", save_then_die)
    with pytest.raises(_Killed):
      script.main(FLAGS + ["--env_steps", "600", "--workdir", part])
  # ... which leaves its lock behind, and records past the checkpoint that the resumed run must
  # not duplicate (a kill during a later append)
  with open(os.path.join(part, ".lock"), "w") as f:
    json.dump({"pid": _dead_pid(), "host": os.uname().nodename}, f)
  with open(os.path.join(part, "metrics.jsonl"), "a") as f:
    f.write(
      json.dumps(
        {"kind": "episode", "env_steps": 300, "episode": 3, "return": -1.0, "clean_return": -1.0}
      )
      + "\n"
    )
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    script.main(FLAGS + ["--env_steps", "600", "--workdir", part])
  assert any("stale lock" in str(w.message) for w in caught), [str(w.message) for w in caught]
  return full, part


def test_outputs_written(runs):
  full, _ = runs
  for name in ("config.json", "model_config.json", "metrics.jsonl", "returns.png", "summary.json"):
    assert os.path.getsize(os.path.join(full, name)) > 0, name
  pics = sorted(os.listdir(os.path.join(full, "pictures")))
  assert pics == [
    "eval_00000400.gif",
    "eval_00000400.png",
    "eval_00000600.gif",
    "eval_00000600.png",
    "factors_00000400.png",
    "factors_00000600.png",
  ]
  import imageio.v2 as imageio

  gif = imageio.mimread(os.path.join(full, "pictures", "eval_00000600.gif"))
  assert len(gif) == 50 and gif[0].shape[:2] == (64, 64)  # 50 agent steps, 32 px x 2
  summary = json.load(open(os.path.join(full, "summary.json")))
  assert summary["env_steps"] == 600 and summary["episodes"] == 6
  assert summary["updates"] == 2 * 5  # trained at 200 (end of the prefill), 300, ..., 600
  rows = _rows(full)
  train = [r for r in rows if r["kind"] == "train"]
  assert [r["env_steps"] for r in train] == [200, 300, 400, 500, 600][: len(train)]
  assert [r["update"] for r in train] == [2, 4, 6, 8, 10][: len(train)]
  for r in train:
    for k in ("loss", "recon_nll", "kl_x", "kl_y", "actor_loss", "value_loss"):
      assert np.isfinite(r[k]), (k, r)
  # noisy sensor: the env's reward is the noisy one, the clean one is logged beside it
  ep = [r for r in rows if r["kind"] == "episode"]
  assert len(ep) == 6 and any(abs(r["return"] - r["clean_return"]) > 1e-6 for r in ep)
  # checkpoints and their replay buffers (files of the checkpoint): the last two, by update step
  ckpts = sorted(int(s) for s in os.listdir(os.path.join(full, "checkpoints")) if s.isdigit())
  reps = sorted(int(p.split(".")[0]) for p in os.listdir(os.path.join(full, "files", "replay")))
  assert ckpts == reps and ckpts[-1] == summary["updates"]
  saved = json.load(open(os.path.join(full, "config.json")))
  assert saved["agent"]["horizon"] == 3 and saved["world_model"]["image_size"] == 32
  assert not os.path.exists(os.path.join(full, ".lock"))  # released at the end


def test_resume_continues_like_an_uninterrupted_run(runs):
  full, part = runs
  a, b = _rows(full), _rows(part)
  assert [(r["kind"], r["env_steps"]) for r in a] == [(r["kind"], r["env_steps"]) for r in b]
  assert all(r.get("return", 0) != -1.0 for r in b)  # the stale record was dropped
  for ra, rb in zip(a, b):
    for k in ("return", "clean_return", "return_mean", "loss", "actor_loss"):
      if k in ra:
        np.testing.assert_allclose(rb[k], ra[k], rtol=1e-4, atol=1e-5, err_msg=f"{ra} vs {rb}")


def test_resume_with_another_config_stops(runs):
  full, _ = runs
  before = open(os.path.join(full, "config.json")).read()
  with pytest.raises(ConfigMismatchError, match=r"agent\.horizon: 3 -> 4"):
    _script().main(FLAGS + ["--env_steps", "800", "--agent.horizon", "4", "--workdir", full])
  assert open(os.path.join(full, "config.json")).read() == before  # nothing was written
  assert not os.path.exists(os.path.join(full, ".lock"))


@pytest.fixture
def no_envs(monkeypatch):
  """Building an environment fails the test: config errors must come before any."""
  from jaxprune import envs

  def make(*a, **kw):
    raise AssertionError("an environment was built")

  monkeypatch.setattr(envs, "make", make)


@pytest.mark.parametrize(
  "flags,field",
  [
    (["--action_repeat", "0"], "action_repeat"),
    (["--world_model.beta_y", "nan"], "beta_y"),
    (["--world_model.beta_z", "inf"], "beta_z"),
    (["--agent.actor_lr", "nan"], "actor_lr"),
    (["--batch", "0"], "batch"),
    (["--episode_length", "101"], "episode_length"),
    (["--progress", "ture"], "progress"),
    (["--model", "dreamer"], "--model"),  # chosen by an overlay only
    (["--preset", "planet"], "planet"),
    (["--preset", "small", "huge"], "preset"),
  ],
)
def test_bad_flags_exit_naming_the_field(flags, field, tmp_path, capsys, no_envs):
  workdir = str(tmp_path / "w")
  with pytest.raises(SystemExit) as e:
    _script().main(FLAGS + flags + ["--workdir", workdir])
  assert e.value.code not in (0, None)
  assert field in str(e.value.code) + capsys.readouterr().err
  assert not os.path.exists(workdir)  # nothing written


def test_bad_flag_exits_non_zero_from_the_shell(tmp_path):
  out = subprocess.run(
    [sys.executable, SCRIPT, "--action_repeat", "0", "--workdir", str(tmp_path / "w")],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert out.returncode != 0 and "action_repeat must be >= 1" in out.stderr, out.stderr[-2000:]


@pytest.mark.parametrize(
  "kw,msg",
  [
    (dict(model="planet"), "model"),
    (dict(seq_len=200, episode_length=100), "seq_len"),
    (dict(updates=3, updates_per_dispatch=2), "multiple"),
    (dict(batch=0), "batch"),
    (dict(action_repeat=0), "action_repeat"),
    (dict(model="dreamer"), "factors"),  # the dmdp world model under another name
    (dict(env="reacher_easy"), "action_dim"),  # cheetah's 6 actions
  ],
)
def test_bad_config(kw, msg):
  with pytest.raises(ValueError, match=msg):
    dataclasses.replace(run_config.small(), **kw)


def test_quick_overlay_is_the_smoke_flags():
  explicit = run_config.parse_args(
    ["--preset", "small", "cheetah_run", "video_background_noisy_sensor"]
    + "--env_steps 600 --episode_length 100 --prefill 200 --train_every 100 --updates 2 "
    "--updates_per_dispatch 2 --batch 4 --seq_len 8 --agent.horizon 3 --agent.actor_hidden 16 "
    "--agent.value_hidden 16 --eval_every 400 --eval_episodes 1 --checkpoint_every 200 "
    "--progress false".split()
  )
  assert run_config.parse_args(FLAGS) == explicit


def test_presets_model_and_flags():
  cfg = run_config.parse_args(
    "--preset small dreamer reacher_easy --world_model.x_deter 32 --world_model.beta_y 0.5 "
    "--world_model.beta_z 0.5".split()
  )
  small = run_config.small(model="dreamer", env="reacher_easy")
  assert cfg == dataclasses.replace(
    small, world_model=small.world_model.replace(x_deter=32, beta_y=0.5, beta_z=0.5)
  )
  assert not cfg.world_model.has_y and cfg.world_model.action_dim == 2
  assert run_config.parse_args([]) == run_config.full() == run_config.RunConfig()
  assert run_config.full(model="dmdp_2c").world_model.z_stoch == 20
  assert run_config.small().world_model.x_deter == 64 and run_config.small().batch == 16
  # the model, task, variant and size overlays commute (each rebases the config onto its choice)
  orders = [
    ["small", "dreamer", "reacher_easy", "noiseless"],
    ["noiseless", "reacher_easy", "dreamer", "small"],
    ["dreamer", "small", "noiseless", "reacher_easy"],
  ]
  want = run_config.small(model="dreamer", env="reacher_easy", variant="noiseless")
  for names in orders:
    assert run_config.parse_args(["--preset", *names]) == want, names
  # a task that does not take the variant gets its own default; a later variant overlay wins
  assert run_config.parse_args(["--preset", "robodesk_tv_green_hue"]).variant == "noisy"
  cfg = run_config.parse_args(["--preset", "noiseless", "robodesk_tv_green_hue"])
  assert cfg.variant == "noiseless"


def test_overlays_apply_in_order_then_the_flags(capsys):
  # a later choice of the same kind wins: order matters
  assert run_config.parse_args(["--preset", "small", "full"]) == run_config.full()
  assert run_config.parse_args(["--preset", "full", "small"]) == run_config.small()
  assert run_config.parse_args(["--preset", "dreamer", "dmdp_2c"]) == run_config.full("dmdp_2c")
  assert run_config.parse_args(["--preset", "dmdp_2c", "dreamer"]) == run_config.full("dreamer")
  # a choice rebases what quick changed: the small networks with the smoke schedule either way
  a = run_config.parse_args(["--preset", "small", "quick"])
  b = run_config.parse_args(["--preset", "quick", "small"])
  assert (a.batch, a.episode_length, a.world_model.cnn_depth) == (4, 100, 16)
  assert a == b == run_config.quick(run_config.small())
  # a changed field survives a later choice, the values that follow from the choice do not
  custom = dataclasses.replace(run_config.small(), seed=7, batch=32)
  c = run_config.PRESETS["reacher_easy"](custom)
  assert (c.seed, c.batch, c.env, c.world_model.action_dim) == (7, 32, "reacher_easy", 2)
  # flags apply after every overlay, wherever they stand on the line
  c = run_config.parse_args(["--batch", "8", "--preset", "small", "quick", "--updates", "4"])
  assert (c.batch, c.updates, c.seq_len) == (8, 4, 8)
  # --configs is the same flag; repeated flags append
  assert run_config.parse_args(["--configs", "small", "quick"]) == a
  assert run_config.parse_args(["--preset", "small", "--preset", "quick"]) == a
  # an unknown name lists the choices
  with pytest.raises(SystemExit) as e:
    run_config.parse_args(["--preset", "small", "tiny"])
  assert "'tiny'" in str(e.value.code) and "walker_walk" in str(e.value.code)
  # a model overlay after a change of the networks cannot tell the size: an error, not a guess
  with pytest.raises(ValueError, match="choose the model, task and variant"):
    run_config.PRESETS["dreamer"](
      dataclasses.replace(run_config.small(), world_model=run_config.small().world_model.replace(
        cnn_depth=8))
    )  # fmt: skip


# the agent's beta per (task, variant) before the overlays (written out by hand from the table
# of the release's defaults): DMC 0.25 for every variant, RoboDesk 0.125
BETA_BEFORE = {
  **{(t, v): 0.25 for t in ("cheetah_run", "walker_walk", "reacher_easy")
     for v in ("noiseless", "video_background", "video_background_noisy_sensor",
               "video_background_camera_jitter")},
  **{("robodesk_tv_green_hue", v): 0.125 for v in ("noisy", "noiseless")},
}  # fmt: skip


@pytest.mark.parametrize("size", ["full", "small"])
@pytest.mark.parametrize("task,variant", sorted(BETA_BEFORE))
def test_beta_of_each_task_and_variant_is_what_it_was(task, variant, size):
  for model in ("dmdp", "dmdp_2c"):
    cfg = run_config.parse_args(["--preset", size, model, task, variant])
    w = cfg.world_model
    assert (w.beta_y, w.beta_z) == (BETA_BEFORE[task, variant],) * 2, (model, task, variant)
    assert w.alpha == (2.0 if task == "robodesk_tv_green_hue" else 1.0)
    assert w.action_dim == run_config.ACTION_DIMS[task]


def test_beta_per_task_and_variant_is_the_default(monkeypatch):
  dmc = {(t, v) for t in run_config.ACTION_DIMS if t not in run_config.ROBODESK_TASKS
         for v in run_config.DMC_VARIANTS}  # fmt: skip
  robodesk = {(t, v) for t in run_config.ROBODESK_TASKS for v in run_config.ROBODESK_VARIANTS}
  assert set(wm_config.BETA) == dmc | robodesk == set(BETA_BEFORE)
  # the release's KLLoss defaults on DMC (the paper's appendix table could not be read; the
  # sources are in config.py): beta_y = beta_z = 0.25, alpha 1, beta_x 1, all of it with free
  # nats (3 in the full preset, 1 in the small one); RoboDesk: the README's 0.125
  assert {wm_config.BETA[k] for k in dmc} == {0.25}
  assert {wm_config.BETA[k] for k in robodesk} == {0.125}
  for preset, free_nats in ((run_config.full, 3.0), (run_config.small, 1.0)):
    w = preset(env="walker_walk", variant="noiseless").world_model
    assert (w.alpha, w.beta_x, w.beta_free_nats_x, w.free_nats) == (1.0, 1.0, None, free_nats)
  # the presets and the command line read the table for (env, variant), whatever the order
  monkeypatch.setitem(wm_config.BETA, ("walker_walk", "video_background"), 0.125)
  for preset in ("full", "small"):
    names = ["--preset", preset, "walker_walk", "dmdp_2c"]
    cfg = run_config.parse_args(names + ["video_background"])
    assert cfg.variant == "video_background"
    assert (cfg.world_model.beta_y, cfg.world_model.beta_z) == (0.125, 0.125)
    cfg = run_config.parse_args(["--preset", "video_background", preset, "dmdp_2c", "walker_walk"])
    assert (cfg.world_model.beta_y, cfg.world_model.beta_z) == (0.125, 0.125)
    cfg = run_config.parse_args(names + ["noiseless"])
    assert (cfg.world_model.beta_y, cfg.world_model.beta_z) == (0.25, 0.25)
    cfg = run_config.parse_args(
      names + ["video_background", "--world_model.beta_y", "0.5", "--world_model.beta_z", "0.5"]
    )
    assert (cfg.world_model.beta_y, cfg.world_model.beta_z) == (0.5, 0.5)
  cfg = run_config.parse_args(["--world_model.beta_free_nats_x", "0.25"])
  assert cfg.world_model.beta_free_nats_x == 0.25
  with pytest.raises(ValueError, match="no default beta"):
    wm_config.beta_for("walker_run", "noiseless")


def test_action_dims_match_the_environments():
  from jaxprune import envs

  assert tuple(run_config.ACTION_DIMS) == get_args(run_config.Task) == envs.ALL_TASKS
  assert run_config.ROBODESK_TASKS == envs.ROBODESK_TASKS
  assert run_config.DMC_VARIANTS == envs.VARIANTS
  assert set(run_config.ROBODESK_VARIANTS) == set(envs.ROBODESK_VARIANTS)
  assert set(get_args(run_config.Variant)) == set(envs.VARIANTS) | set(envs.ROBODESK_VARIANTS)
  for task, dim in run_config.ACTION_DIMS.items():
    env = envs.make(task, "noiseless", seed=0, image_size=16, episode_length=2)
    assert env.action_dim == dim, task
    env.close()


def test_robodesk_presets():
  task = "robodesk_tv_green_hue"
  for model in ("dmdp_2c", "dmdp", "dreamer"):
    cfg = run_config.parse_args(["--preset", task, model])
    wm = cfg.world_model
    assert cfg.variant == "noisy" and cfg.shadows  # the paper's setting, the release's look
    assert (wm.image_size, wm.alpha, wm.action_dim) == (96, 2.0, 5)
    assert (cfg.action_repeat, cfg.episode_length) == (2, 1000)
    if model != "dreamer":
      assert wm.beta_y == 0.125 and (wm.beta_z == 0.125 or not wm.has_z)
    assert wm.has_z == (model == "dmdp_2c")
    small = run_config.parse_args(["--preset", "small", task, model])
    assert small.world_model.image_size == 96 and small.world_model.alpha == 2.0
    assert not small.shadows and small.episode_length == 400
  with pytest.raises(ValueError, match="variant of robodesk_tv_green_hue must be one of"):
    dataclasses.replace(run_config.full(env=task), variant="video_background")
  with pytest.raises(ValueError, match="variant of cheetah_run must be one of"):
    dataclasses.replace(run_config.full(), variant="noisy")


@pytest.fixture
def fresh_cache():
  cache.clear()  # the poisoned update must not be shared with, or taken from, other tests
  yield
  cache.clear()


def test_nan_loss_stops_the_run_naming_the_update(tmp_path, monkeypatch, fresh_cache):
  # an agent loss whose value loss is NaN from the first update on (cheap to compile)
  def poisoned_loss_fn(wm_cfg, ag_cfg):
    def loss_fn(params, batch, key):
      zero = 0.0 * sum(jnp.sum(p) for p in jax.tree.leaves(params["value"]))
      return zero, {"value_loss": jnp.log(zero - 1.0)}

    return loss_fn

  monkeypatch.setattr(driver.agent_lib, "agent_loss_fn", poisoned_loss_fn)
  workdir = str(tmp_path)
  with pytest.raises(NonFiniteError, match=r"value_loss at update 1 \(env step 200\)"):
    _script().main(FLAGS + ["--env_steps", "400", "--workdir", workdir])
  rows = _rows(workdir)  # valid JSON: no NaN was written
  assert [(r["kind"], r["env_steps"]) for r in rows] == [("episode", 100)]
  assert not os.path.exists(os.path.join(workdir, "checkpoints"))
  assert not os.path.exists(os.path.join(workdir, ".lock"))


def test_check_value_bound_names_the_first_update_beyond_the_bound():
  m = {"imag_value": np.array([3.0, -250.0, 290.0]), "value_loss": np.array([1.0, 2.0, 3.0])}
  driver.check_value_bound(m, bound=300.0, first_update=11, env_steps=5000)  # all inside
  with pytest.raises(driver.ValueDivergedError, match=r"-250 at update 12 \(env step 5000\)"):
    driver.check_value_bound(m, bound=200.0, first_update=11, env_steps=5000)
  cfg = run_config.small(model="dmdp", env="walker_walk", variant="noiseless")
  # a [0, 1] reward per env step, 2 env steps per agent step, gamma 0.99: returns <= 200
  assert driver.value_bound(cfg) == pytest.approx(1.5 * 2 / (1 - 0.99))
  assert driver.value_bound(dataclasses.replace(cfg, value_guard=0.0)) == float("inf")


@pytest.mark.slow  # the guard's logic is tested on its own (check_value_bound, Dispatcher)
def test_diverging_value_stops_the_run_and_the_guard_can_be_turned_off(
  tmp_path, monkeypatch, fresh_cache
):
  # an agent loss whose mean imagined value is 1e4 (finite, beyond any return) from update 1 on
  def diverged_loss_fn(wm_cfg, ag_cfg):
    def loss_fn(params, batch, key):
      zero = 0.0 * sum(jnp.sum(p) for p in jax.tree.leaves(params["value"]))
      return zero, {"value_loss": zero + 1e8, "imag_value": zero + 1e4}

    return loss_fn

  monkeypatch.setattr(driver.agent_lib, "agent_loss_fn", diverged_loss_fn)
  workdir = str(tmp_path / "guarded")
  with pytest.raises(driver.ValueDivergedError, match=r"10000 at update 1 \(env step 200\)"):
    _script().main(FLAGS + ["--env_steps", "400", "--workdir", workdir])
  assert [(r["kind"], r["env_steps"]) for r in _rows(workdir)] == [("episode", 100)]
  assert not os.path.exists(os.path.join(workdir, ".lock"))
  off = str(tmp_path / "off")
  _script().main(FLAGS + ["--env_steps", "400", "--workdir", off, "--value_guard", "0"])
  # trained at env steps 200, 300 and 400, each past the guard
  assert [r["imag_value"] for r in _rows(off) if r["kind"] == "train"] == [1e4] * 3


@pytest.mark.slow
def test_workdir_of_an_older_version_is_refused_intact(runs, tmp_path):
  from jaxprune.core.checkpoint import CheckpointError

  old = str(tmp_path / "old")
  shutil.copytree(runs[0], old)
  os.rename(os.path.join(old, "files", "replay"), os.path.join(old, "replay"))  # the old layout
  before = open(os.path.join(old, "metrics.jsonl")).read()
  with pytest.raises(CheckpointError, match="older version"):
    _script().main(FLAGS + ["--env_steps", "800", "--workdir", old])
  assert open(os.path.join(old, "metrics.jsonl")).read() == before


# RoboDesk: the small preset's 96 px model shrunk to the DMC smoke test's 32 px one
ROBODESK_FLAGS = [
  "--progress",
  "false",
  "--world_model.image_size",
  "32",
  "--world_model.encoder_kernels",
  "4",
  "4",
  "4",
  "--world_model.encoder_final_3x3",
  "false",
  "--world_model.decoder_kernels",
  "5",
  "6",
  "6",
]


@pytest.mark.parametrize(
  "model",
  # all three in CI's slow run (80 s each); the DMC run + resume stays in the default run
  [
    pytest.param("dmdp_2c", marks=pytest.mark.slow),
    pytest.param("dmdp", marks=pytest.mark.slow),
    pytest.param("dreamer", marks=pytest.mark.slow),
  ],
)
def test_robodesk_run_then_resume(model, tmp_path):
  script = _script()
  workdir = str(tmp_path / model)
  flags = ["--preset", "small", model, "robodesk_tv_green_hue", "noisy", "quick"]
  flags += ROBODESK_FLAGS + ["--workdir", workdir]
  script.main(flags + ["--env_steps", "300"])
  first = _rows(workdir)
  # resume with a larger budget: it continues from the checkpoint at env step 200 (an episode
  # end), and the records up to it are kept as they were
  script.main(flags + ["--env_steps", "400"])
  rows = _rows(workdir)
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  assert summary["env_steps"] == 400 and summary["episodes"] == 4
  assert [(r["kind"], r["env_steps"]) for r in rows if r["env_steps"] <= 200] == [
    (r["kind"], r["env_steps"]) for r in first if r["env_steps"] <= 200
  ]
  train = [r for r in rows if r["kind"] == "train"]
  assert [r["env_steps"] for r in train] == [200, 300, 400]
  kls = ["kl_" + f for f in run_config.FACTORS[model]]
  assert all(np.isfinite(r[k]) for r in train for k in ["loss", "actor_loss", *kls])
  evals = [r for r in rows if r["kind"] == "eval"]
  assert [r["env_steps"] for r in evals] == [300, 400]  # each run evaluates at its end
  # the noisy button sensor: the env's reward differs from the clean one in some episode
  ep = [r for r in rows if r["kind"] == "episode"]
  assert len(ep) == 4 and any(abs(r["return"] - r["clean_return"]) > 1e-6 for r in ep)
  saved = json.load(open(os.path.join(workdir, "config.json")))
  assert saved["env"] == "robodesk_tv_green_hue" and saved["world_model"]["alpha"] == 2.0
  assert "factors_00000400.png" in os.listdir(os.path.join(workdir, "pictures"))


def test_key_salts_are_one_registry_with_the_values_of_before():
  from jaxprune.dmdp import benchmark, disentangle, offline, salts

  # the values each job used before the registry (results stay identical), written out by hand
  assert salts.SALTS == {
    "INIT_SALT": 1,
    "TRAIN_SALT": 2,
    "EXPLORE_SALT": 3,
    "EVAL_SALT": 4,
    "PICTURES_SALT": 5,
    "OFFLINE_INIT_SALT": 11,
    "OFFLINE_TRAIN_SALT": 12,
    "OFFLINE_BATCH_SALT": 13,
    "OFFLINE_FEATURE_SALT": 14,
    "DISENTANGLE_DATA_SALT": 21,
    "DISENTANGLE_PROBE_SALT": 22,
    "DISENTANGLE_PICTURE_SALT": 23,
  }
  assert len(set(salts.SALTS.values())) == len(salts.SALTS)  # no two streams share a salt
  # the jobs read the registry (no copies)
  assert (offline.INIT_SALT, offline.TRAIN_SALT) == (11, 12)
  assert (offline.BATCH_SALT, offline.FEATURE_SALT) == (13, 14)
  assert (disentangle.DATA_SALT, disentangle.PROBE_SALT, disentangle.PICTURE_SALT) == (21, 22, 23)
  assert (benchmark.INIT_SALT, benchmark.TRAIN_SALT) == (1, 2)
