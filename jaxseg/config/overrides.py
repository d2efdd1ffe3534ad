"""Dotted keys of a config: flattened, and a `--set` value parsed to the key's type."""

from __future__ import annotations

import ast

import ml_collections

from jaxseg.errors import ConfigError


def flat_keys(cfg: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """['a.b', 'a.c', ...]: the dotted key of every leaf of `cfg`."""
  keys = []
  for key, value in cfg.items():
    path = f"{prefix}{key}"
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      keys.extend(flat_keys(value, path + "."))
    else:
      keys.append(path)
  return keys


def parse_value(text: str, current, key: str):
  """Parses `text` to the type of the existing value (the config fixes each key's type)."""
  if isinstance(current, bool):
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
      return True
    if lowered in ("false", "0", "no"):
      return False
    raise ConfigError(f"--set {key}={text}: expected a bool (true/false)")
  if isinstance(current, str):
    return text
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    raise ConfigError(f"--set {key}={text}: expected a {type(current).__name__} "
                      f"like {current!r}") from None
  if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if isinstance(current, (tuple, list)):
    value = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if current and value and type(current[0]) is float:
      value = tuple(float(v) for v in value)
    return type(current)(value)
  if current is not None and type(value) is not type(current):
    raise ConfigError(f"--set {key}={text}: expected a {type(current).__name__} "
                      f"like {current!r}, got {type(value).__name__}")
  return value


def flat_dict(tree: dict, prefix: str = "") -> dict:
  """{'a.b': value} of a nested dict (e.g. `cfg.to_dict()` or a saved config)."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(flat_dict(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat

