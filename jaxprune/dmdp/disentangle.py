"""The representation test of the Denoised MDP paper: what do x, y and z hold on noisy DMC?

For each task and variant (:func:`run`, ``scripts/disentangle.py``; the config and its presets are
:mod:`jaxprune.dmdp.disentangle_config`):

1. **Data** (:func:`jaxprune.envs.ground_truth.collect`): episodes of a fixed data policy
   (uniformly random actions; or ``policy_workdir``: a trained agent's mode), with the ground
   truth the models never see: joint positions and velocities, the background frame and the
   intensity of the patch the noisy sensor reads, the noise in the reward, the camera-jitter
   offset. ``train_episodes`` train the world models;
   ``probe_episodes`` (held out) are split by episode 60 / 20 / 20 into the probes' train /
   validation / test sets. The same data for every model and seed.
2. **Models** (:mod:`jaxprune.dmdp.offline`): Denoised MDP 2b (``dmdp``, beta from
   :data:`jaxprune.dmdp.config.BETA`), 2c (``dmdp_2c``) and Dreamer (x only), each with the
   small preset's sizes (``run_config.small``: 32x32 pixels), ``updates`` world-model updates of
   ``batch x seq_len``, ``seeds`` seeds vmapped, all through the shared loop.
3. **Probes** (:mod:`jaxprune.dmdp.probes`): from each factor's posterior features ``[h, mean
   of q(s)]`` (x, y, z separately and ``all`` together), after ``burn_in`` steps of filtering,
   a closed-form ridge probe (regulariser chosen on the validation episodes) and a one-hidden-
   layer MLP probe (early-stopped on them), vmapped over the seeds, to each target. R^2 on the
   test episodes; a multi-column target (joint positions) gets the mean of its columns' R^2.
   Two reference probes with no world model (:func:`reference_probe_table`) give each target's
   ceiling, what is decodable at all: from the true state (model ``state``) and from the images
   themselves (model ``pixels``).
4. **Claims** (:mod:`jaxprune.dmdp.disentangle_claims`): x of Denoised MDP decodes the joints
   (R^2 above 0 and above Dreamer's); y or z decode each noise target above ``noise_floor`` of
   its ceiling and x below ``noise_x_ceiling`` of it; each part decided "holds" / "fails" /
   "undecided" from a bootstrap interval over the world-model seeds, at every budget.
5. **Outputs** in ``workdir``: ``r2.csv`` (one row per task, variant, model, factor, probe,
   target: mean, std and each seed's R^2), ``table.md``, ``claims.md`` / ``claims.json`` /
   ``claims.png`` (the verdicts; ``scripts/disentangle_claims.py`` rewrites them from r2.csv),
   ``r2.png`` (bar chart), ``pictures/`` (factor reconstructions of a test episode by each
   model, seed 0), ``summary.json`` (config, claims, timings). ``data/`` holds the episodes and
   ``models/`` the world models' runs (checkpointed: a rerun resumes, ``updates`` may grow).

Targets (:data:`jaxprune.envs.ground_truth.TARGETS`, :func:`probe_targets`): ``qpos`` is the joint
positions without the root's forward position ``rootx`` (the camera tracks the body, so it is not
in the image), each angle of a hinge without limits as its (sin, cos) (:func:`qpos_columns`: the
angle wraps, the image does not tell it from the angle + 2 pi); ``qvel`` all velocities; the
noise targets of the variant (``targets_for``): ``background_intensity``, the camera's
``jitter_offset``, and with the noisy sensor ``reward_noise`` (reward minus the task's own
reward). The recorded ``sensor_noise`` is not probed: it is ``background_intensity - 0.5``. The
clip's frame index is recorded but not probed (an index into a procedural clip has no linear
meaning).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings

import jax
import numpy as np

from jaxprune.core import io
from jaxprune.core.config import to_dict
from jaxprune.dmdp import disentangle_claims, offline, probes, run_config
from jaxprune.dmdp import pictures as pictures_lib
from jaxprune.dmdp.config import feature_dims, tiny
from jaxprune.dmdp.disentangle_config import DisentangleConfig
from jaxprune.dmdp.salts import DISENTANGLE_DATA_SALT as DATA_SALT
from jaxprune.dmdp.salts import DISENTANGLE_PICTURE_SALT as PICTURE_SALT
from jaxprune.dmdp.salts import DISENTANGLE_PROBE_SALT as PROBE_SALT

PIXELS, STATE = disentangle_claims.PIXELS, disentangle_claims.STATE
STATE_FACTOR = "qpos_qvel"
"""the ``model`` of the ceilings' rows (PIXELS, STATE): probes from the images themselves (factor
``image``) and from the true low-dimensional state (factor ``qpos_qvel``)"""

# ---------------------------------------------------------------------------------------------
# pieces


def world_model_config(cfg: DisentangleConfig, model: str, task: str, variant: str):
  """The small preset's world model for ``model`` on ``task`` (beta from ``BETA``), or its tiny
  version (``model_size="tiny"``: 16x16 pixels, 2 encoder layers, latents <= 16 / 4)."""
  wc = run_config.small(model=model, env=task, variant=variant).world_model
  return wc if cfg.model_size == "small" else tiny(wc, action_dim=wc.action_dim)


def factors_to_probe(cfg: DisentangleConfig, model: str, model_factors: tuple[str, ...]):
  """``cfg.factors`` (or the model's own factors and ``all``), checked against the model."""
  if not cfg.factors:
    return model_factors + ("all",)
  missing = [f for f in cfg.factors if f != "all" and f not in model_factors]
  if missing:
    raise ValueError(
      f"model {model!r} has no factor {', '.join(missing)} (its factors: "
      f"{', '.join(model_factors)}); drop it from --factors or from --models"
    )
  return tuple(cfg.factors)


def split_episodes(n: int) -> tuple[slice, slice, slice]:
  """Train / validation / test slices of ``n`` episodes, 60 / 20 / 20, each non-empty."""
  if n < 3:
    raise ValueError(f"need >= 3 probe episodes for the train / validation / test split, got {n}")
  n_val = n_test = max(1, round(0.2 * n))
  n_train = n - n_val - n_test
  return slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, n)


