"""jaxprune.envs.jax_render against MuJoCo's own OpenGL renderer (dm_control ``physics.render``).

The three DMC tasks in the release scene, four states each (two seeds, reset and after 40
random-action steps), rendered at 64 x 64 from camera 0 by both: the agent's silhouette (every
geom but floor and walls; reacher's target included) and the per-pixel geom ids must agree, and
the colours be close (mean absolute difference per frame, of 255). Measured when written: IoU
>= 0.993, ids agree >= 0.9990, MAD <= 1.56 (asserted: 0.95, 0.99, 3.0). The colour bound is
checked to fail (MAD > 4) for a wrong floor colour (the upstream scene: MAD >= 5.1) and a wrong
camera (>= 20). One vmapped function per task is compiled and shared by the tests
(module-scoped fixtures); rendering compiles take most of the time.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import functools  # noqa: E402
import types  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from dm_control import mujoco as dm_mujoco  # noqa: E402
from dm_control import suite  # noqa: E402

from jaxprune.envs import jax_render as jr  # noqa: E402
from jaxprune.envs import scene as scene_lib  # noqa: E402

TASKS = ("cheetah_run", "walker_walk", "reacher_easy")
SIZE = 64
SEEDS, STEPS = (0, 1), (0, 40)
MIN_IOU, MIN_ID_AGREEMENT, MAX_MAD = 0.95, 0.99, 3.0

_render_batch = jax.jit(jax.vmap(jr.render, in_axes=(None, 0)))
_render_one = jax.jit(jr.render)


def _state(data) -> jr.RenderState:
  """A copy of the arrays of a MuJoCo ``MjData`` that ``render`` reads, matrices 3 x 3."""
  arrays = {f: np.array(getattr(data, f), np.float32) for f in jr.RenderState._fields}
  for f in ("geom_xmat", "cam_xmat"):
    arrays[f] = arrays[f].reshape(-1, 3, 3)
  return jr.RenderState(**arrays)


def _stack(states) -> jr.RenderState:
  return jax.tree.map(lambda *xs: jnp.stack(xs), *states)


def _mujoco_render(physics, size: int, camera_id: int = 0):
  """MuJoCo's RGB image and geom ids (-1: no geom) of the physics' current state."""
  rgb = physics.render(size, size, camera_id=camera_id).copy()
  seg = physics.render(size, size, camera_id=camera_id, segmentation=True)
  geom = seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM)
  return rgb, np.where(geom, seg[..., 0], -1).astype(np.int32)


@functools.lru_cache(maxsize=None)
def _snapshots(task: str, scene: str = "release"):
  """The model and, per state, (MuJoCo's rgb and geom ids at SIZE, our RenderState, qpos)."""
  domain, name = task.split("_", 1)
  out = []
  for seed in SEEDS:
    env = suite.load(domain, name, task_kwargs={"random": seed})
    scene_lib.apply_scene(env.physics, domain, scene=scene)
    env.reset()
    rng = np.random.default_rng(seed)
    spec = env.action_spec()
    done = 0
    for steps in STEPS:
      for _ in range(steps - done):
        env.step(rng.uniform(spec.minimum, spec.maximum))
      done = steps
      rgb, ids = _mujoco_render(env.physics, SIZE)
      out.append((rgb, ids, _state(env.physics.data.ptr), env.physics.data.qpos.copy()))
  return env.physics.model.ptr, out


def _agent_mask(model, ids):
  """Pixels of the agent: geoms other than the floor and the walls (sky is -1)."""
  names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, i) for i in range(model.ngeom)]
  agent = np.array([n not in ("ground", "floor") and not n.startswith("wall") for n in names])
  return (ids >= 0) & agent[np.maximum(ids, 0)]


@pytest.fixture(scope="module", params=TASKS)
def rendered(request):
  """Per task: the model, MuJoCo's renders, our renders of the same states (one vmapped call)."""
  model, snaps = _snapshots(request.param)
  scene = jr.make_scene(model, size=SIZE)
  rgb, ids = _render_batch(scene, _stack([s for _, _, s, _ in snaps]))
  return request.param, model, scene, snaps, np.asarray(rgb), np.asarray(ids)


