"""The weights a fresh run starts from: found, read and checked against the model once,
before any dataset is prepared, so a wrong file fails in seconds with one line.

Missing or unreadable weights are a WeightsError or PthError (run.py: exit 1);
weights whose keys or shapes do not fit the configured model a WeightsMismatchError
(exit 2: the config names a model, or a file, that is not the other's).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxseg.models import build_model, convert

# Two class counts to build the model with: the variables whose shapes differ between
# them (the classifiers) are checked once the dataset says how many classes it has.
PROBE_CLASSES = (2, 3)


def abstract_variables(model_cfg: ml_collections.ConfigDict, num_classes: int, shape_HWC):
  """The model's variables as ShapeDtypeStructs (nothing computed)."""
  model = build_model(model_cfg, num_classes)
  dummy_1HWC = jax.ShapeDtypeStruct((1, *shape_HWC), jnp.float32)
  return jax.eval_shape(
      lambda x: model.init({"params": jax.random.key(0), "dropout": jax.random.key(0)}, x,
                           train=False), dummy_1HWC)


def check_fits(model_cfg: ml_collections.ConfigDict, pretrained: convert.Pretrained,
               shape_HWC) -> None:
  """Raises WeightsMismatchError unless `pretrained` fits the model `model_cfg` builds,
  but for the variables whose shapes follow the class count (not known yet)."""
  probes = [abstract_variables(model_cfg, n, shape_HWC) for n in PROBE_CLASSES]
  flat = [convert.flat_variables(v) for v in probes]
  by_classes = {"/".join(k) for k, v in flat[0].items() if flat[1][k].shape != v.shape}
  convert.load_pretrained_state(probes[0], pretrained, ignore=by_classes)


def resolve(cfg: ml_collections.ConfigDict) -> convert.Pretrained | None:
  """`model.weights` or `model.backbone_weights` (a name: fetched once and verified),
  read and checked against the model; None when the config loads nothing."""
  pretrained = convert.read_pretrained(cfg.model)
  if pretrained is not None:
    check_fits(cfg.model, pretrained, (*cfg.augment.crop_size, 3))
  return pretrained
