"""Figures a researcher looks at after pruning: the hardness histogram and the easiest / hardest
examples."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def hardness_histogram(scores: np.ndarray, kept: np.ndarray, *, title: str = ""):
  """Histogram of all scores with the kept subset overlaid."""
  fig, ax = plt.subplots(figsize=(6, 3.5))
  bins = np.histogram_bin_edges(scores, bins=50)
  ax.hist(scores, bins=bins, color="0.75", label=f"all ({len(scores)})")
  ax.hist(scores[kept], bins=bins, color="tab:blue", alpha=0.8, label=f"kept ({len(kept)})")
  ax.set_xlabel("hardness (distance to prototype)")
  ax.set_ylabel("examples")
  ax.set_title(title)
  ax.legend()
  return fig


def extremes_grid(images: np.ndarray, scores: np.ndarray, labels=None, *, n: int = 12):
  """Two rows of ``n`` images: the easiest (top) and hardest (bottom), with score and label."""
  order = np.lexsort((np.arange(len(scores)), scores))
  n = min(n, len(scores))
  rows = {"easiest": order[:n], "hardest": order[::-1][:n]}
  fig, axes = plt.subplots(2, n, figsize=(1.2 * n, 3.0), squeeze=False)
  for r, (name, idx) in enumerate(rows.items()):
    for c, i in enumerate(idx):
      ax = axes[r, c]
      img = images[i]
      ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
      lab = "" if labels is None else f"y={labels[i]} "
      ax.set_title(f"{lab}{scores[i]:.2f}", fontsize=7)
      ax.set_xticks([])
      ax.set_yticks([])
    axes[r, 0].set_ylabel(name)
  fig.tight_layout()
  return fig
