r"""What do Denoised MDP's latent factors hold? Linear and MLP probes from x, y, z to the joint
positions and to the noise (background intensity, sensor noise, camera jitter) on noisy DMC.

  python scripts/disentangle.py                       # the default budget (2 tasks x 2 variants)
  python scripts/disentangle.py --preset quick        # the tests' run: one task and variant, tiny
  python scripts/disentangle.py --updates 800 --probe_at 100 200 400 --workdir runs/dis800
  python scripts/disentangle.py --tasks walker_walk --variants video_background_camera_jitter \
      --updates 2000 --workdir runs/disentangle_jitter

Writes to --workdir: table.md, r2.csv, r2.png (ridge) and r2_mlp.png, pictures/ (factor
reconstructions per model), summary.json (with the paper's two claims checked per condition);
data/ and models/ hold the episodes and the world models' runs (a rerun resumes).
"""

from jaxprune.core.config import parse
from jaxprune.core.run import cli
from jaxprune.dmdp import disentangle, disentangle_config


def main(argv=None):
  cfg = parse(
    disentangle_config.DisentangleConfig,
    argv,
    presets=disentangle_config.PRESETS,
    description=__doc__,
  )
  summary = disentangle.run(cfg)
  print(disentangle.markdown_table(summary["rows"]))
  for cond, claims in summary["claims"].items():
    for probe, res in claims.items():
      held = [f"{k}: {'holds' if v['holds'] else 'does not hold'}" for k, v in res.items()]
      print(f"{cond} ({probe}): " + "; ".join(held))
  print(f"outputs in {cfg.workdir} (table.md, r2.csv, r2.png, pictures/, summary.json)")


if __name__ == "__main__":
  cli(main)
