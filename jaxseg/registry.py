"""A tiny name -> object registry with did-you-mean errors."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterable, TypeVar

T = TypeVar("T")


def closest(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
  """The valid names nearest to `name` (by edit similarity), best first."""
  choices = list(choices)
  near = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
  if not near:  # Fall back to prefix/substring matches before giving up.
    near = [c for c in choices if name and (name in c or c in name)][:n]
  return near


def unknown_name_message(kind: str, name: str, choices: Iterable[str]) -> str:
  choices = sorted(choices)
  near = closest(name, choices)
  hint = f"did you mean {', '.join(repr(c) for c in near)}? " if near else ""
  return f"unknown {kind} {name!r}; {hint}valid: {', '.join(choices) or '(none)'}"


class UnknownNameError(KeyError):
  """A registry or config lookup of a name that does not exist."""

  def __str__(self) -> str:  # KeyError would repr() the message.
    return str(self.args[0])


class Registry(Generic[T]):
  """Maps names to objects; `register` is a decorator, `get` explains typos."""

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: dict[str, T] = {}

  def register(self, name: str) -> Callable[[T], T]:
    def decorator(obj: T) -> T:
      if name in self._entries:
        raise ValueError(f"{self.kind} {name!r} is registered twice")
      self._entries[name] = obj
      return obj

    return decorator

  def get(self, name: str) -> T:
    if name not in self._entries:
      raise UnknownNameError(unknown_name_message(self.kind, name, self._entries))
    return self._entries[name]

  def names(self) -> list[str]:
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self._entries
