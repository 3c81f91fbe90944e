"""The scene of the DMC tasks: upstream dm_control's, or the one of the Denoised MDP release.

The authors' release (and DBC before it) ran a modified copy of the dm_control suite whose only
visual changes are textures and colours; geometry is the same as upstream (the cheetah's ground
is ``100 x .8`` half-size in both, the walker's floor ``250 x .8``). ``scene="release"`` applies
these changes to dm_control's own model files when the task is loaded:

* cheetah, walker: the floor checker ``grid`` becomes dark grey (``rgb1=".1 .1 .1"``,
  ``rgb2=".2 .2 .2"``, ``markrgb=".1 .1 .1"``, 300 x 300, ``mark="edge"``). Grey pixels tie in
  blue, so the strict mask keeps the floor; walker's ``argmax`` mask (ties count as blue)
  replaces the parts of it that render exactly grey or bluish (the release behaves the same:
  same render, same rule).
* reacher: the floor checker becomes blue (``rgb1=".1 .1 .4"``, ``rgb2=".2 .2 .8"``,
  ``markrgb=".1 .1 .4"``), so the video replaces it, and the ``decoration`` material (the arena
  walls and the arm's root) becomes orange ``rgba=".7 .5 .3 1"``, so the video does not.
* all three: the skybox's random marks become black (``markrgb="0 0 0"``, upstream white
  "stars").

Upstream's floors are blue-grey (``.1 .2 .3`` / ``.2 .3 .4``), blue-largest everywhere, so with
``scene="upstream"`` every mask replaces the floor by video. Physics is unchanged by the scene.

The values are facts read from the release (``local_dm_control_suite/common/materials.xml``,
``materials_white_floor.xml``, ``skybox.xml``); the edit is done here on dm_control's XML assets.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Mapping

SCENES = ("release", "upstream")

_MATERIALS = "./common/materials.xml"
_SKYBOX = "./common/skybox.xml"

_GRID_COMMON = {"width": "300", "height": "300", "mark": "edge"}
_GREY_GRID = {"rgb1": ".1 .1 .1", "rgb2": ".2 .2 .2", "markrgb": ".1 .1 .1", **_GRID_COMMON}
_BLUE_GRID = {"rgb1": ".1 .1 .4", "rgb2": ".2 .2 .8", "markrgb": ".1 .1 .4", **_GRID_COMMON}

# per domain: attributes of <texture name="grid">, and of <material name=...>
_RELEASE_TEXTURES = {"cheetah": _GREY_GRID, "walker": _GREY_GRID, "reacher": _BLUE_GRID}
_RELEASE_MATERIALS = {
  "cheetah": {},
  "walker": {},
  "reacher": {"decoration": {"rgba": ".7 .5 .3 1"}},
}
_SKYBOX_MARK = {"markrgb": "0 0 0"}


def _set_attributes(
  xml: bytes, tag: str, name: str, attrs: Mapping[str, str], *, file: str
) -> bytes:
  root = ET.fromstring(xml)
  found = [e for e in root.iter(tag) if e.get("name") == name]
  if len(found) != 1:
    raise ValueError(f"expected one <{tag} name={name!r}> in {file}, found {len(found)}")
  for key, value in attrs.items():
    found[0].set(key, value)
  return ET.tostring(root)


def release_assets(domain: str, assets: Mapping[str, bytes]) -> dict[str, bytes]:
  """A copy of the suite's ``assets`` (``{file: xml}``) with the release's scene for ``domain``.

  ``domain`` is one of ``cheetah``, ``walker``, ``reacher``. The input is not modified (the suite
  shares one dict between all domains).
  """
  if domain not in _RELEASE_TEXTURES:
    raise ValueError(f"no release scene for domain {domain!r}; known: {sorted(_RELEASE_TEXTURES)}")
  for file in (_MATERIALS, _SKYBOX):
    if file not in assets:
      raise ValueError(f"dm_control's assets lack {file!r} (got {sorted(assets)})")
  out = dict(assets)
  materials = _set_attributes(
    out[_MATERIALS], "texture", "grid", _RELEASE_TEXTURES[domain], file=_MATERIALS
  )
  for name, attrs in _RELEASE_MATERIALS[domain].items():
    materials = _set_attributes(materials, "material", name, attrs, file=_MATERIALS)
  out[_MATERIALS] = materials
  out[_SKYBOX] = _set_attributes(out[_SKYBOX], "texture", "skybox", _SKYBOX_MARK, file=_SKYBOX)
  return out


def model_and_assets(domain: str, *, scene: str) -> tuple[bytes, dict[str, bytes]]:
  """The domain's MJCF and assets as dm_control's suite loads them, in ``scene`` (``SCENES``)."""
  if scene not in SCENES:
    raise ValueError(f"scene must be one of {SCENES}, got {scene!r}")
  import importlib

  module = importlib.import_module(f"dm_control.suite.{domain}")
  xml, assets = module.get_model_and_assets()
  if scene == "upstream":
    return xml, dict(assets)
  return xml, release_assets(domain, assets)


def apply_scene(physics, domain: str, *, scene: str) -> None:
  """Reload ``physics`` (a freshly built suite task's, before any reset) in ``scene``.

  ``upstream`` leaves it untouched. The model differs from upstream in textures and colours
  only, so the task object and ``control.Environment`` built around ``physics`` stay valid.
  """
  if scene not in SCENES:
    raise ValueError(f"scene must be one of {SCENES}, got {scene!r}")
  if scene == "upstream":
    return
  physics.reload_from_xml_string(*model_and_assets(domain, scene=scene))
