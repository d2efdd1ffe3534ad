"""How a component declares its config arguments: once, in its own signature.

A registered component's keyword-only parameters are its config arguments. Each
has a default (its type is the default's), and may carry its range, choices and
meaning with `typing.Annotated`:

    def focal(logits_BHWC, labels_BHW, valid_BHW, *,
              gamma: Annotated[float, Arg(min=0, help="focusing exponent")] = 2.0): ...

A parameter whose default is a frozen dataclass is a group: a nested dict of the
section (`model.backbone`), declared once and reused by every component that takes
it (`ResNetArgs`), its fields declared the same way. `Registry.build` passes the
group as that dataclass. Checks run at config load (`check_args`), before any data
or compile, and fail in one line naming the dotted key and what was expected.
"""

from __future__ import annotations

import dataclasses
import inspect
import numbers
import typing
from typing import Any, Callable, Mapping

from jaxseg.errors import closest, unknown_name_message


@dataclasses.dataclass(frozen=True)
class Arg:
  """Range (min/max inclusive, above/below exclusive), choices and meaning of one
  argument; `check(value)` returns what was expected when a value is wrong, else None."""

  help: str = ""
  min: float | None = None
  max: float | None = None
  above: float | None = None
  below: float | None = None
  choices: tuple = ()
  check: Callable[[Any], str | None] | None = None

  def describe(self) -> str:
    """'meaning (>= 0 and < 1)': what `--print_config` shows beside the value."""
    if self.choices:
      rule = "one of " + ", ".join(map(str, self.choices))
    else:
      rule = " and ".join(f"{text} {b}" for b, text in (
          (self.min, ">="), (self.above, ">"), (self.max, "<="), (self.below, "<"))
          if b is not None)
    return f"{self.help} ({rule})" if self.help and rule else self.help or rule

  def problem(self, value) -> str | None:
    """What `value` should have been, or None if it fits."""
    if self.choices:
      if value in self.choices:
        return None
      near = closest(str(value), [str(c) for c in self.choices])
      return f"one of {list(self.choices)}" + (f" (did you mean {near[0]!r}?)" if near else "")
    bounds = [(b, text, ok) for b, text, ok in (
        (self.min, ">=", lambda v, b: v >= b), (self.above, ">", lambda v, b: v > b),
        (self.max, "<=", lambda v, b: v <= b), (self.below, "<", lambda v, b: v < b))
        if b is not None]
    items = value if isinstance(value, tuple) else (value,)
    if bounds and not all(_is_number(v) and all(ok(v, b) for b, _, ok in bounds)
                          for v in items):
      word = ("numbers each" if isinstance(value, tuple) else
              "an int" if type(value) is int else "a number")
      return f"{word} {' and '.join(f'{text} {b}' for b, text, _ in bounds)}"
    return self.check(value) if self.check else None


def _is_number(value) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


NO_ARG = Arg()


@dataclasses.dataclass(frozen=True)
class Param:
  """One declared argument: its default and `Arg`, or (`group`) a dataclass of them."""

  default: Any
  arg: Arg = NO_ARG
  group: dict[str, Param] | None = None  # The group's fields, when the default is a dataclass.

  def default_value(self):
    """The default as a config value: a group as a dict of its fields' defaults."""
    if self.group is not None:
      return {name: p.default_value() for name, p in self.group.items()}
    return self.default

  def meaning(self) -> str:
    return self.arg.help


def _arg_of(hint) -> Arg:
  for extra in getattr(hint, "__metadata__", ()):
    if isinstance(extra, Arg):
      return extra
  return NO_ARG


def _param(obj_name: str, name: str, default, hint) -> Param:
  if default is inspect.Parameter.empty or default is dataclasses.MISSING:
    raise TypeError(f"{obj_name}: config argument {name!r} has no default")
  if dataclasses.is_dataclass(default):
    return Param(default, _arg_of(hint), group=group_params(type(default), default))
  return Param(default, _arg_of(hint))


