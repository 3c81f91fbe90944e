"""The Denoised MDP experiment: collect on a noisy DMC task, train model + actor + critic, evaluate.

``run(cfg)`` (``scripts/train_dmdp.py`` is its command line) runs under the shared driver
:class:`jaxprune.core.run.Run` (lock, config check on resume, checkpoints, metrics.jsonl, NaN
guard, progress bar) and does, per episode:

1. act: random actions for the first ``prefill`` env steps, then :func:`agent.policy_step`
   (posterior filtering on x, y, z plus exploration noise); every observation goes to the
   :class:`jaxprune.dmdp.replay.ReplayBuffer` (uint8 pixels);
2. every ``train_every`` env steps, ``updates`` agent updates: world model, actor and value in
   one step (:func:`agent.agent_loss_fn` through :func:`jaxprune.core.loop.make_update`),
   ``updates_per_dispatch`` of them per jitted ``lax.scan`` dispatch (:func:`train_dispatch`),
   data-parallel over the devices (:func:`batch_mesh`). A NaN or inf in any update's metrics
   stops the run with :class:`jaxprune.core.run.NonFiniteError` naming the update and env step,
   and a mean imagined value beyond any possible return (``value_guard``) stops it with
   :class:`ValueDivergedError`;
3. every ``eval_every`` env steps, ``eval_episodes`` episodes with the policy's mode on a second
   environment (own seed), a video strip of the first one, and the world model's pictures
   (reconstructions from all factors and from each alone);
4. at the end of an episode, when ``checkpoint_every`` env steps have passed: a checkpoint at the
   update step with the counters (env steps, episodes, next eval / checkpoint, ...) in its
   metadata and the replay buffer as its file. A restarted run restores both, replays the
   environments' episode draws, drops metrics written after the checkpoint and goes on; a
   restarted run with another config (except :data:`MAY_CHANGE`) stops with
   :class:`jaxprune.core.run.ConfigMismatchError`.

Env steps count physics-control steps (the paper's unit): one agent step = ``action_repeat``.

Configs are complete (:class:`RunConfig`, nested ``world_model`` and ``agent``); presets are
functions of the model, task and variant (beta per (task, variant) from
:data:`jaxprune.dmdp.config.BETA`, whose docstring gives every value's source; the release's
PyTorch-default init): :func:`full` = the refs' settings (64x64, 1e6 env steps, batch
50 x 50, 100 updates per 1000 env steps, horizon 15, full model sizes) for accelerators;
:func:`small` = a CPU run of minutes (32x32 pixels, 100-step episodes, small networks, 5x the
refs' learning rates, 20 updates of 16 x 16 per 100 env steps, free nats 1: with 8-dim latents
KL_x stays below the refs' 3 nats, which would leave x's prior, the one imagination runs on,
untrained). On the command line (:func:`parse_args`) ``--preset``, ``--model``, ``--env`` and
``--variant`` choose the preset's values, then every other flag applies on top.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence, get_args

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxprune.core import config as config_lib
from jaxprune.core import io
from jaxprune.core.cache import memoize
from jaxprune.core.checkpoint import CheckpointError
from jaxprune.core.config import check_finite, require
from jaxprune.core.loop import TrainState, create_state, jit_once, make_update, run_steps
from jaxprune.core.run import NonFiniteError, Run
from jaxprune.core.sharding import DATA_AXIS, data_mesh
from jaxprune.dmdp import agent as agent_lib
from jaxprune.dmdp import config as wm_config
from jaxprune.dmdp import replay as replay_lib
from jaxprune.dmdp.agent import AgentConfig
from jaxprune.dmdp.config import Task, Variant, WorldModelConfig
from jaxprune.dmdp.pictures import save_factor_pictures

# the tasks' action sizes, so a config is checked without loading dm_control (a test compares
# them with the environments)
ACTION_DIMS = {"cheetah_run": 6, "walker_walk": 6, "reacher_easy": 2, "robodesk_tv_green_hue": 5}
ROBODESK_TASKS = ("robodesk_tv_green_hue",)
# the variants each kind of task takes (jaxprune.envs.VARIANTS / ROBODESK_VARIANTS)
DMC_VARIANTS = get_args(Variant)[:4]
ROBODESK_VARIANTS = ("noisy", "noiseless")
FACTORS = {"dmdp": "xy", "dmdp_2c": "xyz", "dreamer": "x"}  # each model's latent factors

# fold_in salts of jax.random.key(cfg.seed), one per independent stream of the run
INIT_SALT = 1  # parameters
TRAIN_SALT = 2  # the train state's key (update keys are fold_in(key, update step))
EXPLORE_SALT = 3  # acting while collecting: fold_in(key, env step)
EVAL_SALT = 4  # evaluation: fold_in(fold_in(key, eval episode), agent step)
PICTURES_SALT = 5  # the factor pictures: fold_in(key, env step)
EVAL_ENV_SEED_OFFSET = 10_000  # the evaluation environment's seed is seed + this

# a resumed run may change these (value_guard too: a run stopped by the guard may go on without it)
MAY_CHANGE = ("env_steps", "progress", "overwrite", "workdir", "value_guard")


class ValueDivergedError(RuntimeError):
  """The imagined values left the range any policy's return can have: the value net bootstraps
  on its own predictions (no NaN needed for that); the run stops with its last checkpoint
  intact."""


@dataclass(frozen=True)
class RunConfig:
  """Denoised MDP / Dreamer on a noisy DMC or RoboDesk task from pixels. The defaults are the
  refs' settings (the full preset of the dmdp model on cheetah_run)."""

  env: Task = "cheetah_run"
  """task"""
  variant: Variant = "video_background_camera_jitter"
  """noise of the observations (noisy_sensor: of the reward too); RoboDesk: noisy | noiseless"""
  model: wm_config.ModelName = "dmdp"
  """dmdp (Fig. 2b: x, y) | dmdp_2c (Fig. 2c: x, y, z) | dreamer (x); sets the preset's sizes"""
  workdir: str = "runs/dmdp"
  """output directory; a run in a directory with a checkpoint resumes it"""
  seed: int = 0
  """every key, the environments' seeds and the replay's sampling derive from it"""
  video_dir: str | None = None
  """directory of background (RoboDesk: TV) videos (None: a procedural video, offline)"""
  shadows: bool = True
  """RoboDesk: render MuJoCo's shadows (the release's look; ~5x slower software rendering)"""
  action_repeat: int = 2
  """env (physics) steps per agent step"""
  episode_length: int = 1000
  """env (physics) steps per episode"""
  env_steps: int = 1_000_000
  """total env (physics) steps (may change on resume)"""
  prefill: int = 5000
  """env steps of random actions"""
  train_every: int = 1000
  """env steps between training phases"""
  updates: int = 100
  """agent updates per training phase"""
  updates_per_dispatch: int = 10
  """updates per jitted lax.scan dispatch (updates must be a multiple)"""
  batch: int = 50
  """sequences per update, split over the devices (all of them when batch is a multiple of their
  number, else the most that divide it, with a warning)"""
  seq_len: int = 50
  """observations per sequence"""
  eval_every: int = 10_000
  """env steps between evaluations"""
  eval_episodes: int = 10
  """episodes per evaluation (the policy's mode)"""
  checkpoint_every: int = 10_000
  """env steps between checkpoints (taken at episode ends)"""
  replay_capacity: int = 1_000_000
  """env steps held by the replay buffer"""
  progress: bool = True
  """show a progress bar"""
  overwrite: bool = False
  """discard what the workdir holds (checkpoints, metrics) and start afresh"""
  value_guard: float = 1.5
  """stop the run (:class:`ValueDivergedError`) when an update's mean imagined value leaves
  +-value_guard * action_repeat / (1 - gamma): DMC rewards are in [0, 1] per env step, so no
  return can exceed action_repeat / (1 - gamma); 0 turns the guard off"""
  world_model: WorldModelConfig = WorldModelConfig()
  """the world model (action_dim must be the task's)"""
  agent: AgentConfig = AgentConfig()
  """actor, value, imagination and learning rates"""

  def __post_init__(self):
    check_finite(self)
    require(self.env in ACTION_DIMS, f"env must be one of {tuple(ACTION_DIMS)}, got {self.env!r}")
    variants = ROBODESK_VARIANTS if self.env in ROBODESK_TASKS else DMC_VARIANTS
    require(
      self.variant in variants,
      f"variant of {self.env} must be one of {variants}, got {self.variant!r}",
    )
    require(self.model in FACTORS, f"model must be one of {tuple(FACTORS)}, got {self.model!r}")
    for name in (
      "action_repeat",
      "episode_length",
      "env_steps",
      "train_every",
      "updates",
      "updates_per_dispatch",
      "batch",
      "seq_len",
      "eval_every",
      "eval_episodes",
      "checkpoint_every",
      "replay_capacity",
    ):
      require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
    require(self.prefill >= 0, f"prefill must be >= 0, got {self.prefill}")
    require(self.value_guard >= 0, f"value_guard must be >= 0 (0: off), got {self.value_guard}")
    require(
      0 <= self.seed < 2**32 - EVAL_ENV_SEED_OFFSET,
      f"seed must be in [0, 2**32 - {EVAL_ENV_SEED_OFFSET}), got {self.seed}",
    )
    require(
      self.episode_length % self.action_repeat == 0,
      f"episode_length ({self.episode_length} env steps) must be a multiple of "
      f"action_repeat ({self.action_repeat})",
    )
    require(
      self.updates % self.updates_per_dispatch == 0,
      f"updates ({self.updates}) must be a multiple of updates_per_dispatch "
      f"({self.updates_per_dispatch})",
    )
    agent_steps = self.episode_length // self.action_repeat
    require(
      self.seq_len <= agent_steps + 1,
      f"seq_len {self.seq_len} is longer than an episode ({agent_steps} agent steps + the "
      "first observation)",
    )
    require(
      self.replay_capacity // self.action_repeat >= agent_steps,
      f"replay_capacity ({self.replay_capacity} env steps) must hold an episode "
      f"({self.episode_length})",
    )
    wm = self.world_model
    factors = "x" + "y" * wm.has_y + "z" * wm.has_z
    require(
      factors == FACTORS[self.model],
      f"model {self.model} has factors {', '.join(FACTORS[self.model])} but world_model "
      f"has {', '.join(factors)}: build the config with full(model=...) or "
      f"small(model=...) (on the command line --model picks the preset's world model)",
    )
    require(
      wm.action_dim == ACTION_DIMS[self.env],
      f"world_model.action_dim is {wm.action_dim} but {self.env} has "
      f"{ACTION_DIMS[self.env]} actions: build the config with full(env=...) or "
      f"small(env=...) (on the command line --env sets it)",
    )


