"""Running out of disk or memory: recognised under the libraries' wrappers, and
turned into one line that names the path or the config keys to change."""

from __future__ import annotations

import contextlib
import errno
import re

# tensorstore (orbax's writer) reports a full disk as a ValueError whose text
# carries the OS error, e.g. "... No space left on device [os_error_code='28']".
_DISK_FULL = re.compile(r"No space left on device|os_error_code='28'")
_QUOTED_PATH = re.compile(r'"(/[^"]+)"')


class OutOfMemoryError(RuntimeError):
  """Device or host memory ran out; the message names the keys to change."""


def exception_chain(exc: BaseException):
  """`exc` and every exception it was raised from or while handling."""
  seen = set()
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    yield exc
    exc = exc.__cause__ or exc.__context__


def disk_full(exc: BaseException) -> bool:
  return any((isinstance(e, OSError) and e.errno == errno.ENOSPC) or _DISK_FULL.search(str(e))
             for e in exception_chain(exc))


def failed_path(exc: BaseException) -> str | None:
  """The file an I/O error names (OSError.filename, or a path quoted in its text)."""
  for e in exception_chain(exc):
    if isinstance(e, OSError) and e.filename:
      return str(e.filename)
    match = _QUOTED_PATH.search(str(e))
    if match:
      return match.group(1)
  return None


def out_of_memory(exc: BaseException) -> bool:
  """XLA's RESOURCE_EXHAUSTED (device memory, raised as JaxRuntimeError) or a host
  MemoryError; a full disk, which tensorstore also calls RESOURCE_EXHAUSTED, is not."""
  if disk_full(exc):
    return False
  return any(isinstance(e, MemoryError) or (isinstance(e, RuntimeError)
                                             and "RESOURCE_EXHAUSTED" in str(e))
             for e in exception_chain(exc))


@contextlib.contextmanager
def memory_hint(what: str, keys: str):
  """Re-raises running out of memory inside the block as OutOfMemoryError(what; keys)."""
  try:
    yield
  except Exception as e:
    if isinstance(e, OutOfMemoryError) or not out_of_memory(e):
      raise
    raise OutOfMemoryError(f"out of memory {what}; {keys}") from e


def eval_keys(cfg, canvas_HW=None) -> str:
  """What to change when evaluation (a batch of canvases) does not fit."""
  e = cfg.eval
  canvas = "the eval canvas" if canvas_HW is None else "the {}x{} canvas".format(*canvas_HW)
  smaller_batch = f"lower eval.batch_size (now {e.batch_size})"
  if e.mode == "slide":
    fewer = (f"eval.windows_per_step=1 (now {e.windows_per_step}), "
             if e.windows_per_step > 1 else "")
    return f"{smaller_batch}, {fewer}or a smaller eval.crop_size (now {tuple(e.crop_size)})"
  if e.mode == "aug":
    return (f"{smaller_batch}, drop large eval.scales (now {tuple(e.scales)}), or "
            f"--set eval.mode=slide with eval.crop_size below {canvas}")
  return f"{smaller_batch}, or --set eval.mode=slide with eval.crop_size below {canvas}"


def train_keys(cfg) -> str:
  t = cfg.train
  return (f"lower train.batch_size (now {t.batch_size}), raise train.grad_accum_steps "
          f"(now {t.grad_accum_steps}), use a smaller augment.crop_size "
          f"(now {tuple(cfg.augment.crop_size)}), or --set model.dtype=bfloat16")


def predict_keys(cfg) -> str:
  return (f"lower predict.batch_size (now {cfg.predict.batch_size}), or --set eval.mode=slide "
          f"with a small eval.crop_size (now {tuple(cfg.eval.crop_size)})")
