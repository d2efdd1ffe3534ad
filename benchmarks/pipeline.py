"""Images/s of the real grain train loader on fabricated VOC-sized JPEGs, per worker count.

The source holds encoded bytes (JPEG images, palette-PNG labels, 500x375 like
VOC) and decodes on access, as `tfds.data_source` does; everything after it is
`pipeline.train_loader` with the `voc` preset at mmseg's values
(`experiments/_voc.py`'s `mmseg_voc_augment`): rescale, cat_max_ratio crop, flip,
photometric distortion, batching. No model, no device transfer.

  python benchmarks/pipeline.py --workers 0,1,2,4
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time

import numpy as np
from PIL import Image, ImageDraw

# The repo root (for `experiments` and this checkout's `jaxseg`), also in grain's workers.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _fabricate(index: int, H: int = 375, W: int = 500) -> tuple[bytes, bytes]:
  """A smooth random background with a few objects; the label is a palette PNG."""
  rng = np.random.default_rng(index)
  coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
  image = Image.fromarray(coarse).resize((W, H), Image.Resampling.BICUBIC)
  label = Image.new("P", (W, H), 0)
  label.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tolist())
  draw_image, draw_label = ImageDraw.Draw(image), ImageDraw.Draw(label)
  for _ in range(int(rng.integers(1, 5))):
    x0, y0 = int(rng.integers(0, W - 60)), int(rng.integers(0, H - 60))
    box = (x0, y0, x0 + int(rng.integers(40, W - x0)), y0 + int(rng.integers(40, H - y0)))
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    draw_image.ellipse(box, fill=colour)
    draw_label.ellipse(box, fill=int(rng.integers(1, 21)), outline=255, width=3)  # VOC's border
  noisy = np.asarray(image).astype(np.int16) + rng.integers(-12, 13, (H, W, 3))
  image_bytes, label_bytes = io.BytesIO(), io.BytesIO()
  Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(image_bytes, "JPEG", quality=90)
  label.save(label_bytes, "PNG")
  return image_bytes.getvalue(), label_bytes.getvalue()


class EncodedSource:
  """A grain RandomAccessDataSource over encoded examples, decoding like tfds (label HxWx1)."""

  def __init__(self, records: list[tuple[bytes, bytes]]):
    self.records = records

  def __len__(self) -> int:
    return len(self.records)

  def __getitem__(self, key: int) -> dict:
    image_bytes, label_bytes = self.records[key]
    image = np.asarray(Image.open(io.BytesIO(image_bytes)).convert("RGB"))
    label = np.asarray(Image.open(io.BytesIO(label_bytes)))  # palette indices, not colours
    return {"image": image, "label": label[..., None]}

  def __repr__(self) -> str:  # grain checks it against a restored iterator state.
    return f"EncodedSource({len(self.records)} records)"


def _parse_args() -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--workers", default="0,1,2,4", help="comma-separated grain worker counts")
  p.add_argument("--images", type=int, default=64, help="fabricated examples in the source")
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--batches", type=int, default=12, help="timed batches per worker count")
  p.add_argument("--warmup", type=int, default=2, help="untimed batches (worker start-up)")
  p.add_argument("--crop", type=int, default=512)
  return p.parse_args()


def main() -> None:
  args = _parse_args()
  from absl import flags

  from experiments import _voc
  from jaxseg.config.overrides import flat_dict
  from jaxseg.config.resolve import build_config
  from jaxseg.data import pipeline

  flags.FLAGS.mark_as_parsed()  # grain's worker processes read absl flags.
  source = EncodedSource([_fabricate(i) for i in range(args.images)])
  print(f"source: {len(source)} JPEG/PNG pairs of 500x375, "
        f"{sum(len(a) + len(b) for a, b in source.records) / len(source) / 1024:.0f} KiB each; "
        f"preset voc (mmseg values), crop {args.crop}, batch {args.batch}\n")
  print("| workers | img/s | ms/batch |")
  print("|---|---|---|")
  for workers in (int(w) for w in args.workers.split(",")):
    voc = dict(_voc.mmseg_voc_augment(), crop_size=(args.crop, args.crop))
    cfg = build_config("demo", [f"data.worker_count={workers}", f"train.batch_size={args.batch}",
                                *(f"augment.{key}={value}"
                                  for key, value in flat_dict(voc).items())])
    it = iter(pipeline.train_loader(source, cfg, ignore_index=255))
    for _ in range(args.warmup):
      next(it)
    start = time.perf_counter()
    for _ in range(args.batches):
      batch = next(it)
    elapsed = time.perf_counter() - start
    assert batch["image"].shape == (args.batch, args.crop, args.crop, 3)
    print(f"| {workers} | {args.batches * args.batch / elapsed:.1f} | "
          f"{1000 * elapsed / args.batches:.0f} |", flush=True)
    del it, batch  # Stops this worker pool, and frees its shared memory, before the next.


if __name__ == "__main__":
  main()
