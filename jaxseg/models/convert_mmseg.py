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

import flax
import jax
import numpy as np
from flax import traverse_util

from jaxseg.models.convert import COLLECTIONS, IGNORED_SUFFIXES, LEAF_NAMES, LoadReport, to_flax

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


def load_mmseg_segmentor(variables, state: dict[str, np.ndarray], *, path: str):
  """`(new_variables, report)` with every variable taken from the mmseg `state`."""
  variables = flax.core.unfreeze(variables)
  flat = {(c, *p): v for c in COLLECTIONS if c in variables
          for p, v in traverse_util.flatten_dict(variables[c]).items()}
  updates, missing, mismatched, used = {}, [], [], set()
  for (collection, *var_path), old in flat.items():
    key = mmseg_key(collection, tuple(var_path))
    if key is None or key not in state:
      missing.append(f"{key or '?'} (for {'/'.join([collection, *var_path])})")
      continue
    new = to_flax(np.asarray(state[key]), old.shape)
    if new.shape != tuple(old.shape):
      mismatched.append(f"{key}: file has {tuple(state[key].shape)}, model expects "
                        f"{tuple(old.shape)}")
      continue
    used.add(key)
    new = new.astype(old.dtype)
    # Keep the placement of (possibly sharded) initialised variables.
    updates[(collection, *var_path)] = (jax.device_put(new, old.sharding)
                                        if isinstance(old, jax.Array) else new)
  unused = sorted(k for k in state if k not in used and not k.endswith(IGNORED_SUFFIXES))
  problems = [_listed(label, names) for label, names in (
      ("shape mismatches", mismatched), ("model variables the file lacks", missing),
      ("file tensors the model has no place for", unused)) if names]
  if problems:
    raise ValueError(f"{path!r} is an mmseg checkpoint that does not fit this model "
                     "(an mmseg_* model of the same depth and heads?):\n  "
                     + "\n  ".join(problems))
  out = dict(variables)
  for collection in COLLECTIONS:
    if collection in variables:
      out[collection] = traverse_util.unflatten_dict(
          {k[1:]: updates[k] for k in flat if k[0] == collection})
  return out, LoadReport(path=path, loaded=sorted(used), missing=[], unused=[])
