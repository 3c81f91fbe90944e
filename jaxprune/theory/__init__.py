"""Teacher-student perceptron theory of data pruning (Sorscher et al. 2022, Fig. 1).

``model`` (settings, probe margin, pruning threshold), ``replica`` (the N -> infinity theory),
``simulation`` (max-margin students on pruned data) and ``scaling`` (the Fig. 1 sweep; its config
in ``scaling_config``).
"""

from jaxprune.theory.model import MARGINS, MODES, threshold
from jaxprune.theory.replica import TheoryResult, theory
from jaxprune.theory.scaling import run as run_scaling
from jaxprune.theory.scaling_config import ScalingConfig
from jaxprune.theory.simulation import MaxMarginResult, SimResult, max_margin, prune_order, simulate

__all__ = [
  "MARGINS",
  "MODES",
  "MaxMarginResult",
  "ScalingConfig",
  "SimResult",
  "TheoryResult",
  "max_margin",
  "prune_order",
  "run_scaling",
  "simulate",
  "theory",
  "threshold",
]
