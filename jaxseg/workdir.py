"""One run per workdir: an exclusive lock on `<workdir>/.lock` while a run trains
or evaluates there, so a second process is refused instead of interleaving its
checkpoints and metrics with the first's.

`flock` locks belong to the open file, so the kernel drops them when the
process exits, however it exits (kill -9 included): a stale lock file never
blocks anyone. The file keeps the holder's pid and host for the message.
Multi-host: every process of one run takes its own lock (`.lock` for process 0,
`.lock.process<i>` for the others), so they never wait on each other, while a
second run's process i collides with the first's.
"""

from __future__ import annotations

import fcntl
import os
import socket

import jax


class WorkdirBusyError(Exception):
  """Another process holds the workdir's lock (run.py: one line, status 1)."""


def lock_path(workdir: str, process_index: int) -> str:
  name = ".lock" if process_index == 0 else f".lock.process{process_index}"
  return os.path.join(workdir, name)


class WorkdirLock:
  """Context manager holding `<workdir>/.lock` (this process's) exclusively."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = lock_path(workdir, jax.process_index())
    self._fd = None

  def __enter__(self):
    os.makedirs(self.workdir, exist_ok=True)
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown"
      os.close(fd)
      raise WorkdirBusyError(
          f"workdir {os.path.abspath(self.workdir)} is in use by another run ({holder}; "
          f"lock {self.path}); wait for it to finish, or use another --workdir") from None
    # Holder's identity, written only once the lock is ours.
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
    self._fd = fd
    return self

  def __exit__(self, *exc):
    if self._fd is not None:
      os.close(self._fd)  # Closing drops the lock; the file stays (harmless).
      self._fd = None
