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
its softmax probabilities averaged over the overlaps on the host.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import math
import os

import jax
import numpy as np
from PIL import Image

from jaxseg.config.resolve import validate_batch_sizes
from jaxseg.errors import ConfigError
from jaxseg.evaluation import inference, report
from jaxseg.paths import is_url, local_copy, resolve, write_bytes
from jaxseg.prediction.inputs import InputError, list_inputs, load_image, readable_sizes
from jaxseg.runtime.sharding import batch_sharded
from jaxseg.training.state import state_shardings


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


def make_predict_fns(model, cfg, state, mesh):
  """(labels, probs): jitted (state, images_BHW3 uint8, size_B2) -> labels_BHW int32 or
  probs_BHWK float32, sharded over data."""
  data = batch_sharded(mesh)
  shardings = (state_shardings(state), data, data)

  # Each image at its own size (eval.protocol='native', whatever the checkpoint's eval
  # used): the function the eval step runs under that protocol.
  def labels(state, images_BHW3, size_B2):
    return inference.native_labels(model, state.variables(), images_BHW3, size_B2, cfg)

  def probs(state, images_BHW3, size_B2):
    return inference.native_probs(model, state.variables(), images_BHW3, size_B2, cfg)

  return (jax.jit(labels, in_shardings=shardings, out_shardings=data),
          jax.jit(probs, in_shardings=shardings, out_shardings=data))


@dataclasses.dataclass(frozen=True)
class Piece:
  """One image of a device call: a whole input, or one tile of a large one."""

  path: str
  box: tuple[int, int, int, int]  # (top, left, height, width) in the input image.
  tiled: bool


def _tile_starts(size: int, tile: int, stride: int) -> list[int]:
  """mmseg's grid along one axis: the last tile flush with the image's edge."""
  return [min(i * stride, size - tile) for i in range(math.ceil(max(size - tile, 0) / stride) + 1)]


def plan(sizes: dict[str, tuple[int, int]], predict_cfg) -> dict[tuple, list[Piece]]:
  """{(canvas_HW, tiled): pieces}: whole images whose canvas fits the per-device pixel
  budget, tiles of the others; each group becomes batches of one static shape."""
  groups: dict[tuple, list[Piece]] = collections.defaultdict(list)
  canvas = lambda h, w: tuple(inference.round_up(n, predict_cfg.bucket) for n in (h, w))
  for path, (H, W) in sizes.items():
    if math.prod(canvas(H, W)) <= predict_cfg.max_pixels_per_device:
      groups[canvas(H, W), False].append(Piece(path, (0, 0, H, W), False))
      continue
    th, tw = min(predict_cfg.tile_size[0], H), min(predict_cfg.tile_size[1], W)
    for top in _tile_starts(H, th, predict_cfg.tile_stride[0]):
      for left in _tile_starts(W, tw, predict_cfg.tile_stride[1]):
        groups[canvas(th, tw), True].append(Piece(path, (top, left, th, tw), True))
  return groups


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
  _write_png(overlay_path, Image.fromarray(report.overlay(image_HW3, mask_HW, palette_K3, alpha)))


def predict_paths(run, state, sizes: dict[str, tuple[int, int]], out_dir: str
                  ) -> dict[str, tuple[int, int]]:
  """Predicts every image of `sizes` ({path: (H, W)}: predict_inputs.readable_sizes);
  returns {file name: (H, W)} of those written."""
  cfg, mesh = run.cfg, run.mesh
  validate_batch_sizes(cfg, "predict", mesh.size, jax.process_count())
  state = state.for_eval()
  labels_fn, probs_fn = make_predict_fns(run.model, cfg, state, mesh)
  groups = plan(sizes, cfg.predict)
  tiles_of = collections.Counter(p.path for g in groups.values() for p in g if p.tiled)
  loaded: dict[str, np.ndarray] = {}  # The images of the current batch only.
  sums: dict[str, list] = {}  # Tiled images: [probability sums (H, W, K), tiles left].
  written = {}

  def finish(path, mask_HW):
    write_outputs(out_dir, path, loaded[path], mask_HW, run.meta.palette_K3,
                  cfg.predict.overlay_alpha)
    written[os.path.basename(path)] = mask_HW.shape

  for ((CH, CW), tiled), pieces in groups.items():
    # As many images per device as the pixel budget allows, at least one.
    per_device = min(cfg.predict.batch_size // mesh.size,
                     max(1, cfg.predict.max_pixels_per_device // (CH * CW)))
    batch = per_device * mesh.size
    for start in range(0, len(pieces), batch):
      chunk = pieces[start:start + batch]
      images = np.zeros((batch, CH, CW, 3), np.uint8)
      size_B2 = np.tile(np.array([CH, CW], np.int32), (batch, 1))  # Filler rows: whole canvas.
      # A tiled image's pieces are consecutive: it stays loaded across batches while needed.
      loaded = {p.path: loaded[p.path] if p.path in loaded else load_image(p.path)
                for p in chunk}
      for i, piece in enumerate(chunk):
        top, left, h, w = piece.box
        if loaded[piece.path] is not None:
          images[i, :h, :w] = loaded[piece.path][top:top + h, left:left + w]
        size_B2[i] = (h, w)
      fn = probs_fn if tiled else labels_fn
      out = np.asarray(jax.device_get(fn(state, images, size_B2)))
      for i, piece in enumerate(chunk):
        top, left, h, w = piece.box
        if loaded[piece.path] is None:  # Warned when loading; nothing written for it.
          continue
        if not tiled:
          finish(piece.path, out[i, :h, :w])
          continue
        if piece.path not in sums:
          H, W = sizes[piece.path]
          sums[piece.path] = [np.zeros((H, W, out.shape[-1]), np.float32), tiles_of[piece.path]]
        acc = sums[piece.path]
        acc[0][top:top + h, left:left + w] += out[i, :h, :w]
        acc[1] -= 1
        if acc[1] == 0:  # argmax of the sum = argmax of the mean over overlapping tiles.
          finish(piece.path, np.argmax(sums.pop(piece.path)[0], axis=-1).astype(np.int32))
  return written


def predict(cfg, workdir: str, input_path: str, out_dir: str, overrides=()
            ) -> dict[str, tuple[int, int]]:
  """Restores the checkpoint `eval.checkpoint` names (rebuilt from its own config and
  dataset meta; `overrides` may set eval.*/predict.* keys) and predicts `input_path`."""
  from jaxseg.runtime.build import build_from_checkpoint

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
    run, state, step, _ = build_from_checkpoint(cfg, workdir, overrides)
    written = predict_paths(run, state, sizes, out_dir)
    if not written:  # Every header read, yet no image decoded (e.g. all truncated).
      raise InputError(f"--input {input_path}: no image could be decoded (warnings above); "
                       "nothing written")
    skipped = len(files) - len(written)
  print(f"checkpoint step {step}: wrote {len(written)} masks and overlays to "
        f"{os.path.join(out_dir, 'masks')} and {os.path.join(out_dir, 'overlays')} "
        f"({skipped} files skipped)")
  return written
