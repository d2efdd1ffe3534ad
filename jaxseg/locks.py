"""One exclusive lock helper for the two things a run must not share: a workdir
(runtime/workdir.py) and a dataset being prepared (data/datasets.py).

An `flock` on a local file. The kernel drops it when its holder exits in any way
(kill -9 too), so a lock file left behind is never stale: the next run just takes
it. The holder writes who it is into the file once the lock is its own, so a run
that finds it taken can name the holder. Why not the `filelock` package: it
truncates the lock file when it opens it, before it holds the lock, which would
erase the holder's name that a waiting run is about to read.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from typing import Callable, Iterator


def holder_name() -> str:
  """'pid 123 on host': this process, as a lock file names its holder."""
  return f"pid {os.getpid()} on {socket.gethostname()}"


@contextlib.contextmanager
def exclusive(path: str, on_busy: Callable[[str], None]) -> Iterator[None]:
  """Holds an exclusive flock on `path` (created, with its folder) while the block runs.

  If another process holds it, `on_busy(holder)` is called with the holder's name
  ('unknown' if it wrote none): it raises to give up, or returns to wait until the
  lock is free. OSError from creating the file propagates for the caller to name.
  """
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      on_busy(os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown")
      fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)  # The holder's name, written only once the lock is ours.
    os.pwrite(fd, (holder_name() + "\n").encode(), 0)
    yield
  finally:
    os.close(fd)  # Releases the lock; the file stays (harmless).
