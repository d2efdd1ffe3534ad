"""Images in, class masks and overlays out: `python run.py --mode predict --input PATH --output DIR`.

The model, its classes and palette come from the checkpoint alone: no dataset is
read. Nothing is ever overwritten: an output folder equal to or inside the
input folder (or an output that is a file) is refused, every input `x.ext` gets `masks/x.ext.png` (class
indices, P mode with the dataset palette) and `overlays/x.ext.png`, and if any
of those already exists nothing is predicted (each file is also written atomically and
exclusively: paths.write_bytes).

Memory is bounded: each image is padded bottom/right to a canvas whose sides are
rounded up to `predict.bucket` (one compile per bucket, not per size); a device
call holds at most `predict.max_pixels_per_device` canvas pixels per device; an
image whose canvas alone exceeds that is predicted in overlapping tiles of
`predict.tile_size` every `predict.tile_stride` (each tile under `eval.mode`),
its softmax probabilities averaged over the overlaps on the host (prediction/plan.py).
Every mask is computed by the Python API (jaxseg.Segmenter.stream): this module
lists the inputs and writes the outputs.
"""

from __future__ import annotations

import io
import os

import jax
import numpy as np
from PIL import Image

from jaxseg.errors import ConfigError
from jaxseg.evaluation import figures
from jaxseg.paths import is_url, local_copy, resolve, write_bytes
from jaxseg.prediction.inputs import InputError, list_inputs, load_image, readable_sizes
from jaxseg.prediction.segmenter import Segmenter


class OutputError(ConfigError):
  """An --output that would replace or mix with files (run.py: exit 2, one line)."""


def output_paths(out_dir: str, path: str) -> tuple[str, str]:
  """(mask, overlay) of input `path`: its whole file name plus .png, in two folders, so
  'a.jpg' and 'a.png' differ and no input name can land on another's overlay."""
  name = os.path.basename(path) + ".png"
  return os.path.join(out_dir, "masks", name), os.path.join(out_dir, "overlays", name)


def _exists(path: str) -> bool:
  return resolve(path).exists() if is_url(path) else os.path.lexists(path)


def check_output(input_path: str, paths: list[str], out_dir: str) -> None:
  """Refuses (OutputError) an output that is a file, is or lies inside the input folder,
  or already holds a file this run would write. Called before anything is predicted."""
  if _exists(out_dir) and not resolve(out_dir).is_dir():
    raise OutputError(f"--output {out_dir} is a file; give a folder (masks and overlays "
                      "go to its masks/ and overlays/)")
  out = os.path.realpath(out_dir)
  in_dir = os.path.realpath(input_path)
  if os.path.isdir(input_path) and (out == in_dir or out.startswith(in_dir + os.sep)):
    where = "is" if out == in_dir else "is inside"
    raise OutputError(f"--output {out_dir} {where} the input folder {in_dir}; choose an "
                      "output folder outside it (predictions would mix with the images)")
  clashes = [p for path in paths for p in output_paths(out_dir, path) if _exists(p)]
  if clashes:
    raise OutputError(f"--output {out_dir} already holds {len(clashes)} of the files this "
                      f"run would write (e.g. {clashes[0]}); nothing written: remove them or "
                      "choose another --output")


def _write_png(path: str, image: Image.Image) -> None:
  """Atomic (a full disk or a kill leaves no partial file) and exclusive (never replaces
  a file that appeared meanwhile)."""
  buffer = io.BytesIO()
  image.save(buffer, format="PNG")
  try:
    write_bytes(path, buffer.getvalue(), exclusive=True)
  except FileExistsError:
    raise OutputError(f"{path} appeared while predicting; not replaced") from None


def write_outputs(out_dir: str, path: str, image_HW3, mask_HW, palette_K3, alpha: float):
  mask_path, overlay_path = output_paths(out_dir, path)
  mask = Image.fromarray(mask_HW.astype(np.uint8), mode="P")
  flat = np.zeros((256, 3), np.uint8)
  flat[:len(palette_K3)] = palette_K3
  mask.putpalette(flat.ravel().tolist())
  _write_png(mask_path, mask)
  _write_png(overlay_path, Image.fromarray(figures.overlay(image_HW3, mask_HW, palette_K3, alpha)))


def predict_paths(segmenter, sizes: dict[str, tuple[int, int]], out_dir: str
                  ) -> dict[str, tuple[int, int]]:
  """Predicts every image of `sizes` ({path: (H, W)}: inputs.readable_sizes) with
  `segmenter` (the Python API's own computation); returns {file name: (H, W)} written."""
  written = {}
  for path, image_HW3, mask_HW in segmenter.stream(sizes, load_image):
    write_outputs(out_dir, path, image_HW3, mask_HW, segmenter.palette,
                  segmenter.cfg.predict.overlay_alpha)
    written[os.path.basename(path)] = mask_HW.shape
  return written


def predict(cfg, workdir: str, input_path: str, out_dir: str, overrides=()
            ) -> dict[str, tuple[int, int]]:
  """Restores the checkpoint `eval.checkpoint` names (rebuilt from its own config and
  dataset meta; `overrides` may set eval.*/predict.* keys) and predicts `input_path`."""
  if jax.process_count() > 1:
    raise ConfigError("--mode predict runs on a single process")
  if is_url(input_path) and f"{out_dir.rstrip('/')}/".startswith(f"{input_path.rstrip('/')}/"):
    raise OutputError(f"--output {out_dir} is or is inside the input folder {input_path}; "
                      "choose an output folder outside it (predictions would mix with the images)")
  # A URL --input is read from a local copy (names kept: they name the outputs).
  with local_copy(input_path, "--input") as local_input:
    # Before building anything: a wrong path, or one without any image, fails fast.
    files = list_inputs(local_input)
    sizes = readable_sizes(local_input, files)
    check_output(local_input, list(sizes), out_dir)
    # No pretrained weights are read: the checkpoint holds the model's.
    segmenter = Segmenter.from_config(cfg, workdir, overrides)
    written = predict_paths(segmenter, sizes, out_dir)
    if not written:  # Every header read, yet no image decoded (e.g. all truncated).
      raise InputError(f"--input {input_path}: no image could be decoded (warnings above); "
                       "nothing written")
    skipped = len(files) - len(written)
  print(f"checkpoint step {segmenter.step}: wrote {len(written)} masks and overlays to "
        f"{os.path.join(out_dir, 'masks')} and {os.path.join(out_dir, 'overlays')} "
        f"({skipped} files skipped)")
  return written
