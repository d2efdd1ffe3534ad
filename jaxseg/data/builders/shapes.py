"""tfds builder for `shapes`: the embedded procedural dataset (no download)."""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from jaxseg.data.builders import shapes_render
from jaxseg.data.builders.registry import DATASETS

_SIZE = 64
_SPLITS = {"train": (0, 4000), "validation": (1_000_000, 300)}  # (seed offset, count)
# A VOC-like palette: distinct colours for the classes, white for ignore.
_PALETTE = [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [128, 0, 128]]


@DATASETS.register("shapes")
class Shapes(tfds.core.GeneratorBasedBuilder):
  """Textured disks, squares and triangles; labels with 255 boundary bands."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=shapes_render.__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(_SIZE, _SIZE, 3)),
            "label": tfds.features.Image(shape=(_SIZE, _SIZE, 1)),
            "id": tfds.features.Text(),
        }),
        metadata=tfds.core.MetadataDict(
            class_names=list(shapes_render.CLASS_NAMES),
            palette=_PALETTE,
            ignore_index=shapes_render.IGNORE_INDEX,
            eval_canvas=[_SIZE, _SIZE],
        ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is generated locally.
    return {name: self._generate_examples(*spec) for name, spec in _SPLITS.items()}

  def _generate_examples(self, seed_offset: int, count: int):
    for index in range(count):
      image, label = shapes_render.render_scene(seed_offset + index, size=_SIZE)
      key = f"{seed_offset + index:07d}"
      yield key, {"image": image, "label": label[..., None].astype(np.uint8), "id": key}
