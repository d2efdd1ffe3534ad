"""The torchvision reference for benchmarks/train_throughput.py (GPU, torch.compile).

Same network, batch, crop and loss as jaxseg's step: bf16 autocast,
channels_last, SGD momentum with weight decay, cross-entropy with ignore 255
plus 0.4 x the aux head's loss.
"""

from __future__ import annotations

import statistics
import time

_MODELS = {"fcn_resnet50": "fcn_resnet50", "fcn_resnet101": "fcn_resnet101",
           "deeplabv3_resnet50": "deeplabv3_resnet50", "deeplabv3_resnet101": "deeplabv3_resnet101"}


def skip_reason(model_name: str) -> str | None:
  """Why the torch.compile comparison cannot run here, or None when it can."""
  try:
    import torch
  except ImportError as e:
    return f"torch is not installed ({e})"
  if not torch.cuda.is_available():
    return f"needs a CUDA device (torch {torch.__version__}: torch.cuda.is_available() is False)"
  try:
    import torchvision  # noqa: F401
  except Exception as e:  # noqa: BLE001 (a wheel built for another torch raises RuntimeError)
    return f"torchvision is not importable ({type(e).__name__}: {e})"
  if model_name not in _MODELS:
    return f"torchvision has no {model_name}"
  return None


def _median_seconds(torch, fn, warmup: int, iters: int) -> float:
  for _ in range(warmup):
    fn()
  torch.cuda.synchronize()
  times = []
  for _ in range(iters):
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def time_torchvision(a) -> dict:
  """Train and eval step seconds (medians) and peak GiB; call only when skip_reason is None."""
  import torch
  import torchvision

  device = torch.device("cuda")
  build = getattr(torchvision.models.segmentation, _MODELS[a.model])
  model = build(weights=None, weights_backbone=None, num_classes=a.classes,
                aux_loss=bool(a.aux)).to(device).to(memory_format=torch.channels_last)
  opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
  images = torch.randn(a.batch, 3, a.crop, a.crop, device=device).to(
      memory_format=torch.channels_last)
  labels = torch.randint(0, a.classes, (a.batch, a.crop, a.crop), device=device)
  ce = torch.nn.CrossEntropyLoss(ignore_index=255)
  dtype = torch.bfloat16 if a.dtype == "bfloat16" else torch.float32

  def train_step(images, labels):
    with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
      out = model(images)
      loss = ce(out["out"].float(), labels)
      if "aux" in out:
        loss = loss + 0.4 * ce(out["aux"].float(), labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss

  compiled_train = torch.compile(train_step)
  model.train()
  torch.cuda.reset_peak_memory_stats()
  train_s = _median_seconds(torch, lambda: compiled_train(images, labels), a.warmup + 2, a.iters)
  peak = torch.cuda.max_memory_allocated() / 2**30
  model.eval()
  compiled_model = torch.compile(model)

  def eval_step():
    with torch.no_grad(), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
      return compiled_model(images)["out"].argmax(1)

  eval_s = _median_seconds(torch, eval_step, a.warmup + 2, a.iters)
  return {"train_step_s": train_s, "eval_step_s": eval_s, "peak_gib": peak}
