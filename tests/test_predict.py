"""--mode predict: any image size in, palette mask and overlay at that size out."""

import os

import numpy as np
import pytest
from PIL import Image

@pytest.fixture(scope="module")
def trained(shapes_dir, tmp_path_factory):
  """A workdir holding a checkpoint of the freshly initialised model (no training: quick)."""
  from jaxseg.assemble import assemble
  from jaxseg.checkpoint import Checkpointer
  from jaxseg.config import build_config

  workdir = str(tmp_path_factory.mktemp("predict_run"))
  overrides = [f"data.dir={shapes_dir}", "model.width=4"]
  cfg = build_config("demo:smoke", overrides)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), 1)
  ckpt.save(1, assemble(cfg).state, None, cfg.to_dict())
  ckpt.close()
  return workdir, overrides


def test_folder_of_mixed_sizes_and_a_text_file(trained, tmp_path, capsys):
  from jaxseg import predict
  from jaxseg.config import build_config

  workdir, overrides = trained
  inputs = tmp_path / "in"
  inputs.mkdir()
  rng = np.random.default_rng(0)
  # Three sizes in one 64x64 bucket (predict.bucket): one compile keeps the test quick.
  sizes = {"small": (17, 23), "wide": (40, 63), "tall": (61, 33)}
  for name, (h, w) in sizes.items():
    image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    image.save(inputs / (f"{name}.jpg" if name == "wide" else f"{name}.png"))
  (inputs / "notes.txt").write_text("not an image")
  out = tmp_path / "out"

  written = predict.predict(build_config("demo:smoke", overrides), workdir, str(inputs),
                            str(out))
  assert "notes.txt" in capsys.readouterr().out  # Warned and skipped; the run succeeds.
  assert set(written) == set(sizes)
  assert sorted(os.listdir(out)) == sorted([f"{n}.png" for n in sizes] +
                                           [f"{n}_overlay.png" for n in sizes])
  for name, (h, w) in sizes.items():
    mask = Image.open(out / f"{name}.png")
    assert mask.mode == "P" and mask.size == (w, h)
    assert np.asarray(mask).max() < 6  # shapes has 6 classes.
    assert Image.open(out / f"{name}_overlay.png").size == (w, h)


def test_predict_without_checkpoint_fails_clearly(shapes_dir, tmp_path):
  from jaxseg import predict
  from jaxseg.config import build_config

  image = tmp_path / "a.png"
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
  cfg = build_config("demo:smoke", [f"data.dir={shapes_dir}", "model.width=4"])
  # run.py turns this into "error: no checkpoint in ..." and exit status 1.
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    predict.predict(cfg, str(tmp_path / "none"), str(image), str(tmp_path / "o"))
