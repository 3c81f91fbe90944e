#!/usr/bin/env bash
# Environment for scripts/release_dmdp_timer.py: the authors' Denoised MDP release
# (facebookresearch/denoised_mdp) checked out and a virtualenv it runs in, both outside our
# package (the release's code is never copied into this repository).
#
#   bash scripts/setup_dmdp_release.sh              # -> refs_release/{venv,denoised_mdp}
#   DEST=/somewhere RELEASE_SRC=/path/to/mirror bash scripts/setup_dmdp_release.sh
#   TORCH_SPEC=torch==2.13.0 TORCH_INDEX=https://download.pytorch.org/whl/cu128 bash ...  # CUDA
#
# Environment variables (all optional):
#   RELEASE_SRC  git URL or path to clone   (default https://github.com/facebookresearch/denoised_mdp)
#   RELEASE_REF  commit to check out        (default bc68709, the one benchmarked in issue 28)
#   DEST         output folder              (default ./refs_release)
#   PYTHON       interpreter for the venv   (default python3)
#   TORCH_SPEC   pip requirement for torch  (default torch==2.13.0, the CPU build)
#   TORCH_INDEX  index torch comes from     (default https://download.pytorch.org/whl/cpu)
# Re-running keeps an existing venv and checkout and only fills in what is missing.
set -euo pipefail

RELEASE_SRC=${RELEASE_SRC:-https://github.com/facebookresearch/denoised_mdp}
RELEASE_REF=${RELEASE_REF:-bc68709}
DEST=${DEST:-./refs_release}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
TORCH_INDEX=${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}

mkdir -p "$DEST"
if [ ! -x "$DEST/venv/bin/python" ]; then
  "$PYTHON" -m venv "$DEST/venv"
fi
pip_install() { "$DEST/venv/bin/python" -m pip install --quiet "$@"; }
pip_install --index-url "$TORCH_INDEX" "$TORCH_SPEC"
# hydra-core 1.3.2 instead of the release's 1.2.0 (which predates Python 3.11); its omegaconf pin;
# gym and numpy as benchmarked in issue 28
pip_install hydra-core==1.3.2 omegaconf==2.2.1 attrs tensorboardX gym==0.26.2 \
  opencv-python-headless imageio tqdm psutil numpy==2.4.6

if [ ! -d "$DEST/denoised_mdp/.git" ]; then
  # config.py runs `git rev-parse` at import, so this must stay a git checkout
  git clone --quiet "$RELEASE_SRC" "$DEST/denoised_mdp"
  git -C "$DEST/denoised_mdp" checkout --quiet "$RELEASE_REF"
fi
mkdir -p "$DEST/denoised_mdp/results"  # config.py asserts that it exists

echo "release: $(git -C "$DEST/denoised_mdp" rev-parse --short HEAD) in $DEST/denoised_mdp"
echo "run: $DEST/venv/bin/python scripts/release_dmdp_timer.py --release_dir $DEST/denoised_mdp"
