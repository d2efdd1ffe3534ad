"""A tiny name -> object registry with did-you-mean errors."""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, Generic, Iterable, TypeVar

from jaxseg.errors import UnknownNameError  # noqa: F401  (raised here; importers find it here too)

T = TypeVar("T")


def closest(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
  """The valid names nearest to `name` (by edit similarity), best first."""
  choices = list(choices)
  # Compared lower-cased, so 'UNet' finds 'unet' first; the valid spelling comes back.
  by_lower = {}
  for c in choices:
    by_lower.setdefault(c.lower(), c)
  key = name.lower()
  near = difflib.get_close_matches(key, list(by_lower), n=n, cutoff=0.5)
  if not near:  # Fall back to prefix/substring matches before giving up.
    near = [c for c in by_lower if key and (key in c or c in key)][:n]
  return [by_lower[c] for c in near]


def unknown_name_message(kind: str, name: str, choices: Iterable[str]) -> str:
  choices = sorted(choices)
  near = closest(name, choices)
  hint = f"did you mean {', '.join(repr(c) for c in near)}? " if near else ""
  return f"unknown {kind} {name!r}; {hint}valid: {', '.join(choices) or '(none)'}"


def config_params(obj: Callable) -> dict[str, Any]:
  """{name: default} of `obj`'s keyword-only parameters: the config keys it takes.

  A registered component's keyword-only parameters (all with defaults) are its
  config keys, read from its section by `Registry.build`; its other parameters
  are context the caller passes (num_classes, the ignore index, ...).
  """
  params = {}
  for p in inspect.signature(obj).parameters.values():
    if p.kind is p.KEYWORD_ONLY:
      if p.default is p.empty:
        raise TypeError(f"{obj.__qualname__}: config parameter {p.name!r} has no default")
      params[p.name] = p.default
  return params


class Registry(Generic[T]):
  """Maps names to objects; `register` is a decorator, `get` explains typos.

  Members are callables whose keyword-only parameters are config keys
  (`config_params`); `build(name, section, **context)` calls one with its own keys.
  """

  def __init__(self, kind: str, params_of: Callable[[T], dict[str, Any]] = config_params):
    self.kind = kind
    self._params_of = params_of  # Where a member declares its config keys.
    self._entries: dict[str, T] = {}

  def register(self, name: str) -> Callable[[T], T]:
    def decorator(obj: T) -> T:
      if name in self._entries:
        raise ValueError(f"{self.kind} {name!r} is registered twice")
      self._params_of(obj)  # A config parameter without a default fails here, at import.
      self._entries[name] = obj
      return obj

    return decorator

  def get(self, name: str) -> T:
    if name not in self._entries:
      raise UnknownNameError(unknown_name_message(self.kind, name, self._entries))
    return self._entries[name]

  def params(self, name: str) -> dict[str, Any]:
    """{key: default} of the config keys member `name` takes."""
    return self._params_of(self.get(name))

  def build(self, name: str, section, **context):
    """Calls member `name` with `context` and its own keys' values from `section`."""
    return self.get(name)(**context, **{k: section[k] for k in self.params(name)})

  def names(self) -> list[str]:
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self._entries
