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

import contextlib
import errno
import logging
import os
import re
import tempfile

# Before etils chooses a backend (it caches the choice): gs:// through gcsfs, not
# TensorFlow (which would be imported at train time, and ignores STORAGE_EMULATOR_HOST).
os.environ.setdefault("EPATH_USE_TF", "false")

from etils import epath  # noqa: E402

from jaxseg.errors import PathError  # noqa: E402

# gcsfs asks for a bucket's type (zonal or not) on every filesystem it makes, and logs a
# warning each time that query is not allowed (hundreds per run): it falls back to the
# standard bucket API, which is what jaxseg uses. Its other warnings stay.
logging.getLogger("gcsfs").addFilter(
    lambda record: "Could not determine bucket type" not in record.getMessage())

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# The schemes etils.epath serves (through fsspec); others would become local folders.
SCHEMES = ("gs", "s3", "az")
# Writes go in pieces of this size: a full disk shows up after a partial write.
_CHUNK = 1 << 20
_UMASK = os.umask(0o022)  # Read once (umask can only be read by setting it), then restored.
os.umask(_UMASK)


class StorageError(OSError):
  """A bucket that does not exist or cannot be reached, or no credentials (run.py: status 1)."""


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


def cache_root() -> str:
  """This machine's folder for local copies and locks of things that live at URLs:
  $JAXSEG_CACHE, else ~/.cache/jaxseg (or $XDG_CACHE_HOME/jaxseg)."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
  return os.path.expanduser(os.environ.get("JAXSEG_CACHE") or os.path.join(base, "jaxseg"))


def check_url(path, what: str) -> None:
  """For a URL: its bucket exists and this process has credentials for it, or one line
  (StorageError) saying which; found now, not after preparing data or training."""
  url = resolve(path, what)
  text = os.fspath(url)
  scheme, rest = text.split("://", 1)
  bucket = f"{scheme}://{rest.split('/')[0]}"
  if scheme == "gs" and not os.environ.get("STORAGE_EMULATOR_HOST"):
    import google.auth  # gcsfs's and tensorstore's credentials: Application Default.
    from google.auth.exceptions import DefaultCredentialsError

    try:
      google.auth.default()
    except DefaultCredentialsError:
      raise StorageError(f"cannot use {what} {text}: no Google Cloud credentials found; run "
                         "`gcloud auth application-default login` or set "
                         "GOOGLE_APPLICATION_CREDENTIALS (on a Cloud VM: its service "
                         "account)") from None
  try:
    found = epath.Path(bucket).exists()
  except Exception as e:  # noqa: BLE001  (fsspec backends raise many kinds)
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    raise StorageError(f"cannot use {what} {text}: {bucket} cannot be reached ({reason})"
                       ) from e
  if not found:
    raise StorageError(f"cannot use {what} {text}: bucket {bucket} does not exist (or this "
                       "account cannot see it); create it, or pass another")


def text_of(path) -> str:
  """The path as a user writes it: `gs://bucket/run`, or an absolute local path."""
  text = os.fspath(path)
  return text if is_url(text) else os.path.abspath(os.path.expanduser(text))


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
      os.fchmod(fd, 0o666 & ~_UMASK)  # As open() would create it (mkstemp makes it 0600).
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


@contextlib.contextmanager
def local_copy(path, what: str):
  """Yields a local path with `path`'s content: `path` itself when local; for a URL, a
  temporary copy of the file, or of the files directly in the folder, names kept."""
  if not is_url(path):
    yield os.fspath(path)
    return
  source = resolve(path, what)
  with tempfile.TemporaryDirectory(prefix="jaxseg-input-") as tmp:
    if source.is_file():
      files, folder = [source], None
    elif source.is_dir():
      files, folder = [p for p in source.iterdir() if p.is_file()], os.path.join(tmp, source.name)
    else:
      raise FileNotFoundError(errno.ENOENT, f"{what} is neither a file nor a folder",
                              os.fspath(source))
    target_dir = folder or tmp
    os.makedirs(target_dir, exist_ok=True)
    for f in files:
      with open(os.path.join(target_dir, f.name), "wb") as out:
        out.write(f.read_bytes())
    yield folder or os.path.join(tmp, source.name)
