"""The voc_* experiments: the published recipe, the offline message, and a real run
of `voc_fcn` on a fabricated VOC/SBD pair through `run.py` (tiny model)."""

import json

import pytest

import run
from jaxseg.config.loading import experiment_names
from jaxseg.config.resolve import build_config
from tests import fabricate

VOC = ("voc_fcn", "voc_fcn8s", "voc_deeplabv3", "voc_deeplabv3plus")


def test_voc_fcn_is_mmsegmentations_fcn_r50_d8_recipe():
  c = build_config("voc_fcn")
  assert (c.model.name, c.model.backbone.deep_stem, c.model.backbone.output_stride) == (
      "mmseg_fcn_resnet50", True, 8)
  assert c.model.backbone.zero_init_residual
  assert c.model.head.classifier_init_std == c.model.aux_head.classifier_init_std == 0.01
  assert c.model.head.dropout == c.model.aux_head.dropout == 0.1  # mmseg's dropout_ratio.
  assert c.model.aux_head.enabled and c.loss.aux_weight == 0.4
  assert (c.data.name, c.data.config) == ("voc_seg", "2012_aug")
  assert tuple(c.augment.crop_size) == (512, 512) and c.augment.preset == "voc"
  assert c.augment.crop.cat_max_ratio == 0.75 and c.augment.rescale.scale_range == (0.5, 2.0)
  assert c.train.batch_size == 16 and c.train.steps == 20_000
  assert (c.optim.name, c.optim.lr, c.optim.momentum, c.optim.weight_decay) == (
      "sgd", 0.01, 0.9, 5e-4)
  assert (c.optim.schedule, c.optim.poly.power) == ("poly", 0.9)
  tv = build_config("voc_fcn:tv")
  assert (tv.model.name, tv.model.backbone.deep_stem) == ("fcn_resnet50", False)


@pytest.mark.parametrize("name", VOC)
def test_every_voc_experiment_has_a_smoke_variant_on_embedded_data(name):
  assert name in experiment_names()
  full, smoke = build_config(name), build_config(f"{name}:smoke")
  assert smoke.model.name == full.model.name  # Same model, smaller everything else.
  assert smoke.data.name == "shapes" and smoke.train.steps <= 4


def test_voc_fcn_offline_says_which_file_goes_where(tmp_path, capsys):
  # `none`: from scratch on purpose, so the run gets past the weights to the data.
  rc = run.main(["--exp", "voc_fcn", "--workdir", str(tmp_path / "w"),
                 "--set", f"data.dir={tmp_path / 'tfds'}",
                 "--set", "model.backbone_weights=none"])
  err = capsys.readouterr().err
  assert rc == 1
  assert "VOCtrainval_11-May-2012.tar" in err
  assert str(tmp_path / "tfds" / "downloads" / "manual") in err and "python run.py" in err
  checkpoints = tmp_path / "w" / "checkpoints"
  assert not checkpoints.exists() or not any(checkpoints.iterdir())


def test_voc_fcn_trains_and_evaluates_on_fabricated_voc(tmp_path, capsys):
  manual = tmp_path / "manual"
  manual.mkdir()
  fabricate.voc_tar(str(manual / "VOCtrainval_11-May-2012.tar"))
  fabricate.sbd_tgz(str(manual / "benchmark.tgz"))
  workdir = tmp_path / "run"
  # The real recipe (voc preset, 2012_aug, 512 eval canvas) with a tiny model and crop.
  rc = run.main(["--exp", "voc_fcn", "--workdir", str(workdir),
                 "--set", f"data.dir={tmp_path / 'tfds'}", "--set", f"data.manual_dir={manual}",
                 "--set", "data.worker_count=0", "--set", "model.name=seed_cnn",
                 "--set", "model.backbone_weights=none",
                 "--set", "model.width=4", "--set", "augment.crop_size=(32,32)",
                 "--set", "augment.rescale.base_size=(64,32)", "--set", "train.steps=2",
                 "--set", "train.batch_size=8", "--set", "eval.batch_size=8",
                 "--set", "train.log_every=1", "--set", "train.checkpoint_every=2",
                 "--set", "train.tensorboard=false"])
  assert rc == 0, capsys.readouterr().err
  records = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  evals = [r for r in records if "eval/miou" in r]
  assert len(evals) == 1 and len(evals[0]["eval/per_class_iou"]) == 21


@pytest.mark.parametrize("name", VOC)
def test_voc_loss_variant_swaps_only_the_loss(name):
  base, dice = build_config(name), build_config(f"{name}:loss=dice")
  assert dice.loss.terms == "dice" and base.loss.terms == "cross_entropy"
  assert dice.model.name == base.model.name and dice.loss.aux_weight == base.loss.aux_weight
  assert build_config(f"{name}:smoke,loss=lovasz").loss.terms == "lovasz"
