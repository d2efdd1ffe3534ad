"""`--force` resumes across the changes it can honour (here a new learning rate and
loss weight), from the restored step, saying each change."""

import json
import os

import pytest

import run

TINY = ["model.width=4", "augment.crop_size=(32,32)", "train.batch_size=8",
        "eval.batch_size=304", "train.tensorboard=false", "train.log_every=1",
        "train.checkpoint_every=2"]


def _args(workdir, shapes_dir, *overrides):
  sets = [f"data.dir={shapes_dir}", *TINY, *overrides]
  return ["--exp", "demo:smoke,seed", "--workdir", workdir] + [
      a for o in sets for a in ("--set", o)]


@pytest.mark.slow
def test_force_honours_a_new_learning_rate_and_loss_weight(shapes_dir, tmp_path, capsys):
  workdir = str(tmp_path / "w")
  assert run.main(_args(workdir, shapes_dir, "train.steps=2")) == 0
  capsys.readouterr()
  changed = ["train.steps=3", "optim.lr=0.01", "loss.terms=cross_entropy:2"]
  assert run.main(_args(workdir, shapes_dir, *changed)) == 2  # Without --force: refused.
  assert "cannot resume: config differs" in capsys.readouterr().err
  assert run.main(_args(workdir, shapes_dir, *changed) + ["--force"]) == 0
  out = capsys.readouterr().out
  assert ("resuming from step 2 in " in out and "; loss.terms: 'cross_entropy' -> "
          "'cross_entropy:2'; optim.lr: 0.003 -> 0.01; train.steps: 2 -> 3" in out)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    logged = {r["step"]: r for r in map(json.loads, f) if "loss" in r}
  assert sorted(logged) == [1, 2, 3]
  # Step 3 trained with the new schedule (the lr after the 2 steps taken, in the warmup
  # to 0.01 over demo's 50 steps; step 2 had 1/50 of the old 0.003) and the doubled loss.
  assert logged[3]["lr"] == pytest.approx(0.01 * 2 / 50, rel=1e-5)
  assert logged[2]["lr"] == pytest.approx(0.003 * 1 / 50, rel=1e-5)
  assert logged[3]["loss"] == pytest.approx(2 * logged[3]["loss/cross_entropy"], rel=1e-6)
