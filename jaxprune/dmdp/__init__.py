"""Denoised MDP world model (Wang et al. 2022) in Flax; Dreamer is its x-only preset."""
from jaxprune.dmdp.config import (PRESETS, WorldModelConfig, denoised_2b, denoised_2c, dreamer,
                                  feature_dims, preset, robodesk_96, tiny)
from jaxprune.dmdp.losses import kl_terms, make_loss_fn, make_optimizer, world_model_loss
from jaxprune.dmdp.model import (WorldModel, decode, denoised_reward, embed, features, imagine,
                                 init, initial_latent, num_params, observe, open_loop, reward,
                                 to_float)
from jaxprune.dmdp.pictures import factor_reconstructions, save_factor_pictures
from jaxprune.dmdp.rssm import Gauss, Latent, StepStats, kl_gauss

__all__ = [
    "PRESETS", "Gauss", "Latent", "StepStats", "WorldModel", "WorldModelConfig", "decode",
    "denoised_2b", "denoised_2c", "denoised_reward", "dreamer", "embed", "factor_reconstructions", "feature_dims", "features", "imagine", "init", "initial_latent", "kl_gauss", "kl_terms",
    "make_loss_fn", "make_optimizer", "num_params", "observe", "open_loop", "preset", "reward",
    "robodesk_96", "save_factor_pictures", "tiny", "to_float", "world_model_loss",
]
