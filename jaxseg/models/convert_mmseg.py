"""Load mmsegmentation segmentor checkpoints (`backbone.`, `decode_head.`, `auxiliary_head.`).

mmseg's model-zoo files hold `{'meta': ..., 'state_dict': ...}` (or the bare
state dict; `convert.load_state_dict` unwraps both). The `mmseg_*` models name
their submodules as mmseg's keys, so the map is mechanical: the segmentor's
`classifier`/`aux_classifier` are mmseg's `decode_head`/`auxiliary_head` and
`_<index>` is `.<index>`. Loading is strict: a tensor of the file that nothing
takes, or a variable that the file lacks, is an error listing them all, and
nothing is replaced unless everything fits.
"""

from __future__ import annotations

import re

import numpy as np

from jaxseg.errors import WeightsMismatchError
from jaxseg.models.convert import (LEAF_NAMES, LoadReport, flat_variables, match_state, replaced,
                                   unused_keys)

# jaxseg's Segmentor fields -> mmseg's EncoderDecoder attributes.
TOP_LEVEL = {"backbone": "backbone", "classifier": "decode_head",
             "aux_classifier": "auxiliary_head"}


def is_mmseg_segmentor(state: dict) -> bool:
  """True for an mmseg EncoderDecoder state dict (its head is `decode_head`)."""
  return any(key.startswith("decode_head.") for key in state)


def mmseg_key(collection: str, path: tuple[str, ...]) -> str | None:
  """The mmseg state-dict key of one Flax variable, or None if it has none."""
  top, *modules, leaf = path
  if top not in TOP_LEVEL or (collection, leaf) not in LEAF_NAMES:
    return None
  names = [TOP_LEVEL[top]] + [re.sub(r"_(\d+)", r".\1", name) for name in modules]
  return ".".join(names + [LEAF_NAMES[collection, leaf]])


def _listed(label: str, names: list[str]) -> str:
  return f"{label} ({len(names)}): " + ", ".join(names[:30]) + (" ..." if len(names) > 30 else "")


def load_mmseg_segmentor(variables, state: dict[str, np.ndarray], *, path: str,
                         ignore=frozenset()):
  """`(new_variables, report)` with every variable taken from the mmseg `state`
  (`ignore`: variable names whose shape may differ; see convert.match_state)."""
  flat = flat_variables(variables)
  match = match_state(flat, state, mmseg_key, ignore)
  missing = [f"{key or '?'} (for {name})" for key, name in match.missing]
  unused = unused_keys(state, match)
  problems = [_listed(label, names) for label, names in (
      ("shape mismatches", list(match.mismatched.values())), ("model variables the file lacks", missing),
      ("file tensors the model has no place for", unused)) if names]
  if problems:
    raise WeightsMismatchError(f"{path} is an mmseg checkpoint that does not fit this model "
                               "(an mmseg_* model of the same depth and heads?): "
                               + "; ".join(problems))
  return replaced(variables, flat, match.updates), LoadReport(
      path=path, loaded=sorted(match.used), missing=[], unused=[])
