"""The Fig. 1 sweep's config (:class:`ScalingConfig`, its checks); the sweep itself is
:mod:`jaxprune.theory.scaling`."""

from __future__ import annotations

import dataclasses
from typing import Literal

from jaxprune.core.config import check_finite, require

THEORY_ALPHA_MIN = 0.3  # the theory grid spans [THEORY_ALPHA_MIN, alpha_max]


@dataclasses.dataclass(frozen=True)
class ScalingConfig:
  """Teacher-student pruning curves: simulation (max-margin students) and replica theory."""

  n: int = 200
  """input dimension N of the simulations"""
  seeds: int = 4
  """simulated students per point"""
  alphas: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
  """alpha_prune of the simulations"""
  fractions: tuple[float, ...] = (1.0, 0.6, 0.4, 0.2)
  """f of the plotted curves (must include 1, the unpruned curve)"""
  theta_deg: float = 10.0
  """probe angle of the imperfect-probe panel, degrees"""
  margin: Literal["abs", "signed"] = "abs"
  """the probe margin that ranks examples: |P.x| (the paper's) or y P.x"""
  theory_points: int = 20
  """size of the theory's alpha_prune grid"""
  envelope_fractions: int = 13
  """size of the f grid of the perfect-probe envelope (1e-6 .. 1)"""
  budgets: tuple[float, ...] = (100.0, 1e4, 1e6)
  """data budgets alpha_tot <= A of the perfect-probe envelopes; the first is the simulated pool"""
  alpha_max: float = 10.0
  """largest alpha_prune of the theory grid"""
  seed: int = 0
  """random seed of the simulations"""
  workdir: str = "runs/scaling"
  """output directory"""

  def __post_init__(self):
    check_finite(self)
    require(self.n >= 3, f"n must be >= 3, got {self.n}")
    require(self.seeds >= 1, f"seeds must be >= 1, got {self.seeds}")
    require(
      len(self.alphas) > 0 and all(a > 0 for a in self.alphas),
      f"alphas must be non-empty and > 0, got {self.alphas}",
    )
    require(
      len(self.fractions) > 0 and all(0 < f <= 1 for f in self.fractions),
      f"fractions must be non-empty and in (0, 1], got {self.fractions}",
    )
    require(1.0 in self.fractions, f"fractions must include 1 (no pruning), got {self.fractions}")
    require(0 < self.theta_deg < 90, f"theta_deg must be in (0, 90), got {self.theta_deg}")
    require(self.theory_points >= 2, f"theory_points must be >= 2, got {self.theory_points}")
    require(
      self.envelope_fractions >= 1,
      f"envelope_fractions must be >= 1, got {self.envelope_fractions}",
    )
    require(
      len(self.budgets) > 0 and all(b > 0 for b in self.budgets),
      f"budgets must be non-empty and > 0, got {self.budgets}",
    )
    require(
      max(self.alphas) <= self.budgets[0],
      f"alphas must be <= budgets[0] = {self.budgets[0]:g} (the simulated pool), "
      f"got {max(self.alphas):g}",
    )
    require(
      self.alpha_max > THEORY_ALPHA_MIN,
      f"alpha_max must be > {THEORY_ALPHA_MIN}, got {self.alpha_max}",
    )
