"""Content fingerprints of source files: sha256 of their bytes, cached by stat.

Hashing reads every byte, so each file's digest is kept in a JSON cache keyed
by (size, mtime_ns, ctime_ns, inode): an unchanged file is not read again,
while any write (even one that keeps the byte size, or that restores the
mtime as `touch -r` or `cp -p` do: the ctime still moves) makes it hashed anew.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time

_CACHE_VERSION = 1
# A file changed this recently may change again within the same timestamp tick
# (coarse clocks, 1-2 s on some network filesystems) without its stat moving;
# such files are hashed but not cached (git's "racily clean" entries).
_RACY_SECONDS = 2.0


def file_digests(root: str, relpaths, cache_path: str | None) -> dict[str, str]:
  """{relpath: sha256 hex} of the files under `root`; `cache_path=None` caches nothing."""
  cached = _load(cache_path, root) if cache_path else {}
  digests, entries = {}, {}
  racy_after_ns = time.time_ns() - int(_RACY_SECONDS * 1e9)
  for rel in relpaths:
    full = os.path.join(root, rel)
    st = os.stat(full)  # Before reading: a write during the read changes it for next time.
    key = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    entry = cached.get(rel)
    if entry and entry[:4] == key:
      digests[rel] = entry[4]
    else:
      with open(full, "rb") as f:
        digests[rel] = hashlib.file_digest(f, "sha256").hexdigest()  # Streams the file.
    if max(st.st_mtime_ns, st.st_ctime_ns) < racy_after_ns:
      entries[rel] = [*key, digests[rel]]
  if cache_path and entries != cached:
    _store(cache_path, root, entries)
  return digests


def _load(path: str, root: str) -> dict:
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except (OSError, ValueError):
    return {}  # Missing or damaged: everything is hashed again.
  if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION or data.get("root") != root:
    return {}
  return data.get("files", {})


def _store(path: str, root: str, entries: dict) -> None:
  """Atomic (temp file, then rename), so concurrent runs never read half a cache."""
  tmp = None
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      json.dump({"version": _CACHE_VERSION, "root": root, "files": entries}, f)
    os.replace(tmp, path)
  except OSError:  # A read-only data dir: the fingerprint is still right, just not cached.
    if tmp and os.path.exists(tmp):
      os.remove(tmp)