def default_variant(env: str) -> str:
  """The variant a command line without ``--variant`` gets: the paper's noisiest of the task."""
  return "noisy" if env in ROBODESK_TASKS else "video_background_camera_jitter"


def full(model: str = "dmdp", env: str = "cheetah_run", variant: str | None = None) -> RunConfig:
  """The refs' settings: 64x64 pixels, 1e6 env steps, 5,000 prefill, 100 updates of 50 x 50 per
  1000 env steps, horizon 15, the model's full sizes (an accelerator's run); beta from
  :data:`jaxprune.dmdp.config.BETA` for (env, variant); the release's (PyTorch) init. RoboDesk:
  96x96 pixels and alpha 2 (:func:`jaxprune.dmdp.config.robodesk_96`), beta 0.125, the same
  schedule (action repeat 2, 1000-step episodes)."""
  variant = variant or default_variant(env)
  beta = wm_config.beta_for(env, variant)
  world_model = wm_config.preset(model, action_dim=ACTION_DIMS[env], beta_y=beta, beta_z=beta)
  if env in ROBODESK_TASKS:
    world_model = wm_config.robodesk_96(world_model, beta_y=beta, beta_z=beta)
  return RunConfig(env=env, variant=variant, model=model, world_model=world_model)


def small(model: str = "dmdp", env: str = "cheetah_run", variant: str | None = None) -> RunConfig:
  """A CPU run of minutes: 32x32 pixels, 100-step episodes, 16,000 env steps, 20 updates of
  16 x 16 per 100 env steps, latents at most 64 / 8 wide, 5x the refs' learning rates, free nats
  1 on KL_x (8-dim latents stay below the refs' 3 nats, which would leave x's prior untrained);
  beta from :data:`jaxprune.dmdp.config.BETA` for (env, variant); the release's init. RoboDesk:
  see :func:`small_robodesk`."""
  variant = variant or default_variant(env)
  if env in ROBODESK_TASKS:
    return small_robodesk(model, env, variant)
  base = wm_config.preset(model)
  beta = wm_config.beta_for(env, variant)
  world_model = base.replace(
    beta_y=beta,
    beta_z=beta,
    action_dim=ACTION_DIMS[env],
    image_size=32,
    encoder_kernels=(4, 4, 4),  # 32 -> 15 -> 6 -> 2
    decoder_kernels=(5, 6, 6),  # 1 -> 5 -> 14 -> 32
    x_deter=min(base.x_deter, 64),
    x_stoch=min(base.x_stoch, 8),
    y_deter=min(base.y_deter, 64),
    y_stoch=min(base.y_stoch, 8),
    z_deter=min(base.z_deter, 64),
    z_stoch=min(base.z_stoch, 8),
    cnn_depth=16,
    embed_size=256,
    decoder_hidden=256,
    reward_hidden=128,
    free_nats=1.0,
  )
  agent = AgentConfig(
    horizon=10,
    actor_hidden=128,
    actor_layers=2,
    value_hidden=128,
    value_layers=2,
    model_lr=1e-3,
    actor_lr=4e-4,
    value_lr=4e-4,
  )
  return RunConfig(
    env=env,
    variant=variant,
    model=model,
    episode_length=200,
    env_steps=16_000,
    prefill=1000,
    train_every=100,
    updates=20,
    updates_per_dispatch=10,
    batch=16,
    seq_len=16,
    eval_every=2000,
    eval_episodes=3,
    checkpoint_every=2000,
    replay_capacity=100_000,
    world_model=world_model,
    agent=agent,
  )


