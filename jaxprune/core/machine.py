"""What machine a benchmark ran on and what it took: :func:`cpu_model` (benchmarks print it beside
every figure; :func:`describe` is that line with the cores, jax and Python), :func:`peak_rss_gib`
and :func:`own_peak_rss_gib`."""

from __future__ import annotations

import os
import platform
import resource


def cpu_model() -> str:
  """The CPU's "model name" from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def describe() -> str:
  """The line a benchmark prints under its table: CPU model, cores, jax version and platform,
  Python version."""
  import jax

  return (
    f"CPU: {cpu_model()} ({os.cpu_count()} cores), jax {jax.__version__} on "
    f"{jax.devices()[0].platform}, {platform.python_version()}"
  )


def peak_rss_gib(who=resource.RUSAGE_SELF) -> float:
  return resource.getrusage(who).ru_maxrss / 2**20  # Linux: KiB


def own_peak_rss_gib() -> float:
  """This process's own peak RSS (``VmHWM``, which starts afresh at exec), unlike ``ru_maxrss``,
  which Linux carries over from the parent across fork and exec; ``ru_maxrss`` where there is no
  ``/proc``."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 2**20  # kB
  except OSError:
    pass
  return peak_rss_gib()
