"""The errors dataset preparation raises; each message names the file at fault."""

from __future__ import annotations


class DatasetError(ValueError):
  """A dataset that cannot be prepared; the message names the file at fault."""


class DatasetMissingError(DatasetError, FileNotFoundError):
  """A source archive or folder is not where preparation looks for it.

  Also a FileNotFoundError so `run.py` reports it as one line, not a traceback.
  """
