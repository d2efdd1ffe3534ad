"""`valid_BHW`: every model takes the real-pixel mask; ASPP image pooling averages only pixels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.models import build_model, model_names
from jaxseg.models.deeplab import ASPP, DeepLabHead
from jaxseg.models.fcn import FCNHead, Segmentor
from jaxseg.models.layers import global_mean, kernel_init, valid_at_stride
from jaxseg.models.resnet import ResNet
from jaxseg.models.zoo_config import zoo_defaults

KEY = jax.random.PRNGKey(0)


def model_cfg(name, **overrides):
  cfg = zoo_defaults()
  cfg.update({"name": name, "dtype": "float32", "width": 4, "depth": 2, "fc_channels": 8})
  cfg.update(overrides)
  return cfg


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
  np.testing.assert_allclose(mean, image_BHWC.mean(axis=(1, 2), keepdims=True), rtol=1e-6)
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
  model = build_model(model_cfg(name, output_stride=32), 3)
  x = small_input()
  variables = jax.eval_shape(lambda: model.init(KEY, x, train=False))
  logits, _ = jax.eval_shape(
      lambda v: model.apply(v, x, train=False, valid_BHW=top_left_mask(1, (64, 64), (40, 48))),
      variables)
  assert logits.shape == (1, 64, 64, 3)


def tiny_segmentor(pools: bool):
  """A ResNet-18 at output stride 16 under torchvision's FCN or DeepLab head."""
  common = dict(kernel_init=kernel_init("kaiming_normal"), bn_momentum=0.9, dtype=jnp.float32)
  head = (DeepLabHead(num_classes=3, rates=(1, 2, 3), output_stride=16, **common) if pools
          else FCNHead(3, feature="layer4", dropout=0.1, **common))
  return Segmentor(backbone=ResNet(depth=18, output_stride=16), classifier=head)


@pytest.mark.parametrize("pools", [False, True])
def test_mask_changes_only_models_with_image_pooling(pools):
  """FCN ignores the mask; DeepLab's logits change with it, and not with an all-true one."""
  model = tiny_segmentor(pools)
  x = small_input()
  variables = jax.jit(lambda: model.init(KEY, x, train=False))()

  @jax.jit
  def logits(v):
    run = lambda valid: model.apply(v, x, train=False, valid_BHW=valid)[0]
    return run(None), run(jnp.ones((1, 64, 64), bool)), run(top_left_mask(1, (64, 64), (40, 48)))

  plain, all_true, masked = logits(variables)
  np.testing.assert_allclose(all_true, plain, rtol=1e-5, atol=1e-5)
  assert np.allclose(masked, plain, atol=1e-4) != pools
