"""What a train step costs: parameters, FLOPs per image (XLA's count), TFLOP/s and MFU.

FLOPs are XLA's own cost analysis of the compiled step (`Compiled.cost_analysis()`),
so they count what runs: forward, backward (no input gradient for the first layer)
and the optimizer update, convolution taps that fall on padding excluded. Under
SPMD the analysis is of one device's partitioned program: FLOPs per device per
step, hence per image = that / the per-device batch.
"""

from __future__ import annotations

import dataclasses

import jax

from jaxseg.runtime.peak_flops import peak_flops


def compiled_flops(compiled) -> float | None:
  """FLOPs of one call of a compiled program on one device; None if XLA gives none."""
  analysis = compiled.cost_analysis()
  # A dict in current jax; a list of one dict per program in older ones.
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  flops = (analysis or {}).get("flops")
  return float(flops) if flops and flops > 0 else None


def param_count(params) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(params))


@dataclasses.dataclass(frozen=True)
class StepCost:
  params: int
  flops_per_device: float | None  # One step on one device, XLA's count.
  batch_per_device: int
  num_devices: int
  device_kind: str
  dtype: str  # The model's compute dtype, which picks the peak.

  @property
  def flops_per_image(self) -> float | None:
    return None if self.flops_per_device is None else self.flops_per_device / self.batch_per_device

  @property
  def peak_flops(self) -> float | None:
    return peak_flops(self.device_kind, self.dtype)

  def tflops_per_device(self, step_time_s: float) -> float | None:
    """TFLOP/s one device achieves at `step_time_s` seconds per step."""
    if self.flops_per_device is None or step_time_s <= 0:
      return None
    return self.flops_per_device / step_time_s / 1e12

  def mfu(self, step_time_s: float) -> float | None:
    """Model FLOPs utilisation in [0, 1]; None without a count or a known peak."""
    achieved = self.tflops_per_device(step_time_s)
    if achieved is None or self.peak_flops is None:
      return None
    return achieved * 1e12 / self.peak_flops

  def fields(self) -> list[str]:
    """Start-up line fields: 'params 1.93M', 'GFLOP/image 0.51 (train step)', ..."""
    per_image = ("GFLOP/image n/a" if self.flops_per_image is None else
                 f"GFLOP/image {self.flops_per_image / 1e9:.3g} (train step, XLA)")
    peak = self.peak_flops
    peak_text = (f"peak {peak / 1e12:g} TFLOP/s/device ({self.dtype})" if peak else
                 f"no MFU (no peak FLOP/s known for {self.device_kind!r} in {self.dtype})")
    return [f"params {self.params / 1e6:.3g}M", per_image,
            f"batch/device {self.batch_per_device}", peak_text]


def measure(jitted_step, state, batch, cfg) -> StepCost:
  """Compiles `jitted_step` for (state, batch) and reads its cost. jax keeps the
  executable, so the step's first call runs it without compiling again."""
  compiled = jitted_step.lower(state, batch).compile()
  flops = compiled_flops(compiled)
  if flops is not None and cfg.train.grad_accum_steps > 1:
    # XLA counts a loop's body once: the micro-batch scan's body is one micro-batch's
    # forward and backward. Scaled by the trips, the optimizer update (counted as many
    # times then) is a rounding error next to them.
    flops *= cfg.train.grad_accum_steps
  num_devices = jax.device_count()
  dtype = cfg.model.dtype if "dtype" in cfg.model else "float32"
  return StepCost(params=param_count(state.params), flops_per_device=flops,
                  batch_per_device=cfg.train.batch_size // num_devices,
                  num_devices=num_devices, device_kind=jax.devices()[0].device_kind, dtype=dtype)
