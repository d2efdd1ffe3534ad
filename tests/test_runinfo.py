"""The one line every run prints at start: backend, devices, processes, mesh, compute
dtype and how the global batch splits, read from real `run.py` processes."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(workdir, shapes_dir, *args):
  proc = subprocess.run(
      [sys.executable, "run.py", "--exp", "demo:smoke,seed", "--workdir", str(workdir),
       "--set", f"data.dir={shapes_dir}", "--set", "eval.batch_size=8",
       "--set", "data.eval_split=validation[:8]", *args],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return [line for line in proc.stdout.splitlines() if re.match(r"(train|eval): ", line)]


def test_train_and_eval_say_devices_mesh_dtype_and_batch(tmp_path, shapes_dir):
  # conftest's 8 fake CPU devices reach the child through XLA_FLAGS.
  lines = _run(tmp_path, shapes_dir, "--set", "train.steps=1", "--set", "model.width=8",
               "--set", "train.grad_accum_steps=2")
  assert lines == ["train: cpu, 8 x cpu, 1 process, mesh data=8, compute float32, "
                   "batch 16 = 2 per device in 2 micro-batches"], lines
  lines = _run(tmp_path, shapes_dir, "--mode", "eval")
  assert lines == ["eval: cpu, 8 x cpu, 1 process, mesh data=8, compute float32, "
                   "batch 8 = 1 per device"], lines
