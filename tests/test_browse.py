"""`--mode browse` on the embedded dataset: the two grids exist, have the figure's size,
show the augmented training examples and the val examples, and ignore pixels in white."""

import os

import numpy as np
import pytest
from PIL import Image

import run
from jaxseg.config.resolve import build_config
from jaxseg.data import browse
from jaxseg.data import datasets, pipeline
from jaxseg.errors import ConfigError
from jaxseg.evaluation import figures


def test_browse_writes_train_and_val_grids(shapes_dir, tmp_path, capsys):
  workdir = str(tmp_path / "run")
  args = ["--exp", "demo:smoke", "--mode", "browse", "--workdir", workdir,
          "--set", f"data.dir={shapes_dir}", "--set", "browse.count=3"]
  assert run.main(args) == 0
  written = [os.path.join(workdir, "browse", name) for name in ("train.png", "val.png")]
  assert capsys.readouterr().out.split() == written
  assert os.path.exists(os.path.join(workdir, ".jaxseg-workdir"))  # Claimed as a run does.

  cfg = build_config("demo:smoke", [f"data.dir={shapes_dir}", "browse.count=3"])
  dataset = datasets.prepare(cfg.data)
  meta = datasets.meta_of(dataset)
  train = browse.train_examples(dataset.as_data_source("train"), cfg, meta.ignore_index, 3)
  val = browse.val_examples(dataset.as_data_source("validation"), cfg, meta, 3)
  # Exactly the first examples training steps get (same loader, seed and augmentation).
  first_batch = next(iter(pipeline.train_loader(dataset.as_data_source("train"), cfg,
                                                meta.ignore_index)))
  for i, example in enumerate(train):
    np.testing.assert_array_equal(example["image"], first_batch["image"][i])
    np.testing.assert_array_equal(example["label"], first_batch["label"][i])
  assert len(val) == 3
  drawn = browse.draw(cfg)
  for path, examples in zip(written, (train, val)):
    fig = drawn[os.path.basename(path)]
    picture = np.asarray(Image.open(path).convert("RGB"))
    width, height = fig.get_size_inches() * figures.DPI
    assert picture.shape == (round(height), round(width), 3)  # 3 rows of 3 views + legend.
    assert len(fig.axes) == 9 and len(np.unique(picture.reshape(-1, 3)[::7], axis=0)) > 20
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()][-1] == "ignore"
    for row, example in enumerate(examples):
      np.testing.assert_array_equal(fig.axes[3 * row].images[0].get_array(), example["image"])
      shown = fig.axes[3 * row + 1].images[0].get_array()
      ignore = example["label"] == meta.ignore_index
      assert ignore.any()  # shapes labels have an ignore band around each object.
      white = np.all(shown == figures.IGNORE_RGB, axis=-1)
      np.testing.assert_array_equal(white, ignore)  # White exactly where ignored.


def test_browse_keys_are_checked(tmp_path):
  with pytest.raises(ConfigError, match="did you mean 'browse.count'"):
    build_config("demo:smoke", ["browse.cont=3"])
  with pytest.raises(ConfigError, match="browse.count=0"):
    build_config("demo:smoke", ["browse.count=0"])
  (tmp_path / "train.png").write_bytes(b"mine")
  with pytest.raises(browse.BrowseOutputError, match="already holds train.png"):
    browse.browse(build_config("demo:smoke"), str(tmp_path / "run"), str(tmp_path))
  assert (tmp_path / "train.png").read_bytes() == b"mine"