def test_silhouettes_and_geom_ids_match_mujoco(rendered):
  task, model, _, snaps, rgb, ids = rendered
  assert rgb.shape == (len(snaps), SIZE, SIZE, 3) and rgb.dtype == np.uint8
  assert ids.shape == (len(snaps), SIZE, SIZE) and ids.dtype == np.int32
  ious, agreements = [], []
  for (_, ref_ids, _, _), ours in zip(snaps, ids):
    a, b = _agent_mask(model, ours), _agent_mask(model, ref_ids)
    assert b.sum() > 20, "the agent should be in view"
    ious.append((a & b).sum() / (a | b).sum())
    agreements.append((ours == ref_ids).mean())
  print(f"{task}: IoU min {min(ious):.3f} mean {np.mean(ious):.3f}; ids {min(agreements):.4f}")
  assert min(ious) >= MIN_IOU, ious
  assert min(agreements) >= MIN_ID_AGREEMENT, agreements
  # the sky is seen, and every drawn geom kind: floor and agent
  assert (ids == -1).any() or task == "reacher_easy"
  assert set(np.unique(ids)) >= {0, 1}


def test_colours_match_mujoco(rendered):
  task, _, _, snaps, rgb, _ = rendered
  mads = [np.abs(ours.astype(int) - ref).mean() for (ref, _, _, _), ours in zip(snaps, rgb)]
  print(f"{task}: MAD max {max(mads):.2f} mean {np.mean(mads):.2f}")
  assert max(mads) <= MAX_MAD, mads


def test_colour_bound_fails_for_wrong_floor_and_camera(rendered):
  """The bound of ``test_colours_match_mujoco`` is not loose: the upstream scene (other floor,
  sky marks and, for reacher, walls) or the other camera is far from the release renders."""
  task, _, scene, snaps, _, _ = rendered
  upstream_model, _ = _snapshots(task, "upstream")
  states = _stack([s for _, _, s, _ in snaps])
  upstream = np.asarray(_render_batch(jr.make_scene(upstream_model, size=SIZE), states)[0])
  other_camera = np.asarray(_render_batch(scene.replace(camera_id=jnp.int32(1)), states)[0])
  for wrong in (upstream, other_camera):
    mads = [np.abs(w.astype(int) - ref).mean() for (ref, _, _, _), w in zip(snaps, wrong)]
    assert min(mads) > MAX_MAD + 1, mads


def test_vmap_equals_one_by_one(rendered):
  task, _, scene, snaps, rgb, ids = rendered
  if task != "walker_walk":
    pytest.skip("one task is enough (a compilation each)")
  for (_, _, state, _), batch_rgb, batch_ids in zip(snaps, rgb, ids):
    one_rgb, one_ids = map(np.asarray, _render_one(scene, state))
    np.testing.assert_array_equal(one_ids, batch_ids)
    assert np.abs(one_rgb.astype(int) - batch_rgb).max() <= 1  # float rounding only
    assert (one_rgb == batch_rgb).mean() > 0.999


_SKY_XML = """
<mujoco>
  <asset>
    <texture name="sky" type="skybox" builtin="gradient" rgb1=".4 .6 .8" rgb2="0 0 0"
             width="64" height="64" mark="random" markrgb="1 1 1" random="0.03"/>
  </asset>
  <worldbody>
    <camera name="up" xyaxes="1 0 0 0 -1 0"/>
    <camera name="down" xyaxes="1 0 0 0 1 0"/>
    <camera name="north" xyaxes="1 0 0 0 0 1"/>
    <camera name="west" xyaxes="0 1 0 0 0 1" fovy="60"/>
    <camera name="tilted" xyaxes="1 1 0 -.5 .5 1"/>
  </worldbody>
</mujoco>
"""


