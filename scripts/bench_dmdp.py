"""The Denoised MDP world-model update (forward, backward, Adam): jaxprune beside the authors'
PyTorch release (facebookresearch/denoised_mdp), interleaved in the same run.

  bash scripts/setup_dmdp_release.sh                    # once: the peer, in refs_release/
  python scripts/bench_dmdp.py                          # 16 x 50 and 50 x 50, 3 rounds
  python scripts/bench_dmdp.py --sizes 16x50 --rounds 1 --out runs/bench_dmdp.jsonl
  python scripts/bench_dmdp.py --model dreamer --sizes 16x50   # ours only (no release peer)

Compared: our jitted update on the dmdp preset against the release's
VariationalModelLearning.train_step(..., grad_update=True) on its default DMC model (the same
6,562,501 parameters), same B x T random batch of 64x64x3 images, --warmups untimed updates and
--repeats timed ones per side, each in its own subprocess; rounds alternate which side goes
first. Prints a line per run, then per size: the median over rounds of each side's median, their
range, the ratio release / jaxprune (> 1: jaxprune is faster), both peak RSS and parameter
counts, the CPU and the jax / torch versions. The release runs --threads torch threads; XLA
uses every core of the process. Without the peer (or for another --model) it says so and times
ours only.

Measure on an idle machine: torch's threads spin when the cores are shared. See
jaxprune/dmdp/benchmark.py.
"""

from jaxprune.core.config import parse
from jaxprune.core.run import cli
from jaxprune.dmdp import benchmark, benchmark_config


def main(argv=None):
  benchmark.run(parse(benchmark_config.BenchConfig, argv, description=__doc__))


if __name__ == "__main__":
  cli(main)
