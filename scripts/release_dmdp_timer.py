"""Time the authors' PyTorch release of Denoised MDP's world-model update (one subprocess).

scripts/bench_dmdp.py runs this, interleaved with our JAX timing, to time the release
(github.com/facebookresearch/denoised_mdp) on the same B x T. It runs under the release's own
environment, never ours (no jax, no jaxprune); build that environment and the checkout with

  bash scripts/setup_dmdp_release.sh          # -> refs_release/venv, refs_release/denoised_mdp
  refs_release/venv/bin/python scripts/release_dmdp_timer.py \
      --release_dir refs_release/denoised_mdp --batch 16 --T 50 --repeats 5 --threads 2

What is timed: VariationalModelLearning.train_step(data, world_model, grad_update=True), the
release's world-model update (posterior rollout, observation / reward / KL losses, backward,
clip at 100, Adam). It touches only the world model's parameters; the policy update is a separate
train_step of the policy learner, which main.py calls afterwards and which is not timed here.
The config is the release's `config` from hydra's ConfigStore with the DMC defaults (x 120/20,
y 120/20, no z; alpha 1, beta 0.25), built the way its main.py does, with the environment
replaced by a stub that only carries the shapes the model reads (3x64x64 pixels, 6 actions).
The batch is random, laid out as its replay's sample(B, T) returns it: time-major (T, B, ...),
pixels uint8 turned into float32 in [-0.5, 0.5] before the clock starts, as the replay does.

Run it on otherwise idle cores: with another process busy on the same 2 cores its steps were up
to 14x slower (2 x 10; 2 torch threads), far more than the noise between idle runs.

Prints one JSON line last (the release logs a line or two to stdout before it): impl, batch, T,
s_per_update (median), times, first_call_s, peak_rss_gib, params, torch, threads, device, loss.
Exit status 2 with a message on stderr when --release_dir is not a checkout of the release.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

OBS_SHAPE = (3, 64, 64)
ACTION_NDIM = 6
ENV_SPEC = "walker_walk_video_background_noisy_sensor"  # never built: only names the run


def own_peak_rss_gib() -> float:
  """This process's own peak RSS in GiB (VmHWM, which starts afresh at exec; ru_maxrss carries
  the parent's peak over fork + exec). The same reading as jaxprune.core.machine's, which this
  script cannot import (it runs under the release's interpreter)."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 2**20
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--release_dir", required=True, help="checkout of facebookresearch/denoised_mdp")
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--T", type=int, default=50)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--warmups", type=int, default=3)
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
  args = p.parse_args(argv)
  if min(args.batch, args.T, args.repeats, args.threads) < 1 or args.warmups < 0:
    p.error("batch, T, repeats and threads must be >= 1 and warmups >= 0")
  return args


def check_release(release_dir):
  """Exits with status 2 unless release_dir holds the release's config.py and package."""
  need = ["config.py", "main.py", os.path.join("denoised_mdp", "agents", "learning", "model.py")]
  missing = [f for f in need if not os.path.isfile(os.path.join(release_dir, f))]
  if missing:
    print(
      f"error: --release_dir {release_dir!r} is not a checkout of facebookresearch/denoised_mdp"
      f" (missing {', '.join(missing)}); build it with scripts/setup_dmdp_release.sh",
      file=sys.stderr,
    )
    sys.exit(2)
  if not os.path.isdir(os.path.join(release_dir, ".git")):
    # config.py runs `git rev-parse --show-toplevel` at import
    print(f"error: --release_dir {release_dir!r} is not a git checkout", file=sys.stderr)
    sys.exit(2)


