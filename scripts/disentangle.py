r"""What do Denoised MDP's latent factors hold? Linear and MLP probes from x, y, z to the joint
positions and to the noise (background intensity, reward noise, camera jitter) on noisy DMC,
beside a ceiling probe from the pixels; the paper's claims decided with intervals over seeds.

  python scripts/disentangle.py                       # the default budget (2 tasks x 2 variants)
  python scripts/disentangle.py --preset quick        # the tests' run: one task and variant, tiny
  python scripts/disentangle.py --updates 800 --probe_at 100 200 400 --workdir runs/dis800
  python scripts/disentangle.py --tasks reacher_easy --variants video_background_camera_jitter \
      --workdir runs/disentangle_reacher

Writes to --workdir: table.md, r2.csv (per seed), r2.png (ridge) and r2_mlp.png, claims.md and
claims.json (the paper's claims decided with bootstrap intervals over seeds; regenerate them from
r2.csv with scripts/disentangle_claims.py), pictures/ (factor reconstructions per model),
summary.json;
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
  for c in summary["claims"]:
    if c["updates"] == cfg.updates:
      parts = "; ".join(f"{k} {p['verdict']}" for k, p in c["parts"].items())
      cond = f"{c['task']}/{c['variant']} ({c['probe']})"
      print(f"{cond} {c['claim']} {c['model']} {c['target']}: {c['verdict']} ({parts})")
  print(f"outputs in {cfg.workdir} (table.md, claims.md, r2.csv, r2.png, pictures/, summary.json)")


if __name__ == "__main__":
  cli(main)
