"""core.config: presets as named overlays cfg -> cfg, applied in order, then the flags."""

import dataclasses

import pytest

from jaxprune.core.config import apply_presets, parse, replace, require


@dataclasses.dataclass(frozen=True)
class _Net:
  width: int = 8
  depth: int = 2


@dataclasses.dataclass(frozen=True)
class _Cfg:
  lr: float = 0.1
  steps: int = 100
  net: _Net = _Net()

  def __post_init__(self):
    require(self.steps >= 1, f"steps must be >= 1, got {self.steps}")


OVERLAYS = {
  "wide": lambda c: replace(c, **{"net.width": 64}),
  "double": lambda c: replace(c, steps=2 * c.steps, **{"net.width": 2 * c.net.width}),
  "short": lambda c: replace(c, steps=10),
  "broken": lambda c: replace(c, steps=0),
}


def test_replace_nested_by_dotted_name():
  c = replace(_Cfg(), lr=0.5, **{"net.width": 3, "net.depth": 4})
  assert c == _Cfg(lr=0.5, net=_Net(width=3, depth=4))
  assert replace(c, net=_Net(1, 1)) == _Cfg(lr=0.5, net=_Net(1, 1))
  with pytest.raises(ValueError, match="steps must be >= 1"):  # validated again
    replace(c, steps=0)
  with pytest.raises(TypeError):
    replace(c, **{"net.height": 1})


def test_overlays_apply_in_the_order_given():
  # wide then double: 64 * 2; double then wide: 64 (wide overwrites the doubled width)
  assert parse(_Cfg, ["--preset", "wide", "double"], presets=OVERLAYS).net.width == 128
  assert parse(_Cfg, ["--preset", "double", "wide"], presets=OVERLAYS).net.width == 64
  # double then short: 10 steps; short then double: 20
  assert parse(_Cfg, ["--preset", "double", "short"], presets=OVERLAYS).steps == 10
  assert parse(_Cfg, ["--preset", "short", "double"], presets=OVERLAYS).steps == 20
  # the same in Python, by hand
  by_hand = OVERLAYS["double"](OVERLAYS["short"](_Cfg()))
  assert (
    apply_presets(_Cfg(), ["short", "double"], OVERLAYS)
    == by_hand
    == _Cfg(steps=20, net=_Net(width=16))
  )


def test_spellings_of_the_flag():
  want = parse(_Cfg, ["--preset", "short", "double"], presets=OVERLAYS)
  for argv in (
    ["--configs", "short", "double"],
    ["--preset=short,double"],
    ["--preset", "short", "--preset", "double"],
    ["--configs", "short", "--preset", "double"],
  ):
    assert parse(_Cfg, argv, presets=OVERLAYS) == want, argv


def test_flags_after_overlays_win_wherever_they_stand():
  for argv in (
    ["--steps", "7", "--preset", "double", "--net.width", "5"],
    ["--preset", "double", "--steps", "7", "--net.width", "5"],
    ["--net.width", "5", "--steps", "7", "--preset", "double"],
  ):
    c = parse(_Cfg, argv, presets=OVERLAYS)
    assert (c.steps, c.net.width, c.lr) == (7, 5, 0.1), argv


def test_defaults_base_and_no_overlay():
  assert parse(_Cfg, [], presets=OVERLAYS) == _Cfg()
  assert parse(_Cfg, [], presets=OVERLAYS, default_presets=("short",)).steps == 10
  # given overlays replace the defaults (they do not add to them)
  c = parse(_Cfg, ["--preset", "wide"], presets=OVERLAYS, default_presets=("short",))
  assert (c.steps, c.net.width) == (100, 64)
  base = _Cfg(lr=0.3)
  assert parse(_Cfg, ["--preset", "short"], presets=OVERLAYS, base=base) == _Cfg(lr=0.3, steps=10)


@pytest.mark.parametrize(
  "argv, needle",
  [
    (["--preset", "short", "huge"], "'huge'"),
    (["--preset", "huge"], "broken, double, short, wide"),  # the choices, listed
    (["--preset"], "needs at least one name"),
    (["--preset", "broken"], "steps must be >= 1"),  # an overlay's invalid config
  ],
)
def test_bad_overlays_exit_naming_them(argv, needle):
  with pytest.raises(SystemExit) as e:
    parse(_Cfg, argv, presets=OVERLAYS)
  msg = str(e.value.code)
  assert needle in msg or needle.replace(", ", "', '") in msg, msg
  with pytest.raises(ValueError, match="unknown preset"):
    apply_presets(_Cfg(), ["nope"], OVERLAYS)


def test_the_scripts_presets_are_overlays():
  from jaxprune.dmdp import disentangle_config
  from jaxprune.pruning import curve_config

  quick = parse(curve_config.CurveConfig, ["--preset", "quick"], presets=curve_config.PRESETS)
  assert quick == curve_config.quick()
  cfg = parse(
    curve_config.CurveConfig, ["--seeds", "2", "--preset", "scaling"], presets=curve_config.PRESETS
  )
  assert cfg == dataclasses.replace(curve_config.scaling(), seeds=2)
  assert (
    parse(curve_config.CurveConfig, [], presets=curve_config.PRESETS) == curve_config.CurveConfig()
  )
  d = parse(
    disentangle_config.DisentangleConfig,
    ["--preset", "quick", "--seeds", "3"],
    presets=disentangle_config.PRESETS,
  )
  assert (d.seeds, d.model_size, d.updates, d.tasks) == (3, "tiny", 4, ("walker_walk",))
