"""`folder` data through run.py: train-only datasets, split names checked before training."""

import json
import os

import pytest

import run
from jaxseg.config.resolve import build_config
from jaxseg.data import datasets
from tests import fabricate

TINY = ["train.steps=2", "train.batch_size=8", "eval.batch_size=8", "train.log_every=1",
        "train.checkpoint_every=2", "train.tensorboard=False", "model.width=4",
        "augment.crop_size=(32, 32)"]


def _folder(tmp_path, splits):
  root = tmp_path / "data"
  root.mkdir()
  fabricate.folder_dataset(str(root), rgb=False, splits=splits, image_ext=".png")
  return [f"data.folder.root={root}", f"data.dir={tmp_path / 'tfds'}", "data.name=folder"]


def _main(capsys, workdir, data_sets, *more, mode="train"):
  args = ["--exp", "demo:smoke,seed", "--workdir", str(workdir), "--mode", mode]
  for s in [*data_sets, *TINY, *more]:
    args += ["--set", s]
  capsys.readouterr()  # Only what this run writes.
  status = run.main(args)
  out = capsys.readouterr()
  return status, out.out, out.err


def _records(workdir):
  with open(workdir / "metrics.jsonl") as f:
    return [json.loads(line) for line in f]


NOTE = "has no 'validation' split (splits: train); evaluating on data.train_split='train'"


@pytest.mark.slow
def test_train_only_dataset_trains_evaluates_on_train_and_resumes(tmp_path, capsys):
  data_sets = _folder(tmp_path, (("train", 8),))
  workdir = tmp_path / "run"
  status, out, err = _main(capsys, workdir, data_sets)
  assert status == 0, err[-2000:]
  assert out.count(NOTE) == 1, out
  assert os.listdir(workdir / "checkpoints") == ["2"]  # Complete: no orbax temp dir.
  first = _records(workdir)
  assert [r["step"] for r in first if "loss" in r] == [1, 2]
  assert [r["step"] for r in first if "eval/miou" in r] == [2]

  # A rerun finds the finished checkpoint instead of training (and crashing) again.
  status, out, err = _main(capsys, workdir, data_sets)
  assert status == 0, err[-2000:]
  assert "resuming from step 2" in out and out.count(NOTE) == 1
  assert [r for r in _records(workdir) if "loss" in r] == [r for r in first if "loss" in r]
  assert os.listdir(workdir / "checkpoints") == ["2"]


EXPRESSIONS = "(expressions like 'train[:32]' or 'train+validation' work too)"


@pytest.mark.parametrize("key, value, message", [
    ("data.train_split", "train+val", "data.train_split='train+val': unknown split 'val'; did "
     f"you mean 'validation'? valid: train, validation {EXPRESSIONS}"),
    ("data.eval_split", "valid", "data.eval_split='valid': unknown split 'valid'; did you mean "
     f"'validation'? valid: train, validation {EXPRESSIONS}"),
    ("data.train_split", "train[:0]", "data.train_split='train[:0]' selects no examples"),
])
def test_unknown_split_is_one_line_exit_2_before_training(tmp_path, capsys, key, value, message):
  data_sets = _folder(tmp_path, (("train", 3), ("val", 2)))
  datasets.prepare(build_config("demo", data_sets).data)
  workdir = tmp_path / "run"
  status, out, err = _main(capsys, workdir, data_sets, f"{key}={value}")
  assert status == 2
  assert err.strip().splitlines() == [f"error: {message}"]
  # Nothing trained, no file written into the workdir (at most an empty checkpoints/, the
  # workdir lock, which the run holds from its start so no other run interleaves, and the
  # marker that makes the workdir jaxseg's: workdir.py).
  assert [f for _, _, files in os.walk(workdir) for f in files
          if f not in (".lock", ".jaxseg-workdir")] == []


def test_split_expressions_over_existing_splits_stay_valid(tmp_path):
  cfg = build_config("demo", _folder(tmp_path, (("train", 4), ("val", 2)))).data
  builder = datasets.prepare(cfg)

  def check(train_split, eval_split="validation"):
    with cfg.unlocked():
      cfg.train_split, cfg.eval_split = train_split, eval_split
    return datasets.check_splits(builder, cfg)

  assert check("train[:3]", "validation[:50%]") == ("train[:3]", "validation[:50%]")
  assert check("train+validation", "train[-2:]") == ("train+validation", "train[-2:]")
  with pytest.raises(datasets.SplitError, match=r"'train\[:100\]': Requested slice \[:100\] "
                                                "incompatible with 4 examples"):
    check("train[:100]")
  with pytest.raises(datasets.SplitError, match=r"'train\[': Error parsing split"):
    check("train[")
  with pytest.raises(datasets.SplitError, match="unknown split 'trian'; did you mean 'train'"):
    check("trian")


def test_train_only_note_only_for_the_default_eval_split(tmp_path, capsys):
  cfg = build_config("demo", _folder(tmp_path, (("train", 3),))).data
  builder = datasets.prepare(cfg)
  capsys.readouterr()
  assert datasets.check_splits(builder, cfg) == ("train", "train")
  assert capsys.readouterr().out.count(NOTE) == 1
  with cfg.unlocked():
    cfg.eval_split = "validation[:2]"  # Asked for explicitly: refused, not replaced.
  with pytest.raises(datasets.SplitError, match="unknown split 'validation'; valid: train"):
    datasets.check_splits(builder, cfg)
