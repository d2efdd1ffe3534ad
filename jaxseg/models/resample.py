"""Per-example bilinear resizes inside jit, with static shapes.

Each example of a padded canvas has its own true size; `resize_within`
resizes the top-left `in_size` part of every example to its own `out_size`,
written top-left into a static output canvas (zeros elsewhere). The sampling
is torch's `F.interpolate(mode='bilinear', align_corners=False)` exactly: half-
pixel centres, source index clamped to the example's own edge (never reading
its padding), computed in float32 like torch's CPU kernel. Done as two small
interpolation matrices per example, so any chain of such resizes can be fused
into one (`compose`) before touching the (H, W, K) data.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def interpolation_matrix(in_size_B, out_size_B, in_len: int, out_len: int) -> jax.Array:
  """(B, out_len, in_len) float32 rows of torch's bilinear weights; rows past out_size are 0."""
  in_B1 = in_size_B.astype(jnp.float32)[:, None]
  out_B1 = out_size_B.astype(jnp.float32)[:, None]
  dst_O = jnp.arange(out_len, dtype=jnp.float32)[None, :]
  # torch: scale = in / out; src = scale * (dst + 0.5) - 0.5, clamped at 0.
  src_BO = jnp.maximum((in_B1 / out_B1) * (dst_O + 0.5) - 0.5, 0.0)
  last_B1 = in_size_B[:, None].astype(jnp.int32) - 1
  low_BO = jnp.minimum(jnp.floor(src_BO).astype(jnp.int32), last_B1)
  high_BO = jnp.minimum(low_BO + 1, last_B1)
  frac_BO = src_BO - low_BO.astype(jnp.float32)
  weights = (jax.nn.one_hot(low_BO, in_len) * (1.0 - frac_BO)[..., None]
             + jax.nn.one_hot(high_BO, in_len) * frac_BO[..., None])
  inside_BO = jnp.arange(out_len)[None, :] < out_size_B[:, None]
  return jnp.where(inside_BO[..., None], weights, 0.0)


def compose(second_BOM, first_BMI) -> jax.Array:
  """The matrix of resizing by `first`, then by `second` (one pass instead of two)."""
  return jnp.einsum("bom,bmi->boi", second_BOM, first_BMI, precision=jax.lax.Precision.HIGHEST)


def apply(x_BHWK, rows_BOH, cols_BPW) -> jax.Array:
  """Applies per-example row/column interpolation matrices: (B, H, W, K) -> (B, O, P, K)."""
  return jnp.einsum("boh,bhwk,bpw->bopk", rows_BOH, x_BHWK.astype(jnp.float32), cols_BPW,
                    precision=jax.lax.Precision.HIGHEST)


def matrices(in_size_B2, out_size_B2, in_HW: tuple[int, int], out_HW: tuple[int, int]):
  """(rows_BOH, cols_BPW) resizing each example's `in_size` (h, w) to its `out_size`."""
  rows = interpolation_matrix(in_size_B2[:, 0], out_size_B2[:, 0], in_HW[0], out_HW[0])
  cols = interpolation_matrix(in_size_B2[:, 1], out_size_B2[:, 1], in_HW[1], out_HW[1])
  return rows, cols


def resize_within(x_BHWK, in_size_B2, out_size_B2, out_HW: tuple[int, int]) -> jax.Array:
  """Resizes each example's top-left `in_size` region to `out_size`, on an `out_HW` canvas."""
  rows, cols = matrices(in_size_B2, out_size_B2, x_BHWK.shape[1:3], out_HW)
  return apply(x_BHWK, rows, cols)
