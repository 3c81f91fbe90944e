"""The world-model update benchmark's config (:class:`BenchConfig`, its checks) and
:func:`parse_size`; the benchmark itself is :mod:`jaxprune.dmdp.benchmark`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from jaxprune.core.config import require
from jaxprune.dmdp.config import ModelName


@dataclass(frozen=True)
class BenchConfig:
  """Denoised MDP world-model update at batch sizes B x T (64x64x3 images): jaxprune beside the
  authors' PyTorch release, interleaved in the same run."""

  model: ModelName = "dmdp"
  """world model: dmdp (Fig. 2b; the only one the release is timed beside) | dmdp_2c | dreamer"""
  sizes: tuple[str, ...] = ("16x50", "50x50")
  """batch sizes B x T (sequences x steps), each timed in its own process"""
  repeats: int = 3
  """timed updates per size and round (each side's median is its figure for the round)"""
  warmups: int = 3
  """untimed updates before the timed ones, both sides (ours compiles ahead of them; the first
  updates still allocate and warm the caches)"""
  rounds: int = 3
  """interleaved rounds: every size on both sides per round, jaxprune first in odd rounds and
  the release first in even ones"""
  method: Literal["auto", "col2im", "subpixel"] = "auto"
  """transposed-convolution formulation of our decoder"""
  pixel_chunk: int = 0
  """images per rematerialised chunk of the encoder / decoder (0: all at once; see
  WorldModelConfig.pixel_chunk): less memory, more time"""
  seed: int = 0
  """parameters and the random batch derive from it (both sides)"""
  release_dir: str = "refs_release/denoised_mdp"
  """git checkout of facebookresearch/denoised_mdp (bash scripts/setup_dmdp_release.sh)"""
  release_python: str = "refs_release/venv/bin/python"
  """the release's own interpreter (torch, hydra; built by scripts/setup_dmdp_release.sh)"""
  threads: int = 2
  """torch threads of the release; XLA's CPU client has no thread cap: ours uses every core the
  process may run on"""
  device: Literal["cpu", "cuda"] = "cpu"
  """the release's torch device; ours runs on JAX's default backend"""
  out: str | None = None
  """JSON-lines file for the per-run rows and the per-size summary (written atomically)"""

  def __post_init__(self):
    require(self.repeats >= 1, f"repeats must be >= 1, got {self.repeats}")
    require(
      self.warmups >= 1,
      f"warmups must be >= 1 (the first update allocates its buffers), got {self.warmups}",
    )
    require(self.rounds >= 1, f"rounds must be >= 1, got {self.rounds}")
    require(self.pixel_chunk >= 0, f"pixel_chunk must be >= 0, got {self.pixel_chunk}")
    require(self.threads >= 1, f"threads must be >= 1, got {self.threads}")
    require(len(self.sizes) >= 1, "give at least one size")
    for s in self.sizes:
      require(parse_size(s) is not None, f"sizes must look like 16x50 (B x T >= 1), got {s!r}")
    require(
      len({parse_size(s) for s in self.sizes}) == len(self.sizes), f"a size repeats: {self.sizes}"
    )
    require(self.release_dir != "", "release_dir must not be empty")
    require(self.release_python != "", "release_python must not be empty")
    require(self.out != "", "out must be a file name (leave it out for no file)")


def parse_size(size: str) -> tuple[int, int] | None:
  """``(B, T)`` of a size such as ``16x50``; None when it is not of that form."""
  parts = size.lower().split("x")
  if len(parts) != 2 or not all(p.isdigit() and int(p) >= 1 for p in parts):
    return None
  return int(parts[0]), int(parts[1])
