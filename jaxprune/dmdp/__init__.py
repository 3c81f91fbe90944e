"""Denoised MDP world model (Wang et al. 2022) in Flax; Dreamer is its x-only preset; the agent
learns its policy on x by imagination (``agent.py``); ``run_config.py`` holds the agent run's
config and presets, ``driver.py`` runs it (on the shared driver ``jaxprune.core.run.Run``),
``evaluation.py`` evaluates and plots it; ``salts.py`` holds every key salt of the package;
``benchmark.py`` times world-model updates;
``offline.py`` trains world models on fixed episodes (seeds vmapped), ``probes.py`` fits ridge and
MLP probes, ``disentangle.py`` is the paper's representation test (what x, y, z hold;
``disentangle_config.py`` its config and presets, ``disentangle_claims.py`` the claims decided
from per-seed R^2 with bootstrap intervals).

Model names, everywhere: ``dmdp`` (Fig. 2b), ``dmdp_2c`` (Fig. 2c), ``dreamer``."""

from jaxprune.dmdp.agent import (
  Actor,
  AgentConfig,
  PolicyState,
  TanhGauss,
  Value,
  actor_dist,
  agent_loss,
  agent_loss_fn,
  agent_optimizer,
  imagination_losses,
  init_agent,
  initial_policy_state,
  lambda_return,
  mode_action,
  policy_step,
  posterior_start,
  sample_action,
  tanh_gauss_from,
  value_fn,
)
from jaxprune.dmdp.config import (
  BETA,
  IMAGE_SIZES,
  MODELS,
  PRESETS,
  WorldModelConfig,
  beta_for,
  conv_layout,
  dmdp,
  dmdp_2c,
  dreamer,
  feature_dims,
  preset,
  robodesk_96,
  tiny,
  with_image_size,
)
from jaxprune.dmdp.conv import PixelDecoder, PixelEncoder
from jaxprune.dmdp.disentangle import run as run_disentangle
from jaxprune.dmdp.disentangle_claims import check as check_disentangle_claims
from jaxprune.dmdp.disentangle_config import DisentangleConfig
from jaxprune.dmdp.losses import kl_terms, make_loss_fn, make_optimizer, world_model_loss
from jaxprune.dmdp.model import (
  WorldModel,
  decode,
  denoised_reward,
  encode_images,
  features,
  imagine,
  init,
  initial_latent,
  num_params,
  observe,
  open_loop,
  reward,
  to_centered_float,
)
from jaxprune.dmdp.offline import factor_features, factors_of
from jaxprune.dmdp.offline import train as train_offline
from jaxprune.dmdp.pictures import factor_reconstructions, save_factor_pictures
from jaxprune.dmdp.probes import (
  mlp_probe,
  mlp_probe_seeds,
  r2_score,
  ridge_probe,
  ridge_probe_seeds,
)
from jaxprune.dmdp.rssm import Gauss, Latent, StepStats, kl_gauss

__all__ = [
  "Actor",
  "AgentConfig",
  "PolicyState",
  "TanhGauss",
  "Value",
  "actor_dist",
  "agent_loss",
  "agent_loss_fn",
  "agent_optimizer",
  "imagination_losses",
  "init_agent",
  "initial_policy_state",
  "lambda_return",
  "mode_action",
  "policy_step",
  "posterior_start",
  "sample_action",
  "tanh_gauss_from",
  "value_fn",
  "BETA",
  "MODELS",
  "PRESETS",
  "WorldModelConfig",
  "beta_for",
  "dmdp",
  "dmdp_2c",
  "dreamer",
  "feature_dims",
  "preset",
  "robodesk_96",
  "tiny",
  "IMAGE_SIZES",
  "conv_layout",
  "with_image_size",
  "PixelDecoder",
  "PixelEncoder",
  "DisentangleConfig",
  "run_disentangle",
  "check_disentangle_claims",
  "factor_features",
  "factors_of",
  "train_offline",
  "mlp_probe",
  "mlp_probe_seeds",
  "r2_score",
  "ridge_probe",
  "ridge_probe_seeds",
  "kl_terms",
  "make_loss_fn",
  "make_optimizer",
  "world_model_loss",
  "WorldModel",
  "decode",
  "denoised_reward",
  "encode_images",
  "features",
  "imagine",
  "init",
  "initial_latent",
  "num_params",
  "observe",
  "open_loop",
  "reward",
  "to_centered_float",
  "factor_reconstructions",
  "save_factor_pictures",
  "Gauss",
  "Latent",
  "StepStats",
  "kl_gauss",
]
