"""--mode eval rebuilds the run from the checkpoint; predict and eval give the same labels."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

import run as cli

# The training flags of the checkpoint below: eval must not need them again.
TRAINED_WITH = ["model.width=4", "model.depth=2", "eval.batch_size=104", "eval.report_images=8"]


@pytest.fixture(scope="module")
def workdir(shapes_dir, tmp_path_factory):
  """A workdir whose checkpoint holds a freshly initialised width-4 U-Net (no training)."""
  from jaxseg.config.resolve import build_config
  from jaxseg.data import datasets
  from jaxseg.runtime.build import build
  from jaxseg.runtime.checkpoint import Checkpointer
  from jaxseg.runtime.sharding import make_mesh

  workdir = str(tmp_path_factory.mktemp("eval_run"))
  cfg = build_config("demo:smoke", [f"data.dir={shapes_dir}", *TRAINED_WITH])
  meta = datasets.meta_of(datasets.prepare(cfg.data))
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), 1)
  ckpt.save(2, build(cfg, meta, make_mesh()).state, None, cfg.to_dict(), meta.to_json())
  ckpt.close()
  return workdir


def test_eval_needs_no_training_flags_and_refuses_model_changes(workdir, capsys):
  # Before: the default U-Net (width 16) met the width-4 checkpoint in a 222-line orbax
  # shape traceback unless every training --set was repeated.
  assert cli.main(["--mode", "eval", "--workdir", workdir]) == 0
  assert "checkpoint step 2" in capsys.readouterr().out
  assert cli.main(["--mode", "eval", "--workdir", workdir, "--set", "model.depth=3"]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "--set model.depth" in err and "model.depth=2" in err


def test_predict_and_eval_give_the_same_labels(workdir, tmp_path):
  from jaxseg.config.resolve import build_config
  from jaxseg.data import datasets
  from jaxseg.evaluation.evaluate import evaluate_split
  from jaxseg.prediction import inputs as predict_inputs, predict
  from jaxseg.prediction.segmenter import Segmenter
  from jaxseg.runtime.build import build_from_checkpoint

  run, state, _, _ = build_from_checkpoint(build_config("demo:smoke"), workdir)
  source = datasets.prepare(run.cfg.data).as_data_source(run.cfg.data.eval_split)
  records = [source[i] for i in range(8)]
  result = evaluate_split(run.eval_step, state.for_eval(), records, run.cfg, run.meta, run.mesh)
  inputs = tmp_path / "val"
  inputs.mkdir()
  for k, sample in enumerate(result.samples):  # Images as eval saw them, cropped to size.
    Image.fromarray(sample["image"]).save(inputs / f"{k}.png")
  files = predict_inputs.list_inputs(str(inputs))
  segmenter = Segmenter(run.model, state.for_eval().variables(), run.cfg, run.meta, run.mesh)
  predict.predict_paths(segmenter, predict_inputs.readable_sizes(str(inputs), files),
                        str(tmp_path / "out"))
  preds = [sample["pred"] for sample in result.samples]
  assert len(preds) == 8 and len(np.unique(np.stack(preds))) > 1  # Not a constant model.
  for k, pred in enumerate(preds):
    mask = np.asarray(Image.open(tmp_path / "out" / "masks" / f"{k}.png.png"))
    np.testing.assert_array_equal(mask, pred)


def test_old_checkpoint_without_meta_says_so_and_reads_the_dataset(workdir, tmp_path, capsys):
  old = str(tmp_path / "old_run")
  shutil.copytree(os.path.join(workdir, "checkpoints"), os.path.join(old, "checkpoints"))
  # What jaxseg wrote before checkpoints held the dataset meta: no `meta` item.
  shutil.rmtree(os.path.join(old, "checkpoints", "2", "meta"))
  image = tmp_path / "x.png"
  Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
  args = ["--mode", "predict", "--workdir", old, "--input", str(image), "--output",
          str(tmp_path / "out")]
  assert cli.main(args) == 0
  assert "predates stored dataset meta" in capsys.readouterr().out
  assert sorted(os.listdir(tmp_path / "out" / "masks")) == ["x.png.png"]
