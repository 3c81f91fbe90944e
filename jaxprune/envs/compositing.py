"""Putting a background video behind the DMC scene, and the noisy sensor read from it.

The DMC skybox is blue; the agents are orange / red / white. A pixel belongs to the background
when blue is its largest channel:

* ``strict`` mask (cheetah, reacher): ``B > R and B > G``. Gray pixels (ties) stay: the grey
  floor of the release's scene for cheetah (``scene``), the black marks of its sky, and the
  white-cyan specular highlights of the reacher's arm (e.g. RGB 197, 255, 255).
* ``argmax`` mask (walker, Sec. B.1.1 of the paper): ``B >= R and B >= G`` (ties count as blue),
  so the exactly grey pixels are replaced too: the sky's marks, and in the release's scene most of
  the walker's grey checker floor (its shadows included); the walker itself is orange and never
  ties, and the floor's orange reflection of it stays.

Both are the authors' release's masks ('dbc' and 'argmax'); checked on rendered frames. Which
pixels they take depends on the scene: upstream dm_control's floor is blue-grey, replaced by both.
"""

from __future__ import annotations

import numpy as np

MASKS = ("strict", "argmax")


def blue_mask(rgb_HxWx3: np.ndarray, *, mode: str) -> np.ndarray:
  """Background mask of a uint8 RGB frame: bool ``H x W``, True where blue is largest."""
  if mode not in MASKS:
    raise ValueError(f"mask mode must be one of {MASKS}, got {mode!r}")
  if rgb_HxWx3.ndim != 3 or rgb_HxWx3.shape[-1] != 3:
    raise ValueError(f"expected an H x W x 3 frame, got shape {rgb_HxWx3.shape}")
  r, g, b = rgb_HxWx3[..., 0], rgb_HxWx3[..., 1], rgb_HxWx3[..., 2]
  if mode == "strict":
    return (b > r) & (b > g)
  return (b >= r) & (b >= g)


def composite(rgb_HxWx3: np.ndarray, gray_HxW: np.ndarray, mask_HxW: np.ndarray) -> np.ndarray:
  """A copy of the frame with the masked pixels set to the gray background (all three channels)."""
  if gray_HxW.shape != rgb_HxWx3.shape[:2] or mask_HxW.shape != rgb_HxWx3.shape[:2]:
    raise ValueError(
      f"frame {rgb_HxWx3.shape}, background {gray_HxW.shape} and mask "
      f"{mask_HxW.shape} must share H x W"
    )
  return np.where(mask_HxW[..., None], gray_HxW[..., None], rgb_HxWx3).astype(np.uint8)


def sensor_noise(gray_HxW: np.ndarray) -> float:
  """Noisy-sensor value of a background frame: mean of a patch / 255 - 0.5, in [-0.5, 0.5].

  The patch is ``H/4 x W/4`` with its corner at ``(H/8, W/8)`` (rows 8..23, columns 8..23 of a
  64 x 64 frame), as in the authors' release.
  """
  h, w = gray_HxW.shape
  ph, pw = max(h // 4, 1), max(w // 4, 1)
  patch = gray_HxW[h // 8 : h // 8 + ph, w // 8 : w // 8 + pw]
  return float(patch.mean()) / 255.0 - 0.5
