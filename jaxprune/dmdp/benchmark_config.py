"""The world-model update benchmark's config (:class:`BenchConfig`, its checks) and
:func:`parse_size`; the benchmark itself is :mod:`jaxprune.dmdp.benchmark`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from jaxprune.core.config import require
from jaxprune.dmdp.config import ModelName


@dataclass(frozen=True)
class BenchConfig:
  """Denoised MDP world-model updates/s at batch sizes B x T, 64x64x3 images."""

  model: ModelName = "dmdp"
  """world model: dmdp (Fig. 2b) | dmdp_2c | dreamer"""
  sizes: tuple[str, ...] = ("16x50", "50x50")
  """batch sizes B x T (sequences x steps), each timed in its own process"""
  repeats: int = 3
  """timed updates per size (the median is reported)"""
  method: Literal["auto", "col2im", "subpixel"] = "auto"
  """transposed-convolution formulation of the decoder"""
  seed: int = 0
  """parameters and the random batch derive from it"""

  def __post_init__(self):
    require(self.repeats >= 1, f"repeats must be >= 1, got {self.repeats}")
    require(len(self.sizes) >= 1, "give at least one size")
    for s in self.sizes:
      require(parse_size(s) is not None, f"sizes must look like 16x50 (B x T >= 1), got {s!r}")


def parse_size(size: str) -> tuple[int, int] | None:
  """``(B, T)`` of a size such as ``16x50``; None when it is not of that form."""
  parts = size.lower().split("x")
  if len(parts) != 2 or not all(p.isdigit() and int(p) >= 1 for p in parts):
    return None
  return int(parts[0]), int(parts[1])