def small_robodesk(
  model: str = "dmdp", env: str = "robodesk_tv_green_hue", variant: str = "noisy"
) -> RunConfig:
  """The CPU preset on RoboDesk: 96x96 pixels as the release (alpha 2, beta 0.125,
  :func:`jaxprune.dmdp.config.robodesk_96`'s kernels) with the small preset's widths, shadows off
  (software rendering 5x faster), 400-step episodes (200 agent steps: reaching the button takes
  ~100 control steps), 8,000 env steps (~30 minutes on two cores), 10 updates of 16 x 16 per 100
  env steps, evaluations of 2 episodes every 2,000."""
  base = small(model, "cheetah_run", "noiseless")
  beta = wm_config.beta_for(env, variant)
  world_model = wm_config.robodesk_96(
    base.world_model,
    action_dim=ACTION_DIMS[env],
    encoder_kernels=wm_config.robodesk_96().encoder_kernels,
    beta_y=beta,
    beta_z=beta,
  )
  return dataclasses.replace(
    base,
    env=env,
    variant=variant,
    world_model=world_model,
    shadows=False,
    episode_length=400,
    env_steps=8000,
    prefill=2000,
    updates=10,
    eval_episodes=2,
  )


PRESETS = {"full": full, "small": small}


def _flag_value(argv: Sequence[str], flag: str, choices: Sequence[str], default: str) -> str:
  """The last value of ``flag`` in ``argv`` when it is one of ``choices`` (else tyro reports it)."""
  value = default
  for i, a in enumerate(argv):
    if a == flag and i + 1 < len(argv):
      value = argv[i + 1]
    elif a.startswith(flag + "="):
      value = a.split("=", 1)[1]
  return value if value in choices else default


