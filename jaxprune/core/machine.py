"""What machine a benchmark ran on and what it took: :func:`cpu_model` (benchmarks print it beside
every figure), :func:`peak_rss_gib` and :func:`own_peak_rss_gib`."""

from __future__ import annotations

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
