"""Load SegFormer weights: transformers' (nvidia/*) and mmsegmentation's, encoder or whole model.

Input is a state dict of numpy arrays (`convert.load_state_dict`: .safetensors
without torch, .pth, .npz). The file's key names say whose it is (`file_style`):
- `hf`: the published names (`segformer.encoder.block.0.0.attention.self.query.weight`,
  `decode_head.linear_c.0.proj.weight`); the names transformers >= 5 gives its
  modules in memory (`stages.0.blocks.0.attention.q_proj`) are renamed back first.
- `mmseg`: `backbone.layers.0.1.0.attn.attn.in_proj_weight` (q, k, v stacked: split
  here), `decode_head.convs.0.conv.weight`; MiT pretrain files (`mit_b0_*.pth`)
  have the encoder keys without `backbone.`.
torch's Linear (out, in) and 1x1 Conv weights become Dense kernels (in, out).
Strict: every variable must be found and every file tensor used, except the
ImageNet classifier of an encoder checkpoint (`classifier.*`, `head.*`), which
a segmentor has no place for; nothing is replaced unless everything fits.
"""

from __future__ import annotations

import re

import numpy as np

from jaxseg.errors import WeightsMismatchError
from jaxseg.models.convert import (LEAF_NAMES, LoadReport, flat_variables, match_state, replaced,
                                   unused_keys)

# (regex on the '/'-joined Flax module path inside the backbone, replacement) per style.
ENCODER_KEYS = {
    "hf": (
        (r"^patch_embed_(\d+)/proj$", r"patch_embeddings.\1.proj"),
        (r"^patch_embed_(\d+)/norm$", r"patch_embeddings.\1.layer_norm"),
        (r"^block_(\d+)_(\d+)/norm1$", r"block.\1.\2.layer_norm_1"),
        (r"^block_(\d+)_(\d+)/norm2$", r"block.\1.\2.layer_norm_2"),
        (r"^block_(\d+)_(\d+)/attn/q$", r"block.\1.\2.attention.self.query"),
        (r"^block_(\d+)_(\d+)/attn/k$", r"block.\1.\2.attention.self.key"),
        (r"^block_(\d+)_(\d+)/attn/v$", r"block.\1.\2.attention.self.value"),
        (r"^block_(\d+)_(\d+)/attn/sr$", r"block.\1.\2.attention.self.sr"),
        (r"^block_(\d+)_(\d+)/attn/norm$", r"block.\1.\2.attention.self.layer_norm"),
        (r"^block_(\d+)_(\d+)/attn/proj$", r"block.\1.\2.attention.output.dense"),
        (r"^block_(\d+)_(\d+)/ffn/fc1$", r"block.\1.\2.mlp.dense1"),
        (r"^block_(\d+)_(\d+)/ffn/dwconv$", r"block.\1.\2.mlp.dwconv.dwconv"),
        (r"^block_(\d+)_(\d+)/ffn/fc2$", r"block.\1.\2.mlp.dense2"),
        (r"^norm_(\d+)$", r"layer_norm.\1"),
    ),
    "mmseg": (
        (r"^patch_embed_(\d+)/proj$", r"layers.\1.0.projection"),
        (r"^patch_embed_(\d+)/norm$", r"layers.\1.0.norm"),
        (r"^block_(\d+)_(\d+)/(norm1|norm2)$", r"layers.\1.1.\2.\3"),
        (r"^block_(\d+)_(\d+)/attn/(q|k|v)$", r"layers.\1.1.\2.attn.attn.\3_proj"),
        (r"^block_(\d+)_(\d+)/attn/proj$", r"layers.\1.1.\2.attn.attn.out_proj"),
        (r"^block_(\d+)_(\d+)/attn/(sr|norm)$", r"layers.\1.1.\2.attn.\3"),
        (r"^block_(\d+)_(\d+)/ffn/fc1$", r"layers.\1.1.\2.ffn.layers.0"),
        (r"^block_(\d+)_(\d+)/ffn/dwconv$", r"layers.\1.1.\2.ffn.layers.1"),
        (r"^block_(\d+)_(\d+)/ffn/fc2$", r"layers.\1.1.\2.ffn.layers.4"),
        (r"^norm_(\d+)$", r"layers.\1.2"),
    ),
}
HEAD_KEYS = {  # Inside the decoder, whose file prefix is `decode_head.` in both.
    "hf": ((r"^linear_c_(\d+)$", r"linear_c.\1.proj"), (r"^linear_fuse$", "linear_fuse"),
           (r"^batch_norm$", "batch_norm"), (r"^classifier$", "classifier")),
    "mmseg": ((r"^(convs|fusion_conv)(?:_(\d+))?/(conv|bn)$", r"\1.\2.\3"),
              (r"^conv_seg$", "conv_seg")),
}
ENCODER_PREFIX = {"hf": "segformer.encoder.", "mmseg": "backbone."}
# transformers >= 5 module names -> the published ones (its conversion_mapping, reversed).
HF_RENAMES = (
    (r"^segformer\.stages\.(\d+)\.patch_embeddings\.", r"segformer.encoder.patch_embeddings.\1."),
    (r"^segformer\.stages\.(\d+)\.blocks\.", r"segformer.encoder.block.\1."),
    (r"^segformer\.stages\.(\d+)\.layer_norm\.", r"segformer.encoder.layer_norm.\1."),
    (r"attention\.q_proj", "attention.self.query"), (r"attention\.k_proj", "attention.self.key"),
    (r"attention\.v_proj", "attention.self.value"),
    (r"attention\.sequence_reduction\.sequence_reduction", "attention.self.sr"),
    (r"attention\.sequence_reduction\.layer_norm", "attention.self.layer_norm"),
    (r"attention\.o_proj", "attention.output.dense"), (r"mlp\.fc1", "mlp.dense1"),
    (r"mlp\.fc2", "mlp.dense2"), (r"layernorm_before", "layer_norm_1"),
    (r"layernorm_after", "layer_norm_2"),
    (r"decode_head\.linear_projections", "decode_head.linear_c"),
)
IMAGENET_CLASSIFIER = ("classifier.", "head.")  # Of encoder checkpoints; never loaded.


