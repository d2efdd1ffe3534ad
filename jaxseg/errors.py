"""The errors a user can fix, and the exit status each ends a run with.

A leaf module: it imports nothing of jaxseg, so every layer (config loading, data,
models, the run) can raise these without importing another layer. `run.py` turns
each into one line on stderr and `exit_status` (README's table); an error that is
not one of these (or an OSError, a full disk, out of memory) is a bug and keeps
its traceback.
"""

from __future__ import annotations

import difflib
from typing import Iterable

EXIT_IO = 1  # A file, dataset, checkpoint or workdir that cannot be used; out of memory.
EXIT_CONFIG = 2  # A bad experiment, --set value, flag, or weights that do not fit.
EXIT_PREEMPTED = 3  # Stopped by a signal after saving a checkpoint: rerun to resume.
EXIT_NON_FINITE = 4  # A NaN/Inf loss or gradient with train.skip_nonfinite off.


class ConfigError(ValueError):
  """A bad experiment name, variant, key or value; the message says what is valid."""

  exit_status = EXIT_CONFIG


class UnknownNameError(KeyError):
  """A registry or config lookup of a name that does not exist."""

  exit_status = EXIT_CONFIG

  def __str__(self) -> str:  # KeyError would repr() the message.
    return str(self.args[0])


class PathError(ValueError):
  """A URL of a scheme jaxseg cannot use."""

  exit_status = EXIT_CONFIG


class WeightsMismatchError(ValueError):
  """A weights file that does not fit the configured model (its keys or shapes):
  a config problem (model.name, model.backbone.deep_stem, the weights named)."""

  exit_status = EXIT_CONFIG


class WeightsError(FileNotFoundError):
  """Weights a run needs are not usable here (missing, unreadable, a failed or
  unverifiable download); the message says what to do."""

  exit_status = EXIT_IO


class DatasetError(ValueError):
  """A dataset that cannot be prepared or read; the message names the file at fault."""

  exit_status = EXIT_IO


class CheckpointError(Exception):
  """A checkpoint cannot be used."""

  exit_status = EXIT_IO


class WorkdirBusyError(Exception):
  """Another process holds the workdir's lock."""

  exit_status = EXIT_IO


class Preempted(Exception):
  """Stopped by a signal after saving a checkpoint at the step reached."""

  exit_status = EXIT_PREEMPTED


class NonFiniteError(Exception):
  """A NaN/Inf loss or gradient with train.skip_nonfinite off."""

  exit_status = EXIT_NON_FINITE


# Each class above, for run.py: `isinstance(e, USER_ERRORS)` -> `e.exit_status`.
USER_ERRORS = (ConfigError, UnknownNameError, PathError, WeightsMismatchError, WeightsError,
               DatasetError, CheckpointError, WorkdirBusyError, Preempted, NonFiniteError)


# --- did-you-mean: every unknown name lists the closest valid ones ---------------


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
