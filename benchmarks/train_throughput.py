"""Throughput of jaxseg's real train and eval steps (and, optionally, torchvision's).

Times the jitted step functions the trainer uses, after compilation, on
device-resident synthetic batches, with block_until_ready and the median of
repeated timings. Prints img/s, step time, peak device memory, FLOPs per image
(XLA cost analysis) and MFU against --peak-tflops.

  python benchmarks/train_throughput.py --model fcn_resnet50 --batch 16 --crop 512 \
      --dtype bfloat16 --peak-tflops 989 --compare-torch
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxseg import losses, optim, steps  # noqa: E402
from jaxseg.config import build_config  # noqa: E402
from jaxseg.models import build_model  # noqa: E402
from jaxseg.sharding import global_batch, make_mesh  # noqa: E402
from jaxseg.state import create_train_state  # noqa: E402


def _args(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--model", default="fcn_resnet50")
  p.add_argument("--batch", type=int, default=16, help="global batch")
  p.add_argument("--crop", type=int, default=512)
  p.add_argument("--classes", type=int, default=21)
  p.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
  p.add_argument("--aux", type=int, default=1, help="aux head on (1) or off (0)")
  p.add_argument("--iters", type=int, default=20, help="timed iterations")
  p.add_argument("--warmup", type=int, default=3)
  p.add_argument("--peak-tflops", type=float, default=0.0,
                 help="device peak (dense bf16 TFLOP/s) for MFU; 0 = not reported")
  p.add_argument("--set", dest="overrides", action="append", default=[],
                 help="extra config overrides, as run.py --set")
  p.add_argument("--compare-torch", action="store_true",
                 help="also time torchvision's model (torch.compile, bf16 autocast, channels_last)")
  return p.parse_args(argv)


def _median_seconds(fn, warmup: int, iters: int) -> float:
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(iters):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _flops(compiled) -> float:
  """FLOPs of one step over all devices (XLA reports the partitioned, per-device program)."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  per_device = float(cost.get("flops", float("nan"))) if cost else float("nan")
  return per_device * jax.device_count()


def _peak_memory_gib() -> float:
  stats = jax.local_devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return peak / 2**30 if peak else float("nan")


def bench_jax(a) -> dict:
  cfg = build_config("demo", [
      f"model.name={a.model}", f"model.dtype={a.dtype}", f"model.aux_head={bool(a.aux)}",
      f"augment.crop_size=({a.crop},{a.crop})", "optim.name=sgd", "optim.lr=0.01",
      "optim.momentum=0.9", "optim.weight_decay=5e-4", "optim.warmup_steps=0",
      f"train.batch_size={a.batch}", *a.overrides])
  mesh = make_mesh()
  model = build_model(cfg.model, a.classes)
  tx, schedule = optim.build_optimizer(cfg.optim, cfg.train.steps)
  state = create_train_state(model, tx, (a.crop, a.crop, 3), cfg.seed, mesh)
  loss_fn = losses.make_loss(cfg.loss, ignore_index=255)
  rng = np.random.default_rng(0)
  host = {"image": rng.integers(0, 256, (a.batch, a.crop, a.crop, 3), dtype=np.uint8),
          "label": rng.integers(0, a.classes, (a.batch, a.crop, a.crop)).astype(np.uint8),
          "example_mask": np.ones((a.batch,), bool)}
  train_batch = global_batch(mesh, {k: host[k] for k in ("image", "label")})
  eval_batch = global_batch(mesh, host)

  train_jit = steps.jit_train_step(steps.make_train_step(model, loss_fn, tx, schedule, cfg),
                                   state, mesh)
  t0 = time.perf_counter()
  train_compiled = train_jit.lower(state, train_batch).compile()
  compile_s = time.perf_counter() - t0
  holder = {"state": state}

  def train_once():
    # The state is donated: thread it through like the trainer does.
    holder["state"], metrics = train_compiled(holder["state"], train_batch)
    return metrics["loss"]

  train_s = _median_seconds(train_once, a.warmup, a.iters)
  eval_jit = steps.jit_eval_step(steps.make_eval_step(model, cfg, a.classes, 255),
                                 holder["state"], mesh)
  eval_compiled = eval_jit.lower(holder["state"], eval_batch).compile()
  eval_s = _median_seconds(lambda: eval_compiled(holder["state"], eval_batch), a.warmup, a.iters)
  return {"train_step_s": train_s, "eval_step_s": eval_s, "compile_s": compile_s,
          "train_flops": _flops(train_compiled), "eval_flops": _flops(eval_compiled),
          "peak_gib": _peak_memory_gib()}


def bench_torch(a) -> dict | None:
  try:
    import torch
    import torchvision
  except ImportError as e:
    print(f"--compare-torch skipped: {e}")
    return None
  from benchmarks.torch_reference_bench import time_torchvision

  return time_torchvision(torch, torchvision, a, _median_seconds_torch(torch))


def _median_seconds_torch(torch):
  def timer(fn, warmup, iters):
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

  return timer


def main(argv=None) -> None:
  a = _args(argv)
  device = jax.devices()[0]
  print(f"device: {device.device_kind} x{jax.device_count()}  jax {jax.__version__}  "
        f"model {a.model}  batch {a.batch}  crop {a.crop}  dtype {a.dtype}  aux {bool(a.aux)}")
  r = bench_jax(a)
  rows = []
  for phase in ("train", "eval"):
    step_s = r[f"{phase}_step_s"]
    flops = r[f"{phase}_flops"]
    mfu = flops / step_s / (a.peak_tflops * 1e12) / jax.device_count() if a.peak_tflops else None
    rows.append(["jaxseg", phase, a.batch / step_s, 1e3 * step_s, flops / a.batch / 1e9,
                 None if mfu is None else 100 * mfu, r["peak_gib"]])
  t = bench_torch(a) if a.compare_torch else None
  if t:
    for phase in ("train", "eval"):
      rows.append(["torch.compile", phase, a.batch / t[f"{phase}_step_s"],
                   1e3 * t[f"{phase}_step_s"], None, None, t["peak_gib"]])
  print(f"compile (train step): {r['compile_s']:.1f} s")
  print(f"| {'impl':<13} | {'phase':<5} | {'img/s':>8} | {'step ms':>8} | {'GFLOP/img':>9} "
        f"| {'MFU %':>6} | {'peak GiB':>8} |")
  print("|" + "|".join("-" * w for w in (15, 7, 10, 10, 11, 8, 10)) + "|")
  fmt = lambda v, spec: "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)
  for impl, phase, ips, ms, gf, mfu, mem in rows:
    print(f"| {impl:<13} | {phase:<5} | {fmt(ips, '8.1f'):>8} | {fmt(ms, '8.1f'):>8} | "
          f"{fmt(gf, '9.1f'):>9} | {fmt(mfu, '6.1f'):>6} | {fmt(mem, '8.2f'):>8} |")
  if t:
    for phase in ("train", "eval"):
      print(f"ratio jaxseg / torch.compile ({phase}): "
            f"{t[f'{phase}_step_s'] / r[f'{phase}_step_s']:.2f}x")


if __name__ == "__main__":
  main()
