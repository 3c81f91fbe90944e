"""Typed presets of the Denoised MDP world model (Wang et al. 2022) and of Dreamer.

One name per model, everywhere (``preset(name)``, ``--model`` of the agent, the benchmark):
``dmdp`` (Figure 2b, factors x and y), ``dmdp_2c`` (Figure 2c, adds z) and ``dreamer`` (x only,
200 / 30, no y or z parameters at all). Derived sizes are functions, never stored.

The KL weights (alpha, beta_x, beta_y = beta_z = beta, free nats, ``beta_free_nats_x``) and the
init default to the authors' release; :data:`BETA` is the agent's beta per (task, variant), with
the source of every value (release defaults: the paper's per-environment table was not readable).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, get_args

from jaxprune.core.config import check_finite, require

ModelName = Literal["dmdp", "dmdp_2c", "dreamer"]
# the tasks of the experiments: DMC, then RoboDesk (a test checks them against envs.ALL_TASKS)
Task = Literal["cheetah_run", "walker_walk", "reacher_easy", "robodesk_tv_green_hue"]
# the noise variants of :func:`jaxprune.envs.make`: DMC's (envs.VARIANTS), then RoboDesk's
# "noisy" (its "noiseless" is shared)
Variant = Literal[
  "noiseless",
  "video_background",
  "video_background_noisy_sensor",
  "video_background_camera_jitter",
  "noisy",
]
MODELS: tuple[str, ...] = get_args(ModelName)


@dataclass(frozen=True)
class WorldModelConfig:
  """Sizes and objective weights. A factor with ``deter == stoch == 0`` is absent.

  Widths not listed follow the release: each factor's transition input layer and prior MLP
  are ``deter`` wide, the joint posterior MLP ``x_deter + y_deter``, z's layers ``z_deter``.
  Dense layers use ELU, convolutions ReLU.
  """

  action_dim: int = 6
  """size of an action (an agent run requires the environment's)"""
  image_size: int = 64
  """square images, pixels (the decoder's kernels must produce it: :func:`with_image_size`
  sets the image size with its kernels, for 16, 32, 48, 64 and 96 pixels)"""
  channels: int = 3
  """image channels"""
  x_deter: int = 120
  """GRU state of the signal factor x"""
  x_stoch: int = 20
  """Gaussian latent of x"""
  y_deter: int = 120
  """GRU state of y (reward-relevant noise); 0 with y_stoch 0: no y"""
  y_stoch: int = 20
  """Gaussian latent of y"""
  z_deter: int = 0
  """GRU state of z (reward-irrelevant noise, Fig. 2c); 0 with z_stoch 0: no z"""
  z_stoch: int = 0
  """Gaussian latent of z"""
  z_prior_uses_y: bool = True
  """false: z's transition drops h^y, y (the appendix variant)"""
  min_std: float = 0.1
  """std = softplus(raw) + min_std"""
  cnn_depth: int = 32
  """encoder channels cnn_depth * 2^i"""
  encoder_kernels: tuple[int, ...] = (4, 4, 4, 4)
  """stride 2, VALID; the 64-pixel default (other sizes: :func:`conv_layout`)"""
  encoder_final_3x3: bool = False
  """one more 3x3 stride-1 VALID conv (96x96: 4x4 -> 2x2)"""
  embed_size: int = 1024
  """dense layer after the encoder's convolutions"""
  decoder_hidden: int = 1024
  """dense layer (then ReLU) before the transposed convolutions"""
  decoder_kernels: tuple[int, ...] = (5, 5, 6, 6)
  """transposed, stride 2, VALID, from 1x1; the 64-pixel default (other sizes:
  :func:`conv_layout`)"""
  deconv_method: Literal["auto", "col2im", "subpixel"] = "auto"
  """formulation of the transposed convolutions (the same function, see conv.py)"""
  pixel_chunk: int = 0
  """images per chunk for the encoder and decoder of a batch (0: all at once). > 0 runs them
  chunk by chunk under jax.checkpoint (when it is below B x T), recomputing each chunk's layers
  in the backward: the same values, far less memory (issue 28: XLA's scratch 2.26 -> 0.24 GiB at
  16 x 50 with chunks of 50), 14-24% more time"""
  reward_hidden: int = 400
  """width of the reward MLPs f_x, f_y"""
  reward_layers: int = 2
  """hidden layers of the reward MLPs"""
  alpha: float = 1.0
  """weight of the KL terms"""
  beta_x: float = 1.0
  """weight of KL_x (alpha * beta_x); the release's default 1, what the paper uses"""
  beta_free_nats_x: float | None = None
  """the part of beta_x whose KL_x gets free nats (None: all of it); the rest, beta_x minus this,
  weighs an unclamped KL_x (the release's alternative free-nats strategy, paper B.1.2)"""
  beta_y: float = 0.25
  """extra weight of KL_y (alpha * beta_y)"""
  beta_z: float = 0.25
  """extra weight of KL_z (alpha * beta_z)"""
  free_nats: float = 3.0
  """on KL_x only, per time step"""
  init: Literal["torch", "flax"] = "torch"
  """parameter init: torch = the release's (PyTorch defaults: weights and biases
  U(+-1/sqrt(fan_in)), GRU U(+-1/sqrt(hidden))); flax = lecun_normal weights, zero biases"""

  def __post_init__(self):
    check_finite(self)
    for name in (
      "action_dim",
      "image_size",
      "channels",
      "x_deter",
      "x_stoch",
      "cnn_depth",
      "embed_size",
      "decoder_hidden",
      "reward_hidden",
      "reward_layers",
    ):
      require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
    for f in ("y", "z"):
      d, s = getattr(self, f"{f}_deter"), getattr(self, f"{f}_stoch")
      require(
        d >= 0 and s >= 0 and (d == 0) == (s == 0),
        f"factor {f}: {f}_deter and {f}_stoch must both be 0 (absent) or both >= 1, got {d} / {s}",
      )
    require(
      self.alpha > 0 and self.beta_y >= 0 and self.beta_z >= 0 and self.free_nats >= 0,
      "need alpha > 0 and beta_y, beta_z, free_nats >= 0",
    )
    require(self.beta_x >= 0, f"beta_x must be >= 0, got {self.beta_x}")
    require(
      self.beta_free_nats_x is None or 0 <= self.beta_free_nats_x <= self.beta_x,
      f"beta_free_nats_x must be None or in [0, beta_x = {self.beta_x}], "
      f"got {self.beta_free_nats_x}",
    )
    require(self.init in ("torch", "flax"), f"init must be 'torch' or 'flax', got {self.init!r}")
    require(
      self.deconv_method in ("auto", "col2im", "subpixel"),
      f"deconv_method must be 'auto', 'col2im' or 'subpixel', got {self.deconv_method!r}",
    )
    require(self.min_std > 0, f"min_std must be > 0, got {self.min_std}")
    require(self.pixel_chunk >= 0, f"pixel_chunk must be >= 0, got {self.pixel_chunk}")
    require(
      encoder_size(self) >= 1,
      f"encoder_kernels {self.encoder_kernels} shrink a {self.image_size}-pixel image to nothing"
      f"{_layout_hint(self.image_size)}",
    )
    require(
      decoder_size(self) == self.image_size,
      f"decoder_kernels {self.decoder_kernels} give {decoder_size(self)}-pixel images, "
      f"expected image_size {self.image_size}{_layout_hint(self.image_size)}",
    )

  def replace(self, **kw) -> "WorldModelConfig":
    return dataclasses.replace(self, **kw)

  @property
  def has_y(self) -> bool:
    return self.y_stoch > 0

  @property
  def has_z(self) -> bool:
    return self.z_stoch > 0


# image_size: (encoder_kernels, encoder_final_3x3, decoder_kernels); every conv stride 2, VALID,
# the final 3x3 stride 1; decoder channels from decoder_channels
_CONV_LAYOUTS: dict[int, tuple[tuple[int, ...], bool, tuple[int, ...]]] = {
  16: ((4, 4), False, (3, 3, 4)),  # the tests' tiny preset: 16->7->2; 1->3->7->16
  32: ((4, 4, 4), False, (5, 6, 6)),  # 32->15->6->2; 1->5->14->32
  48: ((4, 4, 4, 4), False, (4, 4, 4, 6)),  # 48->23->10->4->1; 1->4->10->22->48
  64: ((4, 4, 4, 4), False, (5, 5, 6, 6)),  # the release's: 64->31->14->6->2; 1->5->13->30->64
  96: ((4, 4, 4, 4), True, (3, 5, 5, 6, 6)),  # RoboDesk's: 96->..->4, 3x3 -> 2; 1->3->..->46->96
}
IMAGE_SIZES: tuple[int, ...] = tuple(sorted(_CONV_LAYOUTS))
"""the image sizes :func:`conv_layout` has encoder / decoder kernels for"""


def conv_layout(image_size: int) -> dict:
  """The encoder and decoder kernels for square ``image_size``-pixel images, as config fields.

  ``{"image_size", "encoder_kernels", "encoder_final_3x3", "decoder_kernels"}``, for the sizes in
  :data:`IMAGE_SIZES`: 64 is the release's architecture (encoder 64->31->14->6->2, decoder
  1->5->13->30->64), 96 RoboDesk's (:func:`robodesk_96`); 32 and 48 follow the same rules
  (stride-2 VALID kernels of 4 down to a few pixels, transposed kernels of 3-6 up from 1x1).
  ``cfg.replace(**conv_layout(48))`` (or :func:`with_image_size`) sets all four; raises
  ``ValueError`` for another size.
  """
  if image_size not in _CONV_LAYOUTS:
    raise ValueError(
      f"no encoder / decoder kernels for {image_size!r}-pixel images; supported image sizes "
      f"{IMAGE_SIZES} (or set encoder_kernels, encoder_final_3x3 and decoder_kernels yourself: "
      "stride-2 VALID convs, the decoder's transposed convs grow 1 -> 2 (s - 1) + k)"
    )
  enc, final, dec = _CONV_LAYOUTS[image_size]
  return {
    "image_size": image_size,
    "encoder_kernels": enc,
    "encoder_final_3x3": final,
    "decoder_kernels": dec,
  }


def with_image_size(
  base: WorldModelConfig | None = None, image_size: int = 64, **overrides
) -> WorldModelConfig:
  """``base`` (default :func:`dmdp`) at ``image_size`` pixels with the kernels of
  :func:`conv_layout`; e.g. ``with_image_size(dreamer(), 32)``. ``overrides`` come last."""
  base = base or WorldModelConfig()
  return base.replace(**{**conv_layout(image_size), **overrides})


def _layout_hint(image_size: int) -> str:
  if image_size in _CONV_LAYOUTS:
    return (
      f"; cfg.replace(**conv_layout({image_size})) or with_image_size(cfg, {image_size}) sets them"
    )
  return f" (kernels for other sizes: conv_layout, image sizes {IMAGE_SIZES})"


def encoder_size(cfg: WorldModelConfig) -> int:
  """Spatial size after the encoder's convolutions (stride-2 VALID, optional final 3x3)."""
  s = cfg.image_size
  for k in cfg.encoder_kernels:
    s = (s - k) // 2 + 1
  return s - 2 if cfg.encoder_final_3x3 else s


def decoder_size(cfg: WorldModelConfig) -> int:
  s = 1
  for k in cfg.decoder_kernels:
    s = (s - 1) * 2 + k
  return s


def decoder_channels(cfg: WorldModelConfig) -> tuple[int, ...]:
  n = len(cfg.decoder_kernels)
  return tuple(cfg.cnn_depth * 2 ** min(2, n - 2 - i) for i in range(n - 1)) + (cfg.channels,)


def feature_dims(cfg: WorldModelConfig) -> dict[str, int]:
  """Width of each present factor's features ``[h, s]``."""
  dims = {"x": cfg.x_deter + cfg.x_stoch}
  if cfg.has_y:
    dims["y"] = cfg.y_deter + cfg.y_stoch
  if cfg.has_z:
    dims["z"] = cfg.z_deter + cfg.z_stoch
  return dims


def dmdp(**overrides) -> WorldModelConfig:
  """Figure 2b (default): x 120/20, y 120/20, no z; beta 0.25, free nats 3 on x."""
  return WorldModelConfig(**overrides)


def dmdp_2c(**overrides) -> WorldModelConfig:
  """Figure 2c: adds z (120/20) conditioned on x, y and the action."""
  return WorldModelConfig(**{"z_deter": 120, "z_stoch": 20, **overrides})


def dreamer(**overrides) -> WorldModelConfig:
  """Dreamer: x only (200 / 30), y = z = 0, no y or z parameters."""
  return WorldModelConfig(
    **{
      "x_deter": 200,
      "x_stoch": 30,
      "y_deter": 0,
      "y_stoch": 0,
      "z_deter": 0,
      "z_stoch": 0,
      **overrides,
    }
  )


def robodesk_96(base: WorldModelConfig | None = None, **overrides) -> WorldModelConfig:
  """96x96 images (RoboDesk): alpha 2 (its beta, 0.125, is the task's: :data:`BETA`); encoder
  96->47->22->10->4, then a 3x3 conv to 2x2; decoder 1->3->9->21->46->96 (kernels 3, 5, 5, 6,
  6; channels 128, 128, 64, 32, 3)."""
  base = base or dmdp()
  return with_image_size(base, 96, **{"alpha": 2.0, **overrides})


def tiny(base: WorldModelConfig | None = None, **overrides) -> WorldModelConfig:
  """Small sizes for tests: 16x16 images, 2 encoder / 3 decoder layers."""
  base = base or dmdp()
  shrink = lambda n: min(n, 16) if n else 0
  return base.replace(
    **{
      **conv_layout(16),
      "cnn_depth": 4,
      "embed_size": 32,
      "decoder_hidden": 32,
      "reward_hidden": 32,
      "x_deter": shrink(base.x_deter),
      "x_stoch": min(base.x_stoch, 4),
      "y_deter": shrink(base.y_deter),
      "y_stoch": min(base.y_stoch, 4),
      "z_deter": shrink(base.z_deter),
      "z_stoch": min(base.z_stoch, 4),
      "action_dim": 2,
      **overrides,
    }
  )


PRESETS = {"dmdp": dmdp, "dmdp_2c": dmdp_2c, "dreamer": dreamer}

_RELEASE_DMC_BETA = WorldModelConfig.beta_y  # the field's default, the release's 0.25
_DMC_TASKS = ("cheetah_run", "walker_walk", "reacher_easy")
_DMC_VARIANTS = (
  "noiseless",
  "video_background",
  "video_background_noisy_sensor",
  "video_background_camera_jitter",
)
_ROBODESK_BETA = 0.125  # the release README's RoboDesk example (with alpha 2, robodesk_96)
BETA: dict[tuple[str, str], float] = {
  **{(task, variant): _RELEASE_DMC_BETA for task in _DMC_TASKS for variant in _DMC_VARIANTS},
  **{("robodesk_tv_green_hue", variant): _ROBODESK_BETA for variant in ("noisy", "noiseless")},
}
"""beta (= beta_y = beta_z) per (task, variant): the default of ``scripts/train_dmdp.py`` (both
presets, every model; Dreamer has no y or z, so it has no effect there).

Source of every value: the authors' release default, NOT the paper's per-environment table.
The paper's appendix (A.2, the per-environment beta) could not be read here: every stored copy
of arXiv 2206.15477 searched (arXiv, SPIQA, HF papers; searched again for issue 11) holds only
its first page, and the release ships no per-environment configs, sweeps or yaml files. So every
DMC entry is the release's ``KLLoss.Config`` default (``agents/learning/model.py``): alpha 1,
beta_x 1 with free nats 3 on KL_x (all of beta_x gets free nats: ``beta_free_nats_x`` None, the
release default; whether the paper used the alternative strategy of B.1.2 is in the unread
appendix), beta_y = beta_z = 0.25. The release README only says beta belongs in (0, 1) and that
noisier environments benefit from a smaller value; its one worked example is RoboDesk with
beta 0.125 and alpha 2 (:func:`robodesk_96`), which the RoboDesk entries take. Replace the
entries when the table is available.
The small CPU preset uses these betas too, with free nats 1 instead of 3 on KL_x (see
``run_config.small``).
"""


def beta_for(task: str, variant: str) -> float:
  """The default beta of ``task`` under ``variant`` (:data:`BETA`)."""
  if (task, variant) not in BETA:
    raise ValueError(
      f"no default beta for task {task!r}, variant {variant!r}; known (task, variant) "
      f"pairs: DMC tasks {_DMC_TASKS} x variants {_DMC_VARIANTS}, and "
      "robodesk_tv_green_hue x (noisy, noiseless)"
    )
  return BETA[(task, variant)]


def preset(name: str, **overrides) -> WorldModelConfig:
  """The world model named ``name`` (one of :data:`MODELS`) with ``overrides``."""
  if name not in PRESETS:
    raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
  return PRESETS[name](**overrides)
