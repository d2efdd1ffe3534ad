"""Load torchvision weights (.pth or .safetensors) into Flax variables (mmseg's: convert_mmseg).

Flax names mirror torchvision's modules with `_` for `.` before an index
(`layer1_0/downsample_1` is `layer1.0.downsample.1`); only the readable head
names need the table below.  Conversion is all-or-nothing: every tensor is
checked before any variable is replaced.
"""

from __future__ import annotations

import dataclasses
import os
import re

import flax
import jax
import numpy as np
from etils import epath
from flax import traverse_util

from jaxseg.errors import WeightsMismatchError
from jaxseg.models import pth, weights

# Readable head-module names -> indices in torchvision's head Sequentials.
FCN_HEAD_NAMES = {"conv": "0", "bn": "1", "cls": "4"}
DEEPLAB_HEAD_NAMES = {"aspp": "0", "conv": "1", "bn": "2", "cls": "4"}
LEAF_NAMES = {("params", "kernel"): "weight", ("params", "bias"): "bias",
              ("params", "scale"): "weight", ("batch_stats", "mean"): "running_mean",
              ("batch_stats", "var"): "running_var"}
COLLECTIONS = ("params", "batch_stats")
# Top-level modules that are heads (their children may carry readable names).
HEADS = ("classifier", "aux_classifier")
# torch's ConvTranspose2d kernels are (in, out, kh, kw) and spatially flipped
# relative to Flax's; torchvision has no such layer, so they are never mapped.
UNMAPPED_MODULE_PREFIXES = ("upscore_",)
# BN's step counter carries no weights; every other unused tensor is reported.
IGNORED_SUFFIXES = ("num_batches_tracked",)


