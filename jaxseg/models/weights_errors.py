"""The two ways pretrained weights fail a run, shared by the named-weights caches
(weights.py, hf_hub.py) and the converters."""

from __future__ import annotations


class WeightsError(FileNotFoundError):
  """Weights a run needs are not usable here; the message says what to do.

  A FileNotFoundError, so run.py reports it as one line with exit status 1.
  """


class WeightsMismatchError(ValueError):
  """A weights file that does not fit the configured model (its keys or shapes):
  a config problem (model.depth, deep_stem, the weights named), so run.py exits 2."""
