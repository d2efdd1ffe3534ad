"""Leaving a run alone: SIGTERM saves and exits 3, the rerun resumes bit-exactly,
half-written checkpoints are ignored, and changed settings are refused on resume."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxseg.runtime.checkpoint import Checkpointer, ResumeConfigError, check_resume_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 24


def _command(workdir, shapes_dir, *extra):
  # A tiny U-Net (BatchNorm statistics get checkpointed too) and EMA on, logging every step.
  return [sys.executable, os.path.join(ROOT, "run.py"), "--exp", "demo:smoke", "--workdir",
          workdir, "--set", f"data.dir={shapes_dir}", "--set", "model.width=4",
          "--set", "model.depth=2", "--set", f"train.steps={STEPS}", "--set", "train.log_every=1",
          "--set", "train.checkpoint_every=100", "--set", "train.ema_decay=0.9",
          "--set", "eval.batch_size=304", *extra]


def _loss_records(workdir):
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if '"loss"' in line]


def _final_state(workdir):
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=3)
  step = ckpt.latest_step()
  state = ckpt.restore_arrays(step)
  ckpt.close()
  return step, state


def _assert_trees_equal(a, b):
  leaves_a, tree_a = jax.tree.flatten(a)
  leaves_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b):
    assert np.array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_sigterm_saves_then_resume_is_bit_identical(shapes_dir, tmp_path):
  straight, interrupted = str(tmp_path / "straight"), str(tmp_path / "interrupted")
  subprocess.run(_command(straight, shapes_dir), cwd=ROOT, check=True, capture_output=True)

  proc = subprocess.Popen(_command(interrupted, shapes_dir), cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 120
  while len(_loss_records(interrupted)) < 3 and proc.poll() is None and time.time() < deadline:
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 3, stderr[-2000:]
  reached = _loss_records(interrupted)[-1]["step"]
  assert 3 <= reached < STEPS and f"checkpoint at step {reached}" in stderr
  assert Checkpointer(os.path.join(interrupted, "checkpoints"), 3).latest_step() == reached

  # A checkpoint half-written by a kill (orbax's tmp dir) must never be picked up.
  fake = os.path.join(interrupted, "checkpoints", f"{STEPS - 1}.orbax-checkpoint-tmp-1234567")
  os.makedirs(os.path.join(fake, "state"))
  with open(os.path.join(fake, "state", "garbage"), "w") as f:
    f.write("not a checkpoint")

  # A setting that would change the experiment is refused, in one line, naming it.
  refused = subprocess.run(_command(interrupted, shapes_dir, "--set", "optim.lr=0.5"), cwd=ROOT,
                           capture_output=True, text=True)
  assert refused.returncode == 2, refused.stderr[-2000:]
  assert "optim.lr (0.003 -> 0.5)" in refused.stderr
  assert len(refused.stderr.strip().splitlines()) == 1

  resumed = subprocess.run(_command(interrupted, shapes_dir), cwd=ROOT, capture_output=True,
                           text=True)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert f"resuming from step {reached}" in resumed.stdout

  # Same losses at every step (so also: the same command twice gives the same losses) ...
  expected = {r["step"]: r["loss"] for r in _loss_records(straight)}
  got = {r["step"]: r["loss"] for r in _loss_records(interrupted)}
  assert sorted(got) == list(range(1, STEPS + 1)) and got == expected
  # ... and bit-identical params, BatchNorm statistics, optimizer state and EMA.
  (step_a, state_a), (step_b, state_b) = _final_state(straight), _final_state(interrupted)
  assert step_a == step_b == STEPS
  _assert_trees_equal(state_a, state_b)
  assert glob.glob(os.path.join(straight, "tensorboard", "events.out.tfevents.*"))
  assert os.listdir(os.path.join(straight, "checkpoints_best")) == [str(STEPS)]


def test_resume_config_check_allows_only_listed_keys():
  old = {"optim": {"lr": 0.01, "name": "sgd"}, "train": {"steps": 10, "log_every": 5},
         "eval": {"batch_size": 8}, "augment": {"crop_size": [64, 64]}}
  new = json.loads(json.dumps(old))
  new["train"].update(steps=20, log_every=1)
  new["eval"]["batch_size"] = 16
  new["augment"]["crop_size"] = (64, 64)  # A tuple equals its JSON list.
  assert set(check_resume_config(old, new)) == {"train.steps", "train.log_every",
                                                  "eval.batch_size"}
  new["optim"]["name"] = "adamw"
  new["augment"]["crop_size"] = (32, 32)
  with pytest.raises(ResumeConfigError) as e:
    check_resume_config(old, new)
  message = str(e.value)
  assert "optim.name ('sgd' -> 'adamw')" in message and "augment.crop_size" in message
  assert "train.steps" not in message and "\n" not in message
