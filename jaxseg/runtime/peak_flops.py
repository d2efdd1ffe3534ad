"""Peak dense FLOP/s of one device (as jax counts devices), for MFU.

MFU = the FLOP/s a step achieves on one device / that device's peak for the
compute dtype. Figures are the vendors' datasheet numbers for *dense* math
(NVIDIA's datasheets print "with sparsity" numbers, twice the dense ones: halved
here). float32 on NVIDIA GPUs is the TF32 tensor-core figure, because jax's
default matmul precision lets XLA:GPU use TF32 for float32 dots and convolutions
on Ampere and later; on TPUs no float32 peak is published (float32 matmuls run
as several bfloat16 passes), so float32 on a TPU has no MFU. A device kind not
listed (CPUs included) has no MFU either: nothing is guessed.

Each row: (how jax's `device.device_kind` reads, matched as a substring; the
first row that matches wins, so specific names come before general ones),
{compute dtype: FLOP/s}, source.
"""

from __future__ import annotations

T = 1e12

PEAKS: tuple[tuple[str, dict[str, float], str], ...] = (
    # Cloud TPU: one jax device is one chip (v4 and v5p: a megacore chip).
    ("TPU v4", {"bfloat16": 275 * T}, "https://cloud.google.com/tpu/docs/v4"),
    ("TPU v5 lite", {"bfloat16": 197 * T}, "https://cloud.google.com/tpu/docs/v5e"),
    ("TPU v5e", {"bfloat16": 197 * T}, "https://cloud.google.com/tpu/docs/v5e"),
    # v5p reports itself as 'TPU v5' (no suffix); 'TPU v5 lite' matched above.
    ("TPU v5", {"bfloat16": 459 * T}, "https://cloud.google.com/tpu/docs/v5p"),
    ("TPU v6 lite", {"bfloat16": 918 * T}, "https://cloud.google.com/tpu/docs/v6e"),
    ("TPU v6e", {"bfloat16": 918 * T}, "https://cloud.google.com/tpu/docs/v6e"),
    # NVIDIA: BF16/FP16 and TF32 tensor-core figures, dense.
    ("H200 NVL", {"bfloat16": 835.5 * T, "float16": 835.5 * T, "float32": 417.5 * T},
     "https://www.nvidia.com/en-us/data-center/h200/"),
    ("H200", {"bfloat16": 989.5 * T, "float16": 989.5 * T, "float32": 494.5 * T},
     "https://www.nvidia.com/en-us/data-center/h200/"),
    ("H100 PCIe", {"bfloat16": 756.5 * T, "float16": 756.5 * T, "float32": 378 * T},
     "https://www.nvidia.com/en-us/data-center/h100/"),
    ("H100 NVL", {"bfloat16": 835.5 * T, "float16": 835.5 * T, "float32": 417.5 * T},
     "https://www.nvidia.com/en-us/data-center/h100/"),
    # SXM, e.g. 'NVIDIA H100 80GB HBM3'.
    ("H100", {"bfloat16": 989.5 * T, "float16": 989.5 * T, "float32": 494.5 * T},
     "https://www.nvidia.com/en-us/data-center/h100/"),
    # Every A100 (SXM4/PCIe, 40/80 GB) has the same tensor-core peaks.
    ("A100", {"bfloat16": 312 * T, "float16": 312 * T, "float32": 156 * T},
     "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
     "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf"),
)


def peak_flops(device_kind: str, dtype: str) -> float | None:
  """Peak dense FLOP/s of one `device_kind` device computing in `dtype`
  ('bfloat16', 'float16', 'float32'); None when unknown (no MFU then)."""
  for pattern, peaks, _ in PEAKS:
    if pattern in device_kind:
      return peaks.get(dtype)
  return None
