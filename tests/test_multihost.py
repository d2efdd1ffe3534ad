"""Two processes x 4 CPU devices train exactly like one process x 8 devices, and
the same command twice gives the same losses.

Each process is a real `run.py` joined through JAX_COORDINATOR_ADDRESS /
JAX_NUM_PROCESSES / JAX_PROCESS_ID (jax's CPU cross-process collectives: gloo).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from jaxseg.runtime.checkpoint import Checkpointer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 4


def _command(workdir, shapes_dir, steps=STEPS):
  return [sys.executable, os.path.join(ROOT, "run.py"), "--exp", "demo:smoke,seed", "--workdir",
          workdir, "--set", f"data.dir={shapes_dir}", "--set", "model.width=4",
          "--set", f"train.steps={steps}", "--set", "train.batch_size=8",
          "--set", "train.log_every=1", "--set", "train.checkpoint_every=100000",
          "--set", "train.tensorboard=false", "--set", "eval.batch_size=304"]


def _env(devices: int, **extra) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu", **extra)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  return env


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _check(proc, stderr):
  assert proc.returncode == 0, stderr[-3000:]


def _one_process(workdir, shapes_dir):
  proc = subprocess.run(_command(workdir, shapes_dir), cwd=ROOT, env=_env(8),
                        capture_output=True, text=True, timeout=300)
  _check(proc, proc.stderr)
  return proc


def _start_two(command):
  address = f"localhost:{_free_port()}"
  return [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=_env(4, JAX_COORDINATOR_ADDRESS=address,
                                               JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)))
          for i in range(2)]


def _finish(procs, check=True):
  """(stdout, stderr) of each process; kills them all if one hangs."""
  outputs = []
  try:
    for proc in procs:
      outputs.append(proc.communicate(timeout=300))
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
  if check:
    for proc, (_, stderr) in zip(procs, outputs):
      _check(proc, stderr)
  return outputs


def _two_processes(workdir, shapes_dir):
  procs = _start_two(_command(workdir, shapes_dir))
  return _finish(procs)


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return {r["step"]: r["loss"] for r in map(json.loads, f) if "loss" in r}


def _final_state(workdir, like=None):
  """The last checkpoint's state as numpy; `like` (a tree of arrays) gives the
  shapes when it was saved by another topology (two processes)."""
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=3)
  step = ckpt.latest_step()
  if like is None:
    state = ckpt.restore_arrays(step)
  else:
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                            like)
    restored = ckpt.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract)))
    state = jax.device_get(restored["state"])
  ckpt.close()
  return step, state


@pytest.fixture(scope="module")
def runs(shapes_dir, tmp_path_factory):
  root = tmp_path_factory.mktemp("multihost")
  workdirs = {name: str(root / name) for name in ("one", "again", "two")}
  _one_process(workdirs["one"], shapes_dir)
  _one_process(workdirs["again"], shapes_dir)
  outputs = _two_processes(workdirs["two"], shapes_dir)
  return workdirs, outputs


@pytest.mark.slow
def test_two_processes_train_like_one(runs):
  workdirs, outputs = runs
  one, two = _losses(workdirs["one"]), _losses(workdirs["two"])
  assert sorted(one) == sorted(two) == list(range(1, STEPS + 1))
  # Same global batches, same 8-device program; only the all-reduce differs (gloo
  # across processes), so the sums may round differently in the last bits.
  np.testing.assert_allclose([two[s] for s in sorted(two)], [one[s] for s in sorted(one)],
                             rtol=1e-5)
  step_one, state_one = _final_state(workdirs["one"])
  step_two, state_two = _final_state(workdirs["two"], like=state_one)
  assert step_one == step_two == STEPS
  leaves_one, tree_one = jax.tree.flatten(state_one)
  leaves_two, tree_two = jax.tree.flatten(state_two)
  assert tree_one == tree_two
  for a, b in zip(leaves_one, leaves_two):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)
  # Each process saved its own data iterator position.
  data_dir = os.path.join(workdirs["two"], "checkpoints", str(STEPS), "data")
  saved = sorted(f for f in os.listdir(data_dir) if f.startswith("process_"))
  assert saved == ["process_0-of-2.json", "process_1-of-2.json"]
  # Process 0 alone reports: the summary table, the config, one metrics file.
  (stdout_0, _), (stdout_1, _) = outputs
  assert "mIoU" in stdout_0 and "mIoU" not in stdout_1
  # gloo's '[Gloo] Rank 0 is connected to ...' (std::cout) is silenced: stdout is jaxseg's.
  assert "Gloo" not in stdout_0 + stdout_1
  assert os.path.exists(os.path.join(workdirs["two"], "config.json"))
  # Process 0's prediction grid shows its first val images (its own shards of the
  # predictions), the same as one process's: not an empty grid.
  grid_one, grid_two = (np.asarray(Image.open(os.path.join(workdirs[n], "reports",
                                                           "predictions.png")).convert("RGB"))
                        for n in ("one", "two"))
  assert grid_two.shape == grid_one.shape and grid_one.shape[0] > 1000  # 8 rows of images.
  assert np.mean(np.any(grid_two != grid_one, axis=-1)) < 0.01  # Argmax ties may differ.


@pytest.mark.slow
def test_same_command_twice_gives_the_same_losses(runs):
  workdirs, _ = runs
  assert _losses(workdirs["one"]) == _losses(workdirs["again"])
  _, state_one = _final_state(workdirs["one"])
  _, state_again = _final_state(workdirs["again"])
  for a, b in zip(jax.tree.leaves(state_one), jax.tree.leaves(state_again)):
    assert np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_sigterm_on_one_host_stops_both_at_the_same_step(shapes_dir, tmp_path):
  workdir = str(tmp_path / "preempted")
  procs = _start_two(_command(workdir, shapes_dir, steps=5000))
  deadline = time.time() + 120
  while (not os.path.exists(os.path.join(workdir, "metrics.jsonl")) or len(_losses(workdir)) < 3
         ) and all(p.poll() is None for p in procs) and time.time() < deadline:
    time.sleep(0.2)
  procs[1].send_signal(signal.SIGTERM)  # One host told to go: jax's preemption sync point.
  outputs = _finish(procs, check=False)
  for proc, (_, stderr) in zip(procs, outputs):
    assert proc.returncode == 3, stderr[-3000:]
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), 3)
  saved = ckpt.latest_step()
  ckpt.close()
  assert 3 <= saved < 5000 and max(_losses(workdir)) == saved
  for _, stderr in outputs:
    assert f"saved a checkpoint at step {saved}" in stderr


@pytest.mark.parametrize("env, expected", [
    ({}, None),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"},
     {"coordinator_address": "h:1", "num_processes": 2, "process_id": 1}),
    ({"JAX_COORDINATOR_ADDRESS": "h:1"},  # The rest from the cluster (e.g. SLURM).
     {"coordinator_address": "h:1", "num_processes": None, "process_id": None}),
    ({"SLURM_STEP_NODELIST": "n[1-2]", "SLURM_NTASKS": "2"}, {}),
    ({"SLURM_STEP_NODELIST": "n1", "SLURM_NTASKS": "1"}, None),  # One task: nothing to join.
    ({"OMPI_COMM_WORLD_SIZE": "4"}, {}),
    ({"JAXSEG_DISTRIBUTED": "1"}, {}),
    ({"JAXSEG_DISTRIBUTED": "0", "OMPI_COMM_WORLD_SIZE": "4"}, None),
])
def test_initialize_joins_only_multi_process_runs(monkeypatch, env, expected):
  from jaxseg.runtime import distributed

  calls = []
  monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
  distributed.initialize(env)
  assert calls == ([] if expected is None else [expected])
