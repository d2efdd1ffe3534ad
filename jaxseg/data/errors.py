"""The errors dataset preparation raises; each message names the file at fault."""

from __future__ import annotations


from jaxseg.errors import DatasetError


class DatasetMissingError(DatasetError, FileNotFoundError):
  """A source archive or folder is not where preparation looks for it.

  Also a FileNotFoundError so `run.py` reports it as one line, not a traceback.
  """