def probe_targets(episodes: dict, task: str, variant: str) -> dict[str, np.ndarray]:
  """``{target: E x T x K}`` float32: the probed ground truth of ``variant`` (see the module
  docstring). ``qpos`` has the columns of :func:`qpos_columns`: no ``rootx``, and each angle of
  a hinge without limits as its (sin, cos); ``reward_noise`` is ``reward - clean_reward``."""
  from jaxprune.envs import ground_truth

  out = {}
  for name in ground_truth.targets_for(variant):
    if name == "reward_noise":
      v = np.asarray(episodes["reward"], np.float64) - np.asarray(episodes["clean_reward"])
    else:
      v = np.asarray(episodes[name], np.float64)
    if v.ndim == 2:
      v = v[..., None]
    if name == "qpos":
      cols = qpos_columns(task)
      fns = {"angle": lambda a: a, "sin": np.sin, "cos": np.cos}
      v = np.stack([fns[kind](v[..., i]) for i, kind, _ in cols], axis=-1)
    out[name] = v.astype(np.float32)
  return out


def qpos_columns(task: str) -> list[tuple[int, str, str]]:
  """``(qpos index, kind, name)`` per probed joint-position column of ``task``: ``kind`` is
  ``"angle"`` (the raw coordinate: a slide, or a hinge with limits) or ``"sin"`` / ``"cos"`` (a
  hinge without limits, whose raw angle wraps: walker's and cheetah's ``rooty``, reacher's
  ``shoulder``). The root's forward position ``rootx`` is left out: the camera tracks the body,
  so it is not in the image."""
  from dm_control import suite
  from mujoco import mjtJoint

  domain, name = task.split("_", 1)
  env = suite.load(domain, name)
  try:
    m = env.physics.model
    out = []
    for j in range(m.njnt):
      jname, i = m.id2name(j, "joint"), int(m.jnt_qposadr[j])
      kind = int(m.jnt_type[j])
      if kind not in (mjtJoint.mjJNT_HINGE, mjtJoint.mjJNT_SLIDE):
        raise ValueError(f"{task}: joint {jname!r} is neither a hinge nor a slide")
      if jname == "rootx":
        continue
      if kind == mjtJoint.mjJNT_HINGE and not m.jnt_limited[j]:
        out += [(i, "sin", f"{jname}.sin"), (i, "cos", f"{jname}.cos")]
      else:
        out.append((i, "angle", jname))
    return out
  finally:
    env.physics.free()


def _rows(x_SxExTxF, burn_in: int) -> np.ndarray:
  """S x E x T x F -> S x (E (T - burn_in)) x F: frames after the burn-in, flattened."""
  x = x_SxExTxF[:, :, burn_in:]
  return x.reshape(x.shape[0], -1, x.shape[-1])


def _pad(x_SxNxF, width: int) -> np.ndarray:
  """Zero columns up to ``width``: a constant column changes neither probe (standardised to 0,
  it gets no weight), and one feature width means one compilation for every factor and model."""
  return np.pad(x_SxNxF, ((0, 0), (0, 0), (0, width - x_SxNxF.shape[-1])))


def probe_table(
  cfg: DisentangleConfig,
  features: dict[str, np.ndarray],
  targets: dict[str, np.ndarray],
  factors: tuple[str, ...],
  key: jax.Array,
  *,
  width: int | None = None,
) -> list[dict]:
  """R^2 of every (factor, probe, target) over the seeds: rows with ``mean``, ``std``, ``r2``
  (per seed: the mean over the target's columns) and ``columns`` (each column's mean over seeds).

  Every target column gets its own probe (own ridge strength, own MLP), all columns at once
  (vmapped); features are zero-padded to ``width`` (default: the widest factor here)."""
  n_probe = next(iter(targets.values())).shape[0]
  splits = split_episodes(n_probe)
  names = list(targets)
  sizes = [targets[t].shape[-1] for t in names]
  y_all = np.concatenate([targets[t] for t in names], axis=-1)  # E x T x C
  ys = [_rows(y_all[None, s], cfg.burn_in)[0] for s in splits]  # N x C, shared by the seeds
  width = width or max(features[f].shape[-1] for f in factors)
  out = []
  for i, factor in enumerate(factors):
    feats = features[factor]  # S x E x T x F
    xs = [_pad(_rows(feats[:, s], cfg.burn_in), width) for s in splits]
    data = (xs[0], ys[0], xs[1], ys[1], xs[2], ys[2])
    for probe in cfg.probes:
      if probe == "ridge":
        res = probes.ridge_probe_seeds(*data, per_column=True)
      else:
        keys = jax.random.split(jax.random.fold_in(key, i), feats.shape[0])
        res = probes.mlp_probe_seeds(
          *data, keys=keys, hidden=cfg.mlp_hidden, steps=cfg.mlp_steps, per_column=True
        )
      r2_SxC = np.asarray(res["r2"], np.float64)
      start = 0
      for t_name, size in zip(names, sizes):
        r2_SxK = r2_SxC[:, start : start + size]
        start += size
        finite = np.isfinite(r2_SxK).any(axis=0)  # constant columns (R^2 undefined) are left out
        per_seed = r2_SxK[:, finite].mean(axis=1) if finite.any() else r2_SxK[:, 0]
        out.append(
          {
            "factor": factor,
            "probe": probe,
            "target": t_name,
            "mean": float(np.mean(per_seed)),
            "std": float(np.std(per_seed)),
            "r2": [float(v) for v in per_seed],
            "columns": [float(v) for v in r2_SxK.mean(axis=0)],
          }
        )
  return out


# ---------------------------------------------------------------------------------------------
# the run


