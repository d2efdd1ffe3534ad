"""The one example layout every file-based builder writes: image, label PNG, id, and
the dataset's meta (class names, palette, ignore index, eval canvas) that
`jaxseg.data.datasets` reads back."""

from __future__ import annotations

import tensorflow_datasets as tfds

from jaxseg.data.builders import imagefiles


def segmentation_info(builder: tfds.core.GeneratorBasedBuilder, *, description: str,
                      image_format: str | None, class_names, palette, eval_canvas,
                      homepage: str | None = None) -> tfds.core.DatasetInfo:
  """`image_format`: 'jpeg' or 'png' to store every image so, None to keep each file's
  own encoding (no second lossy pass). Labels are always lossless PNG."""
  return builder.dataset_info_from_configs(
      description=description,
      features=tfds.features.FeaturesDict({
          "image": tfds.features.Image(shape=(None, None, 3), encoding_format=image_format),
          "label": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
          "id": tfds.features.Text(),
      }),
      metadata=tfds.core.MetadataDict(
          class_names=list(class_names), palette=[list(rgb) for rgb in palette],
          ignore_index=imagefiles.IGNORE_INDEX, eval_canvas=list(eval_canvas)),
      homepage=homepage,
  )
