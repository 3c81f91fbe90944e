"""The scene and the camera of noisy RoboDesk, as the Denoised MDP release has them.

The release trains on its fork's ``RoboDeskWithTV`` (SsnL/robodesk), whose model is RoboDesk's
``desk.xml`` laid out three times along x with a large TV behind the middle desk:

* the left desk at the origin with the arm, the bin, the desk (drawer, sliding door), the three
  buttons and the three indicator lights; the ball and the two blocks as in ``desk.xml``;
* a middle desk at x = 1.3 m and a right desk at x = 2.6 m: the bin, the desk, the buttons and
  the lights again, with their joints (16 in all, no arm, no objects, buttons not wired to
  lights); they are scenery, but their joints are simulated;
* a TV centred at (1.3, 1.825, 1.6): a dark bezel (4.8 x 2.8 m), a screen (4.6 x 2.68 m) with a
  cube texture of 120 x 120 per face whose front face shows the picture, a wooden stand;
* the floor's reflectance 0.01 (``desk.xml``: 0.05); each indicator light gets two overlay discs
  (colour and gray) that the noisy button sensor lights up.

:func:`scene_xml` builds this model from the pinned ``robodesk==1.0.0`` package's assets (read
from its install directory) with the release's numbers; the order of bodies, geoms and joints is
the release's, so the compiled model is the same (``scripts/compare_robodesk_fork.py`` checks
every numeric array of the two compiled models).

The camera (:func:`camera_pose`): RoboDesk's default view (looking at (0, 0.535, 1.1) from 1.8 m
at azimuth 90 and elevation -60), jittered at that pose, then moved by the release's offsets
(elevation +13 degrees, distance +1.15 m, target + (0.875, 0.4, 0.875)). The image
(:func:`crop_and_resize`) is rendered square at ``render_size(S) = min(480, int(S / 64 * 120))``
pixels (180 for 96), its top ``25.892 / 120`` cut off (rows from ``round(0.2158 * render)``),
and the rest (wider than tall) resized to ``S x S`` with Pillow's Lanczos filter.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np

COLORS = ("red", "green", "blue")
TV_TEXTURE = 120  # the TV texture's face, pixels (a cube texture: 6 faces stacked, 720 rows)
TV_FRONT_FACE = 3  # the cube face on the screen's -y side, which faces the camera

_DESK_COPIES = (("middle", 1.3), ("right", 2.6))
_TV = dict(pos="1.3 1.825 1.6")
_TV_GEOMS = (
  dict(name="tv_bezel", type="box", size="2.4 .03 1.4", pos="0 0.035 0", rgba="0.1 0.1 0.1 1"),
  dict(
    name="tv_screen",
    material="tv_material",
    type="box",
    size="2.3 .000001 1.34",
    pos="0 0 0",
    rgba="1 1 1 1",
  ),  # fmt: skip
  dict(name="tv_stand", type="box", size="2.6 0.2 0.05", pos="0 0 -1.5", rgba="0.32 0.137 0.12 1"),
)
_FLOOR_REFLECTANCE = "0.01"

# the camera: RoboDesk's default pose, the jitter applied there, then the release's offsets
DEFAULT_TARGET = np.array([0.0, 0.535, 1.1])
DEFAULT_DISTANCE, DEFAULT_AZIMUTH, DEFAULT_ELEVATION = 1.8, 90.0, -60.0
TARGET_OFFSET = np.array([0.875, 0.4, 0.875])
DISTANCE_OFFSET, ELEVATION_OFFSET = 1.15, 13.0
CROP_BOX_120 = np.array([0.0, 25.892, 120.0, 120.0])  # (left, top, right, bottom) at 120 px


def asset_dir() -> str:
  """The ``assets`` directory of the installed ``robodesk`` package (not imported: its module
  needs ``gym`` and a Pillow older than 10)."""
  spec = importlib.util.find_spec("robodesk")
  path = None
  if spec is not None and spec.submodule_search_locations:
    path = os.path.join(list(spec.submodule_search_locations)[0], "assets")
  if path is None or not os.path.isfile(os.path.join(path, "desk.xml")):
    raise ModuleNotFoundError(
      "RoboDesk needs the assets of the robodesk package: pip install robodesk==1.0.0 "
      "(it is in requirements.txt)"
    )
  return path


def _el(tag: str, **attrs: Any) -> ET.Element:
  return ET.Element(tag, {k: str(v) for k, v in attrs.items()})


def _add_light_overlays(lights: ET.Element) -> None:
  """Name each light's rising disc and add the overlay discs the noisy sensor lights up."""
  for c, rgb in zip(COLORS, ("1 0 0", "0 1 0", "0 0 1")):
    light = lights.find(f"body[@name='{c}_light']")
    light.find("body/geom").set("name", f"{c}_light_rise_cylinder")
    if light.find(f"geom[@name='{c}_light_overlay']") is not None:
      continue  # the fork's desk.xml has them already
    # the release's: cylinders whose tops (z 0.0125) clear the holder; green's and blue's carry
    # a mass (on a fixed body, so no dynamics)
    common = dict(pos="0 0 0.005", type="cylinder", size=".06 .0075", group="1")
    mass = {} if c == "red" else dict(mass="0.01")
    light.append(_el("geom", name=f"{c}_light_overlay", rgba=f"{rgb} 0", **common, **mass))
    light.append(_el("geom", name=f"{c}_light_neg_overlay", rgba="0.3 0.3 0.3 0", **common, **mass))


