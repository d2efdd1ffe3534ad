"""The weights a fresh run starts from: found, read and checked against the model once,
before any dataset is prepared, so a wrong file fails in seconds with one line.

Missing or unreadable weights are a WeightsError or PthError (run.py: exit 1);
weights whose keys or shapes do not fit the configured model a WeightsMismatchError
(exit 2: the config names a model, or a file, that is not the other's).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxseg.models import build_model, convert, convert_mmseg, convert_segformer, weights

# Two class counts to build the model with: the variables whose shapes differ between
# them (the classifiers) are checked once the dataset says how many classes it has.
PROBE_CLASSES = (2, 3)


@dataclasses.dataclass
class Pretrained:
  """The weights a fresh run starts from, read once: `model.weights` (a whole
  segmentation checkpoint) or `model.backbone_weights`."""

  path: str
  state: dict[str, np.ndarray]
  whole: bool  # model.weights: every variable; else the backbone's only.


def read_pretrained(model_cfg, *, backbone: bool = True) -> Pretrained | None:
  """`model.weights`, else (if `backbone`) `model.backbone_weights` (a named one
  fetched and verified, hf:// names for either), read; None when the config names
  nothing to load."""
  path = weights.whole_path(model_cfg) or (weights.backbone_path(model_cfg) if backbone else "")
  if not path:
    return None
  return Pretrained(path, convert.load_state_dict(path), whole=bool(model_cfg.weights))


def load_pretrained_state(variables, pretrained: Pretrained, *, ignore=frozenset()):
  """`(new_variables, report)`: `variables` (arrays, or ShapeDtypeStructs to check the
  fit only) with `pretrained` loaded. `model.weights` is a torchvision segmentation
  checkpoint or an mmsegmentation one (recognised by its `decode_head.` keys; see
  convert_mmseg). `ignore`: variable names whose shape may differ (then not loaded)."""
  if convert_segformer.is_segformer(variables):  # Its own key names: convert_segformer.
    return convert_segformer.load_segformer(variables, pretrained.state, path=pretrained.path,
                                            whole=pretrained.whole, ignore=ignore)
  if pretrained.whole and convert_mmseg.is_mmseg_segmentor(pretrained.state):
    return convert_mmseg.load_mmseg_segmentor(variables, pretrained.state, path=pretrained.path,
                                              ignore=ignore)
  return convert.load_into(variables, pretrained.state, path=pretrained.path,
                   prefix="" if pretrained.whole else "backbone", ignore=ignore)


def apply_pretrained(model_cfg, variables, *, verbose: bool = True, backbone: bool = True):
  """Variables with `model.weights`, else `model.backbone_weights`, loaded; or unchanged.

  `backbone=False` skips the backbone weights (a checkpoint is about to replace them).
  """
  pretrained = read_pretrained(model_cfg, backbone=backbone)
  if pretrained is None:
    return variables
  variables, report = load_pretrained_state(variables, pretrained)
  if verbose:
    print(report.summary())
  return variables


def abstract_variables(model_cfg: ml_collections.ConfigDict, num_classes: int, shape_HWC):
  """The model's variables as ShapeDtypeStructs (nothing computed)."""
  model = build_model(model_cfg, num_classes)
  dummy_1HWC = jax.ShapeDtypeStruct((1, *shape_HWC), jnp.float32)
  return jax.eval_shape(
      lambda x: model.init({"params": jax.random.key(0), "dropout": jax.random.key(0)}, x,
                           train=False), dummy_1HWC)


def check_fits(model_cfg: ml_collections.ConfigDict, pretrained: Pretrained,
               shape_HWC) -> None:
  """Raises WeightsMismatchError unless `pretrained` fits the model `model_cfg` builds,
  but for the variables whose shapes follow the class count (not known yet)."""
  probes = [abstract_variables(model_cfg, n, shape_HWC) for n in PROBE_CLASSES]
  flat = [convert.flat_variables(v) for v in probes]
  by_classes = {"/".join(k) for k, v in flat[0].items() if flat[1][k].shape != v.shape}
  load_pretrained_state(probes[0], pretrained, ignore=by_classes)


def resolve(cfg: ml_collections.ConfigDict) -> Pretrained | None:
  """`model.weights` or `model.backbone_weights` (a name: fetched once and verified),
  read and checked against the model; None when the config loads nothing."""
  pretrained = read_pretrained(cfg.model)
  if pretrained is not None:
    check_fits(cfg.model, pretrained, (*cfg.augment.crop_size, 3))
  return pretrained
