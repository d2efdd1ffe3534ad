"""The `model` section is the chosen factory's own keys, groups nested (model.backbone,
model.head, model.aux_head), each declared once (jaxseg/declare.py, jaxseg/models)."""

import dataclasses
import inspect

import flax.linen as nn
import jax
import numpy as np
import pytest

from jaxseg.config.from_checkpoint import config_from_checkpoint
from jaxseg.config.migrate import migrate
from jaxseg.config.overrides import flat_dict
from jaxseg.config.resolve import build_config
from jaxseg.errors import ConfigError
from jaxseg.models import MODELS, SECTION, build_model, model_names
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
    build_config("demo", ["model.head.aspp_dropout=0.3"])
  message = str(info.value)
  assert message.startswith("config key 'model.head.aspp_dropout' does not apply to the "
                            "chosen model unet") and "\n" not in message
  assert "model deeplabv3_resnet101" in message and "model deeplabv3plus_resnet50" in message
  assert message.endswith("model keys now: backbone_weights, depth, dropout, dtype, name, weights, "
                          "weights_dir, width")
  with pytest.raises(UnknownNameError, match="does not apply to the chosen model unet"):
    SECTION.config(name="unet", head=dict(aspp_dropout=0.3))
  with pytest.raises(ConfigError, match="did you mean 'model.width'"):
    build_config("demo", ["model.widht=8"])


def test_a_group_key_of_another_model_fails_naming_its_owner():
  with pytest.raises(ConfigError) as info:
    build_config("voc_fcn:smoke", ["model.backbone.fc_channels=64"])
  message = str(info.value)
  assert message.startswith("config key 'model.backbone.fc_channels' does not apply to the "
                            "chosen model mmseg_fcn_resnet50 (it is a key of model fcn16s, "
                            "model fcn32s, model fcn8s)") and "\n" not in message
  assert "model keys now: " in message and " backbone.output_stride," in message
  # Inside a group a typo is still a typo.
  with pytest.raises(ConfigError, match="did you mean 'model.backbone.output_stride'"):
    build_config("voc_fcn:smoke", ["model.backbone.outptu_stride=16"])
  # Section.config refuses it too, where fill would drop it for a swapped-in model.
  with pytest.raises(UnknownNameError, match="'model.head.dropout' does not apply to the "
                                             "chosen model deeplabv3_resnet50"):
    SECTION.config(name="deeplabv3_resnet50", head=dict(dropout=0.3))


def test_a_bad_nested_value_fails_at_load_naming_the_dotted_key():
  with pytest.raises(ConfigError) as info:
    build_config("voc_fcn:smoke", ["model.backbone.output_stride=7"])
  assert str(info.value) == "model.backbone.output_stride=7: expected one of [8, 16, 32]"
  with pytest.raises(ConfigError, match=r"^model\.head\.style='hff': expected one of "
                                        r"\['hf', 'mmseg'\] \(did you mean 'hf'\?\)$"):
    build_config("ade20k_segformer_b0:smoke", ["model.head.style=hff"])


def test_a_groups_defaults_are_its_factorys_own():
  # One SegFormerHeadArgs, each size's published decoder width as its default.
  assert [MODELS.params(f"segformer_b{i}")["head"]["channels"] for i in range(6)] == [
      256, 256, 768, 768, 768, 768]
  assert build_model(SECTION.config(name="segformer_b2"), 3).classifier.channels == 768
  # DeepLabv3's head has no dropout; v3+'s decoder has one.
  assert "dropout" not in MODELS.params("deeplabv3_resnet50")["head"]
  assert MODELS.params("deeplabv3plus_resnet50")["head"]["dropout"] == 0.1


def test_the_same_key_passes_with_a_model_that_takes_it():
  cfg = build_config("demo", ["model.name=deeplabv3_resnet50", "model.head.aspp_dropout=0.3"])
  assert cfg.model.head.aspp_dropout == 0.3
  assert build_model(cfg.model, 3).classifier.aspp_dropout == 0.3
  # mmseg's ASPP head has no dropout after the projection: the key is not its.
  with pytest.raises(ConfigError, match="does not apply to the chosen model mmseg_deeplabv3"):
    build_config("demo", ["model.name=mmseg_deeplabv3_resnet50", "model.head.aspp_dropout=0.3"])


def test_output_stride_set_on_the_command_line_reaches_the_built_model():
  for spec, name in (("voc_fcn:smoke", "mmseg_fcn_resnet50"),
                     ("voc_deeplabv3:smoke,tv", "deeplabv3_resnet50")):
    default = build_model(build_config(spec).model, 21)
    cfg = build_config(spec, ["model.backbone.output_stride=16"])
    assert (cfg.model.name, cfg.model.backbone.output_stride) == (name, 16)
    model = build_model(cfg.model, 21)
    assert (default.backbone.output_stride, model.backbone.output_stride) == (8, 16)
    assert model.aux_classifier.stride == 16  # layer3 is no longer dilated.
  assert model.classifier.rates == (6, 12, 18)  # ASPP's rates follow the stride.


