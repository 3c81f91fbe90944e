"""Typed, frozen dataclass configs <-> command-line flags."""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing


def _parser_type(tp):
  origin = typing.get_origin(tp)
  if origin in (typing.Union, types.UnionType):
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    inner = _parser_type(args[0])
    return lambda s: None if s.lower() == "none" else inner(s)
  if tp is bool:
    return lambda s: s.lower() in ("1", "true", "yes", "y")
  return tp


def parse(cls, argv=None, description: str | None = None):
  """Build ``cls`` (a dataclass) from ``--field value`` flags; defaults come from the class."""
  p = argparse.ArgumentParser(description=description or cls.__doc__,
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  hints = typing.get_type_hints(cls)
  for f in dataclasses.fields(cls):
    p.add_argument(f"--{f.name}", type=_parser_type(hints[f.name]), default=f.default,
                   help=f.metadata.get("help", " "))
  return cls(**vars(p.parse_args(argv)))
