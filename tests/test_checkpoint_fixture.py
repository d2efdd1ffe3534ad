"""A workdir written by an earlier jaxseg still evaluates, predicts and resumes.

tests/fixtures/demo_workdir/ was made at commit 31adc7c (the flat-module layout,
before jaxseg/config/ and the other packages) by:

  python run.py --exp demo:smoke --workdir demo_workdir --set data.dir=DATA \\
    --set model.width=4 --set train.steps=2 --set train.checkpoint_every=2 \\
    --set train.log_every=1 --set train.batch_size=8 --set eval.batch_size=300 \\
    --set train.tensorboard=false

on one CPU device, keeping checkpoints/2, config.json, metrics.jsonl and the marker.
A change of the config's keys or the checkpoint's items must keep this test green
(migrate the old config in config/from_checkpoint.py), never regenerate the fixture.
"""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import run as cli

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "demo_workdir")
# What it was trained with (config.json holds them too); a resume must repeat them.
TRAINED_WITH = ["model.width=4", "train.checkpoint_every=2", "train.log_every=1",
                "train.batch_size=8", "train.tensorboard=false"]
# 300 validation images do not split over the tests' 8 devices: eval keys may change.
EVAL_BATCH = "eval.batch_size=304"


@pytest.fixture
def old_workdir(tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(FIXTURE, workdir)
  return str(workdir)


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


@pytest.mark.slow
def test_an_old_workdir_evaluates_to_its_recorded_miou(old_workdir, shapes_dir):
  recorded = _records(old_workdir)[-1]
  assert cli.main(["--mode", "eval", "--workdir", old_workdir, "--set",
                   f"data.dir={shapes_dir}", "--set", EVAL_BATCH]) == 0
  evaluated = _records(old_workdir)[-1]
  assert evaluated["eval/run"] == "eval" and evaluated["step"] == 2
  # Same weights, same 300 images, another device count: the same confusion matrix.
  np.testing.assert_allclose(evaluated["eval/miou"], recorded["eval/miou"], rtol=1e-6)
  np.testing.assert_allclose(evaluated["eval/pixel_acc"], recorded["eval/pixel_acc"], rtol=1e-6)


@pytest.mark.slow
def test_an_old_workdir_predicts(old_workdir, tmp_path):
  image = tmp_path / "in.png"
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (45, 70, 3), np.uint8)).save(image)
  out = tmp_path / "out"
  assert cli.main(["--mode", "predict", "--workdir", old_workdir, "--input", str(image),
                   "--output", str(out)]) == 0
  mask = np.asarray(Image.open(out / "masks" / "in.png.png"))
  assert mask.shape == (45, 70) and mask.max() < 6  # The demo's six classes.


@pytest.mark.slow
def test_an_old_workdir_resumes(old_workdir, shapes_dir, capsys):
  assert cli.main(["--exp", "demo:smoke", "--workdir", old_workdir, "--set",
                   f"data.dir={shapes_dir}", "--set", "train.steps=3", "--set", EVAL_BATCH,
                   *(a for kv in TRAINED_WITH for a in ("--set", kv))]) == 0
  out = capsys.readouterr().out
  assert "resuming from step 2" in out
  assert [r["step"] for r in _records(old_workdir) if "loss" in r] == [1, 2, 3]