def test_backbone_depth_is_an_argument_its_model_name_defaults():
  """`--set model.backbone.depth=101` turns a recipe's R50 into an R101 (mmseg's
  fcn_r101-d8); a flat-layout checkpoint's depth was its model name's."""
  cfg = build_config("voc_fcn:smoke", ["model.backbone.depth=101"])
  assert (cfg.model.name, build_model(cfg.model, 21).backbone.depth) == ("mmseg_fcn_resnet50", 101)
  assert SECTION.config(name="deeplabv3_resnet101").backbone.depth == 101
  with pytest.raises(ConfigError, match=r"model.backbone.depth=34: expected one of \[50, 101\]"):
    build_config("voc_fcn:smoke", ["model.backbone.depth=34"])
  saved = {"experiment": "voc_fcn:smoke",
           "model": {**OLD_MODEL_KEYS, "name": "mmseg_fcn_resnet50"}}
  assert config_from_checkpoint(saved).model.backbone.depth == 50
  saved = {"experiment": "voc_fcn:smoke,tv",
           "model": {**OLD_MODEL_KEYS, "name": "fcn_resnet101", "deep_stem": False}}
  assert config_from_checkpoint(saved).model.backbone.depth == 101


def test_head_and_aux_head_dropout_are_independent():
  for spec in ("voc_fcn:smoke", "voc_fcn:smoke,tv"):
    model = build_model(build_config(spec, ["model.head.dropout=0.3"]).model, 21)
    assert (model.classifier.dropout, model.aux_classifier.dropout) == (0.3, 0.1)
    model = build_model(build_config(spec, ["model.aux_head.dropout=0.2"]).model, 21)
    assert (model.classifier.dropout, model.aux_classifier.dropout) == (0.1, 0.2)


def test_a_recipes_head_keys_survive_swapping_in_a_model_without_them():
  # voc_fcn sets head.dropout and aux_head.*; torchvision's DeepLabHead has no dropout.
  cfg = build_config("voc_fcn:smoke", ["model.name=deeplabv3_resnet50"])
  assert dict(cfg.model.head) == {"aspp_dropout": 0.5, "classifier_init_std": 0.01}
  assert (cfg.model.aux_head.dropout, cfg.model.backbone.deep_stem) == (0.1, True)
  cfg = build_config("voc_fcn:smoke", ["model.name=fcn8s"])  # No head group at all.
  assert "head" not in cfg.model and cfg.model.backbone.output_stride == 8


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


def _declared(params: dict, prefix: str = ""):
  """(dotted key, Param) of every argument, groups' fields included."""
  for key, p in params.items():
    if p.group is not None:
      yield from _declared(p.group, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", p


def _another_value(key, p):
  if key == "dtype":
    return "bfloat16"  # 'auto' is float32 on a CPU: the next choice would change nothing.
  if p.arg.choices:
    return next(v for v in p.arg.choices if v != p.default)
  if isinstance(p.default, bool):
    return not p.default
  if isinstance(p.default, int):
    return p.default * 2
  return p.default / 2 if p.default else 0.25


def _nested(dotted: str, value) -> dict:
  head, _, rest = dotted.partition(".")
  return {head: _nested(rest, value) if rest else value}


@pytest.mark.parametrize("name", model_names())
def test_every_key_a_model_declares_is_one_it_reads(name):
  base = _fingerprint(build_model(SECTION.config(name=name), 3))
  assert _fingerprint(build_model(SECTION.config(name=name), 3)) == base  # Deterministic.
  for key, p in _declared(MODELS.declared(name)):
    changed = build_model(SECTION.config(name=name, **_nested(key, _another_value(key, p))), 3)
    assert _fingerprint(changed) != base, f"model {name} declares model.{key} but ignores it"


def test_an_old_checkpoint_config_with_every_old_model_key_rebuilds():
  # A ResNet segmentor: the keys it never read (width, fc_*, aspp_dropout, ...) are dropped.
  saved = {"experiment": "voc_fcn:smoke", "model": OLD_MODEL_KEYS}
  cfg = config_from_checkpoint(saved)
  assert set(cfg.model) == {*SECTION.shared, *MODELS.params("mmseg_fcn_resnet50")}
  # Each value as saved, at its new key (model.dropout in both heads' groups).
  moved = migrate({f"model.{k}": v for k, v in OLD_MODEL_KEYS.items()})
  rebuilt = flat_dict({"model": cfg.model.to_dict()})
  assert set(rebuilt) <= set(moved) and all(moved[k] == v for k, v in rebuilt.items())
  assert isinstance(build_model(cfg.model, 21), nn.Module)
  # A SegFormer: the old string model.head is its head's style now.
  saved = {"experiment": "ade20k_segformer_b0:smoke",
           "model": {"name": "segformer_b0", "head": "mmseg", "head_channels": 64,
                     "dropout": 0.2, "drop_path_rate": 0.3, "dtype": "float32"}}
  cfg = config_from_checkpoint(saved)
  assert cfg.model.head.to_dict() == {"style": "mmseg", "channels": 64, "dropout": 0.2}
  assert cfg.model.backbone.drop_path_rate == 0.3
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
