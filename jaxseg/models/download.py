"""What the named-weights caches (weights.py: open-mmlab://, torchvision://; hf_hub.py:
hf://) share: a download streamed into a temporary file beside its place and renamed
there only once checked, and a cached file's sha256, hashed once per process."""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Callable

SOCKET_TIMEOUT_S = 60  # A stalled connection, not the whole download.
CHUNK_BYTES = 1 << 20
# sha256 of each (path, size, mtime) this process hashed or wrote: train and the loader
# both ask for the same file, and hashing a large one twice is seconds for nothing.
_hashed: dict[tuple[str, int, int], str] = {}


def _identity(path: str) -> tuple[str, int, int]:
  stat = os.stat(path)
  return os.path.abspath(path), stat.st_size, stat.st_mtime_ns


def file_sha256(path: str) -> str:
  """The sha256 (hex) of the file at `path`; once per process while it is unchanged."""
  identity = _identity(path)
  if identity not in _hashed:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
      while chunk := f.read(CHUNK_BYTES):
        sha.update(chunk)
    _hashed[identity] = sha.hexdigest()
  return _hashed[identity]


def forget_hashes() -> None:
  """As a new process would: every cached file is hashed again on its next use."""
  _hashed.clear()


def save_checked(response, path: str, check: Callable[[str, int], None]) -> None:
  """Streams `response` (a file-like HTTP body) into a temporary file beside `path`;
  `check(sha256_hex, bytes_received)` raises to refuse it (nothing is saved), else the
  file is renamed into place, so `path` is whole or absent."""
  directory, filename = os.path.split(path)
  fd, partial = tempfile.mkstemp(dir=directory, prefix=f".{filename}.", suffix=".part")
  try:
    sha, received = hashlib.sha256(), 0
    with os.fdopen(fd, "wb") as out:
      while chunk := response.read(CHUNK_BYTES):
        sha.update(chunk)
        out.write(chunk)
        received += len(chunk)
    check(sha.hexdigest(), received)
    os.replace(partial, path)
    _hashed[_identity(path)] = sha.hexdigest()
  finally:
    if os.path.exists(partial):
      os.remove(partial)