def canonical_state(state: dict[str, np.ndarray], head: str) -> dict[str, np.ndarray]:
  """The state dict under the key names ENCODER_KEYS/HEAD_KEYS use."""
  out = {}
  for key, value in state.items():
    if head == "hf":
      for pattern, repl in HF_RENAMES:
        key = re.sub(pattern, repl, key)
    if head == "mmseg" and key.endswith(("attn.attn.in_proj_weight", "attn.attn.in_proj_bias")):
      stem, leaf = key.rsplit(".in_proj_", 1)
      for name, part in zip("qkv", np.split(np.asarray(value), 3, axis=0)):
        out[f"{stem}.{name}_proj.{leaf}"] = part
      continue
    out[key] = value
  return out


def is_segformer(variables) -> bool:
  """True for the variables of a `segformer_*` model (its MiT backbone)."""
  return "patch_embed_0" in variables["params"].get("backbone", {})


def file_style(state: dict) -> str:
  """'hf' or 'mmseg': whose key names the (canonical_state-renamed or raw) file uses."""
  hf = any(k.startswith(("segformer.", "decode_head.linear_c", "decode_head.linear_projections"))
           for k in state)
  return "hf" if hf else "mmseg"


def torch_key(collection: str, path: tuple[str, ...], head: str, encoder_prefix: str) -> str | None:
  top, *modules, leaf = path
  if (collection, leaf) not in LEAF_NAMES:
    return None
  rules, prefix = {"backbone": (ENCODER_KEYS[head], encoder_prefix),
                   "classifier": (HEAD_KEYS[head], "decode_head.")}.get(top, ((), ""))
  module = "/".join(modules)
  for pattern, repl in rules:
    if re.match(pattern, module):
      name = re.sub(pattern, repl, module).replace("..", ".")  # mmseg's fusion_conv has no index.
      return f"{prefix}{name}.{LEAF_NAMES[collection, leaf]}"
  return None


def to_dense_layout(array: np.ndarray, like_shape: tuple[int, ...]) -> np.ndarray:
  """torch Linear (out, in), or 1x1 conv (out, in, 1, 1), -> Dense kernel (in, out)."""
  if len(like_shape) == 2 and array.ndim in (2, 4):
    return array.reshape(array.shape[0], -1).T
  return array


def _lines(problems) -> list[str]:
  # Match.mismatched: a list of lines, or a dict of them by variable on newer main.
  return list(problems.values()) if isinstance(problems, dict) else list(problems)


def load_segformer(variables, state: dict[str, np.ndarray], *, path: str, whole: bool,
                   ignore=frozenset()):
  """`(new_variables, report)`: every variable from a segmentor checkpoint (`whole`,
  model.weights), or the backbone's from an encoder one; a ValueError listing every
  misfit otherwise. The file's key names (transformers' or mmseg's) say how to read it;
  a whole checkpoint must have the model's head style (`model.head.style`)."""
  head = file_style(state)
  state = canonical_state(state, head)
  if not whole:
    state = {k: v for k, v in state.items() if not k.startswith(IMAGENET_CLASSIFIER)}
  prefix = ENCODER_PREFIX[head]
  if not whole and not any(k.startswith(prefix) for k in state):
    prefix = ""  # mmseg's mit_b* pretrain files: the encoder's keys alone.
  flat = flat_variables(variables)
  chosen = {k: v for k, v in flat.items() if whole or k[1] == "backbone"}
  key_of = lambda collection, var_path: torch_key(collection, var_path, head, prefix)
  # Dense kernels in Flax layout first (convert.to_flax leaves 2-D arrays as they are).
  state = dict(state)
  for (collection, *var_path), old in chosen.items():
    key = key_of(collection, tuple(var_path))
    if key in state:
      state[key] = to_dense_layout(np.asarray(state[key]), tuple(old.shape))
  match = match_state(chosen, state, key_of, ignore)
  missing = [f"{key or '?'} (for {name})" for key, name in match.missing]
  problems = [f"{label} ({len(names)}): " + ", ".join(names[:30]) + (" ..." * (len(names) > 30))
              for label, names in (("shape mismatches", _lines(match.mismatched)),
                                   ("model variables the file lacks", missing),
                                   ("file tensors the model has no place for",
                                    unused_keys(state, match))) if names]
  if problems:
    raise WeightsMismatchError(
        f"{path} ({head}-style SegFormer weights) does not fit this model (another size? "
        "model.head.style, or mmseg's head.channels=256?): " + "; ".join(problems))
  return replaced(variables, flat, match.updates), LoadReport(
      path=path, loaded=sorted(match.used), missing=[], unused=[])
