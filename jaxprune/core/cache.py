"""The one compilation cache: builders of jitted functions, memoised on hashable arguments.

Every jitted function that is reused across runs in one process (a pruning curve trains 50
subsets of a few sizes; a sweep of agents shares one update) is made by a builder decorated with
:func:`memoize`. Its arguments are values: frozen config dataclasses, ints, shape tuples, meshes,
or steps that a memoised builder returned (so their identity is a value too). The same
arguments give the very same function objects, hence jax's own trace cache applies and the
compilation is shared.
"""

from __future__ import annotations

import collections
import functools
import threading
from typing import Callable

_MAXSIZE = 256
_CACHE: collections.OrderedDict = collections.OrderedDict()
_LOCK = threading.Lock()


def memoize(builder: Callable) -> Callable:
  """``builder(*args, **kw)`` computed once per distinct (hashable) arguments, LRU-evicted."""

  @functools.wraps(builder)
  def cached(*args, **kw):
    key = (builder.__module__, builder.__qualname__, args, tuple(sorted(kw.items())))
    try:
      hash(key)
    except TypeError as e:
      raise TypeError(
        f"{builder.__qualname__} is memoised: its arguments must be hashable "
        f"(frozen configs, ints, tuples), got {args} {kw}"
      ) from e
    with _LOCK:
      if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = builder(*args, **kw)
    with _LOCK:
      _CACHE[key] = value
      while len(_CACHE) > _MAXSIZE:
        _CACHE.popitem(last=False)
    return value

  return cached


def clear() -> None:
  """Forget every memoised builder result (tests; freeing compiled executables)."""
  with _LOCK:
    _CACHE.clear()
