"""Typed presets of the Denoised MDP world model (Wang et al. 2022) and of Dreamer.

``denoised_2b()`` (default) has factors x and y; ``denoised_2c()`` adds z; ``dreamer()`` is x only
(200 / 30) with no y or z parameters at all. Derived sizes are functions, never stored.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class WorldModelConfig:
  """Sizes and objective weights. A factor with ``deter == stoch == 0`` is absent.

  Widths not listed follow the release: each factor's transition input layer and prior MLP
  are ``deter`` wide, the joint posterior MLP ``x_deter + y_deter``, z's layers ``z_deter``.
  Dense layers use ELU, convolutions ReLU.
  """

  action_dim: int = 6
  image_size: int = 64
  channels: int = 3
  x_deter: int = 120
  x_stoch: int = 20
  y_deter: int = 120
  y_stoch: int = 20
  z_deter: int = 0
  z_stoch: int = 0
  z_prior_uses_y: bool = True  # False: z's transition drops h^y, y (the appendix variant)
  min_std: float = 0.1  # std = softplus(raw) + min_std
  cnn_depth: int = 32  # encoder channels depth * 2^i
  encoder_kernels: tuple[int, ...] = (4, 4, 4, 4)  # stride 2, VALID
  encoder_final_3x3: bool = False  # one more 3x3 stride-1 VALID conv (96x96: 4x4 -> 2x2)
  embed_size: int = 1024  # dense layer after the encoder's convolutions
  decoder_hidden: int = 1024  # dense layer (then ReLU) before the transposed convolutions
  decoder_kernels: tuple[int, ...] = (5, 5, 6, 6)  # transposed, stride 2, VALID, from 1x1
  deconv_method: str = "auto"  # "col2im" / "subpixel" / "auto": same function, see conv.py
  reward_hidden: int = 400
  reward_layers: int = 2
  alpha: float = 1.0
  beta_y: float = 0.25
  beta_z: float = 0.25
  free_nats: float = 3.0  # on x only, per time step

  def __post_init__(self):
    for name in ("action_dim", "image_size", "channels", "x_deter", "x_stoch", "cnn_depth",
                 "embed_size", "decoder_hidden", "reward_hidden", "reward_layers"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    for f in ("y", "z"):
      d, s = getattr(self, f"{f}_deter"), getattr(self, f"{f}_stoch")
      if d < 0 or s < 0 or (d == 0) != (s == 0):
        raise ValueError(f"factor {f}: {f}_deter and {f}_stoch must both be 0 (absent) or both "
                         f">= 1, got {d} / {s}")
    if self.alpha <= 0 or self.beta_y < 0 or self.beta_z < 0 or self.free_nats < 0:
      raise ValueError("need alpha > 0 and beta_y, beta_z, free_nats >= 0")
    if self.deconv_method not in ("auto", "col2im", "subpixel"):
      raise ValueError("deconv_method must be 'auto', 'col2im' or 'subpixel', got "
                       f"{self.deconv_method!r}")
    if self.min_std <= 0:
      raise ValueError(f"min_std must be > 0, got {self.min_std}")
    if encoder_size(self) < 1:
      raise ValueError(f"encoder_kernels {self.encoder_kernels} shrink a {self.image_size}-pixel "
                       "image to nothing")
    if decoder_size(self) != self.image_size:
      raise ValueError(f"decoder_kernels {self.decoder_kernels} give {decoder_size(self)}-pixel "
                       f"images, expected image_size {self.image_size}")

  def replace(self, **kw) -> "WorldModelConfig":
    return dataclasses.replace(self, **kw)

  @property
  def has_y(self) -> bool:
    return self.y_stoch > 0

  @property
  def has_z(self) -> bool:
    return self.z_stoch > 0


def encoder_size(cfg: WorldModelConfig) -> int:
  """Spatial size after the encoder's convolutions (stride-2 VALID, optional final 3x3)."""
  s = cfg.image_size
  for k in cfg.encoder_kernels:
    s = (s - k) // 2 + 1
  return s - 2 if cfg.encoder_final_3x3 else s


def conv_features(cfg: WorldModelConfig) -> int:
  """Flattened size of the encoder's last convolution."""
  return encoder_size(cfg) ** 2 * cfg.cnn_depth * 2 ** (len(cfg.encoder_kernels) - 1)


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


def denoised_2b(**overrides) -> WorldModelConfig:
  """Figure 2b (default): x 120/20, y 120/20, no z; beta 0.25, free nats 3 on x."""
  return WorldModelConfig(**overrides)


def denoised_2c(**overrides) -> WorldModelConfig:
  """Figure 2c: adds z (120/20) conditioned on x, y and the action."""
  return WorldModelConfig(**{"z_deter": 120, "z_stoch": 20, **overrides})


def dreamer(**overrides) -> WorldModelConfig:
  """Dreamer: x only (200 / 30), y = z = 0, no y or z parameters."""
  return WorldModelConfig(**{"x_deter": 200, "x_stoch": 30, "y_deter": 0, "y_stoch": 0,
                             "z_deter": 0, "z_stoch": 0, **overrides})


def robodesk_96(base: WorldModelConfig | None = None, **overrides) -> WorldModelConfig:
  """96x96 images (RoboDesk): alpha 2, beta 0.125; encoder 96->47->22->10->4, then a 3x3 conv to
  2x2; decoder 1->3->9->21->46->96 (kernels 3, 5, 5, 6, 6; channels 128, 128, 64, 32, 3)."""
  base = base or denoised_2b()
  return base.replace(**{"image_size": 96, "decoder_kernels": (3, 5, 5, 6, 6),
                         "encoder_final_3x3": True, "alpha": 2.0,
                         "beta_y": 0.125, "beta_z": 0.125, **overrides})


def tiny(base: WorldModelConfig | None = None, **overrides) -> WorldModelConfig:
  """Small sizes for tests: 16x16 images, 2 encoder / 3 decoder layers."""
  base = base or denoised_2b()
  shrink = lambda n: min(n, 16) if n else 0
  return base.replace(**{"image_size": 16, "encoder_kernels": (4, 4), "decoder_kernels": (3, 3, 4),
                         "cnn_depth": 4, "embed_size": 32, "decoder_hidden": 32,
                         "reward_hidden": 32,
                         "x_deter": shrink(base.x_deter), "x_stoch": min(base.x_stoch, 4),
                         "y_deter": shrink(base.y_deter), "y_stoch": min(base.y_stoch, 4),
                         "z_deter": shrink(base.z_deter), "z_stoch": min(base.z_stoch, 4),
                         "action_dim": 2, **overrides})


PRESETS = {"2b": denoised_2b, "2c": denoised_2c, "dreamer": dreamer}


def preset(name: str, **overrides) -> WorldModelConfig:
  if name not in PRESETS:
    raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
  return PRESETS[name](**overrides)
