"""The dataset registry: name -> tfds builder class, prepared once, read without TF."""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import re
import shutil

import ml_collections
import numpy as np

from jaxseg import locks, paths
from jaxseg.config.checks import Checker
from jaxseg.config.sections import Choice, Section
from jaxseg.data import remote
from jaxseg.declare import bind
# Every module that registers a builder, imported here once so DATASETS is complete.
from jaxseg.data.builders import ade20k, cityscapes, folder, shapes, voc_seg  # noqa: F401
from jaxseg.data.builders.registry import DATASETS
# Re-exported: callers catch them as `datasets.DatasetError`.
from jaxseg.data.errors import DatasetError, DatasetMissingError  # noqa: F401
from jaxseg.errors import ConfigError
from jaxseg.registry import unknown_name_message


class SplitError(ConfigError):
  """data.train_split or data.eval_split names no split of the prepared dataset (exit 2)."""


# The `data` section (jaxseg/config/sections.py): the keys read here for every dataset, and
# under the chosen builder's name its own (its `builder_kwargs` keywords:
# builders/registry.py), e.g. data.folder.root.
SECTION = Section("data", shared={
    "name": "shapes",  # A registered dataset (python run.py --list).
    "config": "",  # Builder config, e.g. '2012_aug' for voc_seg.
    "dir": "~/tensorflow_datasets",  # Where prepared ArrayRecord files live.
    "manual_dir": "",  # Where manually downloaded archives are ('' = <dir>/downloads/manual).
    "train_split": "train",
    "eval_split": "validation",
    "worker_count": 0,  # grain worker processes (0 = read in the main process).
    "shuffle_seed": 0,  # Seed of the training order (grain's index sampler).
}, choices=(Choice("name", DATASETS, nested=True),))


def dataset_names() -> list[str]:
  return DATASETS.names()


def validate_config(data_cfg: ml_collections.ConfigDict) -> None:
  """Fails at config load (before any preparation) on a bad `data` section's shared keys;
  the builder's own are checked against its declarations (SECTION.check)."""
  c = Checker(data_cfg, "data")
  c.choice("name", dataset_names(), "dataset")
  c.count("worker_count", min=0)


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

  def to_json(self) -> dict:
    """Plain JSON types, as checkpoints store it next to the config."""
    return {"class_names": list(self.class_names), "palette": self.palette_K3.tolist(),
            "ignore_index": self.ignore_index, "eval_canvas": list(self.eval_canvas_HW)}

  @classmethod
  def from_json(cls, d: dict) -> "DatasetMeta":
    return cls(class_names=tuple(d["class_names"]),
               palette_K3=np.asarray(d["palette"], np.uint8).reshape(-1, 3),
               ignore_index=int(d["ignore_index"]), eval_canvas_HW=tuple(d["eval_canvas"]))


def _builder(data_cfg: ml_collections.ConfigDict, data_dir: str | None = None):
  """The builder over `data_dir`: data.dir itself (the default), or for a URL its
  local copy (remote.py)."""
  builder_cls = DATASETS.get(data_cfg.name)
  data_dir = data_dir or os.path.expanduser(data_cfg.dir)
  kwargs = {"data_dir": data_dir, "file_format": "array_record"}
  if data_cfg.config:
    kwargs["config"] = data_cfg.config
  # Builders whose identity or behaviour comes from their own data keys (the folder
  # builder's root, voc_seg's download permission) map them in `builder_kwargs`.
  if hasattr(builder_cls, "builder_kwargs"):
    own = bind(DATASETS.declared(data_cfg.name), data_cfg.get(data_cfg.name, {}))
    kwargs.update(builder_cls.builder_kwargs(data_dir, **own))
  return builder_cls(**kwargs)


def prepare(data_cfg: ml_collections.ConfigDict):
  """Returns the builder, generating ArrayRecord files first if they are missing.

  A URL data.dir (gs://) holds the prepared copy; it is read from a local copy on
  each host, downloaded (checked) or prepared and uploaded (remote.py).
  """
  if not paths.is_url(data_cfg.dir):
    return _prepare_at(data_cfg, os.path.expanduser(data_cfg.dir))
  local = remote.cache_dir(data_cfg.dir)
  builder = _builder(data_cfg, local)
  version = os.path.relpath(os.fspath(builder.data_dir), local)
  bucket_copy = paths.resolve(data_cfg.dir, "data.dir") / version
  if remote.is_complete(bucket_copy):
    with _preparation_lock(builder):  # One download per host at a time.
      if remote.download(bucket_copy, os.fspath(builder.data_dir)):
        _say(f"copied the prepared {builder.name} from {bucket_copy} to {builder.data_dir}")
    return _builder(data_cfg, local)
  builder = _prepare_at(data_cfg, local)
  if _is_main_process():
    remote.upload(os.fspath(builder.data_dir), bucket_copy)
    _say(f"uploaded the prepared {builder.name} to {bucket_copy}")
  return builder


