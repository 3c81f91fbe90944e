"""Figures a researcher looks at after pruning: the hardness histogram, the easiest / hardest
examples, the training curves of a subset's classifiers, and a pruning curve."""

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
      grey = img.shape[-1] == 1
      ax.imshow(img[..., 0] if grey else img, cmap="gray" if grey else None)
      lab = "" if labels is None else f"y={labels[i]} "
      ax.set_title(f"{lab}{scores[i]:.2f}", fontsize=7)
      ax.set_xticks([])
      ax.set_yticks([])
    axes[r, 0].set_ylabel(name)
  fig.tight_layout()
  return fig


def training_curves(rows: list[dict]):
  """Train loss and accuracy against the step, from ``metrics.jsonl`` records."""
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
  steps = [r["step"] for r in rows]
  for ax, key in zip(axes, ("loss", "accuracy")):
    if key in rows[0]:
      ax.plot(steps, [r[key] for r in rows], lw=1)
      ax.set_xlabel("step")
      ax.set_ylabel(f"train {key}")
      ax.grid(alpha=0.3)
  fig.tight_layout()
  return fig


def accuracy_vs_fraction(rows: list[dict], *, title: str = ""):
  """One panel per keep mode: test accuracy (mean +- std over models) against the fraction kept,
  a line per score, the random baseline dashed; the full-data point closes every line at 1."""
  modes = sorted({r["mode"] for r in rows} - {"random", "-"})
  full = [r for r in rows if r["score"] == "full"]
  fig, axes = plt.subplots(
    1, max(1, len(modes)), figsize=(6 * max(1, len(modes)), 4), squeeze=False
  )
  for ax, mode in zip(axes[0], modes or ["hard"]):
    for score in sorted({r["score"] for r in rows if r["mode"] in (mode, "random")}):
      pts = sorted(
        (r["fraction"], r["acc_mean"], r["acc_std"])
        for r in rows
        if r["score"] == score and r["mode"] in (mode, "random")
      )
      pts += [(1.0, full[0]["acc_mean"], full[0]["acc_std"])] if full else []
      f, m, s = map(np.asarray, zip(*pts))
      style = dict(color="k", ls="--") if score == "random" else {}
      ax.errorbar(f, 100 * m, yerr=100 * s, marker="o", ms=3, capsize=2, label=score, **style)
    ax.set_xlabel("fraction of training data kept")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"keep {mode}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle(title)
  fig.tight_layout()
  return fig


def close(fig) -> None:
  """Free a figure once saved (pyplot keeps every open figure alive)."""
  plt.close(fig)