def _renamed_copy(body: ET.Element, suffix: str) -> ET.Element:
  """A copy of ``body``: the lights' names get ``_suffix``, all other names are dropped (as in
  the release's model: the copies' joints are anonymous)."""
  out = copy.deepcopy(body)
  for el in out.iter():
    name = el.attrib.pop("name", None)
    if name is not None and "light" in name:
      el.set("name", f"{name}_{suffix}")
  return out


def _read_assets() -> dict[str, bytes]:
  root_dir = asset_dir()
  assets = {}
  for root, _, files in os.walk(root_dir):
    for f in files:
      path = os.path.join(root, f)
      with open(path, "rb") as fh:
        assets[os.path.relpath(path, root_dir).replace(os.sep, "/")] = fh.read()
  return assets


def scene_xml() -> tuple[str, dict[str, bytes]]:
  """The release's three-desk scene with the TV (see the module docstring), built from the
  ``robodesk`` package's ``desk.xml``; returns the XML and the asset files it reads (for
  ``Physics.from_xml_string``)."""
  assets = _read_assets()
  tree = ET.fromstring(assets.pop("desk.xml"))
  asset = tree.find("asset")
  plane = asset.find("material[@name='plane_material']")
  plane.set("reflectance", _FLOOR_REFLECTANCE)
  at = list(asset).index(plane) + 1
  asset.insert(at, _el("texture", name="tv_texture", type="cube", height=TV_TEXTURE,
                       width=TV_TEXTURE, builtin="checker"))  # fmt: skip
  asset.insert(at + 1, _el("material", name="tv_material", reflectance="0.7",
                           texture="tv_texture", texuniform="false", shininess="1",
                           specular="1"))  # fmt: skip

  world = tree.find("worldbody")
  children = list(world)
  bodies = [el for el in children if el.tag == "body"]
  objects = [b for b in bodies if b.get("name") in ("ball", "upright_block", "flat_block")]
  desk_parts = [b for b in bodies if b not in objects]  # arm, bin, desk, buttons, lights
  if len(desk_parts) != 5 or len(objects) != 3:
    raise ValueError("the robodesk package's desk.xml is not the one of robodesk==1.0.0")
  _add_light_overlays(desk_parts[4])
  for el in bodies:
    world.remove(el)

  tv = _el("body", name="tv", **_TV)
  for g in _TV_GEOMS:
    tv.append(_el("geom", **g))
  left = _el("body", name="robotdesk_left", pos="0 0 0")
  left.extend(desk_parts)
  world.extend([tv, left, *objects])
  for suffix, x in _DESK_COPIES:
    desk = _el("body", name=f"desk_{suffix}", pos=f"{x} 0 0")
    desk.extend(_renamed_copy(b, suffix) for b in desk_parts[1:])  # no second arm
    world.append(desk)
  return ET.tostring(tree, encoding="unicode"), assets


def render_size(image_size: int) -> int:
  """The side of the square render the ``image_size`` image is cut from (the release's)."""
  return min(480, int(image_size / 64 * 120))


def crop_box(size: int) -> tuple[int, int, int, int]:
  """(left, top, right, bottom) pixel box of a ``size`` render (Pillow's rounding of the release's
  box)."""
  return tuple(int(round(v)) for v in CROP_BOX_120 * size / 120)


