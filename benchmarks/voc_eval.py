"""Evaluation img/s over a VOC-val-sized split (train_throughput.py --voc-eval).

Runs jaxseg's real evaluation loop, `evaluate.evaluate`: grain over a data
source, padding to the fixed canvas with ignore labels and `example_mask`, the
last batch filled with masked examples, host->device transfer, the jitted eval
step and the host-side confusion-matrix sum. Only the real images count.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from jaxseg.evaluation import evaluate
from jaxseg.runtime.build import synthetic_meta
from jaxseg.runtime.sharding import global_batch

VOC_VAL_IMAGES = 1449


class FabricatedVoc:
  """A random-access source shaped like tfds' VOC val: long side 500, short side 281-500.

  Sizes are scaled with the canvas (500 of 512) so a small canvas keeps VOC's
  proportions. Pixels are views into one random canvas, so reading is free and
  the loop's own costs (padding, batching, transfer, step) are what is timed.
  """

  def __init__(self, num_images: int, canvas: int, num_classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    long = max(1, round(canvas * 500 / 512))
    short = rng.integers(max(1, round(long * 0.56)), long + 1, num_images)
    landscape = rng.random(num_images) < 0.7  # Most VOC photos are 500 wide.
    self.sizes_HW = np.where(landscape[:, None], np.stack([short, np.full_like(short, long)], 1),
                             np.stack([np.full_like(short, long), short], 1))
    self._image = rng.integers(0, 256, (canvas, canvas, 3), dtype=np.uint8)
    # No ignore pixels inside an image: the confusion matrix must then count every pixel.
    self._label = rng.integers(0, num_classes, (canvas, canvas, 1)).astype(np.uint8)

  def __len__(self) -> int:
    return len(self.sizes_HW)

  def __getitem__(self, index):
    H, W = self.sizes_HW[int(index)]
    return {"image": self._image[:H, :W], "label": self._label[:H, :W]}

  def num_pixels(self) -> int:
    return int(np.prod(self.sizes_HW, axis=1).sum())


def time_voc_eval(eval_jit, state, cfg, mesh, num_images: int, canvas: int,
                  num_classes: int) -> dict:
  source = FabricatedVoc(num_images, canvas, num_classes)
  meta = synthetic_meta(num_classes, (canvas, canvas))
  # Compile outside the timing, on one batch of the canvas shape.
  per_process = cfg.eval.batch_size // jax.process_count()
  warm = {"image": np.zeros((per_process, canvas, canvas, 3), np.uint8),
          "label": np.full((per_process, canvas, canvas), 255, np.uint8),
          "example_mask": np.zeros((per_process,), bool),
          "size_HW": np.full((per_process, 2), canvas, np.int32)}
  jax.block_until_ready(eval_jit(state, global_batch(mesh, warm)))
  start = time.perf_counter()
  _, conf = evaluate.evaluate(eval_jit, state, source, cfg, meta, mesh)
  seconds = time.perf_counter() - start
  if conf.sum() != source.num_pixels():  # Each real pixel once; padding nowhere.
    raise AssertionError(f"confusion matrix counts {conf.sum()} pixels, "
                         f"the images have {source.num_pixels()}")
  batches = -(-num_images // cfg.eval.batch_size)
  return {"images": num_images, "batches": batches, "seconds": seconds,
          "img_per_s": num_images / seconds, "batch_ms": 1e3 * seconds / batches}
