"""`python run.py --mode browse`: look at a dataset through its pipelines before training
(mmsegmentation's browse_dataset).

Writes two figures, `train.png` and `val.png`, to `<workdir>/browse/` (or `--output`):
the first `browse.count` training examples exactly as the first training steps get them
(the same grain loader, shuffle seed and augmentation: `pipeline.train_loader`), and the
first `browse.count` validation examples as evaluation reads them
(`pipeline.eval_batches`, without the canvas padding). Each row: image | label colours |
overlay, with a legend of the classes present and `ignore` (white: pixels of the ignore
index, e.g. the padding a crop adds). Images stay uint8 in the pipelines (normalisation
happens on device), so they are shown as the model's input before it.
"""

from __future__ import annotations

import itertools
import os

import ml_collections
import numpy as np

from jaxseg import paths
from jaxseg.data import datasets, pipeline
from jaxseg.errors import ConfigError
from jaxseg.evaluation import figures
from jaxseg.runtime import distributed
from jaxseg.runtime.workdir import WorkdirLock

FILES = ("train.png", "val.png")


class BrowseOutputError(ConfigError):
  """An --output that already holds the figures browse writes (run.py: exit 2, one line)."""


def train_examples(source, cfg, ignore_index: int, count: int) -> list[dict]:
  """The first `count` examples of this process's training batches, augmented."""
  loader = pipeline.train_loader(source, cfg, ignore_index)
  batches = iter(loader)
  examples = []
  while len(examples) < count:
    batch = next(batches)
    examples += [{"image": batch["image"][i], "label": batch["label"][i]}
                 for i in range(min(len(batch["label"]), count - len(examples)))]
  return examples


def val_examples(source, cfg, meta, count: int) -> list[dict]:
  """The first `count` examples of the eval split, at their own size."""
  examples = []
  batches = pipeline.eval_batches(source, cfg, meta.eval_canvas_HW, meta.ignore_index)
  for batch in itertools.takewhile(lambda _: len(examples) < count, batches):
    for i in np.flatnonzero(batch["example_mask"])[:count - len(examples)]:
      image, label = pipeline.eval_example(batch, i)
      examples.append({"image": image, "label": label})
  return examples


def browse_figure(examples: list[dict], meta, alpha: float, title: str):
  """image | label colours | overlay per example, with the legend of the classes present."""
  rows = [[e["image"], figures.colorize(e["label"], meta.palette_K3),
           figures.overlay(e["image"], e["label"], meta.palette_K3, alpha)] for e in examples]
  handles = figures.legend_handles([e["label"] for e in examples], meta.palette_K3,
                                   list(meta.class_names)) if examples else []
  return figures.image_grid(rows, ("image", "label", "overlay"), handles, title=title)


def _check_output(out: str) -> None:
  clashes = [name for name in FILES if paths.resolve(os.path.join(out, name)).exists()]
  if clashes:
    raise BrowseOutputError(f"--output {out} already holds {clashes[0]}; nothing written: "
                            "remove it or choose another --output")


def browse(cfg: ml_collections.ConfigDict, workdir: str, output: str | None = None) -> list[str]:
  """Writes the two figures (see the module docstring); returns their paths. Process 0
  only draws (each process would see its own slice of the training batches)."""
  if not distributed.is_main_process():
    return []
  if output is not None:
    _check_output(output)
    return _write(output, draw(cfg))
  # In the workdir: claimed (marker) and locked as a run does, before data is prepared.
  with WorkdirLock(workdir):
    return _write(os.path.join(workdir, "browse"), draw(cfg))


def draw(cfg: ml_collections.ConfigDict) -> dict:
  """{file name: Figure} of the training and validation examples."""
  dataset = datasets.prepare(cfg.data)
  meta = datasets.meta_of(dataset)
  train_split, eval_split = datasets.check_splits(dataset, cfg.data)
  count, alpha = cfg.browse.count, cfg.predict.overlay_alpha
  train = train_examples(dataset.as_data_source(train_split), cfg, meta.ignore_index, count)
  val = val_examples(dataset.as_data_source(eval_split), cfg, meta, count)
  return {
      "train.png": browse_figure(train, meta, alpha,
                                 f"{cfg.data.name} '{train_split}' after augment.preset="
                                 f"'{cfg.augment.preset}' (the first training batches)"),
      "val.png": browse_figure(val, meta, alpha, f"{cfg.data.name} '{eval_split}' as evaluated"),
  }


def _write(out: str, drawn: dict) -> list[str]:
  written = []
  for name, fig in drawn.items():
    path = os.path.join(out, name)
    paths.write_bytes(path, figures.png(fig))  # Atomic: never a half-written figure.
    written.append(path)
  return written
