"""Source archives for the builders: find them in manual_dir (or download), read members.

A member is read straight out of the archive (no 2 GB extraction); an already
extracted copy in manual_dir works too. Every failure names the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import tarfile
import urllib.parse
import urllib.request
import zlib
from typing import Callable, Iterator

from jaxseg.data.errors import DatasetError, DatasetMissingError

_DEMO_HINT = "No data at hand? `python run.py` trains the embedded demo dataset (shapes)."


@dataclasses.dataclass(frozen=True)
class Archive:
  filename: str  # As published; what to put in manual_dir.
  url: str
  size: int  # Bytes, as published.
  sha256: str | None  # None where no published checksum could be confirmed.
  extracted: str  # Top-level directory inside, accepted in manual_dir instead.


def locate(archive: Archive, dl_manager, allow_download: bool, needed_by: str) -> str:
  """Path of the archive (or its extracted directory), downloading only if allowed."""
  # tfds exposes manual_dir only through a property that raises when the directory
  # is absent; we need the path either way, to say where the file belongs.
  manual_dir = os.fspath(dl_manager._manual_dir)  # pylint: disable=protected-access
  for candidate in (archive.filename, archive.extracted):
    path = os.path.join(manual_dir, candidate)
    if os.path.exists(path):
      return path
  where = os.path.join(manual_dir, archive.filename)
  message = (f"{needed_by} needs {archive.filename} ({archive.size:,} bytes, from "
             f"{archive.url}): put it at {where} (data.manual_dir={manual_dir}; the "
             f"extracted {archive.extracted}/ directory works too)")
  if not allow_download:
    raise DatasetMissingError(f"{message}, or set data.download=True to fetch it. {_DEMO_HINT}")
  # tfds retries a failed connection with backoff for minutes; one probe fails in seconds.
  error = _unreachable(archive.url)
  if error is None:
    try:
      path = os.fspath(dl_manager.download(archive.url))
    except Exception as e:  # pylint: disable=broad-except  # Any network failure, same advice.
      error = e
  if error is not None:
    raise DatasetMissingError(f"{message}; downloading it failed ({error}). {_DEMO_HINT}")
  if archive.sha256 and _sha256(path) != archive.sha256:
    raise DatasetError(f"{path}: downloaded file does not match sha256 {archive.sha256}")
  return path


def _unreachable(url: str, timeout_s: float = 10.0) -> str | None:
  """Why the URL's host (or the proxy for it) cannot be connected to, or None if it can."""
  parts = urllib.parse.urlsplit(url)
  proxy = urllib.request.getproxies().get(parts.scheme)
  if proxy and not urllib.request.proxy_bypass(parts.hostname):
    parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
  port = parts.port or (443 if parts.scheme == "https" else 80)
  try:
    socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
  except OSError as e:
    return f"cannot connect to {parts.hostname}:{port}: {e}"
  return None


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _bad_archive(path: str, e: Exception) -> DatasetError:
  return DatasetError(f"{path}: truncated or corrupt archive ({type(e).__name__}: {e}); "
                      "download it again")


_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)


class Members:
  """Random access to the files of an uncompressed tar or an extracted directory.

  Names are archive paths ('VOCdevkit/VOC2012/...'); `where(name)` is what errors print.
  """

  def __init__(self, path: str, top: str):
    self.path = path
    self._is_dir = os.path.isdir(path)
    if self._is_dir:  # `path` is <manual_dir>/<top>: names are relative to its parent.
      self._root = os.path.dirname(path.rstrip(os.sep))
      self._names = None
      return
    try:
      with tarfile.open(path) as tar:  # Header scan only: tarfile seeks past the data.
        self._infos = {m.name: m for m in tar.getmembers() if m.isfile()}
    except _ARCHIVE_ERRORS as e:
      raise _bad_archive(path, e) from e
    self._tar = None

  def exists(self, name: str) -> bool:
    if self._is_dir:
      return os.path.isfile(os.path.join(self._root, name))
    return name in self._infos

  def where(self, name: str) -> str:
    return os.path.join(self._root, name) if self._is_dir else f"{self.path}:{name}"

  def read(self, name: str) -> bytes:
    if not self.exists(name):
      raise DatasetError(f"{self.where(name)}: missing (is the archive truncated, or not "
                         "the one named in docs/data.md?)")
    if self._is_dir:
      with open(os.path.join(self._root, name), "rb") as f:
        return f.read()
    try:
      if self._tar is None:
        self._tar = tarfile.open(self.path)  # TarInfos from the scan stay valid: same file.
      return self._tar.extractfile(self._infos[name]).read()
    except _ARCHIVE_ERRORS as e:
      raise _bad_archive(self.where(name), e) from e

  def close(self) -> None:
    if not self._is_dir and self._tar is not None:
      self._tar.close()
      self._tar = None


def stream(path: str) -> Iterator[tuple[str, str, Callable[[], bytes]]]:
  """Yields (archive name, where, read) for each file of a (compressed) tar, in order.

  Compressed tars have no random access, so callers `read()` what they need as
  it passes and skip the rest. An extracted directory is walked instead.
  """
  if os.path.isdir(path):
    root = os.path.dirname(path.rstrip(os.sep))
    for dirpath, _, files in os.walk(path):
      for f in sorted(files):
        full = os.path.join(dirpath, f)
        yield os.path.relpath(full, root).replace(os.sep, "/"), full, _reader(full)
    return
  try:
    with tarfile.open(path, "r|*") as tar:
      for member in tar:
        if member.isfile():
          yield member.name, f"{path}:{member.name}", _checked_read(tar, member, path)
  except _ARCHIVE_ERRORS as e:
    raise _bad_archive(path, e) from e


def _checked_read(tar: tarfile.TarFile, member: tarfile.TarInfo, path: str):
  def read() -> bytes:
    try:
      return tar.extractfile(member).read()
    except _ARCHIVE_ERRORS as e:
      raise _bad_archive(f"{path}:{member.name}", e) from e
  return read


def _reader(full: str):
  def read() -> bytes:
    with open(full, "rb") as f:
      return f.read()
  return read
