"""Memory of sliding-window evaluation on large canvases, from XLA's analysis of the compiled
eval function (compile only: nothing runs, so a CPU can size a GPU's job).

Compares whole-image inference with `eval.mode=slide` on the same canvas, and
slide with more windows (a smaller stride): slide's temporaries are the two
(B, H, W, K+1) float32 accumulators plus one scan step's activations
(`eval.windows_per_step` windows of each image), whatever the grid size.

  python benchmarks/slide_memory.py --exp cityscapes_deeplabv3plus --batch 1 \
      --crop 512 1024 --strides 341 512
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from jaxseg.config.resolve import build_config
from jaxseg.evaluation import inference
from jaxseg.models import build_model


def eval_memory(cfg, num_classes: int, canvas_HW, batch: int) -> dict:
  """{'temp', 'output', 'arguments'} bytes of the compiled `native_probs` of one batch."""
  model = build_model(cfg.model, num_classes)
  image = jax.ShapeDtypeStruct((batch, *canvas_HW, 3), jnp.uint8)
  sizes = jax.ShapeDtypeStruct((batch, 2), jnp.int32)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)),
                                                train=False))
  run = lambda v, x, s: inference.native_probs(model, v, x, s, cfg)
  memory = jax.jit(run).lower(variables, image, sizes).compile().memory_analysis()
  return {"temp": memory.temp_size_in_bytes, "output": memory.output_size_in_bytes,
          "arguments": memory.argument_size_in_bytes}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--exp", default="cityscapes_deeplabv3plus")
  parser.add_argument("--classes", type=int, default=19)
  parser.add_argument("--canvas", type=int, nargs=2, default=(1024, 2048))
  parser.add_argument("--batch", type=int, default=1, help="images per device")
  parser.add_argument("--crop", type=int, nargs=2, default=(512, 1024))
  parser.add_argument("--strides", type=int, nargs="+", default=(341, 512))
  parser.add_argument("--windows-per-step", type=int, default=1)
  parser.add_argument("--dtype", default="bfloat16")
  args = parser.parse_args(argv)
  gib = lambda n: f"{n / 2**30:7.2f} GiB"
  B, (H, W), K = args.batch, args.canvas, args.classes
  print(f"{args.exp}, {B} x {H}x{W} per device, {K} classes, {args.dtype}; accumulators "
        f"{gib(B * H * W * (K + 1) * 4)}")
  runs = [("whole", None)] + [("slide", s) for s in args.strides]
  for mode, stride in runs:
    overrides = [f"eval.mode={mode}", f"model.dtype={args.dtype}", "model.backbone_weights=none",
                 f"eval.crop_size=({args.crop[0]},{args.crop[1]})",
                 f"eval.windows_per_step={args.windows_per_step}"]
    if stride:
      overrides.append(f"eval.stride=({stride},{stride})")
    m = eval_memory(build_config(args.exp, overrides), K, (H, W), B)
    label = mode if stride is None else f"slide {args.crop[0]}x{args.crop[1]} / {stride}"
    print(f"  {label:24s} temp {gib(m['temp'])}  output {gib(m['output'])}  "
          f"params+input {gib(m['arguments'])}")


if __name__ == "__main__":
  main()
