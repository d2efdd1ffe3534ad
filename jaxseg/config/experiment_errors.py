"""What is wrong with an experiment file, in one line: why it did not load (file:line),
what its get_config returned, and keys of run-level sections that nothing reads.

config.py raises these messages as ConfigError (exit 2); the original exception
stays chained, so `run.py --debug` prints its traceback.
"""

from __future__ import annotations

import os
import re
import traceback

import ml_collections

from jaxseg.registry import unknown_name_message



def _blamed_frame(exc: BaseException, path: str) -> traceback.FrameSummary | None:
  """The deepest frame in the experiment file `path`; else in any file of the
  experiments (one it imports, e.g. experiments/base.py); else the deepest frame."""
  frames = traceback.extract_tb(exc.__traceback__)
  if not frames:
    return None
  path = os.path.realpath(path)
  folder = os.path.dirname(path)
  for wanted in (lambda f: os.path.realpath(f) == path,
                 lambda f: os.path.dirname(os.path.realpath(f)) == folder):
    found = [fr for fr in frames if wanted(fr.filename)]
    if found:
      return found[-1]
  return frames[-1]


def load_error(exc: BaseException, path: str, doing: str) -> str:
  """'experiment file X:12: <what>' for an exception raised `doing` ('importing it',
  'in get_config') the experiment file `path`."""
  if isinstance(exc, SyntaxError):  # Names its own file and line (maybe an imported one).
    where = f"{exc.filename or path}:{exc.lineno}"
    return f"experiment file {where}: syntax error: {exc.msg}" + (
        f": {exc.text.strip()}" if exc.text and exc.text.strip() else "")
  frame = _blamed_frame(exc, path)
  where = f"{frame.filename}:{frame.lineno}" if frame else path
  if isinstance(exc, ModuleNotFoundError):
    what = f"imports missing module {exc.name!r}"
  else:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    what = f"{type(exc).__name__}" + (f": {detail}" if detail else "")
  return f"experiment file {where}: {what} ({doing}; --debug for the traceback)"


def bad_result(result, path: str) -> str | None:
  """Why get_config's `result` is no experiment config; None if it is one."""
  if isinstance(result, ml_collections.ConfigDict):
    return None
  return (f"experiment file {path}: get_config returned {type(result).__name__}"
          f"{'' if result is None else f' {result!r}'[:80]}, expected an "
          "ml_collections.ConfigDict (e.g. `return c` at its end)")


def flat_keys(tree, prefix: str = "") -> list[str]:
  """'a.b' keys of a nested ConfigDict or dict (sub-dicts are descended into)."""
  keys = []
  for key, value in tree.items():
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      keys.extend(flat_keys(value, f"{prefix}{key}."))
    else:
      keys.append(f"{prefix}{key}")
  return keys


def unknown_key(cfg: ml_collections.ConfigDict, base: ml_collections.ConfigDict,
                components: set[str], path: str) -> str | None:
  """A key the experiment at `path` set that no run reads: a top-level key or a
  run-level section's key the base config does not declare; None if there is none."""
  known = set(flat_keys(base))
  for key in flat_keys(cfg):
    head = key.split(".")[0]
    if head in components or key in known:
      continue
    valid = (sorted(k for k in known if k.split(".")[0] == head) if head in base
             else sorted({k.split(".")[0] for k in known} | components))
    return (f"experiment file {_line_setting(path, key)}: "
            + unknown_name_message("config key", key, valid))
  return None


def _line_setting(path: str, key: str) -> str:
  """'path:line' of the first line that mentions `key`'s last part as an attribute or
  a quoted name (`c.train.stepz = 3`, `{"stepz": 3}`); just `path` if none does."""
  leaf = key.rsplit(".", 1)[-1]
  pattern = re.compile(rf"\.{re.escape(leaf)}\b|[\"']{re.escape(leaf)}[\"']")
  try:
    with open(path, encoding="utf-8") as f:
      for number, line in enumerate(f, 1):
        if pattern.search(line):
          return f"{path}:{number}"
  except OSError:
    pass
  return path
