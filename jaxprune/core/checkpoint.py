"""Orbax checkpoints of a train state plus a small JSON of metadata (data position, config).

Typed PRNG keys are stored as their raw key data and re-wrapped on restore. A checkpoint that
cannot be read (truncated files, a different model) raises :class:`CheckpointError` naming the
directory, never a bare orbax/tensorstore traceback.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """A checkpoint exists but cannot be restored."""


def _is_key(x) -> bool:
  return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _unwrap_keys(tree):
  return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _rewrap_keys(tree, like):
  return jax.tree.map(lambda x, ref: jax.random.wrap_key_data(x) if _is_key(ref) else x, tree, like)


class Checkpointer:
  """Periodic saves and restore-latest for a pytree ``state`` and a JSON ``meta`` dict."""

  def __init__(self, directory: str, *, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self._mngr = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
      ),
    )

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  def all_steps(self) -> list[int]:
    """Steps of the checkpoints kept on disk."""
    return list(self._mngr.all_steps())

  def save(self, step: int, state, meta: dict | None = None) -> None:
    self._mngr.save(
      int(step),
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(_unwrap_keys(state)), meta=ocp.args.JsonSave(dict(meta or {}))
      ),
      force=True,
    )
    self._mngr.wait_until_finished()

  def read_meta(self, step: int | None = None) -> dict | None:
    """The JSON metadata of checkpoint ``step`` (the latest by default) without its arrays."""
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    try:
      out = self._mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    except Exception as e:  # noqa: BLE001 - orbax raises many types for damaged files
      raise CheckpointError(
        f"checkpoint at step {step} in {self.directory} has unreadable "
        f"metadata ({type(e).__name__}: {str(e)[:300]})"
      ) from e
    return dict(out.meta or {})

  def restore_latest(self, like_state):
    """``(state, meta)`` of the latest checkpoint, or ``None`` when there is none.

    ``like_state`` is a concrete or abstract (``jax.eval_shape``) state giving structure, shapes,
    dtypes and shardings.
    """
    step = self.latest_step()
    if step is None:
      return None
    target = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
      _unwrap_keys(jax.tree.map(_abstract_key_data, like_state)),
    )
    try:
      out = self._mngr.restore(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
        ),
      )
    except Exception as e:  # orbax / tensorstore raise many types for damaged files
      raise CheckpointError(
        f"checkpoint at step {step} in {self.directory} is corrupt or does not match this "
        f"model ({type(e).__name__}: {str(e)[:300]}); delete that step directory to fall back "
        f"to an earlier checkpoint, or start in a fresh workdir"
      ) from e
    return _rewrap_keys(out.state, like_state), dict(out.meta or {})

  def close(self) -> None:
    self._mngr.close()


def _abstract_key_data(x):
  if _is_key(x):
    return jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(x.shape, x.dtype))
  return x
