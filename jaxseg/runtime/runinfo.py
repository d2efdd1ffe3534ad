"""What a run settles at start and says in one line: the compute dtype `model.dtype=auto`
resolves to here, the devices, processes and mesh, and how the batch splits over them."""

from __future__ import annotations

import copy

import jax
import ml_collections

from jaxseg.models.layers import resolve_dtype

# The global batch each mode splits over the devices (config.BATCH_KEYS lists all of them).
BATCH_KEY = {"train": "train.batch_size", "eval": "eval.batch_size",
             "predict": "predict.batch_size"}


def with_resolved_dtype(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of `cfg` whose `model.dtype` names the dtype ('auto' resolved on this backend).

  Resolved once, before a checkpoint's config is compared or saved: checkpoints store
  the dtype the run computed in, and a resumed run compares it with what 'auto'
  gives on its own backend (checkpoint.RESUMABLE_KEYS lets it differ; it is said).
  """
  if "dtype" not in cfg.model or cfg.model.dtype == resolve_dtype(cfg.model.dtype):
    return cfg
  cfg = copy.deepcopy(cfg)
  cfg.model.dtype = resolve_dtype(cfg.model.dtype)
  return cfg


def start_line(cfg: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, mode: str) -> str:
  """'train: tpu, 8 x TPU v5 lite, 1 process, mesh data=8, compute bfloat16, batch 16 = 2 per device'."""
  kinds = sorted({d.device_kind for d in jax.devices()})
  processes = jax.process_count()
  section, key = BATCH_KEY[mode].split(".")
  batch = cfg[section][key]
  per_device = f"{batch // mesh.size} per device"
  if mode == "train" and cfg.train.grad_accum_steps > 1:
    per_device += f" in {cfg.train.grad_accum_steps} micro-batches"
  dtype = resolve_dtype(cfg.model.dtype) if "dtype" in cfg.model else "float32"
  mesh_shape = " x ".join(f"{name}={size}" for name, size in mesh.shape.items())
  return (f"{mode}: {jax.default_backend()}, {jax.device_count()} x {', '.join(kinds)}, "
          f"{processes} process{'es' * (processes != 1)}, mesh {mesh_shape}, compute {dtype}, "
          f"batch {batch} = {per_device}")