def _prepare_at(data_cfg: ml_collections.ConfigDict, data_dir: str):
  """prepare() with the prepared files in the local folder `data_dir`.

  tfds writes into an `incomplete.*` directory and renames it only when every
  split is written, so an interrupted or refused preparation (DatasetError) is
  never read as complete, and a retry starts from scratch. Preparation holds
  an inter-process lock: a second process preparing the same dataset waits,
  then reuses what the first wrote.
  """
  builder = _builder(data_cfg, data_dir)
  if builder.is_prepared():
    return builder
  with _preparation_lock(builder):
    # Built again: the first builder's info predates what another process may
    # have prepared while this one waited (its metadata is read from disk).
    builder = _builder(data_cfg, data_dir)
    if not builder.is_prepared():
      from tensorflow_datasets.core import download  # Preparation is the one TF user.

      # Left by a preparer that was killed; nobody else writes here while we hold the lock.
      version_dir = os.fspath(builder.data_dir)
      for leftover in glob.glob(os.path.join(os.path.dirname(version_dir),
                                             f"incomplete.*_{os.path.basename(version_dir)}")):
        shutil.rmtree(leftover, ignore_errors=True)
      # Always explicit, so a builder's "put the file here" message names the real path.
      manual_dir = os.path.expanduser(data_cfg.manual_dir or os.path.join(
          data_dir, "downloads", "manual"))
      builder.download_and_prepare(
          download_config=download.DownloadConfig(manual_dir=manual_dir))
  return builder


def lock_path(builder) -> str:
  """`<data.dir>/<dataset>/<config>/.<version>.lock`, next to the prepared version dir."""
  version_dir = os.fspath(builder.data_dir)
  return os.path.join(os.path.dirname(version_dir), f".{os.path.basename(version_dir)}.lock")


@contextlib.contextmanager
def _preparation_lock(builder):
  """An exclusive lock (jaxseg/locks.py) on `<config dir>/.<version>.lock` while the block
  runs; another process preparing the same dataset is waited for, saying so."""
  path = lock_path(builder)

  def wait(holder: str) -> None:
    config = builder.builder_config.name if builder.builder_config else ""
    print(f"waiting for {holder}, which is preparing {builder.name}/{config} ({path})",
          flush=True)

  with contextlib.ExitStack() as stack:
    try:
      stack.enter_context(locks.exclusive(path, wait))
    except OSError as e:
      raise DatasetError(f"{os.path.dirname(path)}: cannot prepare the dataset there "
                         f"({e.strerror}); set data.dir to a writable directory") from e
    yield


def check_splits(builder, data_cfg: ml_collections.ConfigDict) -> tuple[str, str]:
  """(train split, eval split) to read; refuses unknown names before any training.

  Split expressions over existing splits are fine ('train[:32]',
  'train+validation'). A dataset without a 'validation' split (a train-only
  folder) evaluates on data.train_split when data.eval_split is the default
  'validation', and says so once.
  """
  train_split = _checked_split(builder, "data.train_split", data_cfg.train_split)
  if data_cfg.eval_split == "validation" and "validation" not in builder.info.splits:
    _say(f"note: {builder.name} has no 'validation' split (splits: "
         f"{', '.join(sorted(builder.info.splits))}); evaluating on data.train_split="
         f"{train_split!r}, so mIoU is measured on training images")
    return train_split, train_split
  return train_split, _checked_split(builder, "data.eval_split", data_cfg.eval_split)


def _checked_split(builder, key: str, expression: str) -> str:
  names = sorted(builder.info.splits)
  for part in expression.split("+"):
    name = re.match(r"\s*([^\[(\s]*)", part).group(1)
    if name not in names:
      raise SplitError(f"{key}={expression!r}: {unknown_name_message('split', name, names)} "
                       "(expressions like 'train[:32]' or 'train+validation' work too)")
  try:
    count = builder.info.splits[expression].num_examples
  except (ValueError, KeyError, AssertionError) as e:
    raise SplitError(f"{key}={expression!r}: {str(e).splitlines()[0]}") from e
  if count <= 0:
    raise SplitError(f"{key}={expression!r} selects no examples")
  return expression


def _is_main_process() -> bool:
  from jaxseg.runtime import distributed  # Kept local: preparation alone needs no jax.

  return distributed.is_main_process()


def _say(message: str) -> None:
  if _is_main_process():
    print(message, flush=True)


def meta_of(builder) -> DatasetMeta:
  return DatasetMeta.from_json(builder.info.metadata)


def declared_meta(data_cfg: ml_collections.ConfigDict) -> DatasetMeta:
  """The meta the dataset's builder declares (classes, palette), nothing prepared or read:
  what a model from weights alone is labelled with (Segmenter.from_experiment)."""
  return meta_of(_builder(data_cfg))
