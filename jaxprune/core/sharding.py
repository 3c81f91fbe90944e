"""Device meshes. Points / batches are sharded along one data axis; everything else replicated."""

from __future__ import annotations

import jax
from jax.sharding import AxisType, Mesh

DATA_AXIS = "data"


def data_mesh(num_devices: int | None = None, axis_name: str = DATA_AXIS) -> Mesh:
  """A 1-D mesh over the first ``num_devices`` devices (all by default), with ``Auto`` axis
  types so that jit's sharding propagation and ``shard_map`` both apply."""
  devices = jax.devices()
  n = len(devices) if num_devices is None else num_devices
  if not 1 <= n <= len(devices):
    raise ValueError(f"num_devices must be in [1, {len(devices)}], got {num_devices}")
  return jax.make_mesh((n,), (axis_name,), axis_types=(AxisType.Auto,), devices=devices[:n])


def initialize_distributed(enabled: bool) -> None:
  """Multi-host runs: ``jax.distributed.initialize()`` (coordinator from the environment, e.g.
  on Cloud TPU or SLURM) before any other JAX call. A no-op when ``enabled`` is False."""
  if enabled:
    jax.distributed.initialize()
