"""The dataset registry: name -> tfds builder class, prepared once, read without TF."""

from __future__ import annotations

import dataclasses
import os

import ml_collections
import numpy as np

# Every module that registers a builder, imported here once so DATASETS is complete.
from jaxseg.data.builders import folder, shapes, voc_seg  # noqa: F401
from jaxseg.data.builders.registry import DATASETS
# Re-exported: callers catch them as `datasets.DatasetError`.
from jaxseg.data.errors import DatasetError, DatasetMissingError  # noqa: F401


def dataset_names() -> list[str]:
  return DATASETS.names()


@dataclasses.dataclass(frozen=True)
class DatasetMeta:
  """What the model, loss and reports need to know about a prepared dataset."""

  class_names: tuple[str, ...]
  palette_K3: np.ndarray
  ignore_index: int
  eval_canvas_HW: tuple[int, int]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def _builder(data_cfg: ml_collections.ConfigDict):
  builder_cls = DATASETS.get(data_cfg.name)
  kwargs = {"data_dir": os.path.expanduser(data_cfg.dir), "file_format": "array_record"}
  if data_cfg.config:
    kwargs["config"] = data_cfg.config
  # Builders whose identity or behaviour comes from more config keys than a name
  # (the folder builder's root, voc_seg's download permission) map them here.
  if hasattr(builder_cls, "builder_kwargs"):
    kwargs.update(builder_cls.builder_kwargs(data_cfg))
  return builder_cls(**kwargs)


def prepare(data_cfg: ml_collections.ConfigDict):
  """Returns the builder, generating ArrayRecord files first if they are missing.

  tfds writes into an `incomplete.*` directory and renames it only when every
  split is written, so an interrupted or refused preparation (DatasetError) is
  never read as complete, and a retry starts from scratch.
  """
  builder = _builder(data_cfg)
  if not builder.is_prepared():
    from tensorflow_datasets.core import download  # Preparation is the one TF user.

    # Always explicit, so a builder's "put the file here" message names the real path.
    manual_dir = os.path.expanduser(data_cfg.manual_dir or os.path.join(
        data_cfg.dir, "downloads", "manual"))
    builder.download_and_prepare(
        download_config=download.DownloadConfig(manual_dir=manual_dir))
  return builder


def meta_of(builder) -> DatasetMeta:
  md = builder.info.metadata
  return DatasetMeta(
      class_names=tuple(md["class_names"]),
      palette_K3=np.asarray(md["palette"], np.uint8).reshape(-1, 3),
      ignore_index=int(md["ignore_index"]),
      eval_canvas_HW=tuple(md["eval_canvas"]),
  )