@dataclasses.dataclass
class LoadReport:
  path: str
  loaded: list[str]  # torch keys copied into the variables
  missing: list[str]  # Flax variables ("collection/path") the file had nothing for
  unused: list[str]  # torch keys nothing asked for

  def summary(self) -> str:
    lines = [f"{self.path}: loaded {len(self.loaded)} tensors"]
    for label, names in (("missing (kept at init)", self.missing),
                         ("unused in file", self.unused)):
      if names:
        lines.append(f"  {label}: {len(names)}: {', '.join(names[:20])}"
                     + (" ..." if len(names) > 20 else ""))
    return "\n".join(lines)


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """A torch state dict as numpy arrays, from a .pth (read without torch, pth.py),
  .safetensors or .npz file; any path epath reads (gs:// included)."""
  file = epath.Path(path)
  if not file.exists():
    raise weights.WeightsError(f"weights file {path!r} does not exist")
  try:
    if path.endswith(".npz"):  # Torch-layout arrays keyed by torch names.
      with file.open("rb") as f, np.load(f) as arrays:
        return dict(arrays)
    if path.endswith(".safetensors"):
      try:
        from safetensors.numpy import load  # Lazy: only these files need it.
      except ImportError as e:
        raise ImportError(f"reading {path!r} needs safetensors (pip install safetensors); "
                          ".pth and .npz files need nothing extra") from e
      return dict(load(file.read_bytes()))
  except (OSError, ValueError) as e:
    raise pth.PthError(f"{path}: not readable as {os.path.splitext(path)[1]} "
                       f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
  state = pth.load(path)
  for wrapper in ("state_dict", "model"):  # Training checkpoints nest the weights.
    if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
      state = state[wrapper]
  if not isinstance(state, dict):
    raise pth.PthError(f"{path}: holds a {type(state).__name__}, not a state dict "
                       "({name: tensor}, or one under 'state_dict')")
  not_tensors = [k for k, v in state.items() if not isinstance(v, np.ndarray)]
  if not_tensors:
    raise pth.PthError(f"{path}: the state dict's {not_tensors[0]!r} is a "
                       f"{type(state[not_tensors[0]]).__name__}, not a tensor")
  return dict(state)


def torch_key(collection: str, path: tuple[str, ...], head_children: dict) -> str | None:
  """The torchvision key of one Flax variable, or None if it has no counterpart."""
  *modules, leaf = path
  if (collection, leaf) not in LEAF_NAMES or any(
      m.startswith(UNMAPPED_MODULE_PREFIXES) for m in modules):
    return None
  names = list(modules)
  if len(names) > 1 and names[0] in HEADS:
    table = (DEEPLAB_HEAD_NAMES if "aspp" in head_children[names[0]] else FCN_HEAD_NAMES)
    names[1] = table.get(names[1], names[1])
  names = [re.sub(r"_(\d+)", r".\1", name) for name in names]
  return ".".join(names + [LEAF_NAMES[collection, leaf]])


def to_flax(array: np.ndarray, like_shape: tuple[int, ...]) -> np.ndarray:
  """torch layout -> Flax layout: OIHW -> HWIO; a Linear (O, I) becomes a conv kernel."""
  if len(like_shape) == 4 and array.ndim == 2:  # fc6/fc7 as convolutions (FCN).
    kh, kw, _, _ = like_shape
    if array.shape[1] % (kh * kw) == 0:
      array = array.reshape(array.shape[0], array.shape[1] // (kh * kw), kh, kw)
  if array.ndim == 4:
    array = array.transpose(2, 3, 1, 0)
  return array


def flat_variables(variables) -> dict[tuple[str, ...], object]:
  """{(collection, *path): array} of the params and batch_stats of `variables`."""
  variables = flax.core.unfreeze(variables)
  return {(c, *p): v for c in COLLECTIONS if c in variables
          for p, v in traverse_util.flatten_dict(variables[c]).items()}


@dataclasses.dataclass
class Match:
  """Which tensors of a state dict go where (`match_state`); nothing is replaced yet."""

  updates: dict  # (collection, *path) -> array in Flax layout, typed and placed as the variable.
  missing: list[tuple[str | None, str]]  # (file key or None, variable name) the file lacks.
  mismatched: dict[str, str]  # Variable name -> what does not fit, for each one that does not.
  used: set[str]  # The file keys taken.


def match_state(flat: dict, state: dict[str, np.ndarray], key_of, ignore=frozenset()) -> Match:
  """Each variable of `flat` (flat_variables) with the tensor of `state` that
  `key_of(collection, path)` names (None: the variable has none), in Flax layout.
  The one lookup, layout and shape check behind both converters (torchvision's
  here, mmseg's in convert_mmseg.py), which differ in their key function only.
  A variable named in `ignore` whose shape does not fit is skipped, not reported."""
  match = Match({}, [], {}, set())
  for (collection, *var_path), old in flat.items():
    name = "/".join([collection, *var_path])
    key = key_of(collection, tuple(var_path))
    if key is None or key not in state:
      match.missing.append((key, name))
      continue
    new = to_flax(np.asarray(state[key]), old.shape)
    if new.shape != tuple(old.shape):
      if name not in ignore:
        match.mismatched[name] = (f"{key}: file has {tuple(state[key].shape)} (-> {new.shape}), "
                                  f"model expects {tuple(old.shape)} for {name}")
      match.used.add(key)  # Not unused: the model has a place for it, of another shape.
      continue
    match.used.add(key)
    new = new.astype(old.dtype)
    # Keep the placement of (possibly sharded) initialised variables.
    match.updates[(collection, *var_path)] = (jax.device_put(new, old.sharding)
                                              if isinstance(old, jax.Array) else new)
  return match


def unused_keys(state: dict, match: Match) -> list[str]:
  """The file's tensors nothing took (num_batches_tracked and the like aside)."""
  return sorted(k for k in state if k not in match.used and not k.endswith(IGNORED_SUFFIXES))


def replaced(variables, flat: dict, updates: dict):
  """`variables` with the `updates` of its flat entries (flat_variables) put in."""
  variables = flax.core.unfreeze(variables)
  out = dict(variables)
  for collection in COLLECTIONS:
    if collection in variables:
      out[collection] = traverse_util.unflatten_dict(
          {k[1:]: updates.get(k, v) for k, v in flat.items() if k[0] == collection})
  return out


def load_into(variables, state: dict[str, np.ndarray], *, path: str, prefix: str = "",
              ignore=frozenset()):
  """`(new_variables, report)`: variables whose key starts with `prefix` taken from `state`.

  `prefix` selects a submodule (e.g. "backbone") whose keys the file has without
  it, as a torchvision classification checkpoint has the backbone's.
  """
  flat = flat_variables(variables)
  head_children = {}
  for (_, *modules, _leaf) in flat:
    if len(modules) > 1 and modules[0] in HEADS:
      head_children.setdefault(modules[0], set()).add(modules[1])

  def key_of(collection, var_path):
    key = torch_key(collection, var_path, head_children)
    return key[len(prefix) + 1:] if key is not None and prefix else key

  chosen = {k: v for k, v in flat.items() if not prefix or k[1] == prefix}
  match = match_state(chosen, state, key_of, ignore)
  if match.mismatched:
    raise WeightsMismatchError(
        f"{path} does not fit the model: {len(match.mismatched)} shape mismatch(es): "
        + "; ".join(list(match.mismatched.values())[:10]))
  if prefix and match.missing:  # Backbone weights: every backbone variable from the file.
    listed = ", ".join(key or name for key, name in match.missing[:5])
    raise WeightsMismatchError(
        f"{path} does not fit the model's {prefix}: it lacks {len(match.missing)} of its "
        f"tensors: {listed}{' ...' * (len(match.missing) > 5)} (another depth or stem?)")
  if not match.used:
    raise WeightsMismatchError(
        f"no tensor of {path} matches the model (prefix={prefix!r}); "
        f"file keys start with {sorted(state)[:5]}")
  return replaced(variables, flat, match.updates), LoadReport(
      path=path, loaded=sorted(match.used), missing=[name for _, name in match.missing],
      unused=unused_keys(state, match))
