"""The one config system: typed, frozen (nested) dataclasses, parsed from the command line by tyro.

Conventions (every job config follows them):

* help text is the field's docstring (a string literal on the line after the field);
* choices are ``Literal[...]`` (a wrong value lists the choices), lists are tuples
  (``--fractions 0.1 0.3 0.5``), booleans take ``true`` / ``false`` and nothing else;
* nested configs are fields (``PruneConfig.classifier: ClassifierConfig``), reachable as
  ``--classifier.model resnet18``;
* presets are named overlays, pure functions ``cfg -> cfg`` (``dataclasses.replace`` on the
  nested frozen dataclasses; :func:`replace` takes dotted names), chosen with
  ``--preset NAME [NAME ...]`` (or ``--configs``): they apply to the base config in the order
  given, like dreamerv3's ``--configs dmc_vision size12m``, then every other flag applies on
  top. Values that follow from other fields are computed by functions of the config, never
  by rewriting the command line;
* ``__post_init__`` calls :func:`check_finite` and validates values, so a bad config fails before
  any work (and before anything is written).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import typing
from typing import Callable, Mapping, Sequence, TypeVar

import tyro
from tyro.constructors import ConstructorRegistry, PrimitiveConstructorSpec, PrimitiveTypeInfo

T = TypeVar("T")

_REGISTRY = ConstructorRegistry()


@_REGISTRY.primitive_rule
def _strict_bool(info: PrimitiveTypeInfo):
  """``--flag true`` / ``--flag false`` (any case); a typo is an error naming the flag."""
  if info.type is not bool:
    return None
  return PrimitiveConstructorSpec(
    nargs=1,
    metavar="{true,false}",
    instance_from_str=lambda a: a[0].lower() == "true",
    is_instance=lambda x: isinstance(x, bool),
    str_from_instance=lambda x: [str(x).lower()],
    choices=("true", "false", "True", "False", "TRUE", "FALSE"),
  )


def check_finite(cfg) -> None:
  """Raise ``ValueError`` naming the first float field (nested too) that is NaN or infinite."""
  for f in dataclasses.fields(cfg):
    v = getattr(cfg, f.name)
    values = v if isinstance(v, tuple) else (v,)
    for x in values:
      if isinstance(x, float) and not math.isfinite(x):
        raise ValueError(f"{type(cfg).__name__}.{f.name} must be a finite number, got {v}")


def require(ok: bool, message: str) -> None:
  """``ValueError(message)`` unless ``ok``: one-line checks in ``__post_init__``."""
  if not ok:
    raise ValueError(message)


def to_dict(cfg) -> dict:
  """A config as a JSON-ready dict (nested dataclasses become dicts, tuples lists)."""
  return _plain(dataclasses.asdict(cfg))


def from_dict(cls: type[T], d: Mapping) -> T:
  """The inverse of :func:`to_dict`: ``cls`` (a config dataclass, nested ones too) from a plain
  dict such as a stored ``config.json``; lists become tuples. Unknown keys are an error naming
  them; missing keys take the field's default."""
  hints = typing.get_type_hints(cls)
  names = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(d) - names)
  if unknown:
    raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
  kw = {}
  for name, v in d.items():
    t = hints[name]
    if dataclasses.is_dataclass(t) and isinstance(v, Mapping):
      v = from_dict(t, v)
    elif isinstance(v, list):
      v = tuple(v)
    kw[name] = v
  return cls(**kw)


