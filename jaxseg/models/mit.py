"""Mix Transformer (MiT-B0..B5), SegFormer's encoder (Xie et al., NeurIPS 2021).

Four stages, each an overlapping patch embedding (a strided conv + LayerNorm:
7x7/4 then 3x3/2), blocks of efficient self-attention (keys and values from a
`sr x sr`/`sr` conv + LayerNorm of the tokens) and Mix-FFN (linear, 3x3
depthwise conv, exact-erf GELU, linear), then a LayerNorm. Tokens stay BHWC
maps throughout, so every size works: each stage has the conv output size torch
gives (ceil(H/4), ceil(H/8), ...; the key grid floor(h/sr)), square or not.

Padding (`valid_BHW`): on a top-left-padded canvas, convs wider than 1x1 read
zeros past the image (`layers.mask_to`, as everywhere), and attention masks
the keys that the unpadded image does not have: the key grid of a stage with
h valid rows has floor(h/sr) valid rows, the last partial window and every
window past it being padding. Queries never see padding, so the valid tokens
are those of the unpadded image up to float rounding (the softmax only sums
over the same keys). Without the key mask a padded canvas changes every token.

Submodule names follow the published checkpoints (convert_segformer.py maps them).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.declare import Arg
from jaxseg.models.layers import mask_to, valid_at_stride

# name -> (embed dims per stage, blocks per stage); heads (1, 2, 5, 8), sr (8, 4, 2, 1)
# and MLP ratio 4 are shared (the paper's Table 6, transformers' and mmseg's configs).
MIT_SIZES = {
    "b0": ((32, 64, 160, 256), (2, 2, 2, 2)),
    "b1": ((64, 128, 320, 512), (2, 2, 2, 2)),
    "b2": ((64, 128, 320, 512), (3, 4, 6, 3)),
    "b3": ((64, 128, 320, 512), (3, 4, 18, 3)),
    "b4": ((64, 128, 320, 512), (3, 8, 27, 3)),
    "b5": ((64, 128, 320, 512), (3, 6, 40, 3)),
}


@dataclasses.dataclass(frozen=True)
class MiTArgs:
  """`model.backbone` of the SegFormers."""

  drop_path_rate: Annotated[float, Arg(min=0, below=1, help=(
      "stochastic depth of the last encoder block (0 at the first, linear between)"))] = 0.1
NUM_HEADS = (1, 2, 5, 8)
SR_RATIOS = (8, 4, 2, 1)
PATCH_SIZES = (7, 3, 3, 3)
PATCH_STRIDES = (4, 2, 2, 2)
MLP_RATIO = 4
STAGES = ("stage1", "stage2", "stage3", "stage4")  # The feature names, at strides 4..32.
STAGE_STRIDES = (4, 8, 16, 32)

# mmseg's init_weights: Linear trunc-normal(0.02), conv normal(sqrt(2 / fan_out)) where
# a depthwise conv's fan_out is k*k (fan_in of its (k, k, 1, C) kernel here).
dense_init = nn.initializers.truncated_normal(0.02)
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
depthwise_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def stage_valid(valid_BHW, stride: int, size_hw) -> jax.Array | None:
  return None if valid_BHW is None else valid_at_stride(valid_BHW, stride, size_hw)


class PatchEmbed(nn.Module):
  """Overlapping patch embedding: k x k conv of stride s, padding k // 2, then LayerNorm."""

  features: int
  kernel: int
  stride: int
  ln_eps: float
  dtype: Any

  @nn.compact
  def __call__(self, x_BHWC):
    pad = self.kernel // 2
    x = nn.Conv(self.features, (self.kernel, self.kernel), strides=self.stride,
                padding=((pad, pad), (pad, pad)), kernel_init=conv_init, dtype=self.dtype,
                name="proj")(x_BHWC)
    return nn.LayerNorm(self.ln_eps, dtype=self.dtype, name="norm")(x)


