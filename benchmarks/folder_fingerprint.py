"""Cost of the `folder` dataset's content fingerprint on N fabricated image/label files.

Times the old name+size listing against `folder.folder_config` (sha256 of every
file's bytes) without a cache, on its first run (writing the cache) and with
the cache warm. Files sit in the page cache: a cold disk adds its read time to
the uncached runs only.

  python benchmarks/folder_fingerprint.py --files 2000 --size 96x128
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxseg.data.builders import fingerprint, folder  # noqa: E402  (after the path)


def _fabricate(root: str, pairs: int, size_HW: tuple[int, int]) -> None:
  rng = np.random.default_rng(0)
  for top in ("images/train", "labels/train"):
    os.makedirs(os.path.join(root, top))
  with open(os.path.join(root, "classes.txt"), "w") as f:
    f.write("a\nb\nc\n")
  for i in range(pairs):
    image = rng.integers(0, 256, (*size_HW, 3), np.uint8)
    Image.fromarray(image).save(os.path.join(root, f"images/train/{i:05d}.jpg"), quality=90)
    label = rng.integers(0, 3, size_HW, np.uint8)
    Image.fromarray(label).save(os.path.join(root, f"labels/train/{i:05d}.png"))


def _name_and_size(root: str) -> str:
  """The fingerprint before it hashed content (blind to an edit that keeps the size)."""
  digest = hashlib.sha256()
  for top in ("images", "labels"):
    for dirpath, _, files in sorted(os.walk(os.path.join(root, top))):
      for f in sorted(files):
        full = os.path.join(dirpath, f)
        digest.update(f"{os.path.relpath(full, root)}:{os.path.getsize(full)}\n".encode())
  return digest.hexdigest()


def _best_ms(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return 1e3 * min(times)


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--files", type=int, default=2000, help="images + labels (half each)")
  p.add_argument("--size", default="96x128", help="HxW of each image and label")
  p.add_argument("--repeats", type=int, default=5, help="timed runs; the fastest counts")
  args = p.parse_args(argv)
  size_HW = tuple(int(v) for v in args.size.split("x"))
  work = tempfile.mkdtemp(prefix="fingerprint_bench_")
  try:
    root, cache = os.path.join(work, "data"), os.path.join(work, "cache")
    _fabricate(root, args.files // 2, size_HW)
    fingerprint._RACY_SECONDS = 0.0  # The files were just written; cache them anyway.
    megabytes = sum(os.path.getsize(os.path.join(d, f))
                    for d, _, fs in os.walk(root) for f in fs) / 1e6
    start = time.perf_counter()
    folder.folder_config(root, cache_dir=cache)
    result = {
        "files": args.files, "megabytes": megabytes,
        "first_run_with_cache_ms": 1e3 * (time.perf_counter() - start),
        "name_and_size_ms": _best_ms(lambda: _name_and_size(root), args.repeats),
        "sha256_no_cache_ms": _best_ms(lambda: folder.folder_config(root), args.repeats),
        "sha256_cached_ms": _best_ms(lambda: folder.folder_config(root, cache_dir=cache),
                                     args.repeats),
    }
  finally:
    shutil.rmtree(work)
  print(f"{result['files']} files, {megabytes:.1f} MB")
  for key in ("name_and_size_ms", "sha256_no_cache_ms", "first_run_with_cache_ms",
              "sha256_cached_ms"):
    print(f"  {key[:-3]:<24} {result[key]:8.1f} ms")
  return result


if __name__ == "__main__":
  main()
