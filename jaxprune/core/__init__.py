"""Shared infrastructure that knows no model: the training loop and its driver, checkpoints,
atomic output files, device meshes."""

from jaxprune.core.checkpoint import Checkpointer, CheckpointError
from jaxprune.core.loop import (
  DeviceData,
  TrainState,
  create_state,
  make_data_step,
  make_update,
  run_steps,
  to_device,
)
from jaxprune.core.run import (
  ConfigMismatchError,
  Dispatcher,
  NonFiniteError,
  Run,
  WorkdirError,
  WorkdirInUseError,
  fit,
)
from jaxprune.core.sharding import DATA_AXIS, data_mesh, initialize_distributed

__all__ = [
  "DATA_AXIS",
  "CheckpointError",
  "ConfigMismatchError",
  "Run",
  "WorkdirError",
  "WorkdirInUseError",
  "Checkpointer",
  "DeviceData",
  "Dispatcher",
  "NonFiniteError",
  "TrainState",
  "create_state",
  "data_mesh",
  "fit",
  "initialize_distributed",
  "make_data_step",
  "make_update",
  "run_steps",
  "to_device",
]