def group_params(cls: type, instance=None) -> dict[str, Param]:
  """{field: Param} of a group dataclass (its fields, in order), each defaulting to
  `instance`'s value if given (a component's own default: SegFormer-B2's head is 768
  wide, B0's 256), else to the field's."""
  hints = typing.get_type_hints(cls, include_extras=True)
  return {f.name: _param(cls.__qualname__, f.name,
                         f.default if instance is None else getattr(instance, f.name),
                         hints.get(f.name))
          for f in dataclasses.fields(cls)}


def declared_params(obj: Callable) -> dict[str, Param]:
  """{name: Param} of `obj`'s keyword-only parameters: the config arguments it takes.

  Its other parameters are context the caller passes (num_classes, the ignore index...).
  """
  # Unresolvable hints fail here, at registration: silently losing them would drop
  # the declared ranges.
  hints = typing.get_type_hints(obj, include_extras=True)
  return {p.name: _param(getattr(obj, "__qualname__", repr(obj)), p.name, p.default,
                         hints.get(p.name))
          for p in inspect.signature(obj).parameters.values() if p.kind is p.KEYWORD_ONLY}


def bind(params: Mapping[str, Param], values: Mapping) -> dict[str, Any]:
  """Keyword arguments for a component from its (filled) config values: groups
  become their dataclasses, tuples stay tuples."""
  kwargs = {}
  for name, p in params.items():
    value = values[name]
    if p.group is not None:
      value = type(p.default)(**bind(p.group, value))
    elif isinstance(value, list):
      value = tuple(value)
    kwargs[name] = value
  return kwargs


def _fitted(value, default, where: str):
  """`value` as the type of `default` (int -> float, list -> tuple), or a ValueError."""
  if isinstance(default, tuple) and isinstance(value, list):
    value = tuple(value)
  if isinstance(default, float) and type(value) is int:
    value = float(value)
  if type(value) is not type(default):
    kind = type(default).__name__
    raise ValueError(f"{where}={value!r}: expected {'an' if kind[0] in 'aeiou' else 'a'} "
                     f"{kind} like {default!r}")
  return value


def fill_values(defaults: Mapping[str, Any], values: Mapping, where: str,
                drop_unknown: bool = False) -> dict[str, Any]:
  """`defaults` (nested dicts for groups) with `values` over them, each fitted to its
  default's type; a key of a group that it does not have fails with the closest ones
  (or is dropped: a checkpoint's keys no longer read)."""
  filled = {}
  for key, default in defaults.items():
    if key not in values:
      filled[key] = default
    elif isinstance(default, dict):
      given = values[key]
      if not isinstance(given, Mapping):
        raise ValueError(f"{where}.{key}={given!r}: expected a dict of {', '.join(default)}")
      for sub in given:
        if sub not in default and not drop_unknown:
          raise ValueError(f"{where}.{key}: " + unknown_name_message(
              "key", sub, default))
      filled[key] = fill_values(default, given, f"{where}.{key}", drop_unknown)
    else:
      filled[key] = _fitted(values[key], default, f"{where}.{key}")
  return filled


def describe_args(params: Mapping[str, Param], prefix: str) -> dict[str, str]:
  """{'prefix.key': meaning and range} of every declared argument, groups included."""
  described = {}
  for name, p in params.items():
    if p.group is not None:
      described.update(describe_args(p.group, f"{prefix}.{name}"))
    elif p.arg.describe():
      described[f"{prefix}.{name}"] = p.arg.describe()
  return described


def check_args(params: Mapping[str, Param], values: Mapping, where: str) -> None:
  """Each argument's declared range or choices, groups included; a ValueError names
  the first value that does not fit, as `where.key=value: expected ...`."""
  for name, p in params.items():
    value = values[name]
    if p.group is not None:
      check_args(p.group, value, f"{where}.{name}")
      continue
    value = tuple(value) if isinstance(value, list) else value
    problem = p.arg.problem(value)
    if problem:
      raise ValueError(f"{where}.{name}={value!r}: expected {problem}")
