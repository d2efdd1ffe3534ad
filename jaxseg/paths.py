"""Where jaxseg's files live: a local path or a URL (`gs://bucket/run`), one type for both.

Every file a run reads or writes in `--workdir`, `data.dir`, `--input` and
`--output` goes through `resolve` (an `etils.epath.Path`) and the writers here,
so a URL is never taken for a local folder (`os.path.abspath('gs://b/run')` is
`./gs:/b/run`). URLs are served by fsspec (gcsfs for `gs://`), never by
TensorFlow's gfile: nothing at train or eval time imports TensorFlow.

Writes are atomic: a reader sees the old file or the new one, whole, never a
part. Locally: a temporary file in the same folder, flushed to disk, then
renamed over the target. On an object store: an object is published only when
its upload completes, so a failed or killed write leaves no object at all.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile

# Before etils chooses a backend (it caches the choice): gs:// through gcsfs, not
# TensorFlow (which would be imported at train time, and ignores STORAGE_EMULATOR_HOST).
os.environ.setdefault("EPATH_USE_TF", "false")

from etils import epath  # noqa: E402

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# The schemes etils.epath serves (through fsspec); others would become local folders.
SCHEMES = ("gs", "s3", "az")
# Writes go in pieces of this size: a full disk shows up after a partial write.
_CHUNK = 1 << 20


class PathError(ValueError):
  """A URL of a scheme jaxseg cannot use (run.py: one line, status 2)."""


def is_url(path) -> bool:
  return bool(_URL.match(os.fspath(path)))


def resolve(path, what: str = "path") -> epath.Path:
  """`path` as an epath.Path: a URL as it is (checked: a supported scheme), a local path
  with `~` expanded and made absolute. `what` names the flag or key in errors."""
  text = os.fspath(path)
  match = _URL.match(text)
  if match is None:
    return epath.Path(os.path.abspath(os.path.expanduser(text)))
  if match.group(1) not in SCHEMES:
    raise PathError(f"{what} {text}: unsupported URL scheme {match.group(1)}://; use a local "
                    f"path or one of {', '.join(s + '://' for s in SCHEMES)}")
  return epath.Path(text.rstrip("/"))


def text_of(path) -> str:
  """The path as a user writes it: `gs://bucket/run`, or an absolute local path."""
  return os.fspath(path) if is_url(path) else os.path.abspath(os.fspath(path))


def _publish(tmp: str, path: str, exclusive: bool) -> None:
  if not exclusive:
    os.replace(tmp, path)
    return
  try:  # link() refuses an existing name: never replaces a file that appeared meanwhile.
    os.link(tmp, path)
  except OSError as e:
    if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EMLINK):
      raise
    if os.path.lexists(path):  # No hard links here (e.g. FAT, some FUSE mounts).
      raise FileExistsError(errno.EEXIST, "file exists", path) from None
    os.rename(tmp, path)


def _write_local(path: str, data: bytes, exclusive: bool) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                             dir=os.path.dirname(path))
  try:
    try:
      view = memoryview(data)
      while view:
        view = view[os.write(fd, view[:_CHUNK]):]
      os.fsync(fd)
    finally:
      os.close(fd)
    _publish(tmp, path, exclusive)
  except OSError as e:
    if e.filename is None:  # A write() names no file: name the one being written.
      raise OSError(e.errno, e.strerror, path) from e
    raise
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_bytes(path, data: bytes | str, exclusive: bool = False) -> None:
  """Writes `data` to `path` atomically, creating its folder. `exclusive`: never
  replaces a file (FileExistsError), even one that appeared while writing."""
  if isinstance(data, str):
    data = data.encode("utf-8")
  target = resolve(path)
  if not is_url(target):
    _write_local(os.fspath(target), data, exclusive)
    return
  if exclusive and target.exists():
    raise FileExistsError(errno.EEXIST, "file exists", os.fspath(target))
  target.parent.mkdir(parents=True, exist_ok=True)
  target.write_bytes(data)  # One object, published when its upload completes.


def append_line(path, line: str) -> None:
  """Appends `line` (one record) to a text file, starting on a fresh line if the
  file's last one was left without its end. An object store cannot append: the
  object is rewritten whole (fine for small logs such as metrics.jsonl)."""
  target = resolve(path)
  record = (line.rstrip("\n") + "\n").encode("utf-8")
  if is_url(target):
    old = target.read_bytes() if target.exists() else b""
    if old and not old.endswith(b"\n"):
      old += b"\n"
    write_bytes(target, old + record)
    return
  with open(os.fspath(target), "ab+") as f:
    if f.tell() > 0:
      f.seek(-1, os.SEEK_END)
      if f.read(1) != b"\n":
        record = b"\n" + record
    f.write(record)