def _expand_beta(argv: Sequence[str]) -> list[str]:
  """``--beta B`` is short for ``--world_model.beta_y B --world_model.beta_z B``."""
  out, i = [], 0
  while i < len(argv):
    a = argv[i]
    if a == "--beta" and i + 1 < len(argv):
      out += ["--world_model.beta_y", argv[i + 1], "--world_model.beta_z", argv[i + 1]]
      i += 2
      continue
    if a.startswith("--beta="):
      b = a.split("=", 1)[1]
      out += ["--world_model.beta_y", b, "--world_model.beta_z", b]
    else:
      out.append(a)
    i += 1
  return out


def parse_args(argv: Sequence[str] | None = None, description: str | None = None) -> RunConfig:
  """The :class:`RunConfig` of a command line. ``--preset full|small`` (default full) with the
  ``--model``, ``--env`` and ``--variant`` given gives the defaults (a complete config: the
  model's sizes, the task's action size, the (task, variant)'s beta); every other flag applies
  on top (``--world_model.beta_y 1``, ``--agent.horizon 10``). ``--beta B`` sets beta_y = beta_z
  = B."""
  argv = _expand_beta(list(sys.argv[1:] if argv is None else argv))
  model = _flag_value(argv, "--model", tuple(FACTORS), "dmdp")
  env = _flag_value(argv, "--env", tuple(ACTION_DIMS), "cheetah_run")
  variant = _flag_value(argv, "--variant", get_args(Variant), default_variant(env))
  presets = {
    name: functools.partial(fn, model=model, env=env, variant=variant)
    for name, fn in PRESETS.items()
  }
  desc = description or (RunConfig.__doc__ + "\n\n" + parse_args.__doc__)
  return config_lib.parse(RunConfig, argv, presets=presets, default_preset="full", description=desc)


