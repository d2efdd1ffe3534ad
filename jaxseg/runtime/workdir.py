"""A workdir is jaxseg's: claimed before anything is written, and used by one run at a time.

Claim: a run (train or eval) writes into `--workdir` only if it is empty or new,
or already jaxseg's: it holds the marker file `.jaxseg-workdir` (written,
atomically, by the first run there, right after its lock and before anything
else), or it is a workdir from before the marker (every top-level name one
jaxseg writes, and a `.lock` holding "pid N on HOST" or an orbax checkpoint in
`checkpoints/`). Anything else
(`--workdir .` in a project folder, a folder of the user's own config.json and
metrics.jsonl) is refused with one line naming a file there, before any write.

Lock: an exclusive lock while a run trains or evaluates there, so a second
process is refused instead of interleaving its checkpoints and metrics with the
first's. Locally an `flock` on `<workdir>/.lock`: the kernel drops it when the
process exits, however it exits (kill -9 included), so a lock file left behind
never blocks anyone. Multi-host: every process takes its own (`.lock` for
process 0, `.lock.process<i>` for the others), so they never wait on each
other, while a second run's process i collides with the first's.

A URL workdir (gs://) cannot hold an flock. There the lock is an flock on a
local file named after the URL (`~/.cache/jaxseg/locks/`), which refuses a
second run on the same machine, plus a `.lock` object in the bucket naming the
holder (pid, host), removed when the run ends: a run that finds one written by
another machine says so in one line but goes on (an object store has no lock
that dies with its holder, so a crashed run's object would block forever).
Two runs started on two machines against one gs:// workdir are not prevented.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import re
import socket
import sys

import jax

from jaxseg import locks, paths
from jaxseg.errors import ConfigError, WorkdirBusyError

MARKER = ".jaxseg-workdir"
# The top-level names jaxseg writes in a workdir (run.py, train.py, writer.py, report.py,
# checkpoint.py, predict.py's and browse.py's default --output).
OWN_NAMES = (MARKER, ".lock", ".lock.process*", "config.json", "metrics.jsonl",
             "metrics.jsonl.torn-*", "checkpoints", "checkpoints_best", "checkpoints_damaged",
             "tensorboard", "reports", "predictions", "browse",
             # Temporary files of atomic writes (paths.write_bytes; before it, writer.py's).
             f".{MARKER}.*.tmp", ".config.json.*.tmp", ".metrics.jsonl.*.tmp",
             "metrics.jsonl.tmp*")
_HOLDER = re.compile(r"^pid \d+ on \S+")


class ForeignWorkdirError(ConfigError):
  """--workdir holds files jaxseg did not write (run.py: one line, status 2)."""


def _is_own_name(name: str) -> bool:
  return any(fnmatch.fnmatchcase(name, pattern) for pattern in OWN_NAMES)


def _from_before_the_marker(workdir) -> bool:
  """A workdir today's code wrote before it wrote markers: its lock's holder line,
  or an orbax checkpoint."""
  lock = workdir / ".lock"
  if lock.is_file() and _HOLDER.match(lock.read_bytes()[:200].decode("utf-8", "replace")):
    return True
  checkpoints = workdir / "checkpoints"
  return checkpoints.is_dir() and any((step / "_CHECKPOINT_METADATA").exists()
                                      for step in checkpoints.iterdir() if step.name.isdigit())


def check_claim(workdir: str) -> None:
  """Raises ForeignWorkdirError if `workdir` holds files jaxseg did not write; reads only."""
  root = paths.resolve(workdir, "--workdir")
  if (root / MARKER).exists():
    return
  entries = sorted(root.iterdir(), key=lambda p: p.name) if root.is_dir() else []
  if any(e.name == MARKER for e in entries):  # Another process of this run marked it meanwhile.
    return
  # Lock files and a marker being written say nothing: another process of this run
  # may have just made them.
  entries = [e for e in entries if not e.name.startswith((".lock", f".{MARKER}."))]
  foreign = [e for e in entries if not _is_own_name(e.name)]
  if entries and (foreign or not _from_before_the_marker(root)):
    example = (foreign or entries)[0]
    raise ForeignWorkdirError(
        f"--workdir {paths.text_of(workdir)} is not a jaxseg workdir: it holds {example.name}, "
        f"which jaxseg did not write (no {MARKER}); nothing written: use a new or empty "
        "--workdir")


def mark(workdir: str) -> None:
  """Writes the marker (atomically) if missing: the workdir is jaxseg's from now on."""
  marker = paths.resolve(workdir, "--workdir") / MARKER
  if not marker.exists():
    paths.write_bytes(marker, "jaxseg workdir: checkpoints, metrics and reports of runs of "
                              "python run.py --workdir (README: Resuming and preemption)\n")


def lock_path(workdir: str, process_index: int) -> str:
  name = ".lock" if process_index == 0 else f".lock.process{process_index}"
  return os.path.join(workdir, name)


def _local_lock_file(workdir: str, process_index: int) -> str:
  """The file to flock: in the workdir, or for a URL one on this machine named after it."""
  path = lock_path(workdir, process_index)
  if not paths.is_url(workdir):
    return path
  cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
  key = hashlib.sha256(path.encode()).hexdigest()[:24]
  return os.path.join(cache, "jaxseg", "locks", f"{key}.lock")


class WorkdirLock:
  """Context manager: checks `workdir` is jaxseg's, holds this process's lock
  exclusively, then marks the workdir (the marker comes before any other file)."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = lock_path(workdir, jax.process_index())
    self._local = _local_lock_file(workdir, jax.process_index())
    self._stack = None

  def __enter__(self):
    check_claim(self.workdir)  # Before the lock file: refused, nothing is written.
    with contextlib.ExitStack() as stack:  # Released at once if what follows fails.
      stack.enter_context(locks.exclusive(self._local, self._busy))
      if paths.is_url(self.workdir):
        self._hold_remote()
      mark(self.workdir)
      self._stack = stack.pop_all()
    return self

  def _busy(self, holder: str) -> None:
    raise WorkdirBusyError(
        f"workdir {paths.text_of(self.workdir)} is in use by another run ({holder}; "
        f"lock {self._local}); wait for it to finish, or use another --workdir")

  def _hold_remote(self) -> None:
    obj = paths.resolve(self.path)
    if obj.exists():
      holder = obj.read_bytes()[:200].decode("utf-8", "replace").strip()
      if not holder.endswith(f"on {socket.gethostname()}"):
        print(f"warning: {self.path} says {holder} runs here; if it still does, stop one "
              "of the two (a bucket has no lock: see README, Cloud storage)", file=sys.stderr,
              flush=True)
    paths.write_bytes(obj, locks.holder_name() + "\n")

  def __exit__(self, *exc):
    if self._stack is None:
      return
    if paths.is_url(self.workdir):
      try:
        paths.resolve(self.path).unlink()
      except OSError as e:  # Warn, never raise: that would hide the error that ended this run.
        print(f"warning: could not remove the lock object {self.path} ({e}); the next run "
              "on another machine will warn about it", file=sys.stderr, flush=True)
    self._stack.close()  # Drops the lock; a local lock file stays (harmless).
    self._stack = None
