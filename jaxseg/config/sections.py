"""Config sections of chosen components: which keys a section has, and their defaults.

A component section (`data`, `augment`, `model`, `loss`, `optim`) holds the keys
its reader takes itself (`Section.shared`: `model.name`, `optim.lr`, ...) and the
keyword-only parameters of the registered components its choice keys select
(`Choice`: `model.name` picks a model factory; `optim.schedule` a schedule). The
config loader fills each section from the chosen components' signatures
(`Section.fill`), so a component's defaults live in its own signature, and a key
no chosen component takes, like `model.aspp_dropout` with `unet`, fails at load.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import ml_collections

from jaxseg.registry import Registry, UnknownNameError, unknown_name_message


@dataclasses.dataclass(frozen=True)
class Choice:
  """A key of the section whose value names registered components."""

  key: str
  registry: Registry
  # The member names a value selects: one name, or several (`loss.terms`).
  names_of: Callable[[Any], Sequence[str]] = lambda value: (value,)


def _fitted(value, default, where: str):
  """`value` as the type of `default` (int -> float, list -> tuple), or a ValueError."""
  if isinstance(default, tuple) and isinstance(value, list):
    value = tuple(value)
  if isinstance(default, float) and type(value) is int:
    value = float(value)
  if type(value) is not type(default):
    raise ValueError(f"{where}={value!r}: expected a {type(default).__name__} "
                     f"like {default!r}")
  return value


@dataclasses.dataclass(frozen=True)
class Section:
  name: str  # 'model'
  shared: Mapping[str, Any]  # The reader's own keys with their defaults, choice keys included.
  choices: tuple[Choice, ...]

  def choice_keys(self) -> tuple[str, ...]:
    return tuple(f"{self.name}.{c.key}" for c in self.choices)

  def selected(self, values: Mapping) -> list[tuple[Choice, str]]:
    """(choice, member name) of each component `values` selects; a name that is
    not registered raises UnknownNameError with the closest ones."""
    chosen = []
    for choice in self.choices:
      value = values.get(choice.key, self.shared[choice.key])
      for name in choice.names_of(value):
        if name not in choice.registry:
          raise UnknownNameError(f"{self.name}.{choice.key}={value!r}: " + unknown_name_message(
              choice.registry.kind, name, choice.registry.names()))
        chosen.append((choice, name))
    return chosen

  def keys(self, values: Mapping) -> dict[str, Any]:
    """{key: default} of the section under `values`' choices, the shared keys first."""
    keys = dict(self.shared)
    for choice, name in self.selected(values):
      for key, default in choice.registry.params(name).items():
        keys.setdefault(key, default)
    return keys

  def owners(self, key: str) -> list[str]:
    """'model deeplabv3_resnet50'-style names of every registered component taking `key`."""
    return [f"{c.registry.kind} {name}" for c in self.choices for name in c.registry.names()
            if key in c.registry.params(name)]

  def describe(self, values: Mapping) -> str:
    """'model unet', 'optimizer sgd, schedule poly', 'loss cross_entropy + dice':
    what `values` choose."""
    chosen = self.selected(values)
    return ", ".join(f"{c.registry.kind} {' + '.join(n for d, n in chosen if d is c)}"
                     for c in self.choices)

  def fill(self, values: Mapping, where: str, drop_unknown: bool = False
           ) -> ml_collections.ConfigDict:
    """The whole section for `values`: each key the choices take, from `values` or
    its default. A value for a key that only other components take is dropped (an
    experiment may set keys for what its variants switch to); a key no component
    takes is an error naming `where` (or dropped, for a checkpoint's old keys)."""
    keys = self.keys(values)
    for key in values:
      if key not in keys and not self.owners(key) and not drop_unknown:
        raise UnknownNameError(f"{where}: " + unknown_name_message(
            f"{self.name} key", key, keys) + f" (chosen: {self.describe(values)})")
    return ml_collections.ConfigDict(
        {k: _fitted(values[k], d, f"{self.name}.{k}") if k in values else d
         for k, d in keys.items()})

  def config(self, **values) -> ml_collections.ConfigDict:
    """The filled section of `values`, for code and tests that build one directly:
    `models.SECTION.config(name='unet', width=8)`. Any key the choices do not take fails."""
    section = self.fill(values, f"{self.name} section")
    for key in values:
      if key not in section:
        raise UnknownNameError(self.inapplicable(key, section))
    return section

  def inapplicable(self, key: str, section: Mapping) -> str:
    """Why `--set <section>.<key>` fails: the key is another component's, or a typo."""
    owners = self.owners(key)
    valid = ", ".join(section)
    if owners:
      return (f"config key '{self.name}.{key}' does not apply to the chosen {self.describe(section)} "
              f"(it is a key of {', '.join(owners[:4])}{', ...' if len(owners) > 4 else ''}); "
              f"{self.name} keys now: {valid}")
    return unknown_name_message("config key", f"{self.name}.{key}",
                                [f"{self.name}.{k}" for k in section])
