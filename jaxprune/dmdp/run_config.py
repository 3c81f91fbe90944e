"""The online Denoised MDP agent's config (:class:`RunConfig`, its checks) and its presets.

Configs are complete (:class:`RunConfig`, nested ``world_model`` and ``agent``). Two sizes build
one for a model, task and variant: :func:`full` = the refs' settings (64x64, 1e6 env steps,
batch 50 x 50, 100 updates per 1000 env steps, horizon 15, full model sizes) for accelerators;
:func:`small` = a CPU run of minutes (32x32 pixels, 100-step episodes, small networks, 5x the
refs' learning rates, 20 updates of 16 x 16 per 100 env steps, free nats 1: with 8-dim latents
KL_x stays below the refs' 3 nats, which would leave x's prior, the one imagination runs on,
untrained). What follows from the task and variant (the action size, beta from
:data:`jaxprune.dmdp.config.BETA`, whose docstring gives every value's source) is computed by
:func:`task_world_model`, the one place the agent's beta is set.

On the command line (:func:`parse_args`) the named overlays of :data:`PRESETS` apply in order
(``--preset small dreamer walker_walk noiseless quick``): a size, a model, a task or a variant
rebases the config onto the new choice (:func:`rebuild`: the size's config for the model, task
and variant, plus what earlier overlays changed); ``quick`` shrinks the schedule to a smoke run.
A later choice of the same kind wins (``small full`` is full). Every other flag applies on
top. ``env``, ``variant`` and ``model`` are chosen by the overlays only, so the values that
follow from them always match.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Annotated, Callable, Literal, Sequence, get_args

import tyro

from jaxprune.core import config as config_lib
from jaxprune.core.config import check_finite, require
from jaxprune.dmdp import config as wm_config
from jaxprune.dmdp.agent import AgentConfig
from jaxprune.dmdp.config import Task, Variant, WorldModelConfig
from jaxprune.dmdp.salts import EVAL_ENV_SEED_OFFSET

# the tasks' action sizes, so a config is checked without loading dm_control (a test compares
# them with the environments)
ACTION_DIMS = {"cheetah_run": 6, "walker_walk": 6, "reacher_easy": 2, "robodesk_tv_green_hue": 5}
ROBODESK_TASKS = ("robodesk_tv_green_hue",)
# the variants each kind of task takes (jaxprune.envs.VARIANTS / ROBODESK_VARIANTS)
DMC_VARIANTS = get_args(Variant)[:4]
ROBODESK_VARIANTS = ("noisy", "noiseless")
FACTORS = {"dmdp": "xy", "dmdp_2c": "xyz", "dreamer": "x"}  # each model's latent factors


@dataclass(frozen=True)
class RunConfig:
  """Denoised MDP / Dreamer on a noisy DMC or RoboDesk task from pixels. The defaults are the
  refs' settings (the full preset of the dmdp model on cheetah_run)."""

  env: Annotated[Task, tyro.conf.Fixed] = "cheetah_run"
  """task (on the command line: the overlay --preset TASK)"""
  variant: Annotated[Variant, tyro.conf.Fixed] = "video_background_camera_jitter"
  """noise of the observations (noisy_sensor: of the reward too); RoboDesk: noisy | noiseless
  (on the command line: the overlay --preset VARIANT)"""
  model: Annotated[wm_config.ModelName, tyro.conf.Fixed] = "dmdp"
  """dmdp (Fig. 2b: x, y) | dmdp_2c (Fig. 2c: x, y, z) | dreamer (x); sets the preset's sizes
  (on the command line: the overlay --preset MODEL)"""
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
  env_backend: Literal["dm_control", "jax"] = "dm_control"
  """dm_control: one MuJoCo environment stepped and rendered on the host (the default, the
  paper's); jax: the task in MJX with the JAX renderer and distractors
  (:mod:`jaxprune.envs.jax_env`), collection and training in one jitted program on the device
  (:mod:`jaxprune.dmdp.device_driver`); DMC tasks only"""
  num_envs: int = 1
  """jax backend: environments stepped together per seed (train_every must be a multiple of
  action_repeat x num_envs)"""
  seeds: int = 1
  """jax backend: seeds seed, seed + 1, ... trained together, vmapped in one program"""
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
    for name in ("num_envs", "seeds"):
      require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
    if self.env_backend == "jax":
      require(
        self.env not in ROBODESK_TASKS,
        f"env_backend jax runs the DMC tasks only, not {self.env}",
      )
      per_iteration = self.action_repeat * self.num_envs
      require(
        self.train_every % per_iteration == 0,
        f"env_backend jax: train_every ({self.train_every}) must be a multiple of action_repeat "
        f"x num_envs ({per_iteration})",
      )
      collect = self.train_every // per_iteration
      require(
        (self.episode_length // self.action_repeat) % collect == 0,
        f"env_backend jax: each iteration collects train_every / (action_repeat x num_envs) = "
        f"{collect} agent steps, which must divide an episode's "
        f"{self.episode_length // self.action_repeat}",
      )
    else:
      require(
        self.num_envs == 1 and self.seeds == 1,
        "num_envs and seeds > 1 need env_backend jax (the dm_control loop runs one environment "
        f"and one seed), got num_envs {self.num_envs}, seeds {self.seeds}",
      )
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
      f"small(model=...) (on the command line: --preset {self.model})",
    )
    require(
      wm.action_dim == ACTION_DIMS[self.env],
      f"world_model.action_dim is {wm.action_dim} but {self.env} has "
      f"{ACTION_DIMS[self.env]} actions: build the config with full(env=...) or "
      f"small(env=...) (on the command line: --preset {self.env})",
    )