def build(args):
  """The release's world model and its learner, as main.py builds them (without an env)."""
  import config as release_config  # the release's config.py: registers `config`
  import numpy as np
  import torch
  from denoised_mdp.envs import split_seed
  from denoised_mdp.envs.abc import EnvBase
  from denoised_mdp.memory import ExperienceReplay
  from hydra import compose, initialize

  overrides = [
    "env.kind=dmc",
    f"env.spec={ENV_SPEC}",
    f"device.type={args.device}",
    f"device.index={'0' if args.device == 'cuda' else 'null'}",  # cpu:0 != cpu for its checks
    f"learning.batch_size={args.batch}",
    f"learning.chunk_length={args.T}",
    f"seed={args.seed}",
    "output_folder=release_timer",
    "overwrite_output=true",
  ]
  excepthook = sys.excepthook
  with initialize(version_base=None, config_path=None):
    dict_cfg = compose(config_name="config", overrides=overrides)
  _, cfg = release_config.to_config_and_instantiate(dict_cfg)
  sys.excepthook = excepthook  # its logging setup swallows tracebacks into its log file

  torch.backends.cudnn.benchmark = True  # as its main.py
  torch_seed, np_seed, _, _ = split_seed(args.seed, 4)
  torch.manual_seed(int(np.random.Generator(np.random.PCG64(torch_seed)).integers(1 << 31)))

  class ShapeEnv:
    """What DenoisedMDP's constructors read from the environment, nothing more."""

    observation_shape = OBS_SHAPE
    action_ndim = ACTION_NDIM

  world_model = cfg.learning.model(env=ShapeEnv()).to(cfg.device)

  def optimizer_ctor(parameters, lr):  # main.py's
    return torch.optim.Adam(
      parameters, lr=lr, betas=(0.9, 0.999), eps=cfg.learning.optimization.adam_eps
    )

  learner = cfg.learning.model_learning(world_model=world_model, optimizer_ctor=optimizer_ctor)
  params = sum(p.numel() for p in world_model.model_learning_parameters())
  groups = learner.optimizers["model"].optim.param_groups  # what its Adam updates
  opt_params = sum(p.numel() for g in groups for p in g["params"])
  assert opt_params == params, (opt_params, params)

  rng = np.random.default_rng(args.seed)
  t, b = args.T, args.batch
  pixels = torch.as_tensor(rng.integers(0, 256, (t, b, *OBS_SHAPE), dtype=np.uint8))
  data = ExperienceReplay.Data(
    action=torch.as_tensor(rng.uniform(-1, 1, (t, b, ACTION_NDIM)).astype(np.float32)),
    reward=torch.as_tensor(rng.normal(size=(t, b)).astype(np.float32)),
    next_observation_nonfirststep=None,  # what its sample() returns
    next_observation=EnvBase.uint8_image_to_float32(pixels),
  ).to(cfg.device)
  return world_model, learner, data, params


def main(argv=None):
  args = parse_args(argv)
  release_dir = os.path.abspath(args.release_dir)
  check_release(release_dir)
  os.makedirs(os.path.join(release_dir, "results"), exist_ok=True)  # its config asserts it
  os.chdir(release_dir)
  sys.path.insert(0, release_dir)

  import torch

  torch.set_num_threads(args.threads)
  if args.device == "cuda" and not torch.cuda.is_available():
    print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
    sys.exit(2)
  sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)

  world_model, learner, data, params = build(args)
  times, loss = [], None
  for i in range(args.warmups + args.repeats):
    sync()
    t0 = time.perf_counter()
    _, losses = learner.train_step(data, world_model, grad_update=True)
    sync()
    times.append(time.perf_counter() - t0)
    loss = losses["total_loss"]
    del losses, _  # drop the step's outputs before the next one
  timed = times[args.warmups :]
  out = {
    "impl": "release",
    "batch": args.batch,
    "T": args.T,
    "s_per_update": statistics.median(timed),
    "times": timed,
    "first_call_s": times[0],
    "peak_rss_gib": own_peak_rss_gib(),
    "params": params,
    "torch": torch.__version__,
    "threads": torch.get_num_threads(),
    "device": args.device,
    "loss": float(loss.detach()),
  }
  print(json.dumps(out), flush=True)


if __name__ == "__main__":
  main()
