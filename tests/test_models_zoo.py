"""ResNet/VGG zoo: torchvision parameter parity, shapes and strides, config checks, init."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.models import SECTION, build_model, model_names
from jaxseg.models.layers import conv2d, kernel_init
from jaxseg.models.resnet import FEATURE_STRIDES, BasicBlock, Bottleneck, ResNet, feature_channels
from jaxseg.models.vgg import VGG16
from tests.modelkit import model_config

ZOO = ("fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101",
       "deeplabv3plus_resnet50", "deeplabv3plus_resnet101", "fcn32s", "fcn16s", "fcn8s",
       "mmseg_fcn_resnet50", "mmseg_deeplabv3_resnet50", "mmseg_deeplabv3plus_resnet50")
KEY = jax.random.PRNGKey(0)
X_BHWC = jnp.zeros((2, 64, 64, 3), jnp.float32)



def param_shapes(model, x=X_BHWC):
  return jax.eval_shape(lambda: model.init(KEY, x, train=False))


def count(tree) -> int:
  return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))


def test_zoo_models_are_registered():
  assert set(ZOO) <= set(model_names())


@pytest.mark.parametrize("name, expected", [
    # torchvision.models.segmentation with num_classes=21, aux_loss=True:
    # sum(p.numel() for p in model.parameters()).
    ("fcn_resnet50", 35_322_218), ("fcn_resnet101", 54_314_346),
    ("deeplabv3_resnet50", 42_004_074), ("deeplabv3_resnet101", 60_996_202),
    # No torchvision twin: pinned so architecture changes are deliberate.
    ("deeplabv3plus_resnet50", 42_717_386), ("fcn32s", 134_346_581),
])
def test_param_count_matches_torchvision(name, expected):
  assert count(param_shapes(build_model(SECTION.config(name=name), 21))["params"]) == expected


def test_aux_head_off_removes_aux_params_and_output():
  model = build_model(SECTION.config(name="fcn_resnet50", aux_head=dict(enabled=False)), 21)
  variables = param_shapes(model)
  assert "aux_classifier" not in variables["params"]
  assert count(variables["params"]) == 35_322_218 - (1024 * 256 * 9 + 2 * 256 + 256 * 21 + 21)
  _, aux = jax.eval_shape(lambda v: model.apply(v, X_BHWC, train=False), variables)
  assert aux == {}


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("name", ZOO)
def test_train_mode_output_shapes(name, output_stride):
  model = build_model(SECTION.config(name=name, backbone=dict(output_stride=output_stride)), 5)
  variables = param_shapes(model)

  def train_apply(v):
    return model.apply(v, X_BHWC, train=True, rngs={"dropout": KEY}, mutable=["batch_stats"])

  (logits, aux), updates = jax.eval_shape(train_apply, variables)
  assert logits.shape == (2, 64, 64, 5) and logits.dtype == jnp.float32
  if name.startswith(("fcn_", "deeplab", "mmseg_")):
    assert aux["aux_logits"].shape == (2, 64, 64, 5) and aux["aux_logits"].dtype == jnp.float32
  assert jax.tree.structure(updates.get("batch_stats", {})) == jax.tree.structure(
      variables.get("batch_stats", {}))


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("depth, deep_stem", [(18, False), (34, False), (50, False),
                                              (50, True), (101, False), (152, False)])
def test_resnet_feature_strides(depth, deep_stem, output_stride):
  model = ResNet(depth=depth, output_stride=output_stride, deep_stem=deep_stem)
  feats = jax.eval_shape(lambda v: model.apply(v, X_BHWC, train=False), param_shapes(model))
  for name, channels in feature_channels(depth).items():
    stride = min(FEATURE_STRIDES[name], output_stride)
    assert feats[name].shape == (2, 64 // stride, 64 // stride, channels), name


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_vgg_feature_strides(batch_norm, output_stride):
  model = VGG16(batch_norm=batch_norm, output_stride=output_stride)
  variables = param_shapes(model)
  feats = jax.eval_shape(lambda v: model.apply(v, X_BHWC, train=False), variables)
  strides = {"pool1": 2, "pool2": 4, "pool3": 8, "pool4": 16, "pool5": 32, "fc7": 32}
  for name, stride in strides.items():
    s = min(stride, output_stride)
    assert feats[name].shape[:3] == (2, 64 // s, 64 // s), name
  # torchvision vgg16(_bn) minus the 1000-way fc8.
  expected = (138_357_544 if not batch_norm else 138_365_992) - 4_097_000
  assert count(variables["params"]) == expected
  assert ("batch_stats" in variables) == batch_norm


def test_deep_stem_layout_matches_mmseg_v1c():
  params = param_shapes(ResNet(depth=50, deep_stem=True))["params"]
  assert [params[f"stem_{i}"]["kernel"].shape for i in (0, 3, 6)] == [
      (3, 3, 3, 32), (3, 3, 32, 32), (3, 3, 32, 64)]
  assert "conv1" not in params


def test_dilation_follows_torchvision_replace_stride_with_dilation():
  # At OS8 the first block of layer3 keeps dilation 1 and of layer4 dilation 2.
  model = ResNet(depth=50, output_stride=8)
  ops = jax.make_jaxpr(lambda v: model.apply(v, X_BHWC, train=False))(param_shapes(model))
  dilations = [eqn.params["rhs_dilation"] for eqn in ops.jaxpr.eqns
               if eqn.primitive.name == "conv_general_dilated"
               and eqn.params["rhs_dilation"] != (1, 1)]
  # layer3: blocks 1..5 at 2; layer4: block 0 at 2, blocks 1..2 at 4 (3x3 convs only).
  assert dilations == [(2, 2)] * 5 + [(2, 2)] + [(4, 4)] * 2


@pytest.mark.parametrize("name", ["deeplabv3plus_resnet50", "fcn8s"])
def test_real_train_forward_batch2(name):
  stride = 16 if "resnet" in name else 32
  model = build_model(SECTION.config(name=name, backbone=dict(output_stride=stride)), 3)
  # numpy-filled params: a real init of 134M params costs ~10 s on 2 CPU cores.
  rng = np.random.default_rng(0)
  variables = jax.tree.map(lambda s: rng.standard_normal(s.shape, np.float32) * 0.02,
                           param_shapes(model))
  x = jax.random.normal(KEY, X_BHWC.shape)

  @jax.jit
  def train_apply(v, x, key):
    return model.apply(v, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"])

  (logits, aux), updates = train_apply(variables, x, KEY)
  assert logits.shape == (2, 64, 64, 3) and bool(jnp.isfinite(logits).all())
  if "batch_stats" in variables:
    before, after = (jax.tree.leaves(t) for t in (variables["batch_stats"],
                                                 updates["batch_stats"]))
    assert any(not np.allclose(a, b) for a, b in zip(before, after))
  # Dropout is live in training: another key, other logits.
  (logits2, _), _ = train_apply(variables, x, jax.random.PRNGKey(1))
  assert not np.allclose(logits, logits2)


@pytest.mark.parametrize("values, message", [
    (dict(init="he"), "model.init='he': expected one of ['kaiming_normal', 'xavier_uniform']"),
    (dict(backbone=dict(output_stride=4)),
     "model.backbone.output_stride=4: expected one of [8, 16, 32]")])
def test_unknown_config_values_name_the_key(values, message):
  with pytest.raises(ValueError) as info:
    SECTION.check(SECTION.config(name="fcn_resnet50", **values))
  assert str(info.value).startswith(message)


def test_kaiming_normal_is_fan_out_and_xavier_is_bounded():
  x = jnp.zeros((1, 8, 8, 512))
  init = lambda name: conv2d(512, 3, init=kernel_init(name)).init(KEY, x)["params"]["kernel"]
  kernel = np.asarray(init("kaiming_normal"))  # (3, 3, 512, 512)
  np.testing.assert_allclose(kernel.std(), np.sqrt(2 / (3 * 3 * 512)), rtol=0.02)
  assert abs(kernel.mean()) < 1e-3
  xavier = np.asarray(init("xavier_uniform"))
  limit = np.sqrt(6 / (9 * 512 + 9 * 512))
  assert np.abs(xavier).max() <= limit
  np.testing.assert_allclose(xavier.std(), limit / np.sqrt(3), rtol=0.02)


def test_init_option_reaches_every_conv():
  shape = (3, 3, 256, 256)
  xavier_std = np.sqrt(6 / (2 * 9 * 256)) / np.sqrt(3)
  for model_name in ("deeplabv3plus_resnet50", "fcn8s"):
    model = build_model(SECTION.config(name=model_name, init="xavier_uniform"), 21)
    modules = [model.backbone, getattr(model, "classifier", None),
               getattr(model, "aux_classifier", None)]
    for module in filter(None, modules):
      kernel = np.asarray(module.kernel_init(KEY, shape))
      np.testing.assert_allclose(kernel.std(), xavier_std, rtol=0.05)


@pytest.mark.parametrize("block", [BasicBlock, Bottleneck])
def test_zero_init_residual_zeroes_last_bn_of_each_block(block):
  x = jnp.zeros((1, 8, 8, 64))
  last_bn = "bn2" if block is BasicBlock else "bn3"
  for zero in (False, True):
    unit = block(planes=64, stride=1, dilation=1, downsample=True, zero_init_residual=zero,
                 kernel_init=kernel_init("kaiming_normal"), bn_momentum=0.9,
                 dtype=jnp.float32)
    params = jax.jit(lambda: unit.init(KEY, x, train=False))()["params"]
    scale = np.asarray(params[last_bn]["scale"])
    assert (scale == 0).all() if zero else (scale == 1).all()
    assert (np.asarray(params["bn1"]["scale"]) == 1).all()


def test_fcn_upsampling_starts_bilinear():
  from jaxseg.models.fcn_vgg import bilinear_kernel_init
  kernel = bilinear_kernel_init(None, (4, 4, 2, 2))
  np.testing.assert_allclose(kernel[:, 0, 0, 0], [0.0625, 0.1875, 0.1875, 0.0625])
  assert float(kernel[:, :, 0, 1].sum()) == 0.0  # No cross-class leakage.


@pytest.mark.parametrize("name", ["deeplabv3plus_resnet50", "fcn16s"])
def test_bfloat16_compute_keeps_float32_params_and_logits(name):
  model = build_model(model_config(name, dtype="bfloat16", backbone=dict(batch_norm=True)), 4)
  variables = param_shapes(model)
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype("float32")}
  (logits, aux), _ = jax.eval_shape(
      lambda v: model.apply(v, X_BHWC, train=True, rngs={"dropout": KEY},
                            mutable=["batch_stats"]), variables)
  assert logits.dtype == jnp.float32
  assert all(a.dtype == jnp.float32 for a in aux.values())


@pytest.mark.parametrize("std", [0.01, 0.0])
def test_classifier_init_std_reaches_every_resnet_head(std):
  # 0.01 (mmsegmentation): the first logits are near zero; 0: the heads' `init` (He).
  for model_name in ("fcn_resnet50", "deeplabv3_resnet50", "deeplabv3plus_resnet50"):
    stds = dict(head=dict(classifier_init_std=std), aux_head=dict(classifier_init_std=std))
    model = build_model(SECTION.config(name=model_name, **stds), 21)
    for head in (model.classifier, model.aux_classifier):
      kernel = np.asarray(
          (head.classifier_init or head.kernel_init)(KEY, (1, 1, 512, 21)))
      expected = std if std else np.sqrt(2 / 21)  # He normal over fan-out = 21 classes.
      np.testing.assert_allclose(kernel.std(), expected, rtol=0.05)
      assert (head.classifier_init is None) == (std == 0)
