"""mmseg_* segmentors without the oracle: structure, Dropout2d, the checkpoint key map."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.models import SECTION, build_model
from jaxseg.models.convert_mmseg import is_mmseg_segmentor, mmseg_key
from jaxseg.models.layers import kernel_init
from jaxseg.models.mmseg_heads import MMSegFCNHead

KEY = jax.random.PRNGKey(0)



def test_mmseg_key_of_each_module_kind():
  """Keys as printed by mmseg 1.2.2's EncoderDecoder.state_dict() for the R50-D8 configs."""
  cases = {
      ("params", ("backbone", "stem_3", "kernel")): "backbone.stem.3.weight",
      ("batch_stats", ("backbone", "layer3_0", "downsample_1", "var")):
          "backbone.layer3.0.downsample.1.running_var",
      ("params", ("classifier", "convs_1", "conv", "kernel")): "decode_head.convs.1.conv.weight",
      ("params", ("classifier", "conv_cat", "bn", "scale")): "decode_head.conv_cat.bn.weight",
      ("params", ("classifier", "conv_seg", "bias")): "decode_head.conv_seg.bias",
      ("params", ("classifier", "image_pool_1", "conv", "kernel")):
          "decode_head.image_pool.1.conv.weight",
      ("batch_stats", ("classifier", "aspp_modules_2", "depthwise_conv", "bn", "mean")):
          "decode_head.aspp_modules.2.depthwise_conv.bn.running_mean",
      ("params", ("classifier", "sep_bottleneck_1", "pointwise_conv", "conv", "kernel")):
          "decode_head.sep_bottleneck.1.pointwise_conv.conv.weight",
      ("params", ("classifier", "c1_bottleneck", "bn", "bias")):
          "decode_head.c1_bottleneck.bn.bias",
      ("params", ("aux_classifier", "convs_0", "conv", "kernel")):
          "auxiliary_head.convs.0.conv.weight",
      ("params", ("upscore_pool4", "kernel")): None,
  }
  for (collection, path), expected in cases.items():
    assert mmseg_key(collection, path) == expected, path
  assert is_mmseg_segmentor({"backbone.stem.0.weight": 0, "decode_head.conv_seg.bias": 0})
  assert not is_mmseg_segmentor({"backbone.conv1.weight": 0, "classifier.4.bias": 0})


@pytest.mark.parametrize("name, expected", [
    # sum(p.numel() for p in net.parameters()) of mmseg 1.2.2's models built from
    # configs/{fcn,deeplabv3,deeplabv3plus}/*_r50-d8_4xb4-20k_voc12aug-512x512.py;
    # tests/test_parity_models.py measures them from mmseg itself.
    ("mmseg_fcn_resnet50", 49_499_274), ("mmseg_deeplabv3_resnet50", 68_114_570),
    ("mmseg_deeplabv3plus_resnet50", 43_591_418),
])
def test_param_counts_are_mmsegs(name, expected):
  model = build_model(SECTION.config(name=name, backbone=dict(deep_stem=True)), 21)
  shapes = jax.eval_shape(lambda: model.init(KEY, jnp.zeros((1, 64, 64, 3)), train=False))
  assert sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes["params"])) == expected


def test_depthwise_separable_branches_are_grouped():
  model = build_model(SECTION.config(name="mmseg_deeplabv3plus_resnet50",
                                    backbone=dict(deep_stem=True)), 21)
  params = jax.eval_shape(lambda: model.init(KEY, jnp.zeros((1, 64, 64, 3)),
                                             train=False))["params"]["classifier"]
  assert params["aspp_modules_0"]["conv"]["kernel"].shape == (1, 1, 2048, 512)
  assert params["aspp_modules_3"]["depthwise_conv"]["conv"]["kernel"].shape == (3, 3, 1, 2048)
  assert params["sep_bottleneck_0"]["depthwise_conv"]["conv"]["kernel"].shape == (3, 3, 1, 560)
  assert params["c1_bottleneck"]["conv"]["kernel"].shape == (1, 1, 256, 48)


def test_dropout2d_drops_whole_channels():
  head = MMSegFCNHead(4, kernel_init=kernel_init("kaiming_normal"), bn_momentum=0.9,
                      dtype=jnp.float32, feature="layer4", channels=64, num_convs=1,
                      concat_input=False, dropout=0.5)
  feats = {"layer4": jax.random.normal(KEY, (2, 6, 5, 8))}
  variables = head.init(KEY, feats, train=False)
  _, state = head.apply(variables, feats, train=True, rngs={"dropout": KEY},
                        mutable=["batch_stats", "intermediates"],
                        capture_intermediates=lambda m, _: m.name in ("convs_0", "dropout"))
  before_BCHW, after_BCHW = (
      np.moveaxis(np.asarray(state["intermediates"][name]["__call__"][0]), -1, 1)
      for name in ("convs_0", "dropout"))
  kept_BC = (after_BCHW == 0).sum(axis=(2, 3)) == (before_BCHW == 0).sum(axis=(2, 3))
  dropped_BC = (after_BCHW == 0).all(axis=(2, 3))
  np.testing.assert_allclose(after_BCHW[kept_BC], 2 * before_BCHW[kept_BC], rtol=1e-6)
  assert (kept_BC ^ dropped_BC).all()  # Each (example, channel) dropped everywhere or nowhere.
  assert 10 < dropped_BC.sum() < dropped_BC.size - 10 and (dropped_BC[0] != dropped_BC[1]).any()


def test_a_missing_oracle_fails_under_ci_and_skips_otherwise(monkeypatch):
  from tests.mmseg_oracle import require
  monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails.
  monkeypatch.setenv("CI", "true")
  with pytest.raises(pytest.fail.Exception, match="oracle missing in CI.*parity"):
    require("torch")
  monkeypatch.delenv("CI")
  with pytest.raises(pytest.skip.Exception, match="needs torch"):
    require("torch")
