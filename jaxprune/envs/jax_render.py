"""A MuJoCo-like renderer in pure JAX: rays from the pixels (``supersample**2`` each), no OpenGL.

``make_scene(mj_model, camera_id=, size=, supersample=)`` gathers, host-side, what MuJoCo's
classic OpenGL renderer (``mjr_render`` with ``mjv_updateScene``'s defaults) draws from a fixed
camera; ``render(scene, data)`` returns the ``size x size`` RGB image (``uint8``, row 0 at the
top, as ``physics.render`` returns it) and the model id of the geom seen at each pixel centre
(-1: sky). ``render`` is pure with static shapes: it runs under ``jax.jit`` and ``jax.vmap`` (over
states: ``in_axes=(None, 0)``). ``data``: a ``mujoco.mjx.Data``, a ``mujoco.MjData`` after
``mj_forward``, or a :class:`RenderState` (:func:`render_state` converts; ``MjData`` is not a
pytree, so convert it before ``jit``). ``cast_rays`` gives the nearest drawn geom along any rays.
``scene.camera_id`` is an array: ``scene.replace(camera_id=...)`` switches cameras without a
recompilation.

Facts relied on (MuJoCo's ``src/render/classic/render_gl3.c``, ``render_context.c``,
``engine_vis_visualize.c``, ``engine_core_smooth.c``):

* Drawn geoms: ``geom_group < 3`` (the default ``mjvOption.geomgroup``) with colour alpha > 0.
  Colour: the material's ``rgba`` if the geom has one, unless the geom's own ``rgba`` differs
  from the default ``.5 .5 .5 1``; emission, specular, shininess (x 128), reflectance from the
  material (defaults 0, .5, .5, 0 without one).
* Camera: ``cam_xpos``/``cam_xmat``, looking along its -z with y up; vertical field of view
  ``cam_fovy`` (degrees), square pixels; depth (along the view axis) clipped to
  ``[znear, zfar] * stat.extent``.
* Shapes: plane (``|x| <= size[0]``, ``|y| <= size[1]``, infinite where a size is 0; seen from
  its +z side), sphere, capsule and cylinder (radius ``size[0]``, half-length ``size[1]`` along
  z), ellipsoid, box. Back faces are culled, as MuJoCo's renderer does.
* Lighting, OpenGL's fixed function with a local viewer: colour = emission + global ambient
  (0.3 only when there are no lights) + per light ``att * spot * (ambient + max(n.l, 0) diffuse
  + [n.l > 0] max(n.h, 0)^shininess specular)``, ambient and diffuse times the geom's colour,
  specular times the material's specular (Blinn-Phong). The headlight (``visual/headlight``) is
  directional along the camera's view; model lights are spot or directional (point and image
  lights are skipped, as the classic renderer does), their poses ``light_xpos``/``light_xdir``
  (computed as ``mj_camlight`` does when ``data`` lacks them, as ``mjx.Data`` does); spots have
  GL's cutoff and exponent and ``1 / (a0 + a1 d + a2 d^2)`` attenuation. Each pass is clamped to
  [0, 1], then multiplied by the texture colour (GL_MODULATE, specular included).
* Per-vertex lighting (``gouraud=True``): MuJoCo's GL lights vertices and interpolates. Finite
  planes are tessellated coarsely (``makePlane``: cells of ``2 max(size[2], size/198)``, padded
  at the ends; the reacher arena's floor is 2 x 2 cells), so their lighting is computed, as GL
  does, at the corners of the triangle holding the pixel and interpolated (quads split along
  ``v1-v3``, as Mesa's llvmpipe does: the other diagonal matched it worse). Other shapes are lit
  per pixel (MuJoCo's 28 x 16 tessellation of them is fine enough).
* Shadows (``shadows=True``): a light with ``castshadow`` is drawn in its own pass, dropped where
  a shadow ray towards it hits a geom (planes included, from either side), but only inside the
  shadow map's frustum (a spot's: a square pyramid of ``min(2 cutoff shadowscale, 160)``
  degrees, oriented as ``mjr_orthoVec``; directional lights: unlimited here, ``shadowclip``
  there). ``shadows=False`` is MuJoCo without shadows: every light in one pass, clamped together.
* Reflection (``reflections=True``): the first plane with material reflectance r > 0 mirrors
  the scene: the geoms hit by the reflected ray, colour times r (specular not), lit by all
  lights without shadows and seen from the mirrored camera, with the plane's colour added
  (GL_ONE, GL_ONE) and the sum clamped; black where the mirrored ray hits nothing.
* Textures: the compiled ones (``tex_data``), mipmapped as ``glGenerateMipmap`` does (here:
  area-averaged to half size, rounded to uint8) and sampled trilinearly
  (``GL_LINEAR_MIPMAP_LINEAR``; level of detail from the larger of the texture-coordinate
  derivatives along the image axes, exact for primary rays by ray differentials, a cone for
  mirrored ones). Planes with a 2D texture: ``s = r0 (x + sx) / (2 sx)``, ``t = r1 (sy - y) /
  (2 sy)`` (``r`` = ``texrepeat``, times the size if ``texuniform``), ``t = 0`` the texture's
  first row, wrapping; infinite planes ``s = r0 x / 2 - 1/2``, ``t = -r1 y / 2 - 1/2``. Skybox:
  the first skybox texture, a cube map (faces +x, -x, +y, -y, +z, -z stacked in ``tex_data``,
  or one square image for all six) looked up with GL's cube-map rules at ``(dx, dz, -dy)`` of
  the view ray ``d`` (MuJoCo's skybox texgen). sRGB textures are decoded when sampled.
* Output: ``round(255 c)``; with ``supersample=k`` the mean of ``k x k`` rays on a regular grid
  (MuJoCo's offscreen buffer has 4x MSAA; a box filter does not match it more closely than one
  ray per pixel does), the geom id that of the pixel centre (segmentation has no multisampling).

Left out: transparency (0 < alpha < 1 is drawn opaque; a plane seen from behind is not drawn,
MuJoCo draws it at 30% opacity), fog and haze, per-vertex lighting of non-planes and of
infinite planes, 2D textures on geoms other than planes and cube textures on geoms, reflective
boxes, meshes, height fields and other types (``make_scene`` raises ``ValueError``), orthographic
cameras and cameras given by intrinsics (``ValueError``), labels and decorations.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

# mjtGeom
PLANE, SPHERE, CAPSULE, ELLIPSOID, CYLINDER, BOX = 0, 2, 3, 4, 5, 6
SUPPORTED_GEOMS = (PLANE, SPHERE, CAPSULE, ELLIPSOID, CYLINDER, BOX)
_GEOM_NAMES = {PLANE: "plane", SPHERE: "sphere", CAPSULE: "capsule", ELLIPSOID: "ellipsoid"}
_GEOM_NAMES.update({CYLINDER: "cylinder", BOX: "box"})
# mjtLightType, mjtCamLight, mjtTexture, mjtColorSpace, mjTEXROLE_RGB
_SPOT, _DIRECTIONAL = 0, 1
_FIXED, _TRACK, _TRACKCOM, _TARGETBODY, _TARGETBODYCOM = 0, 1, 2, 3, 4
_TEX_2D, _TEX_CUBE, _TEX_SKYBOX = 0, 1, 2
_SRGB = 2
_ROLE_RGB = 1
_DRAWN_GROUPS = 3  # mjvOption.geomgroup defaults: groups 0, 1, 2 on
_EPS = 1e-4  # offset of secondary rays from the surface, in model units
_BIG = 1e30
_MAXPLANEGRID = 200  # mjMAXPLANEGRID


class RenderState(NamedTuple):
  """The per-state arrays ``render`` reads (a pytree: stack these to vmap)."""

  geom_xpos: jax.Array  # (G, 3)
  geom_xmat: jax.Array  # (G, 3, 3)
  cam_xpos: jax.Array  # (C, 3)
  cam_xmat: jax.Array  # (C, 3, 3)
  light_xpos: jax.Array  # (L, 3)
  light_xdir: jax.Array  # (L, 3)


@flax.struct.dataclass
class RenderScene:
  """What MuJoCo draws from one camera, gathered from an ``MjModel`` by :func:`make_scene`.

  Per drawn geom (``K`` of them, sorted by type): its model index, shape, size, colour and
  material; per model light (``L``, all of the model's, active or not): its mode and colours;
  the textures as one flat uint8 texel array with a table of mip levels per image (a 2D texture
  is one image, a skybox six, one per cube face)."""

  geom_index_K: jax.Array  # int32, index into the model's geoms
  geom_type_K: jax.Array  # int32 (mjtGeom)
  size_Kx3: jax.Array
  rgb_Kx3: jax.Array
  emission_K: jax.Array
  specular_K: jax.Array
  shininess_K: jax.Array  # GL exponent, material shininess * 128
  reflectance_K: jax.Array  # nonzero for the one reflective plane at most
  tex_image_K: jax.Array  # int32 image index of the geom's 2D texture, -1 without
  tex_affine_Kx4: jax.Array  # (s = a x + b, t = c y + d) in the plane's frame: (a, b, c, d)
  gouraud_K: jax.Array  # bool: a finite plane, lit per vertex of MuJoCo's tessellation
  plane_grid_Kx2x3: jax.Array  # per axis: first interior grid line, spacing, number of cells
  # lights
  light_on_L: jax.Array  # bool: active and of a type the classic renderer draws
  light_directional_L: jax.Array  # bool
  light_ambient_Lx3: jax.Array
  light_diffuse_Lx3: jax.Array
  light_specular_Lx3: jax.Array
  light_attenuation_Lx3: jax.Array
  light_cos_cutoff_L: jax.Array  # cos of the spot cutoff angle (-1: none)
  light_exponent_L: jax.Array
  light_shadow_tan_L: jax.Array  # tan of half the shadow frustum of a spot (inf: unlimited)
  # how lights follow bodies, for data without light_xpos (mjx.Data)
  light_mode_L: jax.Array
  light_bodyid_L: jax.Array
  light_targetbodyid_L: jax.Array
  light_pos_Lx3: jax.Array
  light_dir_Lx3: jax.Array
  light_pos0_Lx3: jax.Array
  light_poscom0_Lx3: jax.Array
  light_dir0_Lx3: jax.Array
  head_ambient_3: jax.Array
  head_diffuse_3: jax.Array
  head_specular_3: jax.Array
  global_ambient_3: jax.Array
  # camera
  camera_id: jax.Array  # int32 scalar; may be replaced by another perspective camera's
  tan_half_fovy_C: jax.Array  # per model camera
  znear: jax.Array  # scalar
  zfar: jax.Array  # scalar
  # textures
  texels_Nx3: jax.Array  # uint8, all mip levels of all images
  level_adr_IxM: jax.Array  # int32 offset (in texels) of level m of image i
  level_w_IxM: jax.Array  # int32
  level_h_IxM: jax.Array  # int32
  levels_I: jax.Array  # int32 number of levels of image i
  srgb_I: jax.Array  # bool
  # static
  size: int = flax.struct.field(pytree_node=False, default=64)
  supersample: int = flax.struct.field(pytree_node=False, default=1)
  shadows: bool = flax.struct.field(pytree_node=False, default=True)
  reflections: bool = flax.struct.field(pytree_node=False, default=True)
  gouraud: bool = flax.struct.field(pytree_node=False, default=True)
  headlight: bool = flax.struct.field(pytree_node=False, default=True)
  skybox_image: int = flax.struct.field(pytree_node=False, default=-1)  # first of 6, -1: none
  num_2d_images: int = flax.struct.field(pytree_node=False, default=0)  # images 0.. are 2D
  shadow_lights: tuple = flax.struct.field(pytree_node=False, default=())  # lights in own pass
  mirror_sees_textures: bool = flax.struct.field(pytree_node=False, default=False)
  any_srgb: bool = flax.struct.field(pytree_node=False, default=False)
  # geom types present, each with the slice (start, stop) of its geoms in K (sorted by type)
  type_groups: tuple = flax.struct.field(pytree_node=False, default=())


# --------------------------------------------------------------------------- host-side scene


def _downsample(img_HxWxC: np.ndarray) -> np.ndarray:
  """Area-average to ``(max(1, H // 2), max(1, W // 2))``."""

  def weights(n: int) -> np.ndarray:
    m = max(1, n // 2)
    edges = np.arange(m + 1) * (n / m)
    lo, hi = edges[:-1, None], edges[1:, None]
    k = np.arange(n)[None, :]
    w = np.clip(np.minimum(hi, k + 1) - np.maximum(lo, k), 0, None)
    return w / w.sum(1, keepdims=True)

  h, w, c = img_HxWxC.shape
  rows = (weights(h) @ img_HxWxC.reshape(h, w * c)).reshape(-1, w, c)
  return np.einsum("bw,awc->abc", weights(w), rows, optimize=True)


def _mip_levels(img_HxWx3: np.ndarray, srgb: bool) -> list[np.ndarray]:
  """The mip chain of a uint8 image down to 1 x 1 (built in linear space for sRGB images)."""
  lin = img_HxWx3.astype(np.float64) / 255.0
  if srgb:
    lin = _srgb_to_linear_np(lin)
  levels = [img_HxWx3]
  while lin.shape[0] > 1 or lin.shape[1] > 1:
    lin = _downsample(lin)
    enc = _linear_to_srgb_np(lin) if srgb else lin
    levels.append(np.round(np.clip(enc, 0, 1) * 255).astype(np.uint8))
  return levels


def _srgb_to_linear_np(c):
  return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb_np(c):
  return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(np.maximum(c, 0), 1 / 2.4) - 0.055)


def _drawn_geoms(m) -> list[int]:
  """Model geoms MuJoCo draws by default, with their (rgba, matid) as ``mjv_updateScene``."""
  out = []
  for i in range(m.ngeom):
    if m.geom_group[i] >= _DRAWN_GROUPS:
      continue
    if _geom_rgba(m, i)[3] == 0:
      continue
    out.append(i)
  return out


def _geom_rgba(m, i: int) -> np.ndarray:
  rgba = np.asarray(m.geom_rgba[i], np.float32)
  matid = int(m.geom_matid[i])
  if matid >= 0 and np.all(rgba == np.float32([0.5, 0.5, 0.5, 1.0])):
    return np.asarray(m.mat_rgba[matid], np.float32)
  return rgba


def _plane_grid(size_3) -> np.ndarray:
  """MuJoCo's tessellation of a finite plane (``makePlane``), per axis: ``(first, step,
  cells)``: cell 0 is ``[-size, first]``, cell ``c`` then ``[first + (c-1) step, first + c
  step]``, the last one ends at ``size``."""
  out = np.zeros((2, 3), np.float32)
  for axis in range(2):
    sz = float(size_3[axis])
    sz2 = max(float(size_3[2]), sz / (_MAXPLANEGRID - 2))
    nn = int(math.floor(sz / max(1e-15, sz2)))
    nn -= nn % 2
    pad = sz - nn * sz2
    out[axis] = (-sz + pad, 2 * sz2, nn + 2)
  return out


def _check_int(name: str, value: Any, lo: int, hi: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
    raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {value!r}")
  return int(value)


def make_scene(
  mj_model,
  *,
  camera_id: int = 0,
  size: int = 64,
  supersample: int = 1,
  shadows: bool = True,
  reflections: bool = True,
  gouraud: bool = True,
) -> RenderScene:
  """The :class:`RenderScene` of ``mj_model`` (a ``mujoco.MjModel``) seen from fixed camera
  ``camera_id`` at ``size x size`` pixels, ``supersample**2`` rays per pixel. ``shadows``,
  ``reflections``, ``gouraud`` (per-vertex lighting of planes) switch those effects (see the
  module docstring); all on is closest to MuJoCo's renderer.

  ValueError for what this renderer does not draw: geom types other than plane, sphere,
  capsule, ellipsoid, cylinder and box; textures on non-plane geoms; orthographic cameras or
  cameras given by intrinsics; a camera id out of range."""
  m = mj_model
  if m.ncam == 0:
    raise ValueError("the model has no camera")
  camera_id = _check_int("camera_id", camera_id, 0, m.ncam - 1)
  size = _check_int("size", size, 1, 4096)
  supersample = _check_int("supersample", supersample, 1, 16)
  if int(m.cam_projection[camera_id]) != 0:
    raise ValueError(f"camera {camera_id} is orthographic; only perspective cameras are drawn")
  if m.cam_sensorsize[camera_id][1] != 0:
    raise ValueError(f"camera {camera_id} is given by intrinsics (sensorsize); use fovy")

  geoms = _drawn_geoms(m)
  for i in geoms:
    if int(m.geom_type[i]) not in SUPPORTED_GEOMS:
      raise ValueError(
        f"geom {i} has type {int(m.geom_type[i])}; supported: {sorted(_GEOM_NAMES.values())}"
      )

  # textures: 2D images used by drawn planes, then the skybox's six faces
  images: list[tuple[np.ndarray, bool]] = []
  image_of_tex: dict[int, int] = {}

  def tex_pixels(t: int) -> np.ndarray:
    w, h, c = int(m.tex_width[t]), int(m.tex_height[t]), int(m.tex_nchannel[t])
    if c not in (3, 4):
      raise ValueError(f"texture {t} has {c} channels; only RGB(A) textures are drawn")
    adr = int(m.tex_adr[t])
    return np.asarray(m.tex_data[adr : adr + w * h * c], np.uint8).reshape(h, w, c)[..., :3]

  n = len(geoms)
  rgb = np.zeros((n, 3), np.float32)
  emission, specular = np.zeros(n, np.float32), np.full(n, 0.5, np.float32)
  shininess, reflectance = np.full(n, 0.5 * 128, np.float32), np.zeros(n, np.float32)
  tex_image, tex_affine = np.full(n, -1, np.int32), np.zeros((n, 4), np.float32)
  gouraud_k, grid = np.zeros(n, bool), np.ones((n, 2, 3), np.float32)
  have_mirror = False
  for k, i in enumerate(geoms):
    rgb[k] = _geom_rgba(m, i)[:3]
    if int(m.geom_type[i]) == PLANE and np.all(m.geom_size[i][:2] > 0):
      gouraud_k[k], grid[k] = True, _plane_grid(m.geom_size[i])
    matid = int(m.geom_matid[i])
    if matid < 0:
      continue
    emission[k] = m.mat_emission[matid]
    specular[k] = m.mat_specular[matid]
    shininess[k] = min(max(float(m.mat_shininess[matid]) * 128.0, 0.0), 128.0)
    gtype = int(m.geom_type[i])
    # MuJoCo mirrors in one reflective geom only, the first plane or box (boxes: not here)
    if m.mat_reflectance[matid] > 0 and gtype in (PLANE, BOX) and not have_mirror:
      have_mirror = True
      reflectance[k] = m.mat_reflectance[matid] if gtype == PLANE else 0.0
    texid = int(np.asarray(m.mat_texid).reshape(m.nmat, -1)[matid, _ROLE_RGB])
    if texid < 0:
      continue
    if int(m.tex_type[texid]) != _TEX_2D or gtype != PLANE:
      raise ValueError(
        f"geom {i} ({_GEOM_NAMES[gtype]}) has a texture of type {int(m.tex_type[texid])}; "
        "only 2D textures on planes are drawn"
      )
    if texid not in image_of_tex:
      image_of_tex[texid] = len(images)
      images.append((tex_pixels(texid), int(m.tex_colorspace[texid]) == _SRGB))
    tex_image[k] = image_of_tex[texid]
    rep = np.asarray(m.mat_texrepeat[matid], np.float64)
    rep = np.where(rep > 0, rep, 1.0)
    sx, sy = float(m.geom_size[i][0]), float(m.geom_size[i][1])
    if sx > 0 and sy > 0:
      scl = rep * (np.array([sx, sy]) if m.mat_texuniform[matid] else 1.0)
      tex_affine[k] = [scl[0] / (2 * sx), scl[0] / 2, -scl[1] / (2 * sy), scl[1] / 2]
    else:  # infinite plane: u = x / 2, v = -y / 2, texture matrix translate(-1/2) * scale
      tex_affine[k] = [rep[0] / 2, -0.5, -rep[1] / 2, -0.5]

  skybox_image = -1
  sky = [t for t in range(m.ntex) if int(m.tex_type[t]) == _TEX_SKYBOX]
  if sky:
    pix = tex_pixels(sky[0])
    w = pix.shape[1]
    faces = [pix] * 6 if pix.shape[0] == w else [pix[f * w : (f + 1) * w] for f in range(6)]
    skybox_image = len(images)
    images.extend((f, False) for f in faces)

  texels, adr, ws, hs, nlev = [], [], [], [], []
  offset = 0
  for img, srgb in images:
    levels = _mip_levels(img, srgb)
    nlev.append(len(levels))
    adr.append([]), ws.append([]), hs.append([])
    for lev in levels:
      adr[-1].append(offset), ws[-1].append(lev.shape[1]), hs[-1].append(lev.shape[0])
      texels.append(lev.reshape(-1, 3))
      offset += lev.shape[0] * lev.shape[1]
  nmax = max(nlev, default=1)

  def table(rows):
    return np.array([r + [r[-1]] * (nmax - len(r)) for r in rows], np.int32).reshape(-1, nmax)

  # lights
  nl = m.nlight
  ltype = np.asarray(m.light_type, np.int32).reshape(nl)
  on = np.asarray(m.light_active, bool).reshape(nl) & np.isin(ltype, (_SPOT, _DIRECTIONAL))
  spot = ltype == _SPOT
  cutoff = np.asarray(m.light_cutoff, np.float64).reshape(nl)
  cos_cutoff = np.where(spot & (cutoff < 180), np.cos(np.radians(np.minimum(cutoff, 90))), -1.0)
  shadow_half = np.radians(np.minimum(2 * cutoff * float(m.vis.map.shadowscale), 160.0) / 2)
  shadow_tan = np.where(spot, np.tan(shadow_half), np.inf)
  castshadow = np.asarray(m.light_castshadow, bool).reshape(nl)
  nsupported = int(on.sum()) + int(bool(m.vis.headlight.active))
  f32 = lambda x, shape=None: jnp.asarray(  # noqa: E731
    np.asarray(x, np.float32) if shape is None else np.asarray(x, np.float32).reshape(shape)
  )

  # geoms sorted by type (stable), so that each type's geoms are one slice
  types = np.asarray([int(m.geom_type[i]) for i in geoms], np.int32).reshape(n)
  order = np.argsort(types, kind="stable")
  types, geoms = types[order], np.asarray(geoms, np.int32).reshape(n)[order]
  per_geom = (rgb, emission, specular, shininess, reflectance, tex_image, tex_affine, gouraud_k)
  rgb, emission, specular, shininess, reflectance, tex_image, tex_affine, gouraud_k = (
    a[order] for a in per_geom
  )
  grid = grid[order]
  groups = tuple(
    (int(t), int(np.searchsorted(types, t)), int(np.searchsorted(types, t, side="right")))
    for t in SUPPORTED_GEOMS
    if t in types
  )
  return RenderScene(
    geom_index_K=jnp.asarray(geoms),
    geom_type_K=jnp.asarray(types),
    size_Kx3=f32(np.asarray(m.geom_size)[geoms], (n, 3)),
    rgb_Kx3=f32(rgb),
    emission_K=f32(emission),
    specular_K=f32(specular),
    shininess_K=f32(shininess),
    reflectance_K=f32(reflectance if reflections else np.zeros_like(reflectance)),
    tex_image_K=jnp.asarray(tex_image),
    tex_affine_Kx4=f32(tex_affine),
    gouraud_K=jnp.asarray(gouraud_k),
    plane_grid_Kx2x3=f32(grid),
    light_on_L=jnp.asarray(on),
    light_directional_L=jnp.asarray(ltype == _DIRECTIONAL),
    light_ambient_Lx3=f32(m.light_ambient, (nl, 3)),
    light_diffuse_Lx3=f32(m.light_diffuse, (nl, 3)),
    light_specular_Lx3=f32(m.light_specular, (nl, 3)),
    light_attenuation_Lx3=f32(np.where(spot[:, None], m.light_attenuation, [1, 0, 0]), (nl, 3)),
    light_cos_cutoff_L=f32(cos_cutoff),
    light_exponent_L=f32(np.where(spot, np.clip(m.light_exponent, 0, 128), 0)),
    light_shadow_tan_L=f32(shadow_tan),
    light_mode_L=jnp.asarray(np.asarray(m.light_mode, np.int32).reshape(nl)),
    light_bodyid_L=jnp.asarray(np.asarray(m.light_bodyid, np.int32).reshape(nl)),
    light_targetbodyid_L=jnp.asarray(np.asarray(m.light_targetbodyid, np.int32).reshape(nl)),
    light_pos_Lx3=f32(m.light_pos, (nl, 3)),
    light_dir_Lx3=f32(m.light_dir, (nl, 3)),
    light_pos0_Lx3=f32(m.light_pos0, (nl, 3)),
    light_poscom0_Lx3=f32(m.light_poscom0, (nl, 3)),
    light_dir0_Lx3=f32(m.light_dir0, (nl, 3)),
    head_ambient_3=f32(m.vis.headlight.ambient),
    head_diffuse_3=f32(m.vis.headlight.diffuse),
    head_specular_3=f32(m.vis.headlight.specular),
    global_ambient_3=f32([0.0 if nsupported else 0.3] * 3),
    camera_id=jnp.asarray(camera_id, jnp.int32),
    tan_half_fovy_C=f32(np.tan(np.radians(np.asarray(m.cam_fovy, np.float64)) / 2)),
    znear=f32(float(m.vis.map.znear) * float(m.stat.extent)),
    zfar=f32(float(m.vis.map.zfar) * float(m.stat.extent)),
    texels_Nx3=jnp.asarray(np.concatenate(texels) if texels else np.zeros((1, 3), np.uint8)),
    level_adr_IxM=jnp.asarray(table(adr)),
    level_w_IxM=jnp.asarray(table(ws)),
    level_h_IxM=jnp.asarray(table(hs)),
    levels_I=jnp.asarray(np.asarray(nlev, np.int32)),
    srgb_I=jnp.asarray(np.asarray([s for _, s in images], bool)),
    size=size,
    supersample=supersample,
    shadows=bool(shadows),
    reflections=bool(reflections),
    gouraud=bool(gouraud) and bool(gouraud_k.any()),
    headlight=bool(m.vis.headlight.active),
    skybox_image=skybox_image,
    num_2d_images=len(image_of_tex),
    any_srgb=any(srgb for _, srgb in images),
    mirror_sees_textures=bool(np.any((tex_image >= 0) & (reflectance == 0)) and reflectance.any()),
    shadow_lights=tuple(int(i) for i in np.flatnonzero(on & castshadow)) if shadows else (),
    type_groups=groups,
  )


# --------------------------------------------------------------------------- state


def _mat3(x) -> jax.Array:
  x = jnp.asarray(x, jnp.float32)
  return x.reshape(x.shape[:-1] + (3, 3)) if x.shape[-1] == 9 else x


def _light_poses(scene: RenderScene, data) -> tuple[jax.Array, jax.Array]:
  """``light_xpos``, ``light_xdir`` from body poses, as ``mj_camlight`` (for ``mjx.Data``)."""
  xpos = jnp.asarray(data.xpos, jnp.float32)
  xmat = _mat3(data.xmat)
  com = jnp.asarray(data.subtree_com, jnp.float32)
  body, target, mode = scene.light_bodyid_L, scene.light_targetbodyid_L, scene.light_mode_L
  pos = xpos[body] + jnp.einsum("lij,lj->li", xmat[body], scene.light_pos_Lx3)
  direction = jnp.einsum("lij,lj->li", xmat[body], scene.light_dir_Lx3)
  track = (mode == _TRACK) | (mode == _TRACKCOM)
  pos = jnp.where((mode == _TRACK)[:, None], xpos[body] + scene.light_pos0_Lx3, pos)
  pos = jnp.where((mode == _TRACKCOM)[:, None], com[body] + scene.light_poscom0_Lx3, pos)
  direction = jnp.where(track[:, None], scene.light_dir0_Lx3, direction)
  targeted = ((mode == _TARGETBODY) | (mode == _TARGETBODYCOM)) & (target >= 0)
  t = jnp.maximum(target, 0)
  lookat = jnp.where((mode == _TARGETBODY)[:, None], xpos[t], com[t])
  direction = jnp.where(targeted[:, None], lookat - pos, direction)
  return pos, _normalize(direction)


def render_state(scene: RenderScene, data) -> RenderState:
  """The arrays of ``data`` that ``render`` reads, as a :class:`RenderState` of float32.

  ``data``: a ``mujoco.MjData`` (after ``mj_forward``), a ``mujoco.mjx.Data`` (light poses are
  then computed from ``xpos``, ``xmat``, ``subtree_com`` as ``mj_camlight`` does; mjx does not
  compute them) or anything with the fields of :class:`RenderState` (matrices may be flat, 9).
  Under ``jax.vmap``, call it inside the mapped function or pass ``(3, 3)`` matrices."""
  if hasattr(data, "light_xpos"):
    lpos = jnp.asarray(data.light_xpos, jnp.float32).reshape(-1, 3)
    ldir = jnp.asarray(data.light_xdir, jnp.float32).reshape(-1, 3)
  else:
    lpos, ldir = _light_poses(scene, data)
  return RenderState(
    geom_xpos=jnp.asarray(data.geom_xpos, jnp.float32),
    geom_xmat=_mat3(data.geom_xmat),
    cam_xpos=jnp.asarray(data.cam_xpos, jnp.float32),
    cam_xmat=_mat3(data.cam_xmat),
    light_xpos=lpos,
    light_xdir=ldir,
  )


# --------------------------------------------------------------------------- geometry


def _normalize(v: jax.Array) -> jax.Array:
  return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _sphere_t(o, d, r):
  """First (front) hit of rays ``o + t d`` with the sphere of radius ``r`` at the origin."""
  a = jnp.sum(d * d, -1)
  b = jnp.sum(o * d, -1)
  c = jnp.sum(o * o, -1) - r * r
  disc = b * b - a * c
  t = (-b - jnp.sqrt(jnp.maximum(disc, 0.0))) / jnp.maximum(a, 1e-30)
  return jnp.where(disc >= 0, t, _BIG)


def _hit_t(gtype: int, o, d, size, tmin, two_sided: bool):
  """Ray-shape hits in the geoms' frames (``o``, ``d``, ``size``: ``(..., 3)``): the first
  ``t > tmin`` of the front side, ``_BIG`` where none (planes: either side if ``two_sided``)."""
  sx, sy = size[..., 0], size[..., 1]

  def keep(t, ok=True):
    return jnp.where(ok & (t > tmin), t, _BIG)

  def at(t):
    return o + jnp.minimum(t, 1e6)[..., None] * d

  if gtype == PLANE:
    dz = d[..., 2]
    facing = (dz < 0) | two_sided & (dz > 0)
    t = -o[..., 2] / jnp.where(dz == 0, 1e-30, dz)
    p = at(t)
    inside = ((sx <= 0) | (jnp.abs(p[..., 0]) <= sx)) & ((sy <= 0) | (jnp.abs(p[..., 1]) <= sy))
    return keep(t, facing & inside)
  if gtype == SPHERE:
    return keep(_sphere_t(o, d, sx))
  if gtype == ELLIPSOID:
    return keep(_sphere_t(o / size, d / size, 1.0))
  if gtype in (CAPSULE, CYLINDER):
    # the infinite cylinder's front side; a capsule lies inside it, so a miss misses both
    a = d[..., 0] ** 2 + d[..., 1] ** 2
    b = o[..., 0] * d[..., 0] + o[..., 1] * d[..., 1]
    c = o[..., 0] ** 2 + o[..., 1] ** 2 - sx * sx
    disc = b * b - a * c
    t = (-b - jnp.sqrt(jnp.maximum(disc, 0.0))) / jnp.maximum(a, 1e-30)
    z = at(t)[..., 2]
    side = keep(t, (disc >= 0) & (a > 1e-20) & (jnp.abs(z) <= sy))
    if gtype == CAPSULE:  # else the cap sphere on the side where the cylinder was entered
      # (a ray starting inside the infinite cylinder, beyond an end, meets that end's cap)
      end = jnp.where(c < 0, jnp.sign(o[..., 2]), jnp.sign(z)) * sy
      shift = jnp.stack([jnp.zeros_like(end), jnp.zeros_like(end), end], -1)
      cap = keep(_sphere_t(o - shift, d, sx))
      return jnp.where(side < _BIG, side, cap)
    dz = d[..., 2]
    tz = (jnp.where(dz < 0, sy, -sy) - o[..., 2]) / jnp.where(dz == 0, 1e-30, dz)
    q = at(tz)
    cap = keep(tz, (dz != 0) & (q[..., 0] ** 2 + q[..., 1] ** 2 <= sx * sx))
    return jnp.minimum(side, cap)
  if gtype == BOX:
    inv = 1.0 / jnp.where(jnp.abs(d) < 1e-30, 1e-30, d)
    t1, t2 = (-size - o) * inv, (size - o) * inv
    tnear = jnp.max(jnp.minimum(t1, t2), -1)
    tfar = jnp.min(jnp.maximum(t1, t2), -1)
    return keep(tnear, tnear <= tfar)
  raise ValueError(f"unsupported geom type {gtype}")


def _normal_local(scene: RenderScene, gtype_P, p_Px3, size_Px3):
  """Outward unit normal at points ``p`` on the surfaces of geoms of types ``gtype``, in their
  frames (for a cylinder: of the side or of the cap, whichever ``p`` is nearer)."""
  sx, sy = size_Px3[:, 0], size_Px3[:, 1]
  ez = jnp.broadcast_to(jnp.array([0.0, 0.0, 1.0]), p_Px3.shape)
  radial = p_Px3 * jnp.array([1.0, 1.0, 0.0])
  out = ez
  for gtype, _, _ in scene.type_groups:
    if gtype == SPHERE:
      n = p_Px3
    elif gtype == ELLIPSOID:
      n = p_Px3 / size_Px3**2
    elif gtype == CAPSULE:
      n = p_Px3 - jnp.clip(p_Px3[:, 2], -sy, sy)[:, None] * ez
    elif gtype == CYLINDER:
      r = jnp.linalg.norm(radial, axis=-1)
      on_cap = jnp.abs(jnp.abs(p_Px3[:, 2]) - sy) < jnp.abs(r - sx)
      n = jnp.where(on_cap[:, None], jnp.sign(p_Px3[:, 2])[:, None] * ez, radial)
    elif gtype == BOX:
      axis = jnp.argmax(jnp.abs(p_Px3) / jnp.maximum(size_Px3, 1e-12), -1)
      n = jax.nn.one_hot(axis, 3) * jnp.sign(p_Px3)
    else:  # PLANE
      continue
    out = jnp.where((gtype_P == gtype)[:, None], n, out)
  return _normalize(out)


class _World(NamedTuple):
  """What the shading functions share: the scene, the state, the drawn geoms' frames, the
  camera's view direction."""

  scene: RenderScene
  state: RenderState
  pos_Kx3: jax.Array
  mat_Kx3x3: jax.Array
  forward_3: jax.Array


def _intersect(w: _World, o_Px3, d_Px3, tmin, tmax, *, exclude_P=None, two_sided=False):
  """Nearest hit of each ray ``o + t d``: ``t`` (``_BIG`` where none in ``(tmin, tmax)``), the
  geom's position ``k`` in the scene (-1 where none; ``exclude`` is skipped), and the world unit
  normal there."""
  t_P, k_P = _nearest(w, o_Px3, d_Px3, tmin, tmax, exclude_P, two_sided)
  if w.pos_Kx3.shape[0] == 0:
    return t_P, k_P, jnp.zeros_like(o_Px3)
  hit = k_P >= 0
  kk = jnp.maximum(k_P, 0)
  rot = w.mat_Kx3x3[kk]
  p_Px3 = o_Px3 + jnp.where(hit, t_P, 0.0)[:, None] * d_Px3
  p_local = jnp.einsum("pij,pi->pj", rot, p_Px3 - w.pos_Kx3[kk])
  normal = _normal_local(w.scene, w.scene.geom_type_K[kk], p_local, w.scene.size_Kx3[kk])
  return t_P, k_P, jnp.einsum("pij,pj->pi", rot, normal)


def _nearest(w: _World, o_Px3, d_Px3, tmin, tmax, exclude_P=None, two_sided=False):
  """``t`` and geom position ``k`` of the nearest hit (``_BIG``, -1 where none)."""
  scene, n_k = w.scene, w.pos_Kx3.shape[0]
  if n_k == 0:
    return jnp.full(o_Px3.shape[:1], _BIG), jnp.full(o_Px3.shape[:1], -1, jnp.int32)
  o_PxKx3 = jnp.einsum("pki,kij->pkj", o_Px3[:, None, :] - w.pos_Kx3[None], w.mat_Kx3x3)
  d_PxKx3 = jnp.einsum("pi,kij->pkj", d_Px3, w.mat_Kx3x3)
  t_PxK = jnp.concatenate(
    [
      _hit_t(gtype, o_PxKx3[:, a:b], d_PxKx3[:, a:b], scene.size_Kx3[a:b][None], tmin, two_sided)
      for gtype, a, b in scene.type_groups
    ],
    1,
  )
  t_PxK = jnp.where(t_PxK < tmax, t_PxK, _BIG)
  if exclude_P is not None:
    t_PxK = jnp.where(jnp.arange(n_k)[None] == exclude_P[:, None], _BIG, t_PxK)
  k_P = jnp.argmin(t_PxK, -1)
  t_P = jnp.take_along_axis(t_PxK, k_P[:, None], -1)[:, 0]
  return t_P, jnp.where(t_P < _BIG, k_P, -1).astype(jnp.int32)


# --------------------------------------------------------------------------- textures


def _sample(scene: RenderScene, img_P, s_P, t_P, rho_P, repeat: bool):
  """Trilinear (``GL_LINEAR_MIPMAP_LINEAR``) sample of image ``img`` at ``(s, t)``, with ``rho``
  level-0 texels per pixel; wrapping (``repeat``) or clamped to the edge."""
  img = jnp.maximum(img_P, 0)[:, None]
  top = scene.levels_I[img] - 1
  lam = jnp.clip(jnp.log2(jnp.maximum(rho_P, 1e-12))[:, None], 0.0, top.astype(jnp.float32))
  l0 = jnp.floor(lam).astype(jnp.int32)
  level = jnp.concatenate([l0, jnp.minimum(l0 + 1, top)], 1)  # (P, 2)
  frac = lam - l0
  w_level = jnp.concatenate([1 - frac, frac], 1)
  adr, w, h = (a[img, level] for a in (scene.level_adr_IxM, scene.level_w_IxM, scene.level_h_IxM))
  x = s_P[:, None] * w - 0.5
  y = t_P[:, None] * h - 0.5
  x0, y0 = jnp.floor(x), jnp.floor(y)
  fx, fy = x - x0, y - y0
  xs = x0.astype(jnp.int32)[..., None] + jnp.arange(2)  # (P, 2 levels, 2)
  ys = y0.astype(jnp.int32)[..., None] + jnp.arange(2)
  if repeat:
    xs, ys = jnp.mod(xs, w[..., None]), jnp.mod(ys, h[..., None])
  else:
    xs, ys = jnp.clip(xs, 0, w[..., None] - 1), jnp.clip(ys, 0, h[..., None] - 1)
  idx = adr[..., None, None] + ys[..., :, None] * w[..., None, None] + xs[..., None, :]
  texel = scene.texels_Nx3[idx].astype(jnp.float32) / 255.0  # (P, 2, 2, 2, 3)
  if scene.any_srgb:
    lin = jnp.where(texel <= 0.04045, texel / 12.92, ((texel + 0.055) / 1.055) ** 2.4)
    texel = jnp.where(scene.srgb_I[img][..., None, None, None], lin, texel)
  wy = jnp.stack([1 - fy, fy], -1)
  wx = jnp.stack([1 - fx, fx], -1)
  return jnp.einsum("pl,ply,plx,plyxc->pc", w_level, wy, wx, texel)


def _cube_coords(v_Px3):
  """GL cube-map face (0..5 = +x, -x, +y, -y, +z, -z) of directions ``v`` and the face
  coordinates ``(s, t)`` in [0, 1]."""
  x, y, z = v_Px3[:, 0], v_Px3[:, 1], v_Px3[:, 2]
  axis = jnp.argmax(jnp.abs(v_Px3), -1)
  face = 2 * axis + (jnp.take_along_axis(v_Px3, axis[:, None], -1)[:, 0] < 0)
  sc = jnp.stack([-z, z, x, x, x, -x], -1)
  tc = jnp.stack([-y, -y, z, -z, -y, -y], -1)
  ma = jnp.abs(jnp.take_along_axis(v_Px3, axis[:, None], -1)[:, 0])
  sc = jnp.take_along_axis(sc, face[:, None], -1)[:, 0]
  tc = jnp.take_along_axis(tc, face[:, None], -1)[:, 0]
  ma = jnp.maximum(ma, 1e-30)
  return face, 0.5 * (sc / ma + 1), 0.5 * (tc / ma + 1)


def _skybox(scene: RenderScene, d_Px3, ddx_3, ddy_3):
  """Skybox colour along world directions ``d`` (changing by ``ddx``, ``ddy`` per pixel)."""
  n = d_Px3.shape[0]
  v = jnp.concatenate([d_Px3, d_Px3 + ddx_3, d_Px3 + ddy_3])
  v = jnp.stack([v[:, 0], v[:, 2], -v[:, 1]], -1)  # MuJoCo's skybox texgen: (x, z, -y)
  face, s, t = _cube_coords(v)
  face = face[:n]
  # texels per pixel, from the coordinates of the neighbours' directions on the same face
  s3, t3 = s.reshape(3, n), t.reshape(3, n)
  near = (face[None] == jnp.stack([face] * 3))[1:]
  step = jnp.hypot(s3[1:] - s3[0], t3[1:] - t3[0])
  rho = scene.level_w_IxM[scene.skybox_image, 0] * jnp.max(jnp.where(near, step, 0.0), 0)
  return _sample(scene, scene.skybox_image + face, s3[0], t3[0], rho, repeat=False)


# --------------------------------------------------------------------------- shading


def _blinn_phong(lvec, n, v, base, spec, shin, amb, diff, lspec):
  """GL's ambient + diffuse + specular of one light (unit vectors ``lvec`` to the light, ``n``,
  ``v`` to the viewer; ``base`` the colour, ``spec`` and ``shin`` the material's)."""
  ndotl = jnp.sum(n * lvec, -1)
  ndoth = jnp.maximum(jnp.sum(n * _normalize(lvec + v), -1), 0.0)
  highlight = jnp.where(ndotl > 0, jnp.where(shin > 0, ndoth ** jnp.maximum(shin, 1e-6), 1.0), 0)
  return (
    amb * base
    + jnp.maximum(ndotl, 0.0)[..., None] * diff * base
    + (highlight * spec)[..., None] * lspec
  )


def _passes(w: _World, k_P, p_Px3, n_Px3, eye_Px3, scale_P, own: tuple):
  """The lit colour of the GL passes at points ``p`` of geoms ``k`` (normal ``n``, viewer at
  ``eye``, colour times ``scale``), each clamped to [0, 1]: ``(P, 1 + len(own), 3)``: pass 0
  with emission, global ambient, the headlight and every light not in ``own``, then one pass
  per light in ``own`` (unshadowed)."""
  scene, state = w.scene, w.state
  base = scene.rgb_Kx3[k_P] * scale_P[:, None]
  spec, shin = scene.specular_K[k_P], scene.shininess_K[k_P]
  v = _normalize(eye_Px3 - p_Px3)
  first = scene.emission_K[k_P][:, None] * base + scene.global_ambient_3 * base
  if scene.headlight:
    head = (scene.head_ambient_3, scene.head_diffuse_3, scene.head_specular_3)
    first = first + _blinn_phong(-w.forward_3, n_Px3, v, base, spec, shin, *head)
  # model lights, (P, L, 3)
  lpos, ldir = state.light_xpos, _normalize(state.light_xdir)
  directional = scene.light_directional_L[None]
  to_light = jnp.where(directional[..., None], -ldir[None], lpos[None] - p_Px3[:, None])
  dist = jnp.linalg.norm(to_light, axis=-1)
  lvec = _normalize(to_light)
  a = scene.light_attenuation_Lx3[None]
  att = 1.0 / jnp.maximum(a[..., 0] + a[..., 1] * dist + a[..., 2] * dist**2, 1e-12)
  cos_spot = jnp.sum(-lvec * ldir[None], -1)
  inside = cos_spot >= scene.light_cos_cutoff_L[None]
  spot = jnp.where(inside, jnp.maximum(cos_spot, 0.0) ** scene.light_exponent_L[None], 0.0)
  gain = jnp.where(directional, 1.0, att * spot) * scene.light_on_L[None]
  colours = (scene.light_ambient_Lx3[None], scene.light_diffuse_Lx3[None])
  colours += (scene.light_specular_Lx3[None],)
  per_point = (n_Px3[:, None], v[:, None], base[:, None], spec[:, None], shin[:, None])
  lights = _blinn_phong(lvec, *per_point, *colours) * gain[..., None]
  in_first = np.ones(lights.shape[1], bool)
  in_first[list(own)] = False
  first = first + jnp.sum(lights[:, in_first], 1)
  return jnp.clip(jnp.stack([first] + [lights[:, i] for i in own], 1), 0.0, 1.0)


def _gouraud_cell(w: _World, k_P, p_Px3):
  """For points ``p`` on finite planes ``k``: the world corners ``(P, 3, 3)`` of the triangle of
  MuJoCo's tessellation that holds them and their interpolation weights ``(P, 3)``. A cell is
  the quad ``(v0, v1, v2, v3)`` = corners ``(--, +-, ++, -+)``, drawn (by Mesa, at least) as the
  triangles ``(v0, v1, v3)``, ``(v1, v2, v3)``: split along ``v1-v3``."""
  rot = w.mat_Kx3x3[k_P]
  x = jnp.einsum("pij,pi->pj", rot, p_Px3 - w.pos_Kx3[k_P])[:, :2]
  size = w.scene.size_Kx3[k_P][:, :2]
  grid = w.scene.plane_grid_Kx2x3[k_P]  # per axis: first interior line, spacing, cells
  first, step, cells = grid[..., 0], grid[..., 1], grid[..., 2]
  i = jnp.where(x < first, 0.0, jnp.clip(1.0 + jnp.floor((x - first) / step), 1.0, cells - 1))
  lo = jnp.where(i == 0, -size, first + (i - 1) * step)
  hi = jnp.where(i == cells - 1, size, first + i * step)
  f = jnp.clip((x - lo) / jnp.maximum(hi - lo, 1e-12), 0.0, 1.0)
  fx, fy = f[:, 0], f[:, 1]
  lower = (fx + fy <= 1)[:, None]
  # unit-square corners of the triangle holding f: (v0, v1, v3) or (v1, v2, v3)
  tri_lower = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
  tri_upper = jnp.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
  unit = jnp.where(lower[..., None], tri_lower, tri_upper)
  weights = jnp.where(
    lower, jnp.stack([1 - fx - fy, fx, fy], -1), jnp.stack([1 - fy, fx + fy - 1, 1 - fx], -1)
  )
  corners = lo[:, None] + unit * (hi - lo)[:, None]  # (P, 3, 2) in the plane's frame
  corners = jnp.concatenate([corners, jnp.zeros_like(corners[..., :1])], -1)
  return w.pos_Kx3[k_P][:, None] + jnp.einsum("pij,pcj->pci", rot, corners), weights


def _texture_coords(w: _World, k_P, p_Px3, footprint):
  """Plane texture coordinates ``(s, t)`` at ``p`` and level-0 texels per pixel. ``footprint``:
  ``(dp/dx, dp/dy)``, the change of the hit point per pixel, or a width (isotropic)."""
  scene = w.scene
  img = jnp.maximum(scene.tex_image_K[k_P], 0)
  aff = scene.tex_affine_Kx4[k_P]
  ex, ey = w.mat_Kx3x3[k_P][:, :, 0], w.mat_Kx3x3[k_P][:, :, 1]
  rel = p_Px3 - w.pos_Kx3[k_P]
  s = aff[:, 0] * jnp.sum(rel * ex, -1) + aff[:, 1]
  t = aff[:, 2] * jnp.sum(rel * ey, -1) + aff[:, 3]
  sw = jnp.abs(aff[:, 0]) * scene.level_w_IxM[img, 0]
  th = jnp.abs(aff[:, 2]) * scene.level_h_IxM[img, 0]
  if isinstance(footprint, tuple):

    def length(dp):
      return jnp.hypot(sw * jnp.sum(dp * ex, -1), th * jnp.sum(dp * ey, -1))

    rho = jnp.maximum(length(footprint[0]), length(footprint[1]))
  else:
    rho = footprint * jnp.maximum(sw, th)
  return s, t, rho


def _surface(w: _World, k_P, p_Px3, n_Px3, eye_Px3, footprint, scale_P, *, shadow, gouraud, tex):
  """Colour of hit points ``p`` of geoms ``k`` >= 0, GL style: ``clamp(pass 0) * texture +
  sum_i clamp(pass of shadow light i) * texture * visible_i`` (every light in pass 0 unless
  ``shadow``), the passes lit per vertex on finite planes if ``gouraud``, else per pixel;
  ``scale`` multiplies the geom's colour (the reflectance, for mirrored geoms); ``tex``: whether
  textures may be met."""
  scene = w.scene
  kk = jnp.maximum(k_P, 0)
  own = scene.shadow_lights if shadow else ()
  lit = _passes(w, kk, p_Px3, n_Px3, eye_Px3, scale_P, own)
  if gouraud:
    corners, weights = _gouraud_cell(w, kk, p_Px3)
    rep = functools.partial(jnp.repeat, repeats=3, axis=0)
    at_corners = _passes(
      w, rep(kk), corners.reshape(-1, 3), rep(n_Px3), rep(eye_Px3), rep(scale_P), own
    ).reshape(lit.shape[:1] + (3,) + lit.shape[1:])
    interpolated = jnp.einsum("pc,pcjx->pjx", weights, at_corners)
    lit = jnp.where(scene.gouraud_K[kk][:, None, None], interpolated, lit)
  colour = lit[:, 0]
  for j, i in enumerate(own):
    colour = colour + lit[:, 1 + j] * _light_visible(w, i, p_Px3, n_Px3)[:, None]
  if tex:
    s, t, rho = _texture_coords(w, kk, p_Px3, footprint)
    texture = _sample(scene, scene.tex_image_K[kk], s, t, rho, repeat=True)
    colour = colour * jnp.where((scene.tex_image_K[kk] >= 0)[:, None], texture, 1.0)
  return colour


def _light_visible(w: _World, i: int, p_Px3, n_Px3):
  """1 where nothing lies between points ``p`` and light ``i``, or ``p`` is outside the light's
  shadow frustum, else 0."""
  lpos, ldir = w.state.light_xpos[i], _normalize(w.state.light_xdir[i])
  directional = w.scene.light_directional_L[i]
  o = p_Px3 + _EPS * n_Px3
  to_light = jnp.where(directional, -ldir[None], lpos[None] - o)
  dist = jnp.where(directional, _BIG, jnp.linalg.norm(to_light, axis=-1))
  t, _ = _nearest(w, o, _normalize(to_light), 0.0, _BIG, two_sided=True)
  # a spot's shadow map covers a square frustum around its direction, up from mjr_orthoVec
  side = jnp.cross(ldir, jnp.array([-1.0, 0.0, 0.0]))
  side = jnp.where(jnp.sum(side**2) > 0.01, side, jnp.cross(ldir, jnp.array([0.0, 1.0, 0.0])))
  up = _normalize(side)
  right = _normalize(jnp.cross(ldir, up))
  rel = p_Px3 - lpos[None]
  depth = rel @ ldir
  lim = w.scene.light_shadow_tan_L[i] * depth
  inside = directional | (depth > 0) & (jnp.abs(rel @ up) <= lim) & (jnp.abs(rel @ right) <= lim)
  return jnp.where((t < dist) & inside, 0.0, 1.0)


def cast_rays(scene: RenderScene, data, origins_Px3, directions_Px3):
  """The nearest geom the scene draws along rays ``o + t d``, ``t > 0``: ``t`` (in units of
  ``|d|``; inf where none), the model's geom id (-1 where none) and the world unit normal there.
  Front sides only (back faces culled, planes seen from their +z side), as ``render`` sees."""
  state = render_state(scene, data)
  w = _World(
    scene,
    state,
    state.geom_xpos[scene.geom_index_K],
    state.geom_xmat[scene.geom_index_K],
    jnp.zeros(3),
  )
  o = jnp.asarray(origins_Px3, jnp.float32)
  d = jnp.asarray(directions_Px3, jnp.float32)
  t, k, normal = _intersect(w, o, d, 0.0, _BIG)
  index = jnp.concatenate([scene.geom_index_K, jnp.full((1,), -1, jnp.int32)])
  return jnp.where(k >= 0, t, jnp.inf), index[jnp.where(k >= 0, k, -1)], normal


# --------------------------------------------------------------------------- render


def render(scene: RenderScene, data) -> tuple[jax.Array, jax.Array]:
  """``(rgb_HxWx3 uint8, geom_id_HxW int32)`` of ``data`` seen from the scene's camera; the geom
  id is the model's geom index, -1 where the pixel centre sees the sky. ``data``: see
  :func:`render_state`."""
  state = render_state(scene, data)
  s, ss = scene.size, scene.supersample
  n = s * ss
  cam_rot = state.cam_xmat[scene.camera_id]
  eye = state.cam_xpos[scene.camera_id]
  tan_y = scene.tan_half_fovy_C[scene.camera_id]
  w = _World(
    scene,
    state,
    state.geom_xpos[scene.geom_index_K],
    state.geom_xmat[scene.geom_index_K],
    -cam_rot[:, 2],
  )

  def rays(offsets):  # per pixel (row-major, row 0 at the top), one ray per (dx, dy) offset
    offsets = jnp.asarray(offsets, jnp.float32)
    i = jnp.arange(s, dtype=jnp.float32)
    x = (i[None, :, None] + offsets[None, None, :, 0]) / s
    y = (i[:, None, None] + offsets[None, None, :, 1]) / s
    x, y = jnp.broadcast_arrays(x, y)
    d_cam = jnp.stack([(2 * x - 1) * tan_y, (1 - 2 * y) * tan_y, -jnp.ones_like(x)], -1)
    return d_cam.reshape(-1, 3) @ cam_rot.T  # unnormalised: t is the depth along the view axis

  d = rays([((b + 0.5) / ss, (a + 0.5) / ss) for a in range(ss) for b in range(ss)])
  ddx = cam_rot[:, 0] * (2 * tan_y / n)  # change of d per (sub)pixel
  ddy = -cam_rot[:, 1] * (2 * tan_y / n)
  eyes = jnp.broadcast_to(eye, d.shape)
  t, k, nrm = _intersect(w, eyes, d, scene.znear, scene.zfar)
  hit = k >= 0
  t = jnp.where(hit, t, 0.0)
  p = eye + t[:, None] * d

  def dp(dd):  # change of the hit point per pixel (ray differential on the tangent plane)
    ratio = jnp.sum(nrm * dd, -1) / jnp.where(hit, jnp.sum(nrm * d, -1), 1.0)
    return t[:, None] * (dd[None] - d * ratio[:, None])

  colour = jnp.zeros_like(d)
  if scene.geom_index_K.shape[0]:  # else all sky
    colour = _surface(
      w,
      k,
      p,
      nrm,
      eyes,
      (dp(ddx), dp(ddy)),
      jnp.ones_like(t),
      shadow=scene.shadows,
      gouraud=scene.gouraud,
      tex=scene.num_2d_images > 0,
    )
  if scene.reflections and scene.geom_index_K.shape[0]:
    # the scene mirrored in the reflective plane: the geoms along the reflected ray, lit as seen
    # from the mirrored camera, colour times the reflectance, added below the plane's colour
    refl = scene.reflectance_K[jnp.maximum(k, 0)] * hit
    mirror = refl > 0
    dn = _normalize(d)
    rdir = dn - 2 * jnp.sum(dn * nrm, -1)[:, None] * nrm
    ro = p + _EPS * nrm
    t2, k2, n2 = _intersect(w, ro, rdir, 0.0, _BIG, exclude_P=jnp.where(mirror, k, -1))
    hit2 = mirror & (k2 >= 0)
    t2 = jnp.where(hit2, t2, 0.0)
    mirrored_eye = eye - 2 * jnp.sum((eye - p) * nrm, -1)[:, None] * nrm
    # footprint of a mirrored pixel: the cone of the whole path, tilted by the surface
    spread = 2 * tan_y / n * (t * jnp.linalg.norm(d, axis=-1) + t2)
    tilt = jnp.maximum(jnp.abs(jnp.sum(n2 * rdir, -1)), 1e-3)
    mirrored = _surface(
      w,
      jnp.where(hit2, k2, -1),
      ro + t2[:, None] * rdir,
      n2,
      mirrored_eye,
      spread / tilt,
      refl,
      shadow=False,
      gouraud=False,
      tex=scene.mirror_sees_textures,
    )
    colour = colour + jnp.where(hit2[:, None], jnp.clip(mirrored, 0, 1), 0.0)

  sky = _skybox(scene, d, ddx, ddy) if scene.skybox_image >= 0 else jnp.zeros_like(colour)
  colour = jnp.where(hit[:, None], jnp.clip(colour, 0, 1), sky)
  rgb = colour.reshape(s, s, ss * ss, 3).mean(2)
  rgb = jnp.round(jnp.clip(rgb, 0, 1) * 255).astype(jnp.uint8)
  if ss > 1:  # the geom at the pixel centre, as MuJoCo's segmentation (no multisampling)
    centre = rays([(0.5, 0.5)])
    _, k = _nearest(w, jnp.broadcast_to(eye, centre.shape), centre, scene.znear, scene.zfar)
  index = jnp.concatenate([scene.geom_index_K, jnp.full((1,), -1, jnp.int32)])
  geom_id = index[jnp.where(k >= 0, k, -1)]  # -1: the appended "sky" entry
  return rgb, geom_id.reshape(s, s)