def test_sky_matches_mujoco_straight_up_down_and_around():
  """A model of nothing but a gradient skybox with random marks: straight up is the gradient's
  top colour (rgb1), straight down its bottom (rgb2, black), and every view (which faces, which
  way up) matches MuJoCo's."""
  physics = dm_mujoco.Physics.from_xml_string(_SKY_XML)
  model, size = physics.model.ptr, 32
  data = mujoco.MjData(model)
  mujoco.mj_forward(model, data)
  scene = jr.make_scene(model, size=size)
  assert scene.geom_index_K.shape == (0,)
  for cam in range(model.ncam):
    ref, ref_ids = _mujoco_render(physics, size, cam)
    rgb, ids = map(np.asarray, _render_one(scene.replace(camera_id=jnp.int32(cam)), _state(data)))
    assert (ids == -1).all() and (ref_ids == -1).all()
    mad = np.abs(rgb.astype(int) - ref).mean()
    assert mad < 2.0, (cam, mad)
    if cam in (0, 1):
      centre = rgb[size // 2 - 1 : size // 2 + 1, size // 2 - 1 : size // 2 + 1].reshape(-1, 3)
      expected = np.array([0.4, 0.6, 0.8]) * 255 if cam == 0 else np.zeros(3)
      assert np.abs(np.median(centre, 0) - expected).max() <= 3, (cam, centre)


_SHAPES_XML = """
<mujoco><worldbody><camera/>
  <geom type="plane" size="2 1.5 .1" pos="0 0 -1" euler="5 -3 10"/>
  <geom type="sphere" size=".3" pos="-1 .8 0"/>
  <geom type="capsule" size=".2 .4" pos=".9 .8 .1" euler="30 40 0"/>
  <geom type="ellipsoid" size=".4 .2 .3" pos="-.9 -.8 0" euler="10 20 30"/>
  <geom type="cylinder" size=".25 .35" pos=".9 -.8 0" euler="-20 50 10"/>
  <geom type="box" size=".3 .2 .25" pos="0 0 .2" euler="15 25 35"/>
</worldbody></mujoco>
"""


def test_ray_hits_match_mj_ray():
  """Every shape, tilted: the nearest geom, distance and normal along random rays (from above
  the plane) equal MuJoCo's ``mj_ray``."""
  model = mujoco.MjModel.from_xml_string(_SHAPES_XML)
  data = mujoco.MjData(model)
  mujoco.mj_forward(model, data)
  rng = np.random.default_rng(0)
  n = 2000
  origin = rng.normal(size=(n, 3))
  origin = 3 * origin / np.linalg.norm(origin, axis=1, keepdims=True)
  origin[:, 2] = np.abs(origin[:, 2])
  direction = rng.uniform(-1.3, 1.3, size=(n, 3)) * [1, 1, 0.6] - origin
  direction /= np.linalg.norm(direction, axis=1, keepdims=True)
  scene = jr.make_scene(model, size=8)
  state = jr.render_state(scene, data)
  t, ids, normal = map(np.asarray, jax.jit(jr.cast_rays)(scene, state, origin, direction))
  ref_t, ref_ids, ref_normal = np.zeros(n), np.zeros(n, np.int32), np.zeros((n, 3))
  for i in range(n):
    geom = np.zeros(1, np.int32)
    ref_t[i] = mujoco.mj_ray(model, data, origin[i], direction[i], None, 1, -1, geom, ref_normal[i])
    ref_ids[i] = geom[0]
  np.testing.assert_array_equal(ids, ref_ids)
  hit = ref_ids >= 0
  assert set(ref_ids[hit]) == set(range(model.ngeom)) and 0.3 < hit.mean() < 0.9
  assert np.isinf(t[~hit]).all()
  np.testing.assert_allclose(t[hit], ref_t[hit], atol=1e-4)
  np.testing.assert_allclose(normal[hit], ref_normal[hit], atol=1e-3)


def test_sizes_32_and_96():
  """Other image sizes: shapes, and the geometry against MuJoCo at that size (lighting features
  off, to compile faster; colours are covered at 64)."""
  model, _ = _snapshots("cheetah_run")
  domain_env = suite.load("cheetah", "run", task_kwargs={"random": 0})
  scene_lib.apply_scene(domain_env.physics, "cheetah", scene="release")
  domain_env.reset()
  state = _state(domain_env.physics.data.ptr)
  for size in (32, 96):
    scene = jr.make_scene(model, size=size, shadows=False, reflections=False, gouraud=False)
    rgb, ids = map(np.asarray, jax.jit(jr.render)(scene, state))
    assert rgb.shape == (size, size, 3) and ids.shape == (size, size)
    _, ref_ids = _mujoco_render(domain_env.physics, size)
    a, b = _agent_mask(model, ids), _agent_mask(model, ref_ids)
    assert (a & b).sum() / (a | b).sum() >= 0.9
    assert (ids == ref_ids).mean() >= 0.98


@pytest.mark.parametrize("task", TASKS)
def test_light_poses_from_bodies_match_mujoco(task):
  """mjx.Data has no light_xpos/light_xdir: they are computed from the bodies as mj_camlight
  does (the cheetah's and walker's lights track the torso's subtree com)."""
  model, _ = _snapshots(task)
  data = mujoco.MjData(model)
  rng = np.random.default_rng(0)
  data.qpos[:] = rng.normal(size=model.nq) * 0.3
  mujoco.mj_forward(model, data)
  fields = ("geom_xpos", "geom_xmat", "cam_xpos", "cam_xmat", "xpos", "xmat", "subtree_com")
  no_lights = types.SimpleNamespace(**{f: getattr(data, f) for f in fields})
  scene = jr.make_scene(model, size=SIZE)
  state = jr.render_state(scene, no_lights)
  np.testing.assert_allclose(state.light_xpos, data.light_xpos, atol=1e-5)
  np.testing.assert_allclose(state.light_xdir, data.light_xdir, atol=1e-5)


def test_mjx_data_renders_like_mjdata(rendered):
  """The same states as mjx.Data (kinematics, com, camlight; vmapped): ``render_state`` of them
  renders as MuJoCo's MjData does (float32 kinematics: colours within 2)."""
  task, model, scene, snaps, rgb, ids = rendered
  if task != "walker_walk":
    pytest.skip("one task is enough (a compilation each)")
  from mujoco import mjx

  mx = mjx.put_model(model)

  def mjx_state(q):
    d = mjx.make_data(mx).replace(qpos=q)
    return jr.render_state(scene, mjx.camlight(mx, mjx.com_pos(mx, mjx.kinematics(mx, d))))

  qpos = jnp.asarray(np.stack([q for _, _, _, q in snaps]), jnp.float32)
  states = jax.jit(jax.vmap(mjx_state))(qpos)
  mjx_rgb, mjx_ids = map(np.asarray, _render_batch(scene, states))
  np.testing.assert_array_equal(mjx_ids, ids)
  assert np.abs(mjx_rgb.astype(int) - rgb).max() <= 2


@pytest.mark.slow
def test_supersampling_stays_close():
  """``supersample=2``: 4 rays per pixel, colours still within the bound, ids of the centres."""
  model, snaps = _snapshots("cheetah_run")
  scene = jr.make_scene(model, size=SIZE, supersample=2)
  rgb, ids = _render_batch(scene, _stack([s for _, _, s, _ in snaps]))
  for (ref, ref_ids, _, _), ours, our_ids in zip(snaps, np.asarray(rgb), np.asarray(ids)):
    assert np.abs(ours.astype(int) - ref).mean() <= MAX_MAD
    assert (our_ids == ref_ids).mean() >= MIN_ID_AGREEMENT


def test_make_scene_rejects_what_it_cannot_draw():
  box = mujoco.MjModel.from_xml_string(
    '<mujoco><worldbody><camera/><geom type="box" size="1 1 1"/></worldbody></mujoco>'
  )
  jr.make_scene(box, size=8)  # boxes are drawn
  mesh = mujoco.MjModel.from_xml_string(
    """<mujoco><asset><mesh name="m" vertex="0 0 0 1 0 0 0 1 0 0 0 1"/></asset>
    <worldbody><camera/><geom type="mesh" mesh="m"/></worldbody></mujoco>"""
  )
  with pytest.raises(ValueError, match="type 7"):
    jr.make_scene(mesh)
  hidden = mujoco.MjModel.from_xml_string(  # group 3 is not drawn: no error
    """<mujoco><asset><mesh name="m" vertex="0 0 0 1 0 0 0 1 0 0 0 1"/></asset>
    <worldbody><camera/><geom type="mesh" mesh="m" group="3"/></worldbody></mujoco>"""
  )
  assert jr.make_scene(hidden, size=8).geom_index_K.shape == (0,)
  with pytest.raises(ValueError, match="camera_id"):
    jr.make_scene(box, camera_id=1)
  with pytest.raises(ValueError, match="size"):
    jr.make_scene(box, size=0)
  with pytest.raises(ValueError, match="no camera"):
    jr.make_scene(mujoco.MjModel.from_xml_string("<mujoco/>"))
  ortho = mujoco.MjModel.from_xml_string(
    '<mujoco><worldbody><camera projection="orthographic"/></worldbody></mujoco>'
  )
  with pytest.raises(ValueError, match="orthographic"):
    jr.make_scene(ortho)