def _collect(cfg: DisentangleConfig, task: str, variant: str, path: str, image_size: int) -> dict:
  from jaxprune.envs import ground_truth

  need = (cfg.train_episodes + cfg.probe_episodes, cfg.episode_length // cfg.action_repeat + 1)
  if os.path.exists(path):
    eps = ground_truth.load(path)
    have = tuple(eps["image"].shape[:2])
    if have != need:
      raise ValueError(
        f"{path} holds {have[0]} episodes of {have[1]} frames; this run needs {need[0]} "
        f"(train_episodes + probe_episodes) of {need[1]}: use another --workdir"
      )
    return eps
  seed = int(jax.random.randint(_key(cfg, DATA_SALT, task, variant), (), 0, 2**31 - 1))
  policy = None
  if cfg.policy_workdir is not None:
    from jaxprune.dmdp import saved_agent

    agent = saved_agent.load(cfg.policy_workdir)
    a_task, a_size = agent.config.env, agent.config.world_model.image_size
    if (a_task, a_size) != (task, image_size):
      raise ValueError(
        f"the agent in {cfg.policy_workdir} acts on {a_task} at {a_size}x{a_size} pixels; this "
        f"run needs {task} at {image_size}x{image_size}"
      )
    policy = saved_agent.policy(agent, _key(cfg, DATA_SALT, "policy", task, variant))
  eps = ground_truth.collect(
    task,
    variant,
    num_episodes=cfg.train_episodes + cfg.probe_episodes,
    seed=seed,
    image_size=image_size,
    action_repeat=cfg.action_repeat,
    episode_length=cfg.episode_length,
    num_background_frames=cfg.num_background_frames,
    video_dir=cfg.video_dir,
    policy=policy,
    progress=cfg.progress,
  )
  ground_truth.save(path, eps)
  return eps


def _key(cfg: DisentangleConfig, salt: int, *names: str) -> jax.Array:
  key = jax.random.fold_in(jax.random.key(cfg.seed), salt)
  for n in names:
    key = jax.random.fold_in(key, sum(ord(c) * 31**i for i, c in enumerate(n)) % 2**31)
  return key


def _model_config_record(cfg: DisentangleConfig, wm_cfg) -> dict:
  keep = ("seed", "seeds", "batch", "seq_len", "learning_rate", "train_episodes", "episode_length")
  return {"world_model": to_dict(wm_cfg), **{k: getattr(cfg, k) for k in keep}}


def _probe_config_record(cfg: DisentangleConfig, factors: tuple[str, ...]) -> dict:
  keep = ("seed", "train_episodes", "probe_episodes", "burn_in", "probes", "mlp_hidden")
  rec = {k: getattr(cfg, k) for k in keep + ("mlp_steps",)}
  return json.loads(json.dumps({**rec, "factors": factors}))


def run(cfg: DisentangleConfig) -> dict:
  """Run every (task, variant, model); write the outputs (module docstring); return the summary.

  The (task, variant) conditions run in ``jobs`` processes at once (each condition's data,
  models and probes in one process; one XLA program of these sizes keeps about one core busy)."""
  t_start = time.perf_counter()
  wm_cfgs = {
    (t, v, m): world_model_config(cfg, m, t, v)
    for t in cfg.tasks
    for v in cfg.variants
    for m in cfg.models
  }
  width = max(sum(feature_dims(wc).values()) for wc in wm_cfgs.values())
  plan = {}  # check every model's factors before any work
  for (t, v, m), wc in wm_cfgs.items():
    plan[(t, v, m)] = factors_to_probe(cfg, m, offline.factors_of(wc))
  os.makedirs(cfg.workdir, exist_ok=True)
  conds = [(t, v) for t in cfg.tasks for v in cfg.variants]
  args = [(cfg, t, v, plan, width) for t, v in conds]
  jobs = min(cfg.jobs, len(conds))
  if jobs > 1:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: a fresh interpreter per worker (forking a process that holds XLA threads is unsafe)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
      results = list(pool.map(_run_condition, *zip(*args)))
  else:
    results = [_run_condition(*a) for a in args]
  rows, timings = [], {}
  for c_rows, c_timings in results:
    rows += c_rows
    timings.update(c_timings)
  claims = check_claims(cfg, rows)
  write_outputs(cfg, rows, claims, timings, time.perf_counter() - t_start)
  u_end = cfg.updates
  return {"rows": [r for r in rows if r["updates"] == u_end], "trend": rows, "claims": claims}


def check_claims(cfg: DisentangleConfig, rows: list[dict]) -> list[dict]:
  """The paper's claims on every condition and budget, with ``cfg``'s bounds and bootstrap
  (:func:`jaxprune.dmdp.disentangle_claims.check`)."""
  return disentangle_claims.check(rows, **claim_settings(cfg))


def claim_settings(cfg) -> dict:
  """The keyword arguments of :func:`jaxprune.dmdp.disentangle_claims.check` from a config (or
  a config's dict, e.g. a summary.json's ``config``)."""
  get = (lambda k: cfg[k]) if isinstance(cfg, dict) else (lambda k: getattr(cfg, k))
  names = ("noise_floor", "noise_x_ceiling", "min_ceiling", "collapse_r2")
  out = {k: get(k) for k in names}
  out.update(min_seeds=get("claim_min_seeds"), level=get("claim_level"))
  return {**out, "num_resamples": get("claim_resamples")}


def _run_condition(cfg: DisentangleConfig, task: str, variant: str, plan: dict, width: int):
  """Data, models and probes of one (task, variant): ``(rows, timings)``. At the
  ``probe_at`` budgets only the first probe of ``cfg.probes`` runs (ridge by default: the MLP
  probes cost about a minute per model and budget); all of them at ``updates``."""
  rows, timings = [], {}
  u_end = cfg.updates
  cond = f"{task}/{variant}"
  t0 = time.perf_counter()
  wcs = {m: world_model_config(cfg, m, task, variant) for m in cfg.models}
  size = wcs[cfg.models[0]].image_size
  source = "random" if cfg.policy_workdir is None else "agent"
  data_path = os.path.join(cfg.workdir, "data", f"{task}_{variant}_{size}px_{source}.npz")
  eps = _collect(cfg, task, variant, data_path, size)
  timings[f"{cond}/data_s"] = time.perf_counter() - t0
  train_eps = {k: v[: cfg.train_episodes] for k, v in eps.items()}
  probe_eps = {k: v[cfg.train_episodes :] for k, v in eps.items()}
  targets = probe_targets(probe_eps, task, variant)
  t0 = time.perf_counter()
  for name in (STATE, PIXELS):  # the ceilings: the true state and the images themselves
    ids = {"task": task, "variant": variant, "model": name, "updates": u_end}
    table = reference_probe_table(cfg, name, probe_eps, targets, task, variant)
    rows += [{**ids, **r} for r in table]
  timings[f"{cond}/reference_probe_s"] = time.perf_counter() - t0
  for model in cfg.models:
    wc = wcs[model]
    model_dir = os.path.join(cfg.workdir, "models", f"{task}_{variant}", model)
    for updates in sorted(set(cfg.probe_at) | {cfg.updates}):
      ids = {"task": task, "variant": variant, "model": model, "updates": updates}
      done_path = os.path.join(model_dir, "probes", f"{updates:08d}.json")
      here = cfg if updates == u_end else dataclasses.replace(cfg, probes=cfg.probes[:1])
      probe_cfg = _probe_config_record(here, plan[(task, variant, model)])
      if os.path.exists(done_path) and updates != u_end:
        saved = io.read_json(done_path)
        if saved["probe_config"] == probe_cfg:  # probed before a stop, with these settings
          rows += [{**ids, **r} for r in saved["rows"]]
          continue
      t0 = time.perf_counter()
      states, _ = offline.train(
        wc,
        train_eps,
        seed=cfg.seed,
        num_seeds=cfg.seeds,
        updates=updates,
        batch=cfg.batch,
        seq_len=cfg.seq_len,
        learning_rate=cfg.learning_rate,
        workdir=model_dir,
        config=_model_config_record(cfg, wc),
        progress=cfg.progress,
        desc=f"{model} {cond}",
      )
      done = int(np.max(jax.device_get(states.step)))
      if done != updates:  # a finished longer run in the workdir cannot go back
        warnings.warn(
          f"{model} {cond}: the work directory holds {done} updates, more than {updates}; "
          "no probes at that budget (use a new workdir for the whole trend)",
          stacklevel=2,
        )
        continue
      timings[f"{cond}/{model}/{updates}/train_s"] = time.perf_counter() - t0
      t0 = time.perf_counter()
      feats = offline.factor_features(
        wc, states.params, probe_eps, key=_key(cfg, PROBE_SALT, task, variant, model)
      )
      pkey = _key(cfg, PROBE_SALT, model)
      table = probe_table(here, feats, targets, plan[(task, variant, model)], pkey, width=width)
      io.save_json(done_path, {"probe_config": probe_cfg, "rows": table})
      rows += [{**ids, **r} for r in table]
      timings[f"{cond}/{model}/{updates}/probe_s"] = time.perf_counter() - t0
    _save_pictures(cfg, wc, states, probe_eps, task, variant, model)
  return rows, timings


def reference_probe_table(cfg: DisentangleConfig, name: str, probe_eps, targets, task, variant):
  """The ceilings' rows: every probe of ``cfg.probes`` to each target from ``name``'s features,
  as :func:`probe_table` rows. ``"state"`` (factor ``"qpos_qvel"``): the true low-dimensional
  state, the joint positions as the ``qpos`` target holds them (no ``rootx``; an unlimited
  hinge's angle as its (sin, cos), since the angle and the angle + 2 pi look the same) and the
  velocities; ``"pixels"`` (factor
  ``"image"``): the flattened images / 255. No world model is involved, so there is one fit,
  its R^2 repeated for each of ``cfg.seeds`` (std 0)."""
  if name == STATE:
    qpos = probe_targets(probe_eps, task, "noiseless")["qpos"]
    x, factor = np.concatenate([qpos, np.asarray(probe_eps["qvel"], np.float32)], -1), STATE_FACTOR
  elif name == PIXELS:
    images = np.asarray(probe_eps["image"], np.float32) / 255.0
    x, factor = images.reshape(*images.shape[:2], -1), "image"
  else:
    raise ValueError(f"unknown reference {name!r}; choose {STATE!r} or {PIXELS!r}")
  key = _key(cfg, PROBE_SALT, name, task, variant)
  table = probe_table(cfg, {factor: x[None]}, targets, (factor,), key)
  for r in table:
    r["r2"] = list(r["r2"]) * cfg.seeds
  return table


def _save_pictures(cfg, wc, states, probe_eps, task, variant, model) -> None:
  test = split_episodes(probe_eps["image"].shape[0])[2]
  i, a, b = test.start, cfg.burn_in, cfg.burn_in + cfg.picture_steps
  path = os.path.join(cfg.workdir, "pictures", f"{task}_{variant}_{model}.png")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  # the posterior filters from t = 0; the picture shows steps burn_in .. burn_in + picture_steps
  params = offline.select_seed(states.params, 0)
  rows = pictures_lib.factor_reconstructions(
    wc, params, probe_eps["image"][i, :b], probe_eps["action"][i, :b], _key(cfg, PICTURE_SALT)
  )
  rows = {k: np.asarray(v)[a:b] for k, v in rows.items()}
  pictures_lib.save_rows_picture(
    path, rows, title=f"{model}, {task} / {variant}: a test episode", first_step=a
  )


# ---------------------------------------------------------------------------------------------
# claims, table, figure


def markdown_table(rows: list[dict]) -> str:
  """One table per (task, variant, probe): rows model / factor, columns targets, mean +- std."""
  lines = []
  keys = sorted({(r["task"], r["variant"], r["probe"]) for r in rows}, key=str)
  for task, variant, probe in keys:
    sel = [r for r in rows if (r["task"], r["variant"], r["probe"]) == (task, variant, probe)]
    targets = list(dict.fromkeys(r["target"] for r in sel))
    lines += [
      f"\n**{task} / {variant}, {probe} probe** (test R^2, mean +- std over seeds)\n",
      "| model | factor | " + " | ".join(targets) + " |",
      "|---|---|" + "---|" * len(targets),
    ]
    for model, factor in dict.fromkeys((r["model"], r["factor"]) for r in sel):
      cells = []
      for t in targets:
        r = next(
          (r for r in sel if (r["model"], r["factor"], r["target"]) == (model, factor, t)), None
        )
        cells.append(f"{r['mean']:.3f} +- {r['std']:.3f}" if r else "-")
      lines.append(f"| {model} | {factor} | " + " | ".join(cells) + " |")
  return "\n".join(lines).strip() + "\n"


def plot_r2(path: str, rows: list[dict], probe: str = "ridge") -> None:
  """Bar chart: one panel per (task, variant), groups = targets, bars = model / factor."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  conds = list(dict.fromkeys((r["task"], r["variant"]) for r in rows if r["probe"] == probe))
  fig, axes = plt.subplots(
    1, len(conds), figsize=(5.5 * len(conds), 3.8), squeeze=False, sharey=True
  )
  for ax, (task, variant) in zip(axes[0], conds):
    sel = [r for r in rows if (r["task"], r["variant"], r["probe"]) == (task, variant, probe)]
    targets = list(dict.fromkeys(r["target"] for r in sel))
    bars = list(dict.fromkeys((r["model"], r["factor"]) for r in sel))
    width = 0.8 / len(bars)
    cmap = plt.get_cmap("tab20")
    for j, (model, factor) in enumerate(bars):
      vals, errs = [], []
      for t in targets:
        r = next(
          (r for r in sel if (r["model"], r["factor"], r["target"]) == (model, factor, t)), None
        )
        vals.append(r["mean"] if r else np.nan)
        errs.append(r["std"] if r else 0.0)
      xs = np.arange(len(targets)) + (j - (len(bars) - 1) / 2) * width
      ax.bar(xs, vals, width, yerr=errs, label=f"{model}: {factor}", color=cmap(j % 20))
    ax.set_xticks(np.arange(len(targets)))
    ax.set_xticklabels(targets, fontsize=8)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylim(-0.2, 1.0)
    ax.set_title(f"{task} / {variant}", fontsize=9)
  axes[0][0].set_ylabel(f"test R^2 ({probe} probe)")
  axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
  fig.tight_layout()
  io.save_figure(path, fig)
  plt.close(fig)


def plot_trend(path: str, rows: list[dict], probe: str = "ridge") -> None:
  """R^2 against world-model updates: one panel per (target, condition), a line per model /
  factor (mean +- std over seeds)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  sel = [r for r in rows if r["probe"] == probe]
  conds = list(dict.fromkeys((r["task"], r["variant"]) for r in sel))
  targets = list(dict.fromkeys(r["target"] for r in sel))
  fig, axes = plt.subplots(
    len(targets), len(conds), figsize=(4.2 * len(conds), 2.8 * len(targets)), squeeze=False
  )
  lines = list(dict.fromkeys((r["model"], r["factor"]) for r in sel))
  cmap = plt.get_cmap("tab20")
  for i, t in enumerate(targets):
    for j, (task, variant) in enumerate(conds):
      ax = axes[i][j]
      for c, (model, factor) in enumerate(lines):
        pts = sorted(
          (r["updates"], r["mean"], r["std"])
          for r in sel
          if (r["task"], r["variant"], r["target"], r["model"], r["factor"])
          == (task, variant, t, model, factor)
        )
        if pts:
          u, m, sd = map(np.asarray, zip(*pts))
          label = f"{model}: {factor}"
          ax.errorbar(u, m, yerr=sd, marker="o", ms=3, color=cmap(c % 20), label=label)
      ax.set_xscale("log")
      ax.set_ylim(-0.2, 1.0)
      ax.axhline(0, color="k", lw=0.5)
      ax.set_title(f"{t} | {task} / {variant}", fontsize=8)
      if i == len(targets) - 1:
        ax.set_xlabel("world-model updates")
      if j == 0:
        ax.set_ylabel(f"test R^2 ({probe})")
  axes[0][-1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
  fig.tight_layout()
  io.save_figure(path, fig)
  plt.close(fig)


_VERDICT_COLOURS = {"holds": "tab:green", "fails": "tab:red", "undecided": "0.55"}


def plot_claims(path: str, claims: list[dict], updates: int) -> None:
  """Forest plot of every claim part at ``updates``: one panel per condition, a row per part
  (probe, model, claim part, target): the mean over seeds with its interval, the bound as a
  black tick, coloured by the part's verdict (green holds, red fails, grey undecided)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  sel = [c for c in claims if c["updates"] == updates]
  conds = list(dict.fromkeys((c["task"], c["variant"]) for c in sel))
  n_rows = [sum(len(c["parts"]) for c in sel if (c["task"], c["variant"]) == k) for k in conds]
  fig, axes = plt.subplots(
    1, max(1, len(conds)), figsize=(5.2 * max(1, len(conds)), 0.8 + 0.22 * max(n_rows or [1])),
    squeeze=False,
  )  # fmt: skip
  for ax, (task, variant) in zip(axes[0], conds):
    labels, y = [], 0
    for c in (c for c in sel if (c["task"], c["variant"]) == (task, variant)):
      for name, p in c["parts"].items():
        colour = _VERDICT_COLOURS[p["verdict"]]
        lo, hi = max(p["lo"], -1.5), min(p["hi"], 1.05)
        ax.plot([lo, hi], [y, y], color=colour, lw=2)
        ax.plot([min(max(p["estimate"], -1.5), 1.05)], [y], "o", color=colour, ms=3)
        ax.plot([p["bound"]], [y], "|", color="k", ms=8)
        labels.append(f"{c['probe']} {c['model']} {name} {c['target']}")
        y += 1
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=6)
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlim(-1.55, 1.1)
    ax.set_xlabel("test R^2 (parts vs_dreamer: difference); | bound; clipped to [-1.5, 1.05]")
    ax.set_title(f"{task} / {variant}, {updates} updates", fontsize=9)
  fig.tight_layout()
  io.save_figure(path, fig)
  plt.close(fig)


def write_claims(workdir: str, claims: list[dict], updates: int) -> None:
  """claims.md (the verdicts at ``updates``: a compact matrix, then every part with its
  interval; the tally at every budget), claims.json (every check) and claims.png
  (:func:`plot_claims`) in ``workdir``, atomically."""
  dc = disentangle_claims
  text = [
    "# The paper's claims, decided per condition\n",
    f"Verdicts at {updates} updates (seeds clearing each part's bound):\n",
    dc.verdict_matrix(claims, updates=updates),
    "## Every part, with its interval",
    dc.markdown(claims, updates=updates),
    "## Tally at every budget (the earlier budgets: ridge probe only)\n",
    "| updates | claim | holds | fails | undecided |",
    "|---|---|---|---|---|",
  ]
  for u in sorted({c["updates"] for c in claims}):
    for name, d in dc.tally(claims, updates=u).items():
      text.append(f"| {u} | {name} | {d['holds']} | {d['fails']} | {d['undecided']} |")
  io.save_text(os.path.join(workdir, "claims.md"), "\n".join(text) + "\n")
  io.save_json(os.path.join(workdir, "claims.json"), {"checks": claims})
  plot_claims(os.path.join(workdir, "claims.png"), claims, updates)


def write_outputs(cfg, rows, claims, timings, total_s) -> None:
  """r2.csv (every budget), table.md, r2.png / r2_mlp.png (at ``updates``), r2_trend.png (over
  the budgets), summary.json in ``cfg.workdir`` (atomically)."""
  w = cfg.workdir
  final = [r for r in rows if r["updates"] == cfg.updates]
  keys = ("task", "variant", "model", "updates", "factor", "probe", "target")
  cols = {k: [r[k] for r in rows] for k in keys}
  cols["r2_mean"] = [r["mean"] for r in rows]
  cols["r2_std"] = [r["std"] for r in rows]
  for s in range(cfg.seeds):
    cols[f"r2_seed{s}"] = [r["r2"][s] for r in rows]
  io.save_csv(os.path.join(w, "r2.csv"), cols)
  io.save_text(os.path.join(w, "table.md"), markdown_table(final))
  write_claims(w, claims, cfg.updates)
  for probe in cfg.probes:
    suffix = "" if probe == "ridge" else f"_{probe}"
    plot_r2(os.path.join(w, f"r2{suffix}.png"), final, probe)
  if len({r["updates"] for r in rows}) > 1:
    plot_trend(os.path.join(w, "r2_trend.png"), rows, cfg.probes[0])
  io.save_json(
    os.path.join(w, "summary.json"),
    {
      "config": to_dict(cfg),
      "claims": claims,
      "timings_s": {**timings, "total": total_s},
      "rows": final,
      "trend": rows,
    },
  )
