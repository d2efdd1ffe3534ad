"""How components declare config arguments (jaxseg/declare.py): defaults, groups,
ranges and meanings read from signatures, bound back to calls, checked at load."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import pytest

import run
from jaxseg.declare import (Arg, bind, check_args, declared_params, describe_args,
                                   fill_values)
from jaxseg.config.sections import Choice, Section
from jaxseg.registry import Registry


@dataclasses.dataclass(frozen=True)
class Trunk:
  """A group: one declaration, reused by every component that takes it."""

  stride: Annotated[int, Arg(choices=(8, 16, 32), help="output stride")] = 8
  rates: Annotated[tuple, Arg(min=0, help="one rate per branch")] = (1, 2)
  frozen: bool = False


def segmentor(num_classes: int, *, width: Annotated[int, Arg(min=1, help="channels")] = 4,
              dropout: Annotated[float, Arg(min=0, below=1)] = 0.1,
              trunk: Trunk = Trunk(), style: str = "a"):
  return num_classes, width, dropout, trunk, style


def test_signature_gives_defaults_groups_ranges_and_meaning():
  params = declared_params(segmentor)
  assert list(params) == ["width", "dropout", "trunk", "style"]  # num_classes is context.
  assert params["width"].default == 4 and params["width"].arg.min == 1
  assert params["trunk"].default_value() == {"stride": 8, "rates": (1, 2), "frozen": False}
  assert describe_args(params, "model") == {
      "model.width": "channels (>= 1)", "model.dropout": ">= 0 and < 1",
      "model.trunk.stride": "output stride (one of 8, 16, 32)",
      "model.trunk.rates": "one rate per branch (>= 0)"}


def test_an_argument_without_a_default_fails_at_registration():
  def bad(x, *, width: int):
    return x

  with pytest.raises(TypeError, match="config argument 'width' has no default"):
    Registry("thing").register("bad")(bad)


def test_bind_passes_groups_as_their_dataclass():
  values = {"width": 8, "dropout": 0.0, "style": "b",
            "trunk": {"stride": 16, "rates": [3, 4], "frozen": True}}
  kwargs = bind(declared_params(segmentor), values)
  assert kwargs["trunk"] == Trunk(stride=16, rates=(3, 4), frozen=True)
  assert segmentor(2, **kwargs) == (2, 8, 0.0, Trunk(16, (3, 4), True), "b")


def test_fill_merges_partial_groups_and_names_unknown_keys():
  defaults = {k: p.default_value() for k, p in declared_params(segmentor).items()}
  filled = fill_values(defaults, {"width": 2, "trunk": {"stride": 16}}, "model")
  assert filled["trunk"] == {"stride": 16, "rates": (1, 2), "frozen": False}
  assert filled["dropout"] == 0.1
  with pytest.raises(ValueError, match=r"model.trunk: unknown key 'strid'; did you mean 'stride'"):
    fill_values(defaults, {"trunk": {"strid": 16}}, "model")
  assert "strid" not in fill_values(defaults, {"trunk": {"strid": 16}}, "model",
                                    drop_unknown=True)["trunk"]
  with pytest.raises(ValueError, match=r"model.width='2': expected an int like 4"):
    fill_values(defaults, {"width": "2"}, "model")
  with pytest.raises(ValueError, match=r"model.trunk=3: expected a dict of stride, rates"):
    fill_values(defaults, {"trunk": 3}, "model")


@pytest.mark.parametrize("values, message", [
    ({"width": 0}, r"model.width=0: expected an int >= 1"),
    ({"dropout": 1.0}, r"model.dropout=1.0: expected a number >= 0 and < 1"),
    ({"trunk": {"stride": 4}}, r"model.trunk.stride=4: expected one of \[8, 16, 32\]"),
    ({"trunk": {"rates": (1, -2)}}, r"model.trunk.rates=\(1, -2\): expected numbers each >= 0"),
])
def test_check_names_the_dotted_key_and_the_range(values, message):
  params = declared_params(segmentor)
  defaults = {k: p.default_value() for k, p in params.items()}
  with pytest.raises(ValueError, match=message):
    check_args(params, fill_values(defaults, values, "model"), "model")


def test_custom_check_and_choice_suggestion():
  odd = Arg(check=lambda v: None if v % 2 else "an odd int")
  assert odd.problem(3) is None and odd.problem(4) == "an odd int"
  assert Arg(choices=("per_class", "global")).problem("globl") == (
      "one of ['per_class', 'global'] (did you mean 'global'?)")


def test_a_nested_choice_keeps_each_members_arguments_under_its_name():
  things = Registry("thing")
  things.register("seg")(segmentor)
  things.register("plain")(lambda *, width=1: width)
  section = Section("part", shared={"names": "seg"},
                    choices=(Choice("names", things, lambda v: v.split("+"), nested=True),))
  filled = section.config(names="seg+plain", seg={"trunk": {"stride": 32}})
  assert filled.seg.trunk.stride == 32 and filled.plain.width == 1
  assert section.owners("seg.trunk.stride") == ["thing seg"]
  with pytest.raises(ValueError, match=r"part.seg.trunk.stride=7: expected one of"):
    section.check(section.config(names="seg", seg={"trunk": {"stride": 7}}))


def test_setting_a_whole_group_says_to_set_its_keys():
  from jaxseg.config.resolve import build_config
  from jaxseg.errors import ConfigError

  with pytest.raises(ConfigError, match=r"optim.poly is a group; set its keys one by one: "
                                        r"optim.poly.end_lr, optim.poly.power"):
    build_config("demo", ["optim.poly={'power': 1}"])


def test_print_config_shows_each_arguments_meaning_and_range(capsys):
  assert run.main(["--exp", "demo", "--set", "loss.terms=focal", "--print_config"]) == 0
  out = capsys.readouterr().out
  assert "loss.focal.gamma = 2.0" in out and "# focusing exponent (>= 0)" in out
  line = next(l for l in out.splitlines() if l.startswith("loss.focal.alpha"))
  assert line.endswith("# scale (alpha_t = alpha for every class) (> 0)")
