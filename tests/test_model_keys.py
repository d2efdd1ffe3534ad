"""The `model` section is the chosen factory's own keys (jaxseg/config/sections.py,
jaxseg/models)."""

import dataclasses
import inspect

import flax.linen as nn
import jax
import numpy as np
import pytest

from jaxseg.config.from_checkpoint import config_from_checkpoint
from jaxseg.config.resolve import build_config
from jaxseg.errors import ConfigError
from jaxseg.models import MODELS, SECTION, build_model, model_names
from jaxseg.models.zoo_config import CHOICES
from jaxseg.registry import UnknownNameError
from jaxseg.runtime.build import build, synthetic_meta
from jaxseg.runtime.sharding import make_mesh

# Every `model` key before the factories took their own: a checkpoint written then
# saved all of them, whatever its model read (values of voc_fcn:smoke, width 4 for demo).
OLD_MODEL_KEYS = {
    "aspp_dropout": 0.5, "aux_head": True, "backbone_weights": "none", "bn_momentum": 0.9,
    "classifier_init_std": 0.01, "deep_stem": True, "depth": 2, "dropout": 0.1,
    "dtype": "float32", "fc_channels": 4096, "fc_dropout": 0.5, "head_channels": 512,
    "init": "kaiming_normal", "name": "mmseg_fcn_resnet50", "output_stride": 8,
    "vgg_batch_norm": False, "weights": "", "weights_dir": "~/.cache/jaxseg/weights",
    "width": 4, "zero_init_residual": True,
}


def test_inapplicable_key_fails_at_load_naming_its_owners():
  with pytest.raises(ConfigError) as info:
    build_config("demo", ["model.aspp_dropout=0.3"])
  message = str(info.value)
  assert message.startswith("config key 'model.aspp_dropout' does not apply to the chosen "
                            "model unet") and "\n" not in message
  assert "model deeplabv3_resnet101" in message and "model deeplabv3plus_resnet50" in message
  assert message.endswith("model keys now: backbone_weights, depth, dropout, dtype, name, weights, "
                          "weights_dir, width")
  with pytest.raises(UnknownNameError, match="does not apply to the chosen model unet"):
    SECTION.config(name="unet", aspp_dropout=0.3)
  with pytest.raises(ConfigError, match="did you mean 'model.width'"):
    build_config("demo", ["model.widht=8"])


def test_the_same_key_passes_with_a_model_that_takes_it():
  cfg = build_config("demo", ["model.name=deeplabv3_resnet50", "model.aspp_dropout=0.3"])
  assert cfg.model.aspp_dropout == 0.3
  assert build_model(cfg.model, 3).classifier.aspp_dropout == 0.3
  # mmseg's ASPP head has no dropout after the projection: the key is not its.
  with pytest.raises(ConfigError, match="does not apply to the chosen model mmseg_deeplabv3"):
    build_config("demo", ["model.name=mmseg_deeplabv3_resnet50", "model.aspp_dropout=0.3"])


@pytest.mark.parametrize("name", model_names())
def test_every_model_builds_from_its_section_of_exactly_its_keys(name):
  section = SECTION.config(name=name)
  assert set(section) == {*SECTION.shared, *MODELS.params(name)}
  assert isinstance(build_model(section, 3), nn.Module)
  # The factory gets the context and its keyword-only keys, nothing else: it cannot
  # read a key it does not declare (no section, no **kwargs).
  params = inspect.signature(MODELS.get(name)).parameters.values()
  assert [p.name for p in params if p.kind is not p.KEYWORD_ONLY] == ["num_classes"]
  assert "dtype" in MODELS.params(name)  # Every model computes in `model.dtype`.


def _fingerprint(obj):
  """What a built module is made of: its fields, nested modules' too; initializers
  by what they draw."""
  if isinstance(obj, nn.Module):
    return (type(obj).__name__, tuple((f.name, _fingerprint(getattr(obj, f.name)))
                                      for f in dataclasses.fields(obj)
                                      if f.name not in ("parent", "name")))
  if isinstance(obj, (tuple, list)):
    return tuple(_fingerprint(v) for v in obj)
  if callable(obj) and not isinstance(obj, type):  # An initializer (dtypes are types).
    return np.asarray(obj(jax.random.PRNGKey(0), (3, 3, 4, 4))).tobytes()
  return repr(obj)


def _another_value(key, value):
  if key in CHOICES:
    return next(v for v in CHOICES[key] if v != value)
  if key == "dtype":
    return "bfloat16"
  if isinstance(value, bool):
    return not value
  if isinstance(value, int):
    return value * 2
  return value / 2 if value else 0.25


@pytest.mark.parametrize("name", model_names())
def test_every_key_a_model_declares_is_one_it_reads(name):
  base = _fingerprint(build_model(SECTION.config(name=name), 3))
  assert _fingerprint(build_model(SECTION.config(name=name), 3)) == base  # Deterministic.
  for key, default in MODELS.params(name).items():
    changed = build_model(SECTION.config(name=name, **{key: _another_value(key, default)}), 3)
    assert _fingerprint(changed) != base, f"model {name} declares model.{key} but ignores it"


def test_an_old_checkpoint_config_with_every_old_model_key_rebuilds():
  # A ResNet segmentor: the keys it never read (width, fc_*, aspp_dropout, ...) are dropped.
  saved = {"experiment": "voc_fcn:smoke", "model": OLD_MODEL_KEYS}
  cfg = config_from_checkpoint(saved)
  assert set(cfg.model) == {*SECTION.shared, *MODELS.params("mmseg_fcn_resnet50")}
  assert all(cfg.model[k] == v for k, v in OLD_MODEL_KEYS.items() if k in cfg.model)
  assert isinstance(build_model(cfg.model, 21), nn.Module)
  # A U-Net, with --mode eval's own rebuild (abstract: the checkpoint fills the state).
  saved = {"experiment": "demo:smoke", "model": {**OLD_MODEL_KEYS, "name": "unet",
                                                  "dropout": 0.0, "backbone_weights": ""}}
  cfg = config_from_checkpoint(saved, ["eval.batch_size=8"])
  assert dict(cfg.model) == {"name": "unet", "backbone_weights": "", "weights": "",
                             "weights_dir": "~/.cache/jaxseg/weights", "dtype": "float32",
                             "width": 4, "depth": 2, "dropout": 0.0}
  run = build(cfg, synthetic_meta(3, (32, 32)), make_mesh(), abstract=True)
  conv = run.state.params["DoubleConv_0"]["ConvBNReLU_0"]["Conv_0"]["kernel"]
  assert conv.shape == (3, 3, 3, 4)  # width 4, as saved.