# ---------------------------------------------------------------------------------------------
# the update: data-parallel, compiled once per (configs, mesh)


def batch_mesh(batch: int) -> Mesh:
  """The mesh the update runs on: the most devices that divide ``batch`` (all, when ``batch`` is
  a multiple of the device count; fewer, with a warning, otherwise)."""
  n = jax.device_count()
  use = max(d for d in range(1, n + 1) if batch % d == 0)
  if use < n:
    warnings.warn(
      f"batch {batch} is not a multiple of the {n} devices: the update runs on {use} "
      f"of them (choose a batch that is a multiple of {n} to use all)",
      stacklevel=2,
    )
  return data_mesh(use)


@memoize
def train_dispatch(wm_cfg: WorldModelConfig, ag_cfg: AgentConfig, mesh: Mesh) -> Callable:
  """``dispatch(state, batches) -> (state, metrics)``: K agent updates in one ``lax.scan`` over
  batches stacked K x B x T x ...; data-parallel: the batch axis (B) is sharded over ``mesh``'s
  data axis, the state replicated (and donated), so gradients are all-reduced means. Memoised:
  runs in one process with the same configs and mesh share the compilation."""
  update = make_update(agent_lib.agent_loss_fn(wm_cfg, ag_cfg), agent_lib.agent_optimizer(ag_cfg))
  replicated = NamedSharding(mesh, P())
  batches = NamedSharding(mesh, P(None, DATA_AXIS))
  return jax.jit(
    lambda state, b: run_steps(update, state, b),
    in_shardings=(replicated, batches),
    out_shardings=(replicated, replicated),
    donate_argnums=0,
  )


def init_state(cfg: RunConfig, mesh: Mesh) -> TrainState:
  """The agent's train state (params, optimizer state, step, key), replicated over ``mesh``."""
  return _init_fn(cfg.world_model, cfg.agent, mesh)(jax.random.key(cfg.seed))


@memoize
def _init_fn(wm_cfg: WorldModelConfig, ag_cfg: AgentConfig, mesh: Mesh) -> Callable:
  # one jitted program: initialising op by op compiles every small op on its own (~30 s on CPU)
  def init(key):
    params = agent_lib.init_agent(wm_cfg, ag_cfg, jax.random.fold_in(key, INIT_SALT))
    return create_state(
      params, agent_lib.agent_optimizer(ag_cfg), jax.random.fold_in(key, TRAIN_SALT)
    )

  return jit_once(init, out_shardings=NamedSharding(mesh, P()))


def check_finite_updates(metrics: dict, *, first_update: int, env_steps: int) -> None:
  """:class:`NonFiniteError` naming the first update (numbered from ``first_update``) whose
  metrics (each K) hold a NaN or inf, and the env step of its training phase."""
  bad = np.zeros(len(next(iter(metrics.values()))), bool)
  for v in metrics.values():
    bad |= ~np.isfinite(v)
  if bad.any():
    i = int(np.argmax(bad))
    names = {k: float(v[i]) for k, v in metrics.items() if not np.isfinite(v[i])}
    raise NonFiniteError(
      f"non-finite {', '.join(names)} at update {first_update + i} (env step "
      f"{env_steps}): {names}; the run stops (its last checkpoint is intact)"
    )


def value_bound(cfg: RunConfig) -> float:
  """The largest |value| :func:`check_value_bound` lets an update have (inf when off)."""
  if cfg.value_guard == 0:
    return math.inf
  return cfg.value_guard * cfg.action_repeat / (1.0 - cfg.agent.gamma)


def check_value_bound(metrics: dict, *, bound: float, first_update: int, env_steps: int) -> None:
  """:class:`ValueDivergedError` naming the first update (numbered from ``first_update``) whose
  mean imagined value (``metrics["imag_value"]``, each K) is beyond +-``bound``."""
  v = np.abs(np.asarray(metrics["imag_value"], np.float64))
  if (v > bound).any():
    i = int(np.argmax(v > bound))
    raise ValueDivergedError(
      f"the mean imagined value is {float(metrics['imag_value'][i]):.6g} at update "
      f"{first_update + i} (env step {env_steps}), beyond +-{bound:.4g} (value_guard x "
      "action_repeat / (1 - gamma)): the value net diverged (value_loss "
      f"{float(metrics['value_loss'][i]):.4g}); the run stops (its last checkpoint is intact). "
      "Lower --agent.value_lr / --agent.actor_lr, or --value_guard 0 to go on regardless"
    )


