"""Preparing one dataset from two processes: an inter-process lock, safe if its holder dies."""

import os
import socket
import subprocess
import sys

import pytest

from jaxseg.config.resolve import build_config
from jaxseg.data import datasets
from tests import fabricate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A preparer that imports no jax: the data keys datasets.prepare reads, and nothing more.
PREPARE = r"""
import sys

import pytest
import ml_collections
from jaxseg.data import datasets
cfg = ml_collections.ConfigDict(dict(name="folder", config="", dir=sys.argv[1], manual_dir="",
                                     folder=dict(root=sys.argv[2], ignore_rgb=(255, 255, 255))))
builder = datasets.prepare(cfg)
print("prepared", builder.builder_config.name, builder.info.splits["train"].num_examples,
      *datasets.meta_of(builder).eval_canvas_HW, flush=True)
"""

# Holds the lock file the plain kernel way, as a preparer in the middle of its work does.
HOLD = r"""
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.makedirs(sys.argv[2])  # tfds' half-written copy.
print("holding", flush=True)
time.sleep(600)
"""


def _dataset(tmp_path):
  root = tmp_path / "data"
  root.mkdir()
  fabricate.folder_dataset(str(root), rgb=False, splits=(("train", 6), ("val", 2)))
  data_dir = str(tmp_path / "tfds")
  cfg = build_config("demo", ["data.name=folder", f"data.folder.root={root}",
                              f"data.dir={data_dir}"]).data
  return cfg, data_dir, str(root)


def _popen(script, *args):
  return subprocess.Popen([sys.executable, "-c", script, *args], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_two_processes_prepare_once_and_both_read_it(tmp_path):
  cfg, data_dir, root = _dataset(tmp_path)
  builder = datasets._builder(cfg)
  # Held here until both preparers are blocked on it; then they race for it.
  with datasets._preparation_lock(builder):
    procs = [_popen(PREPARE, data_dir, root) for _ in range(2)]
    for proc in procs:
      holder = f"pid {os.getpid()} on {socket.gethostname()}"
      assert proc.stdout.readline().startswith(f"waiting for {holder}, which is preparing "
                                               "folder/data_")
  outputs = [proc.communicate(timeout=300) for proc in procs]
  assert [proc.returncode for proc in procs] == [0, 0], [err[-2000:] for _, err in outputs]
  prepared = datasets.prepare(cfg)  # Found prepared, from disk.
  meta = datasets.meta_of(prepared)
  assert meta.eval_canvas_HW[0] > 0
  expected = (f"prepared {prepared.builder_config.name} 6 "
              f"{meta.eval_canvas_HW[0]} {meta.eval_canvas_HW[1]}")
  # The one that waited read what the other wrote (its canvas too), and both exited cleanly.
  assert [out.strip().splitlines()[-1] for out, _ in outputs] == [expected, expected]
  config_dir = os.path.dirname(prepared.data_dir)
  assert sorted(os.listdir(config_dir)) == [".1.0.0.lock", "1.0.0"]  # No incomplete.* left.


def test_lock_of_a_killed_preparer_is_not_stale(tmp_path):
  cfg, _, _ = _dataset(tmp_path)
  builder = datasets._builder(cfg)
  lock = datasets.lock_path(builder)
  os.makedirs(os.path.dirname(lock))
  leftover = os.path.join(os.path.dirname(lock), "incomplete.ABC123_1.0.0")
  holder = _popen(HOLD, lock, leftover)
  assert holder.stdout.readline() == "holding\n"
  holder.kill()  # SIGKILL: no cleanup runs; the lock file and the half-written copy stay.
  holder.communicate()
  assert os.path.exists(lock) and os.path.isdir(leftover)
  prepared = datasets.prepare(cfg)  # Would wait forever if the lock outlived its holder.
  assert prepared.is_prepared() and prepared.info.splits["train"].num_examples == 6
  assert sorted(os.listdir(os.path.dirname(lock))) == [".1.0.0.lock", "1.0.0"]


def test_data_dir_that_cannot_hold_the_lock_is_named(tmp_path):
  cfg, _, _ = _dataset(tmp_path)
  not_a_dir = tmp_path / "a_file"
  not_a_dir.write_text("")
  with cfg.unlocked():
    cfg.dir = str(not_a_dir)
  with pytest.raises(datasets.DatasetError, match=f"{not_a_dir}/folder/data_[0-9a-f]+: cannot "
                     r"prepare the dataset there \(Not a directory\); set data.dir"):
    datasets.prepare(cfg)
