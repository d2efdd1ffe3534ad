"""Config sections of chosen components: which keys a section has, and their defaults.

A component section (`data`, `augment`, `model`, `loss`, `optim`) holds the keys
its reader takes itself (`Section.shared`: `model.name`, `optim.lr`, ...) and the
arguments of the registered components its choice keys select (`Choice`:
`model.name` picks a model factory; `optim.schedule` a schedule), as each declares
them in its signature (jaxseg/declare.py): groups are nested dicts
(`model.backbone`), and a `nested` choice puts each member's arguments under its
name (`loss.dice.smooth`). The config loader fills each section from the chosen
components' declarations (`Section.fill`) and checks it against them
(`Section.check`), so a component's defaults and ranges live in its own signature,
and a key no chosen component takes, like `model.head.aspp_dropout` with `unet`,
fails at load.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import ml_collections

from jaxseg.config.overrides import flat_keys
from jaxseg.declare import check_args, describe_args, fill_values
from jaxseg.registry import Registry, UnknownNameError, unknown_name_message


@dataclasses.dataclass(frozen=True)
class Choice:
  """A key of the section whose value names registered components."""

  key: str
  registry: Registry
  # The member names a value selects: one name, or several (`loss.terms`).
  names_of: Callable[[Any], Sequence[str]] = lambda value: (value,)
  # Each member's arguments under its own name (`loss.dice.smooth`), not the section's.
  nested: bool = False

  def member_keys(self, member: str) -> dict[str, Any]:
    """{key: default} this member adds to the section (one dict under its name if
    nested; none for a member without arguments, such as the `shapes` dataset)."""
    params = self.registry.params(member)
    return ({member: params} if params else {}) if self.nested else params


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
      for key, default in choice.member_keys(name).items():
        keys.setdefault(key, default)
    return keys

  def owners(self, key: str) -> list[str]:
    """'model deeplabv3_resnet50'-style names of every registered component taking the
    (dotted) `key`, e.g. 'backbone.output_stride' or, under a nested choice, 'dice.smooth'."""
    path = key.split(".")

    def takes(tree, path) -> bool:
      return not path or (isinstance(tree, Mapping) and path[0] in tree
                          and takes(tree[path[0]], path[1:]))

    return [f"{c.registry.kind} {name}" for c in self.choices for name in c.registry.names()
            if takes(c.member_keys(name), path)]

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
    return ml_collections.ConfigDict(fill_values(keys, self._without_others(keys, values),
                                                 self.name, drop_unknown))

  def _without_others(self, keys: Mapping, values: Mapping, path: tuple = ()) -> dict:
    """`values` less the keys inside groups that the chosen components lack but others
    take, as fill drops such keys at the top: a recipe's `model.head.dropout` stays
    valid when `--set model.name` swaps in a head without dropout."""
    kept = {}
    for key, value in values.items():
      if key in keys and isinstance(keys[key], dict) and isinstance(value, Mapping):
        kept[key] = self._without_others(keys[key], value, (*path, key))
      elif key in keys or not path or not self.owners(".".join((*path, key))):
        kept[key] = value
    return kept

  def check(self, section: Mapping) -> None:
    """Each chosen component's arguments against their declared ranges and choices."""
    for choice, name in self.selected(section):
      params = choice.registry.declared(name)
      if choice.nested:
        if params:
          check_args(params, section[name], f"{self.name}.{name}")
      else:
        check_args(params, section, self.name)

  def meanings(self, section: Mapping) -> dict[str, str]:
    """{'loss.dice.smooth': meaning and range} of each chosen component's declared arguments."""
    described = {}
    for choice, name in self.selected(section):
      prefix = f"{self.name}.{name}" if choice.nested else self.name
      described.update(describe_args(choice.registry.declared(name), prefix))
    return described

  def config(self, **values) -> ml_collections.ConfigDict:
    """The filled section of `values`, for code and tests that build one directly:
    `models.SECTION.config(name='unet', width=8)`. Any key the choices do not take
    fails, inside groups too (`head=dict(dropout=0.3)` with a head without one)."""
    section = self.fill(values, f"{self.name} section")
    filled = set(flat_keys(section))
    for key in flat_keys(values):
      if key not in filled:
        raise UnknownNameError(self.inapplicable(key, section))
    return section

  def inapplicable(self, key: str, section: Mapping) -> str:
    """Why `--set <section>.<key>` fails: the key is another component's, or a typo."""
    owners = self.owners(key)
    valid = ", ".join(flat_keys(section))
    if owners:
      return (f"config key '{self.name}.{key}' does not apply to the chosen {self.describe(section)} "
              f"(it is a key of {', '.join(owners[:4])}{', ...' if len(owners) > 4 else ''}); "
              f"{self.name} keys now: {valid}")
    return unknown_name_message("config key", f"{self.name}.{key}",
                                [f"{self.name}.{k}" for k in flat_keys(section)])
