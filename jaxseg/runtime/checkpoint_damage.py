"""Which file of a checkpoint is damaged.

Orbax, tensorstore and grain raise on a truncated or corrupted file, but often
without naming it (a JSONDecodeError names a line and column, a tensorstore
read names the whole database). `damaged_file` turns such an error into the
file at fault, so a restore can say which checkpoint it skipped and why, and
fall back to an older one. An error that is not damage (e.g. a template whose
shapes differ from the saved arrays) gives None: no fallback would fix it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re

from jaxseg.errors import CheckpointError
from jaxseg.runtime.failures import exception_chain

# Files orbax and grain write as JSON (by name, or under array_metadatas/).
_JSON_NAMES = ("_METADATA", "_sharding", "metadata", "metrics", "_CHECKPOINT_METADATA")
_LOCAL_FILE = re.compile(r'local file "([^"]+)"')
_VALUE_SIZE = re.compile(r"not valid for value of size (\d+)")
_MISSING_FILE = re.compile(r"File (\S+) does not exist")
_ARRAY_KEY = re.compile(r'Error reading "([^"/]+)/')
# tensorstore status codes that mean the bytes on disk are not what was written.
_DAMAGE_CODES = ("DATA_LOSS", "OUT_OF_RANGE", "NOT_FOUND", "Error decoding")


class DamagedCheckpointError(CheckpointError):
  """A file of the checkpoint at `step` is truncated, corrupted or missing."""

  def __init__(self, step: int, path: str, reason: str):
    self.step, self.path, self.reason = step, path, reason
    super().__init__(f"checkpoint {step}: {path} is damaged ({reason})")


def _is_json_file(step_dir: str, path: str) -> bool:
  name = os.path.basename(path)
  return (name in _JSON_NAMES or name.endswith(".json")
          or os.path.basename(os.path.dirname(path)) == "array_metadatas")


def _unparsable_json(step_dir: str) -> str | None:
  """The first JSON file of the checkpoint that no longer parses; the items' files
  before the top-level metadata (orbax only logs a bad one of those)."""
  files = sorted((os.path.join(root, name) for root, _, names in os.walk(step_dir)
                  for name in names), key=lambda p: (os.path.dirname(p) == step_dir, p))
  for path in files:
    if not _is_json_file(step_dir, path):
      continue
    try:
      with open(path, "rb") as f:
        json.loads(f.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
      return path
  return None


def _file_of_size(directory: str, size: int) -> str | None:
  """The one file under `directory` of `size` bytes (a truncated ocdbt data file)."""
  found = [os.path.join(root, name) for root, _, names in os.walk(directory) for name in names
           if os.path.getsize(os.path.join(root, name)) == size]
  return found[0] if len(found) == 1 else None


def _reason(chain: list[BaseException]) -> str:
  """The detail a user can act on, short: a JSON error's, or tensorstore's last clause."""
  inner = next((e for e in chain if isinstance(e, ValueError) and str(e).strip()), chain[-1])
  text = str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
  if _LOCAL_FILE.search(text):
    key = _ARRAY_KEY.search(text)  # Which array, when the file cannot be told.
    text = (f"array {key.group(1)}: " if key else "") + text.rsplit('": ', 1)[-1]
    text = text.split(" [tensorstore_spec")[0]
  return text if len(text) <= 160 else text[:157] + "..."


def damaged_file(step_dir: str, exc: BaseException) -> tuple[str, str] | None:
  """(path of the damaged file, reason) if `exc`, raised restoring `step_dir`, is damage."""
  chain = list(exception_chain(exc))
  reason = _reason(chain)
  if any(isinstance(e, (json.JSONDecodeError, UnicodeDecodeError)) for e in chain):
    bad = _unparsable_json(step_dir)
    return (bad or step_dir), reason
  for e in chain:
    if isinstance(e, FileNotFoundError) and e.filename:
      return str(e.filename), "missing"
    message = str(e)
    missing = _MISSING_FILE.search(message)
    if missing:
      return missing.group(1).rstrip("."), "missing"
    paths = [p for p in _LOCAL_FILE.findall(message) if p.startswith(step_dir)]
    if paths:
      exact = [p for p in paths if os.path.isfile(p)]
      size = _VALUE_SIZE.search(message)
      if not exact and size:
        found = _file_of_size(paths[0], int(size.group(1)))
        exact = [found] if found else []
      return (exact or paths)[0], reason
  if any(code in str(e) for e in chain for code in _DAMAGE_CODES):
    return step_dir, reason
  return None


# How long a failed restore waits for its other reads (local reads take milliseconds).
_DRAIN_TIMEOUT_S = 60.0


def _run_draining(coro):
  """orbax's `_run_sync_via_new_loop`, but the loop closes only once every task on it
  is done. A restore gathers one tensorstore read per array; when one fails (a
  damaged file) the gather raises at once while the others are still in flight,
  and each that completes after the loop closed calls `call_soon_threadsafe` on
  it: a 'RuntimeError: Event loop is closed' traceback on stderr per pending read
  (hundreds for a ResNet, when reads are slow under load)."""
  loop = asyncio.new_event_loop()
  try:
    asyncio.set_event_loop(loop)
    return loop.run_until_complete(coro)
  except BaseException:
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if pending:  # Their errors are the same damage, already raised: gathered, not raised.
      drained = asyncio.gather(*pending, return_exceptions=True)
      try:  # Bounded: a read that never ends is cancelled rather than waited for.
        loop.run_until_complete(asyncio.wait_for(drained, _DRAIN_TIMEOUT_S))
      except asyncio.TimeoutError:
        pass
    raise
  finally:
    asyncio.set_event_loop(None)
    loop.close()


@contextlib.contextmanager
def pending_reads_drained():
  """While restoring: orbax runs its coroutines through `_run_draining` (above)."""
  from orbax.checkpoint._src import asyncio_utils  # The one place orbax makes its loops.

  original = getattr(asyncio_utils, "_run_sync_via_new_loop", None)
  if original is None:  # Another orbax version: restore as it does.
    yield
    return
  asyncio_utils._run_sync_via_new_loop = _run_draining
  try:
    yield
  finally:
    asyncio_utils._run_sync_via_new_loop = original
