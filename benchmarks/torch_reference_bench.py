"""The torchvision reference for benchmarks/train_throughput.py (GPU, torch.compile).

Same network, batch, crop and loss as jaxseg's step: bf16 autocast,
channels_last, SGD momentum with weight decay, cross-entropy with ignore 255
plus 0.4 x the aux head's loss.
"""

from __future__ import annotations

_MODELS = {"fcn_resnet50": "fcn_resnet50", "fcn_resnet101": "fcn_resnet101",
           "deeplabv3_resnet50": "deeplabv3_resnet50", "deeplabv3_resnet101": "deeplabv3_resnet101"}


def time_torchvision(torch, torchvision, a, timer) -> dict | None:
  if a.model not in _MODELS:
    print(f"--compare-torch: torchvision has no {a.model}; skipped")
    return None
  if not torch.cuda.is_available():
    print("--compare-torch: needs a CUDA device; skipped")
    return None
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
  train_s = timer(lambda: compiled_train(images, labels), a.warmup + 2, a.iters)
  peak = torch.cuda.max_memory_allocated() / 2**30
  model.eval()
  compiled_model = torch.compile(model)

  def eval_step():
    with torch.no_grad(), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
      return compiled_model(images)["out"].argmax(1)

  eval_s = timer(eval_step, a.warmup + 2, a.iters)
  return {"train_step_s": train_s, "eval_step_s": eval_s, "peak_gib": peak}
