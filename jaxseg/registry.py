"""A tiny name -> object registry with did-you-mean errors."""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

from jaxseg.declare import Param, bind, declared_params
# Raised here; importers find them here too.
from jaxseg.errors import UnknownNameError, closest, unknown_name_message  # noqa: F401

T = TypeVar("T")


class Registry(Generic[T]):
  """Maps names to objects; `register` is a decorator, `get` explains typos.

  Members are callables whose keyword-only parameters are their config arguments
  (jaxseg/declare.py); `build(name, section, **context)` calls one with its own.
  """

  def __init__(self, kind: str, params_of: Callable[[T], dict[str, Param]] = declared_params):
    self.kind = kind
    self._params_of = params_of  # Where a member declares its config keys.
    self._entries: dict[str, T] = {}
    # Each member's declarations, read once at registration: loading a config asks for
    # them many times (fill, check, owners, build), and a signature never changes.
    self._declared: dict[str, dict[str, Param]] = {}

  def register(self, name: str) -> Callable[[T], T]:
    def decorator(obj: T) -> T:
      if name in self._entries:
        raise ValueError(f"{self.kind} {name!r} is registered twice")
      # A config argument without a default, or a hint that does not resolve, fails
      # here, at import.
      self._declared[name] = self._params_of(obj)
      self._entries[name] = obj
      return obj

    return decorator

  def get(self, name: str) -> T:
    if name not in self._entries:
      raise UnknownNameError(unknown_name_message(self.kind, name, self._entries))
    return self._entries[name]

  def declared(self, name: str) -> dict[str, Param]:
    """{key: Param} of the config arguments member `name` declares."""
    self.get(name)  # An unknown name fails with the closest ones.
    return self._declared[name]

  def params(self, name: str) -> dict[str, Any]:
    """{key: default} of member `name`'s config arguments (a group: a dict of its own)."""
    return {key: p.default_value() for key, p in self.declared(name).items()}

  def build(self, name: str, section, **context):
    """Calls member `name` with `context` and its own arguments' values from `section`."""
    return self.get(name)(**context, **bind(self.declared(name), section))

  def names(self) -> list[str]:
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self._entries
