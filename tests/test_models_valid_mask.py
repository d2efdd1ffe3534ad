"""`valid_BHW`: every model takes the real-pixel mask; ASPP image pooling averages only pixels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.evaluation.inference import head_logits
from jaxseg.models import build_model, model_names
from jaxseg.models.deeplab import ASPP, DeepLabHead, DeepLabV3PlusHead
from jaxseg.models.fcn import FCNHead, Segmentor
from jaxseg.models.layers import global_mean, kernel_init, valid_at_stride
from jaxseg.models.mmseg_heads import MMSegASPPHead, MMSegFCNHead
from jaxseg.models.resnet import ResNet
from tests.modelkit import model_config

# `rbg` keys: XLA:CPU compiles a ResNet init from them ~3x faster than from the default
# threefry keys, and what is checked here (masking) holds for any weights.
KEY = jax.random.key(0, impl="rbg")



def top_left_mask(batch, canvas_hw, image_hw):
  valid = np.zeros((batch, *canvas_hw), bool)
  valid[:, :image_hw[0], :image_hw[1]] = True
  return jnp.asarray(valid)


def test_valid_at_stride_counts_the_features_of_the_unpadded_image():
  # A 45x61 image (not multiples of 8) has ceil(45/8) x ceil(61/8) = 6 x 8 stride-8 features.
  grid = valid_at_stride(top_left_mask(1, (64, 96), (45, 61)), 8, (8, 12))
  assert grid.shape == (1, 8, 12) and grid[0, :6, :8].all() and grid.sum() == 6 * 8
  with pytest.raises(ValueError, match=r"valid_BHW of shape \(1, 64, 96\).*\(8, 12\)"):
    valid_at_stride(top_left_mask(1, (64, 96), (45, 61)), 8, (9, 12))


def test_global_mean_of_padded_features_is_the_unpadded_mean():
  rng = np.random.default_rng(0)
  image_BHWC = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)
  canvas = np.full((2, 8, 9, 3), np.nan, np.float32)  # NaN padding must not leak in.
  canvas[:, :5, :7] = image_BHWC
  mean = global_mean(jnp.asarray(canvas), top_left_mask(2, (64, 72), (40, 56)), 8)
  # atol: a mean near 0 is a float32 sum of 35 unit normals that cancel (~35 eps of error).
  np.testing.assert_allclose(mean, image_BHWC.mean(axis=(1, 2), keepdims=True), rtol=1e-6,
                             atol=1e-6)
  assert global_mean(jnp.asarray(image_BHWC), None, 8).shape == (2, 1, 1, 3)


def pooled_branch(module, variables, x, valid, branch):
  """The output of the 1x1 conv right after the image pooling, captured from inside."""
  _, state = module.apply(variables, x, train=False, valid_BHW=valid,
                          capture_intermediates=lambda m, _: m.name == branch,
                          mutable=["intermediates"])
  (out,) = jax.tree.leaves(state["intermediates"])
  return out


def test_torchvision_aspp_pooled_branch_ignores_padding():
  aspp = ASPP(kernel_init=kernel_init("kaiming_normal"), bn_momentum=0.9, dtype=jnp.float32,
              rates=(1, 2, 3), features=4)
  rng = np.random.default_rng(1)
  image = rng.standard_normal((1, 4, 6, 8)).astype(np.float32)
  canvas = rng.standard_normal((1, 7, 9, 8)).astype(np.float32) * 10  # Garbage padding.
  canvas[:, :4, :6] = image
  variables = aspp.init(KEY, jnp.asarray(image), train=False)
  unpadded = pooled_branch(aspp, variables, jnp.asarray(image), None, "convs_4_1")
  masked = pooled_branch(aspp, variables, jnp.asarray(canvas),
                         top_left_mask(1, (56, 72), (32, 48)), "convs_4_1")
  unmasked = pooled_branch(aspp, variables, jnp.asarray(canvas), None, "convs_4_1")
  np.testing.assert_allclose(masked, unpadded, rtol=1e-5, atol=1e-6)
  assert not np.allclose(unmasked, unpadded, atol=1e-3)


def small_input():
  # 64x64 fits every model (VGG pools 32x, U-Net of depth 2 needs multiples of 4).
  return jnp.asarray(np.random.default_rng(2).standard_normal((1, 64, 64, 3)), jnp.float32)


@pytest.mark.parametrize("name", model_names())
def test_every_model_accepts_valid_BHW(name):
  model = build_model(model_config(name, width=4, depth=2,
                                   backbone=dict(fc_channels=8, output_stride=32)), 3)
  x = small_input()
  variables = jax.eval_shape(lambda: model.init(KEY, x, train=False))
  logits, _ = jax.eval_shape(
      lambda v: model.apply(v, x, train=False, valid_BHW=top_left_mask(1, (64, 64), (40, 48))),
      variables)
  assert logits.shape == (1, 64, 64, 3)


def tiny_segmentor(head: str):
  """A ResNet-18 at output stride 16 under one of torchvision's or mmseg's heads."""
  common = dict(kernel_init=kernel_init("kaiming_normal"), bn_momentum=0.9, dtype=jnp.float32)
  mmseg = dict(num_classes=3, channels=8, **common)
  heads = {
      "fcn": lambda: FCNHead(3, feature="layer4", dropout=0.1, stride=16, **common),
      "deeplabv3": lambda: DeepLabHead(num_classes=3, rates=(1, 2, 3), output_stride=16,
                                       **common),
      "deeplabv3plus": lambda: DeepLabV3PlusHead(num_classes=3, rates=(1, 2, 3),
                                                 output_stride=16, **common),
      "mmseg_fcn": lambda: MMSegFCNHead(stride=16, **mmseg),
      "mmseg_deeplabv3": lambda: MMSegASPPHead(dilations=(1, 2, 3), output_stride=16, **mmseg),
      "mmseg_deeplabv3plus": lambda: MMSegASPPHead(dilations=(1, 2, 3), output_stride=16,
                                                   separable=True, c1_channels=4, **mmseg),
  }
  backbone = ResNet(depth=18, output_stride=16, deep_stem=head.startswith("mmseg"))
  return Segmentor(backbone=backbone, classifier=heads[head]())


@pytest.mark.parametrize("head", ["fcn", "deeplabv3", "deeplabv3plus", "mmseg_fcn",
                                  "mmseg_deeplabv3", "mmseg_deeplabv3plus"])
def test_masked_canvas_gives_the_unpadded_images_logits(head):
  """On a padded canvas with `valid_BHW`, the valid head logits are the unpadded image's.

  45x61 is no multiple of any stride, so every edge case of layers.mask_to is hit;
  the padding is large noise, and without the mask the edge logits differ.
  """
  model = tiny_segmentor(head)
  rng = np.random.default_rng(3)
  canvas = rng.standard_normal((1, 64, 80, 3)).astype(np.float32) * 10
  image = rng.standard_normal((1, 45, 61, 3)).astype(np.float32)
  canvas[:, :45, :61] = image
  variables = jax.jit(lambda: model.init(KEY, jnp.asarray(canvas), train=False))()
  coarse = jax.jit(lambda x, valid: head_logits(model, variables, x, valid))
  unpadded = coarse(jnp.asarray(image), None)
  h, w = unpadded.shape[1:3]
  stride = 4 if head.endswith("plus") else 16  # DeepLabv3+ predicts at layer1's stride.
  assert (h, w) == (-(-45 // stride), -(-61 // stride))
  masked = coarse(jnp.asarray(canvas), top_left_mask(1, (64, 80), (45, 61)))
  np.testing.assert_allclose(masked[:, :h, :w], unpadded, rtol=1e-4, atol=1e-4)
  unmasked = coarse(jnp.asarray(canvas), None)
  assert not np.allclose(unmasked[:, :h, :w], unpadded, atol=1e-2)


def test_all_true_mask_changes_nothing():
  model = tiny_segmentor("deeplabv3")
  x = small_input()
  variables = jax.jit(lambda: model.init(KEY, x, train=False))()
  run = jax.jit(lambda valid: model.apply(variables, x, train=False, valid_BHW=valid)[0])
  # Two programs, two fusions: float32 rounding through an untrained ResNet reaches ~1e-4;
  # a wrong mask would move logits by O(1).
  np.testing.assert_allclose(run(jnp.ones((1, 64, 64), bool)), run(None), rtol=1e-3, atol=1e-3)