class EfficientAttention(nn.Module):
  """Multi-head attention whose keys/values come from an sr-times smaller token grid."""

  num_heads: int
  sr_ratio: int
  ln_eps: float
  dtype: Any

  @nn.compact
  def __call__(self, x_BHWC, valid_Bhw=None):
    B, H, W, C = x_BHWC.shape
    head_dim = C // self.num_heads
    dense = lambda name: nn.Dense(C, kernel_init=dense_init, dtype=self.dtype, name=name)
    q_BNhd = dense("q")(x_BHWC).reshape(B, H * W, self.num_heads, head_dim)
    kv, keep = x_BHWC, valid_Bhw
    if self.sr_ratio > 1:
      r = self.sr_ratio
      # VALID: floor(H / r) windows, as torch's unpadded strided conv.
      kv = nn.Conv(C, (r, r), strides=r, padding="VALID", kernel_init=conv_init,
                   dtype=self.dtype, name="sr")(x_BHWC)
      kv = nn.LayerNorm(self.ln_eps, dtype=self.dtype, name="norm")(kv)
      if keep is not None:  # A window is real iff its last token is (top-left padding).
        keep = keep[:, r - 1::r, r - 1::r][:, :kv.shape[1], :kv.shape[2]]
    k_BMhd = dense("k")(kv).reshape(B, -1, self.num_heads, head_dim)
    v_BMhd = dense("v")(kv).reshape(B, -1, self.num_heads, head_dim)
    logits_BhNM = jnp.einsum("bnhd,bmhd->bhnm", q_BNhd, k_BMhd).astype(jnp.float32)
    logits_BhNM = logits_BhNM * head_dim ** -0.5
    if keep is not None:
      keep_B11M = keep.reshape(B, 1, 1, -1)
      # finfo.min, not -inf: an all-padding example gets uniform weights, not NaN.
      logits_BhNM = jnp.where(keep_B11M, logits_BhNM, jnp.finfo(jnp.float32).min)
    weights_BhNM = jax.nn.softmax(logits_BhNM, axis=-1).astype(v_BMhd.dtype)
    out = jnp.einsum("bhnm,bmhd->bnhd", weights_BhNM, v_BMhd).reshape(B, H, W, C)
    return dense("proj")(out)


class MixFFN(nn.Module):
  """fc1, 3x3 depthwise conv (the positional information), GELU (erf), fc2."""

  hidden: int
  dtype: Any

  @nn.compact
  def __call__(self, x_BHWC, valid_BHW=None, stride: int = 1):
    C = x_BHWC.shape[-1]
    x = nn.Dense(self.hidden, kernel_init=dense_init, dtype=self.dtype, name="fc1")(x_BHWC)
    x = nn.Conv(self.hidden, (3, 3), padding=((1, 1), (1, 1)), feature_group_count=self.hidden,
                kernel_init=depthwise_init, dtype=self.dtype,
                name="dwconv")(mask_to(x, valid_BHW, stride))
    x = nn.gelu(x, approximate=False)  # torch's nn.GELU() default.
    return nn.Dense(C, kernel_init=dense_init, dtype=self.dtype, name="fc2")(x)


class Block(nn.Module):
  """Pre-norm transformer block; drop path (per example) on both residual branches."""

  num_heads: int
  sr_ratio: int
  drop_path: float
  ln_eps: float
  dtype: Any

  @nn.compact
  def __call__(self, x_BHWC, *, train: bool, valid_BHW=None, stride: int = 1):
    norm = lambda name: nn.LayerNorm(self.ln_eps, dtype=self.dtype, name=name)
    # Dropout broadcast over H, W and C drops whole examples: torch's DropPath.
    drop = nn.Dropout(self.drop_path, broadcast_dims=(1, 2, 3), deterministic=not train)
    valid_Bhw = stage_valid(valid_BHW, stride, x_BHWC.shape[1:3])
    x = x_BHWC + drop(EfficientAttention(self.num_heads, self.sr_ratio, self.ln_eps, self.dtype,
                                         name="attn")(norm("norm1")(x_BHWC), valid_Bhw))
    y = MixFFN(MLP_RATIO * x.shape[-1], self.dtype, name="ffn")(norm("norm2")(x), valid_BHW,
                                                               stride)
    return x + drop(y)


class MixTransformer(nn.Module):
  """The MiT encoder: `{'stage1': stride-4 BHWC features, ..., 'stage4': stride 32}`."""

  embed_dims: tuple[int, ...]
  depths: tuple[int, ...]
  drop_path_rate: float = 0.1
  ln_eps: float = 1e-6  # mmseg's mit.py; transformers' nn.LayerNorm default is 1e-5.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BHWC, *, train: bool, valid_BHW=None) -> dict[str, jax.Array]:
    total = sum(self.depths)
    # Linearly increasing per block, 0 to drop_path_rate (torch.linspace in both references).
    rates = [self.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
    features, x, in_stride, block = {}, x_BHWC, 1, 0
    for i, (dims, depth) in enumerate(zip(self.embed_dims, self.depths)):
      x = PatchEmbed(dims, PATCH_SIZES[i], PATCH_STRIDES[i], self.ln_eps, self.dtype,
                     name=f"patch_embed_{i}")(mask_to(x, valid_BHW, in_stride))
      in_stride = STAGE_STRIDES[i]
      for j in range(depth):
        x = Block(NUM_HEADS[i], SR_RATIOS[i], rates[block], self.ln_eps, self.dtype,
                  name=f"block_{i}_{j}")(x, train=train, valid_BHW=valid_BHW, stride=in_stride)
        block += 1
      x = nn.LayerNorm(self.ln_eps, dtype=self.dtype, name=f"norm_{i}")(x)
      features[STAGES[i]] = x
    return features