def _plain(x):
  if isinstance(x, dict):
    return {k: _plain(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_plain(v) for v in x]
  return x


def field_defaults(cfg) -> dict:
  """The declared defaults of a config dataclass's fields, flattened (dotted names, nested
  dataclasses' own declared defaults); fields without a default are left out."""
  out = {}
  for f in dataclasses.fields(cfg):
    value = getattr(cfg, f.name)
    if dataclasses.is_dataclass(value):
      out.update({f"{f.name}.{k}": v for k, v in field_defaults(value).items()})
    elif f.default is not dataclasses.MISSING:
      out[f.name] = f.default
    elif f.default_factory is not dataclasses.MISSING:
      out[f.name] = f.default_factory()
  return out


def flatten(d: Mapping, prefix: str = "") -> dict:
  """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (the flag names of nested fields)."""
  out = {}
  for k, v in d.items():
    name = f"{prefix}{k}"
    if isinstance(v, Mapping):
      out.update(flatten(v, name + "."))
    else:
      out[name] = v
  return out


def replace(cfg: T, **changes) -> T:
  """``cfg`` with ``changes``, nested fields by dotted name given as a mapping:
  ``replace(cfg, batch=16, **{"world_model.beta_y": 0.5})``. Each level is a
  ``dataclasses.replace``, so every nested config is validated again."""
  own = {k: v for k, v in changes.items() if "." not in k}
  nested: dict[str, dict] = {}
  for k, v in changes.items():
    if "." in k:
      head, rest = k.split(".", 1)
      nested.setdefault(head, {})[rest] = v
  for head, sub in nested.items():
    own[head] = replace(own.get(head, getattr(cfg, head)), **sub)
  return dataclasses.replace(cfg, **own)


PRESET_FLAGS = ("--preset", "--configs")


def _split_presets(argv: Sequence[str]) -> tuple[list[str] | None, list[str]]:
  """The overlay names of ``--preset A B`` / ``--configs A B`` (every occurrence, in order;
  None when there is none) and the other arguments."""
  names: list[str] | None = None
  rest: list[str] = []
  i, argv = 0, list(argv)
  while i < len(argv):
    a = argv[i]
    flag, eq, value = a.partition("=")
    if flag in PRESET_FLAGS:
      names = names if names is not None else []
      if eq:
        names += [v for v in value.split(",") if v]
        i += 1
        continue
      j = i + 1
      while j < len(argv) and not argv[j].startswith("--"):
        names.append(argv[j])
        j += 1
      if j == i + 1:
        raise SystemExit(f"error: {flag} needs at least one name")
      i = j
      continue
    rest.append(a)
    i += 1
  return names, rest


def apply_presets(cfg: T, names: Sequence[str], presets: Mapping[str, Callable[[T], T]]) -> T:
  """``cfg`` with the overlays ``presets[name]`` applied in the order of ``names``; an unknown
  name is a ``ValueError`` listing the choices."""
  unknown = [n for n in names if n not in presets]
  if unknown:
    raise ValueError(
      f"unknown preset(s) {', '.join(map(repr, unknown))}; choose from {sorted(presets)}"
    )
  for name in names:
    cfg = presets[name](cfg)
  return cfg


def parse(
  cls: type[T],
  argv: Sequence[str] | None = None,
  *,
  presets: Mapping[str, Callable[[T], T]] | None = None,
  default_presets: Sequence[str] = (),
  base: T | None = None,
  description: str | None = None,
) -> T:
  """Build ``cls`` from the command line (``sys.argv[1:]`` by default).

  With ``presets`` (named overlays ``cfg -> cfg``), ``--preset A B ...`` (or ``--configs``)
  applies ``presets["A"]``, then ``presets["B"]``, ... to ``base`` (default ``cls()``);
  without the flag, ``default_presets`` apply. Every other flag applies on top, wherever it
  stands on the line. An unknown name lists the choices. A config that fails its own
  validation exits with the message, not a traceback.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  desc = description if description is not None else (cls.__doc__ or "")
  default = base
  if presets:
    names, argv = _split_presets(argv)
    names = list(default_presets) if names is None else names
    try:
      default = apply_presets(base if base is not None else cls(), names, presets)
    except ValueError as e:
      raise SystemExit(f"error: {e}") from None
    desc += (
      f"\n\n--preset NAME [NAME ...] (or --configs): overlays applied in order before the other "
      f"flags (default: {' '.join(default_presets) or 'none'}): {', '.join(presets)}"
    )
  with _REGISTRY:
    try:
      return tyro.cli(
        cls,
        args=argv,
        default=default,
        description=desc,
        use_underscores=True,
        config=(tyro.conf.FlagConversionOff,),
      )
    except ValueError as e:  # a config's own validation (__post_init__)
      raise SystemExit(f"error: {e}") from None