def default_variant(env: str) -> str:
  """The variant a task gets when none is chosen: the paper's noisiest of the task."""
  return "noisy" if env in ROBODESK_TASKS else "video_background_camera_jitter"


def variants_of(env: str) -> tuple[str, ...]:
  """The variants ``env`` takes."""
  return ROBODESK_VARIANTS if env in ROBODESK_TASKS else DMC_VARIANTS


def task_world_model(world_model: WorldModelConfig, env: str, variant: str) -> WorldModelConfig:
  """``world_model`` for ``env`` under ``variant``: the task's action size and beta (beta_y =
  beta_z) from :data:`jaxprune.dmdp.config.BETA` (:func:`jaxprune.dmdp.config.beta_for`). The one
  place the agent's beta is set."""
  beta = wm_config.beta_for(env, variant)
  return world_model.replace(action_dim=ACTION_DIMS[env], beta_y=beta, beta_z=beta)


def full(model: str = "dmdp", env: str = "cheetah_run", variant: str | None = None) -> RunConfig:
  """The refs' settings: 64x64 pixels, 1e6 env steps, 5,000 prefill, 100 updates of 50 x 50 per
  1000 env steps, horizon 15, the model's full sizes (an accelerator's run); beta from
  :data:`jaxprune.dmdp.config.BETA` for (env, variant); the release's (PyTorch) init. RoboDesk:
  96x96 pixels and alpha 2 (:func:`jaxprune.dmdp.config.robodesk_96`), beta 0.125, the same
  schedule (action repeat 2, 1000-step episodes)."""
  variant = variant or default_variant(env)
  world_model = wm_config.preset(model)
  if env in ROBODESK_TASKS:
    world_model = wm_config.robodesk_96(world_model)
  world_model = task_world_model(world_model, env, variant)
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
  world_model = base.replace(
    **wm_config.conv_layout(32),  # encoder 32 -> 15 -> 6 -> 2, decoder 1 -> 5 -> 14 -> 32
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
  world_model = task_world_model(world_model, env, variant)
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
  world_model = wm_config.robodesk_96(base.world_model)
  world_model = task_world_model(world_model, env, variant)
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


SIZES: dict[str, Callable[..., RunConfig]] = {"full": full, "small": small}
"""The size presets: ``SIZES[name](model, env, variant)`` is a complete config."""


def size_of(cfg: RunConfig) -> str:
  """The size (a key of :data:`SIZES`) whose networks ``cfg``'s world model has, for its model,
  task and variant. ``ValueError`` when it has neither's."""
  widths = lambda w: (w.cnn_depth, w.embed_size, w.decoder_hidden, w.reward_hidden)
  for name, make in SIZES.items():
    if widths(make(cfg.model, cfg.env, cfg.variant).world_model) == widths(cfg.world_model):
      return name
  raise ValueError(
    f"the world model's widths {widths(cfg.world_model)} (cnn_depth, embed_size, decoder_hidden, "
    f"reward_hidden) are those of no size in {tuple(SIZES)}: choose the model, task and variant "
    "before changing them"
  )


def rebuild(
  cfg: RunConfig,
  *,
  size: str | None = None,
  model: str | None = None,
  env: str | None = None,
  variant: str | None = None,
) -> RunConfig:
  """``cfg`` rebased onto another size, model, task or variant: the complete config of ``size``
  (default: ``cfg``'s, :func:`size_of`) for ``cfg``'s model, task and variant with those given
  replaced, plus every field in which ``cfg`` differs from the config its own choices build (what
  ``quick`` or another overlay changed). So ``small quick`` equals ``quick small``, and the values
  that follow from the choices (action size, beta, the model's factors) are the new choice's.
  A variant the task does not take (a DMC variant on RoboDesk) becomes the task's
  :func:`default_variant`."""
  old_size = size_of(cfg)
  env = env or cfg.env
  variant = variant or cfg.variant
  if variant not in variants_of(env):
    variant = default_variant(env)
  new = SIZES[size or old_size](model or cfg.model, env, variant)
  ours = config_lib.flatten(config_lib.to_dict(cfg))
  built = config_lib.flatten(config_lib.to_dict(SIZES[old_size](cfg.model, cfg.env, cfg.variant)))
  changed = {k: tuple(v) if isinstance(v, list) else v for k, v in ours.items() if built[k] != v}
  return config_lib.replace(new, **changed)


def quick(cfg: RunConfig) -> RunConfig:
  """A smoke run of a minute on CPU (after small): 600 env steps of 100-step episodes, 200 of
  prefill, 2 updates of 4 x 8 per 100 env steps, horizon 3, 16-wide actor and value, an
  evaluation of 1 episode every 400 env steps, a checkpoint every 200."""
  return config_lib.replace(
    cfg,
    env_steps=600,
    episode_length=100,
    prefill=200,
    train_every=100,
    updates=2,
    updates_per_dispatch=2,
    batch=4,
    seq_len=8,
    eval_every=400,
    eval_episodes=1,
    checkpoint_every=200,
    **{"agent.horizon": 3, "agent.actor_hidden": 16, "agent.value_hidden": 16},
  )


PRESETS: dict[str, Callable[[RunConfig], RunConfig]] = {
  **{name: functools.partial(rebuild, size=name) for name in SIZES},
  **{name: functools.partial(rebuild, model=name) for name in FACTORS},
  **{name: functools.partial(rebuild, env=name) for name in ACTION_DIMS},
  **{name: functools.partial(rebuild, variant=name) for name in get_args(Variant)},
  "quick": quick,
}
"""The named overlays ``cfg -> cfg`` of the command line (``--preset NAME [NAME ...]``), applied
in order: a size, model, task or variant rebases the config onto that choice (:func:`rebuild`);
``quick`` shrinks the schedule (:func:`quick`)."""


def parse_args(argv: Sequence[str] | None = None, description: str | None = None) -> RunConfig:
  """The :class:`RunConfig` of a command line: the overlays of ``--preset A B ...``
  (:data:`PRESETS`, in order: sizes full | small, models, tasks, variants, quick) on the
  default config (the full size of dmdp on cheetah_run, video_background_camera_jitter), then
  every other flag on top (``--world_model.beta_y 1 --world_model.beta_z 1``,
  ``--agent.horizon 10``)."""
  desc = description or (RunConfig.__doc__ + "\n\n" + parse_args.__doc__)
  return config_lib.parse(RunConfig, argv, presets=PRESETS, description=desc)
