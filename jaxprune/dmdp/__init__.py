"""Denoised MDP world model (Wang et al. 2022) in Flax; Dreamer is its x-only preset; the agent
learns its policy on x by imagination (``agent.py``)."""
from jaxprune.dmdp.agent import (Actor, AgentConfig, PolicyState, TanhGauss, Value, actor_dist,
                                 agent_loss, agent_loss_fn, agent_optimizer, imagination_losses,
                                 init_agent, initial_policy_state, lambda_return, mode_action,
                                 policy_step, posterior_start, sample_action, tanh_gauss_from,
                                 value_fn)
from jaxprune.dmdp.config import (PRESETS, WorldModelConfig, denoised_2b, denoised_2c, dreamer,
                                  feature_dims, preset, robodesk_96, tiny)
from jaxprune.dmdp.losses import kl_terms, make_loss_fn, make_optimizer, world_model_loss
from jaxprune.dmdp.model import (WorldModel, decode, denoised_reward, embed, features, imagine,
                                 init, initial_latent, num_params, observe, open_loop, reward,
                                 to_float)
from jaxprune.dmdp.pictures import factor_reconstructions, save_factor_pictures
from jaxprune.dmdp.rssm import Gauss, Latent, StepStats, kl_gauss

__all__ = [
    "Actor", "AgentConfig", "PolicyState", "TanhGauss", "Value", "actor_dist", "agent_loss",
    "agent_loss_fn", "agent_optimizer", "imagination_losses", "init_agent",
    "initial_policy_state", "lambda_return", "mode_action", "policy_step", "posterior_start",
    "sample_action", "tanh_gauss_from", "value_fn",
    "PRESETS", "Gauss", "Latent", "StepStats", "WorldModel", "WorldModelConfig", "decode",
    "denoised_2b", "denoised_2c", "denoised_reward", "dreamer", "embed", "factor_reconstructions", "feature_dims", "features", "imagine", "init", "initial_latent", "kl_gauss", "kl_terms",
    "make_loss_fn", "make_optimizer", "num_params", "observe", "open_loop", "preset", "reward",
    "robodesk_96", "save_factor_pictures", "tiny", "to_float", "world_model_loss",
]