def crop_and_resize(frame_HxWx3: np.ndarray, image_size: int) -> np.ndarray:
  """The release's crop of a square render and its Lanczos resize to ``image_size``."""
  from PIL import Image  # a dependency of imageio and matplotlib

  x0, y0, x1, y1 = crop_box(frame_HxWx3.shape[0])
  img = Image.fromarray(np.ascontiguousarray(frame_HxWx3[y0:y1, x0:x1]))
  return np.asarray(img.resize((image_size, image_size), resample=Image.LANCZOS), np.uint8)


# the release's arithmetic, operation for operation (numpy's functions, degrees as x * pi / 180),
# so that the view is the same to the last bit
def _eye(target: np.ndarray, distance: float, azimuth: float, elevation: float) -> np.ndarray:
  """Where a camera at (distance, azimuth, elevation) in degrees from ``target`` stands."""
  flat = distance * np.cos(elevation * np.pi / 180)
  return np.array([
    target[0] - flat * np.cos(azimuth * np.pi / 180),
    target[1] - flat * np.sin(azimuth * np.pi / 180),
    target[2] - distance * np.sin(elevation * np.pi / 180),
  ])  # fmt: skip


def _pose(eye: np.ndarray, target: np.ndarray) -> tuple[float, float, float]:
  """(distance, azimuth, elevation) in degrees of a camera at ``eye`` looking at ``target``."""
  d = target - eye
  dist = np.linalg.norm(d)
  return dist, np.arctan2(d[1], d[0]) * 180 / np.pi, np.arcsin(d[-1] / dist) * 180 / np.pi


_DEFAULT_EYE = _eye(DEFAULT_TARGET, DEFAULT_DISTANCE, DEFAULT_AZIMUTH, DEFAULT_ELEVATION)


def camera_pose(eye_jitter: np.ndarray, target_jitter: np.ndarray):
  """``(target, distance, azimuth, elevation)`` of the view, given the eye's and the target's
  jitter (metres) at RoboDesk's default pose."""
  target = DEFAULT_TARGET + target_jitter
  dist, az, el = _pose(_DEFAULT_EYE + eye_jitter, target)
  return target + TARGET_OFFSET, dist + DISTANCE_OFFSET, az, el + ELEVATION_OFFSET


def geom_in_image(seg_RxRx2: np.ndarray, geom_id: int, image_size: int) -> tuple[float, tuple]:
  """Where one geom lies in the image made from a square render: ``(share, (x, y))``, the share
  of the image's pixels it covers and the centre of those pixels in image pixel coordinates
  (0 = the first pixel's centre), from MuJoCo's segmentation render ``seg`` (id, object type)
  of the same view. ``(0.0, (nan, nan))`` if the geom is out of view."""
  x0, y0, x1, y1 = crop_box(seg_RxRx2.shape[0])
  crop = seg_RxRx2[y0:y1, x0:x1]
  mask = (crop[..., 0] == geom_id) & (crop[..., 1] == 5)  # 5: mjOBJ_GEOM
  if not mask.any():
    return 0.0, (float("nan"), float("nan"))
  ys, xs = np.nonzero(mask)
  sx, sy = image_size / (x1 - x0), image_size / (y1 - y0)
  return float(mask.mean()), (
    float((xs.mean() + 0.5) * sx - 0.5),
    float((ys.mean() + 0.5) * sy - 0.5),
  )


def view_geometry(model, seg_RxRx2: np.ndarray, image_size: int) -> dict[str, Any]:
  """Where the TV screen and the green button are in the image made from a square render:
  ``tv_share`` (the share of the image's pixels the screen covers) and ``button_px`` (the centre
  of the green button's pressable top, image pixels (x, y)), from MuJoCo's segmentation render
  ``seg`` of the view and the compiled ``model`` (a dm_control ``Physics.model``)."""
  green = model.name2id("green_button", "body")
  cap = int(np.flatnonzero(np.asarray(model.body_parentid) == green)[0])  # the pressable top
  share, _ = geom_in_image(seg_RxRx2, model.name2id("tv_screen", "geom"), image_size)
  _, button_px = geom_in_image(seg_RxRx2, int(model.body_geomadr[cap]), image_size)
  return {"tv_share": share, "button_px": button_px}
