"""End to end through run.py: train, checkpoint, resume, evaluate."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, check=True):
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), *args], cwd=ROOT,
                        capture_output=True, text=True)
  if check and proc.returncode:
    raise AssertionError(f"run.py {args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
  return proc


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.mark.slow
def test_smoke_run_then_resume_then_eval(shapes_dir, tmp_path):
  workdir = str(tmp_path / "run")
  common = ["--exp", "demo:smoke", "--workdir", workdir, "--set", f"data.dir={shapes_dir}"]
  first = _run([*common, "--set", "train.steps=6", "--set", "train.checkpoint_every=3"])
  assert "mIoU" in first.stdout and "background" in first.stdout
  steps_logged = [r["step"] for r in _records(workdir) if "loss" in r]
  assert steps_logged == [4, 6]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3", "6"]
  eval_record = [r for r in _records(workdir) if "eval/miou" in r][-1]
  assert eval_record["step"] == 6 and 0.0 <= eval_record["eval/miou"] <= 1.0
  assert len(eval_record["eval/per_class_iou"]) == 6

  # Same workdir, more steps: resumes from 6 instead of restarting.
  second = _run([*common, "--set", "train.steps=12"])
  assert "resuming from step 6" in second.stdout + second.stderr
  steps_logged = [r["step"] for r in _records(workdir) if "loss" in r]
  assert steps_logged == [4, 6, 8, 12]
  assert "12" in os.listdir(os.path.join(workdir, "checkpoints"))

  evaluated = _run([*common, "--mode", "eval"])
  assert "checkpoint step 12" in evaluated.stdout
  final_train_miou = [r for r in _records(workdir) if "eval/miou" in r][-2]["eval/miou"]
  assert [r for r in _records(workdir) if "eval/miou" in r][-1]["eval/miou"] == final_train_miou


def test_cli_errors_name_the_closest_choice(tmp_path):
  proc = _run(["--exp", "dmeo", "--workdir", str(tmp_path)], check=False)
  assert proc.returncode == 2 and "did you mean 'demo'" in proc.stderr
  proc = _run(["--exp", "demo", "--set", "optim.lrr=1", "--workdir", str(tmp_path)], check=False)
  assert proc.returncode == 2 and "'optim.lr'" in proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1


def test_list_shows_every_registry():
  out = _run(["--list"]).stdout
  for expected in ("experiments: ", "demo", "models: ", "seed_cnn", "unet", "datasets: ade20k, cityscapes, folder, shapes",
                   "losses: binary_cross_entropy, cross_entropy", "optimizers: adam, adamw, sgd"):
    assert expected in out


def test_eval_without_checkpoint_fails_clearly(shapes_dir, tmp_path):
  proc = _run(["--exp", "demo:smoke", "--mode", "eval", "--workdir", str(tmp_path / "empty"),
               "--set", f"data.dir={shapes_dir}"], check=False)
  assert proc.returncode != 0 and "no checkpoint in" in proc.stderr