def _train(cfg: RunConfig, dispatch: Callable, state: TrainState, buf, env_steps: int):
  """One training phase: ``cfg.updates`` updates; returns ``(state, the record to log)``."""
  first = int(state.step) + 1
  pending = []
  for _ in range(cfg.updates // cfg.updates_per_dispatch):
    # the next batches are sampled on the host while the device runs the last dispatch
    batches = buf.sample(cfg.batch, cfg.seq_len, num_batches=cfg.updates_per_dispatch)
    state, m = dispatch(state, batches)
    pending.append(m)
  fetched = jax.device_get(pending)
  per_update = {k: np.concatenate([m[k] for m in fetched]) for k in fetched[0]}
  check_finite_updates(per_update, first_update=first, env_steps=env_steps)
  check_value_bound(per_update, bound=value_bound(cfg), first_update=first, env_steps=env_steps)
  # logged: the mean over the last dispatch (the newest updates_per_dispatch updates)
  last = {k: float(np.mean(v)) for k, v in fetched[-1].items()}
  return state, {"kind": "train", "env_steps": env_steps, "update": first - 1 + cfg.updates, **last}


# ---------------------------------------------------------------------------------------------
# the run


def run(cfg: RunConfig) -> dict:
  """Train (or resume) in ``cfg.workdir``; returns a summary dict (also ``summary.json``)."""
  with Run(
    cfg.workdir,
    config=cfg,
    may_change=MAY_CHANGE,
    overwrite=cfg.overwrite,
    position_key="env_steps",
  ) as r:
    return _run(cfg, r)


def _run(cfg: RunConfig, r: Run) -> dict:
  from jaxprune import envs  # dm_control loads here, not at package import

  if r.checkpoint_steps() and os.path.isdir(os.path.join(cfg.workdir, "replay")):
    # before the shared driver: its restore would drop the metrics of these checkpoints
    raise CheckpointError(
      f"{cfg.workdir} holds a run of an older version (replay/ beside checkpoints/), which "
      "this version cannot resume; use a new --workdir (or --overwrite true to discard it)"
    )
  io.save_json(os.path.join(cfg.workdir, "config.json"), config_lib.to_dict(cfg))
  os.makedirs(os.path.join(cfg.workdir, "pictures"), exist_ok=True)
  wm_cfg, ag_cfg = cfg.world_model, cfg.agent
  io.save_json(
    os.path.join(cfg.workdir, "model_config.json"),
    {"world_model": config_lib.to_dict(wm_cfg), "agent": config_lib.to_dict(ag_cfg)},
  )
  mesh = batch_mesh(cfg.batch)
  dispatch = train_dispatch(wm_cfg, ag_cfg, mesh)
  state = init_state(cfg, mesh)
  key = jax.random.key(cfg.seed)
  keys = {
    "explore": jax.random.fold_in(key, EXPLORE_SALT),
    "eval": jax.random.fold_in(key, EVAL_SALT),
    "pictures": jax.random.fold_in(key, PICTURES_SALT),
  }

  extra = {"shadows": cfg.shadows} if cfg.env in ROBODESK_TASKS else {}
  make_env = lambda seed: envs.make(
    cfg.env,
    cfg.variant,
    seed=seed,
    image_size=wm_cfg.image_size,
    action_repeat=cfg.action_repeat,
    episode_length=cfg.episode_length,
    video_dir=cfg.video_dir,
    **extra,
  )
  env, eval_env = make_env(cfg.seed), make_env(cfg.seed + EVAL_ENV_SEED_OFFSET)
  counters = dict(
    env_steps=0,
    episodes=0,
    eval_episodes=0,
    next_eval=cfg.eval_every,
    next_ckpt=cfg.checkpoint_every,
    trained_until=0,
  )
  restored = r.restore(state)
  if restored is not None:
    state, meta = restored
    counters = dict(meta["counters"])
    if "replay" not in meta.get("files", {}):
      raise CheckpointError(
        f"the checkpoint at update {int(state.step)} in {cfg.workdir} has no "
        "replay file (files/replay/); start in a fresh workdir or with "
        "--overwrite true"
      )
    buf = replay_lib.ReplayBuffer.load(meta["files"]["replay"])
    for _ in range(counters["episodes"]):  # the same episode draws as an uninterrupted run
      env.reset()
    for _ in range(counters["eval_episodes"]):
      eval_env.reset()
    print(
      f"resumed from update {int(state.step)}: {counters['env_steps']} env steps, "
      f"{counters['episodes']} episodes, {buf.num_episodes} in replay",
      flush=True,
    )
  else:
    buf = replay_lib.ReplayBuffer(
      capacity=cfg.replay_capacity // cfg.action_repeat,
      obs_shape=env.observation_shape,
      action_dim=env.action_dim,
      seed=cfg.seed,
    )

  bar = r.progress(
    total=cfg.env_steps,
    initial=counters["env_steps"],
    unit="env step",
    desc=f"{cfg.model} {cfg.env} {cfg.variant}",
    enabled=cfg.progress,
  )
  t_env = t_train = 0.0
  n_updates_run = 0
  env_steps_start = counters["env_steps"]  # rates count this process's work only
  last_return = float("nan")
  try:
    while counters["env_steps"] < cfg.env_steps:
      # one episode -------------------------------------------------------------------------
      t0 = time.perf_counter()
      obs = env.reset()
      buf.add(obs)
      pstate = agent_lib.initial_policy_state(wm_cfg)
      rng = np.random.default_rng([cfg.seed, counters["episodes"]])
      ep_return = ep_clean = 0.0
      done = False
      while not done:
        if counters["env_steps"] < cfg.prefill:
          action = rng.uniform(-1.0, 1.0, env.action_dim).astype(np.float32)
        else:
          k = jax.random.fold_in(keys["explore"], counters["env_steps"])
          action, pstate = agent_lib.policy_step(
            wm_cfg, ag_cfg, state.params, pstate, obs, k, explore=True
          )
          action = np.asarray(action)
        obs, reward, done, info = env.step(action)
        buf.add(obs, action, reward, done)
        ep_return += reward
        ep_clean += info.get("clean_reward", reward)
        counters["env_steps"] += cfg.action_repeat
        bar.update(cfg.action_repeat)
        # train every train_every env steps once past the prefill (and once data exists)
        due = counters["env_steps"] - counters["trained_until"] >= cfg.train_every
        if due and counters["env_steps"] >= cfg.prefill and buf.longest >= cfg.seq_len:
          t_env += time.perf_counter() - t0
          t1 = time.perf_counter()
          counters["trained_until"] = counters["env_steps"]
          state, record = _train(cfg, dispatch, state, buf, counters["env_steps"])
          n_updates_run += cfg.updates
          t_train += time.perf_counter() - t1
          t0 = time.perf_counter()
          r.log([record])
          bar.set_postfix(
            ret=f"{last_return:.1f}",
            loss=f"{record['loss']:.1f}",
            env_sps=f"{(counters['env_steps'] - env_steps_start) / t_env:.0f}",
            upd_s=f"{n_updates_run / max(t_train, 1e-9):.1f}",
          )
      t_env += time.perf_counter() - t0
      counters["episodes"] += 1
      last_return = ep_return
      r.log(
        [
          {
            "kind": "episode",
            "env_steps": counters["env_steps"],
            "episode": counters["episodes"],
            "return": ep_return,
            "clean_return": ep_clean,
          }
        ]
      )

      # evaluation, pictures, checkpoint at episode ends -------------------------------------
      finished = counters["env_steps"] >= cfg.env_steps
      if counters["env_steps"] >= counters["next_eval"] or finished:
        counters["next_eval"] += cfg.eval_every
        r.log([_evaluate(cfg, state, eval_env, buf, counters, keys)])
        _plot_returns(cfg.workdir, r.records())
      if counters["env_steps"] >= counters["next_ckpt"] or finished:
        counters["next_ckpt"] += cfg.checkpoint_every
        step = int(state.step)
        # no update since the last checkpoint (still prefilling): a resume from that one is
        # consistent, it only redoes these env steps
        if step not in r.checkpoint_steps():
          r.save(
            step,
            state,
            position=counters["env_steps"],
            meta={"counters": dict(counters)},
            files={"replay": buf.save},
          )
  finally:
    env.close()
    eval_env.close()

  rows = r.records()
  evals = [x for x in rows if x["kind"] == "eval"]
  episodes = [x for x in rows if x["kind"] == "episode"]
  summary = {
    "env": cfg.env,
    "variant": cfg.variant,
    "model": cfg.model,
    "env_steps": counters["env_steps"],
    "episodes": counters["episodes"],
    "updates": int(state.step),
    "eval_env_steps": [x["env_steps"] for x in evals],
    "eval_return": [x["return_mean"] for x in evals],
    "eval_clean_return": [x["clean_return_mean"] for x in evals],
    "train_return": [x["return"] for x in episodes],
    "env_steps_per_s": (counters["env_steps"] - env_steps_start) / t_env if t_env else None,
    "updates_per_s": n_updates_run / t_train if t_train > 0 else None,
  }
  io.save_json(os.path.join(cfg.workdir, "summary.json"), summary)
  return summary


def _evaluate(cfg: RunConfig, state, eval_env, buf, counters, keys) -> dict:
  """Eval episodes with the policy's mode; a frame strip of the first; factor pictures.
  Returns the eval record."""
  wm_cfg, ag_cfg = cfg.world_model, cfg.agent
  returns, clean, frames = [], [], []
  for e in range(cfg.eval_episodes):
    obs = eval_env.reset()
    k_episode = jax.random.fold_in(keys["eval"], counters["eval_episodes"])
    counters["eval_episodes"] += 1
    pstate = agent_lib.initial_policy_state(wm_cfg)
    total = total_clean = 0.0
    done = False
    t = 0
    while not done:
      if e == 0:
        frames.append(obs)
      action, pstate = agent_lib.policy_step(
        wm_cfg, ag_cfg, state.params, pstate, obs, jax.random.fold_in(k_episode, t), explore=False
      )
      obs, reward, done, info = eval_env.step(np.asarray(action))
      total += reward
      total_clean += info.get("clean_reward", reward)
      t += 1
    returns.append(total)
    clean.append(total_clean)
  step = counters["env_steps"]
  pic = os.path.join(cfg.workdir, "pictures")
  _save_strip(os.path.join(pic, f"eval_{step:08d}.png"), frames[:: max(1, len(frames) // 16)][:16])
  _save_gif(os.path.join(pic, f"eval_{step:08d}.gif"), frames)
  if buf.num_episodes:
    ep = buf.episode(-1)  # the newest (episode ids are not positions once old ones are evicted)
    n = min(16, ep["image"].shape[0])
    save_factor_pictures(
      os.path.join(pic, f"factors_{step:08d}.png"),
      wm_cfg,
      state.params["model"],
      ep["image"][:n],
      ep["action"][:n],
      jax.random.fold_in(keys["pictures"], step),
    )
  return {
    "kind": "eval",
    "env_steps": step,
    "return_mean": float(np.mean(returns)),
    "return_std": float(np.std(returns)),
    "clean_return_mean": float(np.mean(clean)),
    "returns": [float(x) for x in returns],
  }


def _save_strip(path: str, frames) -> None:
  from PIL import Image

  strip = np.concatenate(list(frames), axis=1)
  img = Image.fromarray(strip).resize((strip.shape[1] * 2, strip.shape[0] * 2), Image.NEAREST)
  with io.atomic_path(path) as tmp:
    img.save(tmp, format="PNG")


def _save_gif(path: str, frames) -> None:
  """The evaluation episode as an animated GIF (every agent step, 2x upscaled)."""
  import imageio.v2 as imageio

  big = [np.repeat(np.repeat(f, 2, 0), 2, 1) for f in frames]
  with io.atomic_path(path) as tmp:
    imageio.mimsave(tmp, big, format="GIF", duration=0.05, loop=0)


def _plot_returns(workdir: str, rows: list[dict]) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  ep = [x for x in rows if x["kind"] == "episode"]
  ev = [x for x in rows if x["kind"] == "eval"]
  tr = [x for x in rows if x["kind"] == "train"]
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
  ax = axes[0]
  if ep:
    ax.plot(
      [x["env_steps"] for x in ep],
      [x["return"] for x in ep],
      ".",
      ms=3,
      alpha=0.5,
      label="training episodes (exploring)",
    )
  if ev:
    ax.errorbar(
      [x["env_steps"] for x in ev],
      [x["return_mean"] for x in ev],
      yerr=[x["return_std"] for x in ev],
      fmt="o-",
      capsize=2,
      label="evaluation (mode)",
    )
  ax.set(xlabel="env steps", ylabel="episode return", title="returns")
  ax.legend(fontsize=8)
  ax = axes[1]
  for k in ("recon_nll", "kl_x", "kl_y", "actor_loss", "value_loss"):
    if tr and k in tr[0]:
      ax.plot([x["env_steps"] for x in tr], [x[k] for x in tr], lw=1, label=k)
  ax.set(xlabel="env steps", yscale="symlog", title="loss terms")
  ax.legend(fontsize=8)
  fig.tight_layout()
  io.save_figure(os.path.join(workdir, "returns.png"), fig)
  plt.close(fig)
