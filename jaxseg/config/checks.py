"""Value checks for one config section; each failure is a one-line ValueError naming the key.

Each section's reader validates its own keys with these (`validate_config` in
optim.py, losses/combine.py, data/, models/; the run sections in run_sections.py);
`config.resolve.validate` runs them all at load, so a bad value stops the run
before any data is prepared.
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Container, Iterable

import ml_collections
import numpy as np

from jaxseg.registry import unknown_name_message


def _is_int(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _bounds(min=None, max=None, above=None, below=None) -> tuple[str, callable]:
  """('>= 0', test) style description and test of a range (min/max inclusive)."""
  parts, tests = [], []
  if min is not None:
    parts.append(f">= {min}")
    tests.append(lambda v: v >= min)
  if above is not None:
    parts.append(f"> {above}")
    tests.append(lambda v: v > above)
  if max is not None:
    parts.append(f"<= {max}")
    tests.append(lambda v: v <= max)
  if below is not None:
    parts.append(f"< {below}")
    tests.append(lambda v: v < below)
  return " and ".join(parts), lambda v: all(t(v) for t in tests)


class Checker:
  """`Checker(cfg.train, 'train').count('steps')` raises if train.steps < 1.

  For a section's own keys; a component's arguments declare their ranges in its
  signature (jaxseg/declare.py).
  """

  def __init__(self, section: ml_collections.ConfigDict, name: str):
    self.section, self.name = section, name

  def fail(self, key: str, expected: str):
    value = self.section[key]
    shown = tuple(value) if isinstance(value, list) else value
    raise ValueError(f"{self.name}.{key}={shown!r}: expected {expected}")

  def count(self, key: str, min: int = 1, max: int | None = None) -> None:
    """An int >= `min` (and <= `max`)."""
    value = self.section[key]
    if not _is_int(value) or value < min or (max is not None and value > max):
      self.fail(key, f"an int >= {min}" + (f" and <= {max}" if max is not None else ""))

  def number(self, key: str, **bounds) -> None:
    """A number within `bounds` (min/max inclusive, above/below exclusive)."""
    text, ok = _bounds(**bounds)
    value = self.section[key]
    if not _is_number(value) or not ok(value):
      self.fail(key, f"a number {text}")

  def choice(self, key: str, choices: Iterable[str], kind: str = "") -> None:
    """One of `choices`; a typo lists the closest ones."""
    value, choices = self.section[key], list(choices)
    if value not in choices:
      message = unknown_name_message(kind or "value", str(value), choices)
      raise ValueError(f"{self.name}.{key}={value!r}: {message}")

  def ints(self, key: str, lengths: Container[int], what: str,
           **bounds) -> None:
    """A tuple of ints, as many as one of `lengths`, each within `bounds`;
    `what` says all of that in words for the message."""
    _, ok = _bounds(**bounds)
    value = self.section[key]
    if (not isinstance(value, (tuple, list)) or len(value) not in lengths
        or not all(_is_int(v) and ok(v) for v in value)):
      self.fail(key, what)

  def numbers(self, key: str, lengths: Container[int], what: str, ordered: bool = False,
              **bounds) -> None:
    """A tuple of numbers, as many as one of `lengths`, each within `bounds`, and
    non-decreasing if `ordered` (a (low, high) range); `what` says it in words."""
    _, ok = _bounds(**bounds)
    value = self.section[key]
    if (not isinstance(value, (tuple, list)) or len(value) not in lengths
        or not all(_is_number(v) and ok(v) for v in value)
        or (ordered and list(value) != sorted(value))):
      self.fail(key, what)

  def regex_rules(self, key: str) -> None:
    """((regex, multiplier >= 0), ...) with every regex compiling."""
    for rule in self.section[key]:
      if (not isinstance(rule, (tuple, list)) or len(rule) != 2 or not isinstance(rule[0], str)
          or not _is_number(rule[1]) or rule[1] < 0):
        self.fail(key, "((regex, multiplier >= 0), ...), e.g. (('backbone', 0.1),)")
      try:
        re.compile(rule[0])
      except re.error as e:
        self.fail(key, f"valid regexes; {rule[0]!r}: {e}")


# Every int of a config ends up in a jax int32 (step counters, the schedule's
# step, seeds, shapes) or a checkpoint's step path; every float in a float32 on
# device (learning rates, loss weights, augmentation factors).
INT32_MAX = (1 << 31) - 1
FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_TINY = float(np.finfo(np.float32).tiny)


def representable_problem(value) -> str | None:
  """Why `value` (a number, or numbers nested in tuples) cannot be used as jax's
  int32/float32; None if it can."""
  if isinstance(value, (tuple, list)):
    return next(filter(None, map(representable_problem, value)), None)
  if _is_int(value) and not -INT32_MAX - 1 <= value <= INT32_MAX:
    return "an int within int32 (|value| < 2**31)"
  if isinstance(value, float):
    if not math.isfinite(value):
      return "a finite number"
    if abs(value) > FLOAT32_MAX:
      return f"a number within float32's range (|value| <= {FLOAT32_MAX:.3g})"
    if value and abs(value) < FLOAT32_TINY:
      return f"0 or a number float32 does not round to 0 (|value| >= {FLOAT32_TINY:.3g})"
  return None


def check_representable(flat: dict) -> None:
  """Every number of a flattened config ({'a.b': value}) as jax will hold it."""
  for key, value in flat.items():
    problem = representable_problem(value)
    if problem:
      shown = tuple(value) if isinstance(value, list) else value
      raise ValueError(f"{key}={shown!r}: expected {problem}")
