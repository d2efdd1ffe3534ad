"""FCN-32s/16s/8s (Long et al. 2015) on VGG-16: coarse scores refined by pool4/pool3 skips.

Departures from the Caffe reference, all shape-only: convs pad "same" instead
of padding the input by 100 (so no crop offsets), max-pools run in ceil mode
so skips are never smaller than the upsampled scores (which are cropped at the
end), and the final upsampling is a fixed bilinear resize, as the paper's
frozen final deconvolution is.  Inner 2x upsamplings are learned, bilinear-initialised
deconvolutions and the skip scorers start at zero, as in the staged training.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxseg.models.layers import (AUTO, BNMomentum, Dtype, Init, compute_dtype, conv2d,
                                  resize_bilinear)
from jaxseg.models.registry import MODELS
from jaxseg.models.vgg import VGGArgs, vgg_backbone

# Skips fused into the fc7 scores, coarsest first; FCN-16s uses the first.
SKIPS = ("pool4", "pool3")


def bilinear_kernel_init(key, shape, dtype=jnp.float32):
  """A (k, k, C, C) deconvolution kernel that upsamples each channel bilinearly."""
  del key
  k, _, channels_in, channels_out = shape
  factor = (k + 1) // 2
  center = factor - 1 if k % 2 else factor - 0.5
  taps = 1 - np.abs(np.arange(k) - center) / factor
  kernel = np.zeros(shape, np.float32)
  kernel[:, :, np.arange(channels_in), np.arange(channels_out)] = np.outer(taps, taps)[..., None]
  return jnp.asarray(kernel, dtype)


class FCNVGG(nn.Module):
  backbone: nn.Module
  num_classes: int
  num_skips: int  # 0: FCN-32s, 1: FCN-16s, 2: FCN-8s.
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BHWC: jax.Array, *, train: bool, valid_BHW=None):
    del valid_BHW  # No global pooling.
    H, W = x_BHWC.shape[1:3]
    features = self.backbone(x_BHWC, train=train)
    score = conv2d(self.num_classes, 1, use_bias=True, init=nn.initializers.zeros,
                   dtype=self.dtype, name="score_fr")(features["fc7"])
    for skip_name in SKIPS[:self.num_skips]:
      skip = features[skip_name]
      # At output stride 16 or 8 the scores may already be at the skip's resolution.
      if score.shape[1] < skip.shape[1]:
        # torch's ConvTranspose2d(k=4, s=2, p=1): exact 2x, pixel centres aligned.
        score = nn.ConvTranspose(self.num_classes, (4, 4), strides=(2, 2),
                                 padding=((2, 2), (2, 2)), use_bias=False,
                                 kernel_init=bilinear_kernel_init, dtype=self.dtype,
                                 name=f"upscore_{skip_name}")(score)
        score = score[:, :skip.shape[1], :skip.shape[2]]
      score = score + conv2d(self.num_classes, 1, use_bias=True, init=nn.initializers.zeros,
                             dtype=self.dtype, name=f"score_{skip_name}")(skip)
    return resize_bilinear(score.astype(jnp.float32), (H, W)), {}


def _fcn_vgg(num_skips: int):
  def build(num_classes: int, *, dtype: Dtype = AUTO, init: Init = "kaiming_normal",
            bn_momentum: BNMomentum = 0.9, backbone: VGGArgs = VGGArgs()) -> FCNVGG:
    """FCN-32s, 16s or 8s; the paper's nets have no auxiliary head and zero-init scorers.
    `bn_momentum` is read with `backbone.batch_norm` only."""
    return FCNVGG(backbone=vgg_backbone(backbone, init=init, bn_momentum=bn_momentum,
                                        dtype=dtype),
                  num_classes=num_classes, num_skips=num_skips, dtype=compute_dtype(dtype))
  return build


MODELS.register("fcn32s")(_fcn_vgg(0))
MODELS.register("fcn16s")(_fcn_vgg(1))
MODELS.register("fcn8s")(_fcn_vgg(2))
