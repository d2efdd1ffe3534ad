"""Throughput of jaxseg's real train and eval steps (and, optionally, torchvision's).

Times the jitted step functions the trainer uses, after compilation, on
device-resident synthetic batches, with block_until_ready and the median of
repeated timings. Prints img/s, step time, peak device memory, FLOPs per image
(XLA cost analysis) and MFU against --peak-tflops (default: jaxseg/runtime/peak_flops.py's
figure for the device). Optionally: the largest
train batch that fits (--max-batch), img/s of the whole evaluation loop over a
VOC-val-sized split (--voc-eval), and extra XLA flags (--xla-flags).

  python benchmarks/train_throughput.py --model fcn_resnet50 --batch 16 --crop 512 \
      --dtype bfloat16 --peak-tflops 989 --compare-torch --max-batch --voc-eval
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# jax reads XLA_FLAGS when its first backend starts, not at import: --xla-flags
# is applied in main() before anything touches a device.
import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import max_batch, torch_reference_bench, voc_eval  # noqa: E402
from jaxseg.config.resolve import build_config  # noqa: E402
from jaxseg.models import MODELS  # noqa: E402
from jaxseg.runtime.build import build, synthetic_meta  # noqa: E402
from jaxseg.runtime.peak_flops import peak_flops  # noqa: E402
from jaxseg.runtime.sharding import global_batch, make_mesh  # noqa: E402


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
                 help="device peak (dense TFLOP/s of --dtype) for MFU; 0 = jaxseg/runtime/peak_flops.py's "
                      "figure for this device kind (not reported if it has none)")
  p.add_argument("--set", dest="overrides", action="append", default=[],
                 help="extra config overrides, as run.py --set")
  p.add_argument("--compare-torch", action="store_true",
                 help="also time torchvision's model (torch.compile, bf16 autocast, channels_last)")
  p.add_argument("--max-batch", action="store_true",
                 help="search the largest global train batch that fits (doubling, then bisection)")
  p.add_argument("--max-batch-limit", type=int, default=512, help="cap of the --max-batch search")
  p.add_argument("--memory-limit-gib", type=float, default=0.0,
                 help="--max-batch by XLA's compile-time memory estimate against this many GiB "
                      "per device instead of running steps until out of memory (needed on CPU)")
  p.add_argument("--voc-eval", action="store_true",
                 help="img/s of the whole eval loop over a VOC-val-sized fabricated split")
  p.add_argument("--voc-eval-images", type=int, default=voc_eval.VOC_VAL_IMAGES)
  p.add_argument("--voc-eval-batch", type=int, default=16, help="global eval batch")
  p.add_argument("--voc-eval-canvas", type=int, default=512,
                 help="eval canvas side (VOC: 512); image sizes scale with it")
  p.add_argument("--xla-flags", default="", help="appended to XLA_FLAGS before jax starts")
  return p.parse_args(argv)


def apply_xla_flags(flags: str) -> bool:
  """Appends `flags` to XLA_FLAGS; False (and a warning) when jax has already started."""
  if not flags:
    return True
  from jax._src import xla_bridge  # No public way to ask whether a backend exists yet.

  if xla_bridge.backends_are_initialized():
    print(f"warning: jax is already initialised in this process; --xla-flags {flags!r} "
          "NOT applied (run the script in a fresh process)")
    return False
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()
  return True


class Setup:
  """Config and mesh of one benchmark, its run from jaxseg's builder (as the trainer
  builds it, on a synthetic dataset meta); makes fresh states and batches."""

  def __init__(self, a):
    self.a, self.crop, self.classes = a, a.crop, a.classes
    self.cfg = build_config("demo", [
        f"model.name={a.model}", f"model.dtype={a.dtype}",
        # Models without an aux head (unet, the VGG FCNs) take no model.aux_head.
        *([f"model.aux_head.enabled={bool(a.aux)}"] if "aux_head" in MODELS.params(a.model)
          else []),
        f"augment.crop_size=({a.crop},{a.crop})", "optim.name=sgd", "optim.lr=0.01",
        "optim.momentum=0.9", "optim.weight_decay=5e-4", "optim.warmup_steps=0",
        f"train.batch_size={a.batch}", f"eval.batch_size={a.voc_eval_batch}", *a.overrides])
    self.mesh = make_mesh()
    self.meta = synthetic_meta(a.classes, (a.crop, a.crop))
    self.run = build(self.cfg, self.meta, self.mesh)  # train_step, eval_step: the trainer's.

  def new_state(self):
    """A freshly initialised state (the --max-batch tries each need their own)."""
    return build(self.cfg, self.meta, self.mesh).state

  def device_batch(self, batch: int, train: bool):
    rng = np.random.default_rng(0)
    H = W = self.crop
    host = {"image": rng.integers(0, 256, (batch, H, W, 3), dtype=np.uint8),
            "label": rng.integers(0, self.classes, (batch, H, W)).astype(np.uint8)}
    if not train:
      host["example_mask"] = np.ones((batch,), bool)
      host["size_HW"] = np.full((batch, 2), self.crop, np.int32)
    return global_batch(self.mesh, host)


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


def bench_jax(setup: Setup) -> dict:
  a = setup.a
  state = setup.run.state
  train_batch = setup.device_batch(a.batch, train=True)
  eval_batch = setup.device_batch(a.batch, train=False)
  train_jit = setup.run.train_step
  t0 = time.perf_counter()
  train_compiled = train_jit.lower(state, train_batch).compile()
  compile_s = time.perf_counter() - t0
  holder = {"state": state}

  def train_once():
    # The state is donated: thread it through like the trainer does.
    holder["state"], step_metrics = train_compiled(holder["state"], train_batch)
    return step_metrics["loss"]

  train_s = _median_seconds(train_once, a.warmup, a.iters)
  eval_jit = setup.run.eval_step  # The eval step evaluate.evaluate (the trainer's) runs.
  eval_compiled = eval_jit.lower(holder["state"], eval_batch).compile()
  eval_s = _median_seconds(lambda: eval_compiled(holder["state"], eval_batch), a.warmup, a.iters)
  return {"train_step_s": train_s, "eval_step_s": eval_s, "compile_s": compile_s,
          "train_flops": _flops(train_compiled), "eval_flops": _flops(eval_compiled),
          "peak_gib": _peak_memory_gib(), "state": holder["state"], "train_jit": train_jit,
          "eval_jit": eval_jit, "train_compiled": train_compiled}


def search_max_batch(setup: Setup, r: dict) -> dict:
  """The --max-batch search; measured (OOM) or estimated (--memory-limit-gib)."""
  a, unit = setup.a, jax.device_count()
  train_jit, state = r["train_jit"], r["state"]
  if a.memory_limit_gib:
    limit = a.memory_limit_gib * 2**30
    estimates = {}

    def fits(b):
      estimates[b] = max_batch.estimated_bytes(setup, train_jit, state, b)
      return estimates[b] <= limit

    method = f"compile-time estimate (XLA memory_analysis, per device) <= {a.memory_limit_gib:g} GiB"
  else:
    if jax.default_backend() == "cpu":
      raise SystemExit("--max-batch on CPU needs --memory-limit-gib: host RAM running out "
                       "kills the process instead of raising an out-of-memory error")
    # The timed state is not needed any more; every try builds its own.
    max_batch._delete(state)
    estimates = None
    fits = lambda b: max_batch.runs(setup, train_jit, b)
    method = "measured: two train steps per try until RESOURCE_EXHAUSTED"
  best, first_bad, tried = max_batch.search(fits, a.batch, unit, a.max_batch_limit)
  return {"best": best, "first_bad": first_bad, "tried": tried, "method": method,
          "estimates": estimates, "limit": a.max_batch_limit}


def _table(rows) -> None:
  print(f"| {'impl':<13} | {'phase':<8} | {'img/s':>8} | {'step ms':>8} | {'GFLOP/img':>9} "
        f"| {'MFU %':>6} | {'peak GiB':>8} |")
  print("|" + "|".join("-" * w for w in (15, 10, 10, 10, 11, 8, 10)) + "|")
  fmt = lambda v, spec: "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)
  for impl, phase, ips, ms, gf, mfu, mem in rows:
    print(f"| {impl:<13} | {phase:<8} | {fmt(ips, '8.1f'):>8} | {fmt(ms, '8.1f'):>8} | "
          f"{fmt(gf, '9.1f'):>9} | {fmt(mfu, '6.1f'):>6} | {fmt(mem, '8.2f'):>8} |")


def main(argv=None) -> dict:
  a = _args(argv)
  flags_applied = apply_xla_flags(a.xla_flags)
  device = jax.devices()[0]
  print(f"device: {device.device_kind} x{jax.device_count()}  jax {jax.__version__}  "
        f"model {a.model}  batch {a.batch}  crop {a.crop}  dtype {a.dtype}  aux {bool(a.aux)}")
  if a.xla_flags:
    print(f"XLA_FLAGS: {os.environ.get('XLA_FLAGS', '')}"
          + ("" if flags_applied else "  (--xla-flags not applied)"))
  if not a.peak_tflops:
    a.peak_tflops = (peak_flops(device.device_kind, a.dtype) or 0.0) / 1e12
  setup = Setup(a)
  r = bench_jax(setup)
  rows = []
  for phase in ("train", "eval"):
    step_s = r[f"{phase}_step_s"]
    flops = r[f"{phase}_flops"]
    mfu = flops / step_s / (a.peak_tflops * 1e12) / jax.device_count() if a.peak_tflops else None
    rows.append(["jaxseg", phase, a.batch / step_s, 1e3 * step_s, flops / a.batch / 1e9,
                 None if mfu is None else 100 * mfu, r["peak_gib"]])
  notes, voc, mb, t = [], None, None, None
  if a.voc_eval:
    voc = voc_eval.time_voc_eval(r["eval_jit"], r["state"], setup.cfg, setup.mesh,
                                 a.voc_eval_images, a.voc_eval_canvas, a.classes)
    rows.append(["jaxseg", "voc-eval", voc["img_per_s"], voc["batch_ms"], None, None, None])
    notes.append(f"voc-eval: {voc['images']} images (long side {round(a.voc_eval_canvas * 500 / 512)}) "
                 f"padded to {a.voc_eval_canvas}x{a.voc_eval_canvas}, batch {a.voc_eval_batch}, "
                 f"{voc['batches']} batches, {voc['seconds']:.2f} s: evaluate.evaluate "
                 "end to end (pipeline, padding, transfer, step); 'step ms' is per batch")
  if a.compare_torch:
    reason = torch_reference_bench.skip_reason(a.model)
    if reason is None:
      t = torch_reference_bench.time_torchvision(a)
      for phase in ("train", "eval"):
        rows.append(["torch.compile", phase, a.batch / t[f"{phase}_step_s"],
                     1e3 * t[f"{phase}_step_s"], None, None, t["peak_gib"]])
    else:
      rows += [["torch.compile", phase, None, None, None, None, None] for phase in ("train", "eval")]
      notes.append(f"torch.compile: skipped, {reason}")
  if a.max_batch:  # Last: in measured mode it frees the timed state.
    mb = search_max_batch(setup, r)
    detail = f"limit {mb['limit']}" if mb["first_bad"] is None else f"{mb['first_bad']} does not fit"
    if mb["estimates"] is not None:
      est = lambda b: f"{mb['estimates'][b] / 2**30:.4f} GiB" if b in mb["estimates"] else "n/a"
      detail += f"; estimate at {mb['best']}: {est(mb['best'])}"
      if mb["first_bad"] is not None:
        detail += f", at {mb['first_bad']}: {est(mb['first_bad'])}"
    notes.append(f"max batch (train, global): {mb['best']}  ({detail}; method: {mb['method']}; "
                 f"tried {sorted(mb['tried'])})")
  print(f"compile (train step): {r['compile_s']:.1f} s")
  _table(rows)
  for note in notes:
    print(note)
  if t:
    for phase in ("train", "eval"):
      print(f"ratio jaxseg / torch.compile ({phase}): "
            f"{t[f'{phase}_step_s'] / r[f'{phase}_step_s']:.2f}x")
  return {"rows": rows, "voc_eval": voc, "max_batch": mb, "torch": t, "compile_s": r["compile_s"]}


if __name__ == "__main__":
  main()
