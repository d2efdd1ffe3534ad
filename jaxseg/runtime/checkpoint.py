"""Orbax checkpoints of (train state, data iterator state, config, dataset meta), which
checkpoint `eval.checkpoint` names, and what may change when a run resumes from one.

A checkpoint is self-contained: its config and its dataset's meta (class names,
palette, ignore index, eval canvas) rebuild the model without the dataset, which
is how `--mode eval` and `--mode predict` use it.

Two managers: `checkpoints/` keeps the last `train.keep_checkpoints` steps (for
resuming), `checkpoints_best/` keeps the single best by validation mIoU (for
using). One manager cannot do both: with `best_fn`, orbax's `max_to_keep` keeps
the best N and would delete the newest. Orbax writes each step into
`<step>.orbax-checkpoint-tmp-*` and renames it when complete, so a checkpoint
half-written by a kill is never listed, restored or counted as the latest.
A checkpoint damaged later (a truncated or corrupted file) is skipped on
restore, with one line naming the file, in favour of the newest intact one.
"""

from __future__ import annotations

import json
import os

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxseg import paths
from jaxseg.config.migrate import migrate
from jaxseg.config.overrides import flat_dict
from jaxseg.errors import ConfigError
from jaxseg.runtime.checkpoint_damage import (CheckpointError, DamagedCheckpointError, damaged_file,
                                              pending_reads_drained)

__all__ = ["CheckpointError", "Checkpointer", "DamagedCheckpointError", "ResumeConfigError"]

# Keys that may differ from the checkpoint's config on resume: how long and how
# often things happen, where data lives, and evaluation. The poly/cosine
# schedule is re-derived from the new `train.steps`. Everything else would make
# the resumed run a different experiment: refused unless `run.py --force`.
RESUMABLE_KEYS = ("train.steps", "train.eval_every", "train.log_every",
                  "train.checkpoint_every", "train.keep_checkpoints", "train.tensorboard",
                  "train.skip_nonfinite", "data.dir", "data.manual_dir", "data.worker_count",
                  "data.folder.root", "model.weights_dir", "train.profile_steps",
                  # The compute dtype ('auto' resolves per backend): the state is float32
                  # whatever it is, so a TPU run may resume on a CPU; the change is said.
                  "model.dtype")
RESUMABLE_PREFIXES = ("eval.", "browse.")


class ResumeConfigError(ConfigError):
  """The config differs from the checkpoint's in keys that cannot change on resume."""


def config_changes(old: dict, new: dict) -> dict[str, tuple]:
  """{key: (old, new)} for every key both configs have whose value differs (as JSON).

  A key only one side has is not read by the other's version or choices (a
  component section holds only its chosen components' keys, and a changed
  choice is itself a change), so it is no difference of the run. A checkpoint of
  the flat layout has its keys moved first (config/migrate.py), so its
  `loss.ce_avg_non_ignore` is compared with `loss.cross_entropy.avg_non_ignore`.
  """
  # Through JSON both ways, so tuples and lists (and ints and floats) compare alike.
  old, new = (flat_dict(json.loads(json.dumps(c))) for c in (old, new))
  old = migrate(old)
  return {k: (old[k], new[k]) for k in sorted(old.keys() & new.keys()) if old[k] != new[k]}


def check_resume_config(old: dict, new: dict) -> dict[str, tuple]:
  """Returns the allowed changes; raises ResumeConfigError naming the refused ones."""
  changes = config_changes(old, new)
  refused = {k: v for k, v in changes.items()
             if k not in RESUMABLE_KEYS and not k.startswith(RESUMABLE_PREFIXES)}
  if refused:
    listed = ", ".join(f"{k} ({a!r} -> {b!r})" for k, (a, b) in refused.items())
    raise ResumeConfigError(f"cannot resume: config differs from the checkpoint's in {listed}; "
                            "use a new --workdir, or --force to resume anyway")
  return changes


def _manager(directory: str, keep: int, best: bool) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True, enable_async_checkpointing=True,
      best_fn=(lambda metrics: metrics["miou"]) if best else None, best_mode="max",
      keep_checkpoints_without_metrics=not best)
  return ocp.CheckpointManager(directory, options=options,
                               item_names=("state", "data", "config", "meta"))


class Checkpointer:
  def __init__(self, directory: str, keep: int | None):
    self.directory = paths.text_of(directory)  # gs:// too: orbax reads and writes it as is.
    self.manager = _manager(self.directory, keep, best=False)
    self._best = None  # Opened on first use: evaluation-only runs never write it.

  @property
  def best_directory(self) -> str:
    return self.directory + "_best"

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, data_iterator, config_dict: dict,
           meta: dict | None = None) -> None:
    """Starts an (async) save; the data iterator's position is captured now.

    `meta` is the dataset's `DatasetMeta.to_json()`; runs always pass it (None
    writes a checkpoint like those from before it was stored).
    """
    args = {"state": ocp.args.StandardSave(state), "config": ocp.args.JsonSave(config_dict)}
    if meta is not None:
      args["meta"] = ocp.args.JsonSave(meta)
    if data_iterator is not None:
      args["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    self.manager.save(step, args=ocp.args.Composite(**args), force=True)

  def save_if_best(self, step: int, state, config_dict: dict, meta: dict, miou: float) -> None:
    """Offers (state, config, meta) at `step` to the best-by-mIoU manager, which keeps one."""
    if self._best is None:
      self._best = _manager(self.best_directory, 1, best=True)
    if step in self._best.all_steps():
      return
    args = {"state": ocp.args.StandardSave(state), "config": ocp.args.JsonSave(config_dict),
            "meta": ocp.args.JsonSave(meta)}
    self._best.save(step, args=ocp.args.Composite(**args), metrics={"miou": float(miou)},
                    force=True)

  def _restore(self, step: int, args: dict) -> dict:
    """manager.restore, with damage (a bad file) raised as DamagedCheckpointError."""
    try:
      with pending_reads_drained():  # A failed read leaves no others to flood stderr.
        return self.manager.restore(step, args=ocp.args.Composite(**args))
    except Exception as e:  # orbax, tensorstore and grain raise many kinds.
      found = damaged_file(os.path.join(self.directory, str(step)), e)
      if found is None:
        raise
      raise DamagedCheckpointError(step, *found) from e

  def restore(self, step: int, state_like, data_iterator=None):
    """Restores into the shapes and shardings of `state_like`; moves `data_iterator`."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)
    args = {"state": ocp.args.StandardRestore(abstract)}
    if data_iterator is not None:
      args["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    return self._restore(step, args)["state"]

  def restore_newest_intact(self, state_like, data_iterator=None, accept=None):
    """(state, step, skipped, accepted) from the newest checkpoint that restores.

    `skipped` lists the DamagedCheckpointError of each newer one. `accept(step,
    config)` may refuse a checkpoint by raising; what it returns for the one
    restored is `accepted` (None without `accept`). Every process ends on the same
    step (a file damaged for one process only moves them all back). Raises
    CheckpointError if none is intact; (state_like, None, [], None) if none exists.
    """
    steps = sorted(self.manager.all_steps(), reverse=True)
    skipped = {}
    while True:
      state, step, accepted = state_like, None, None
      for candidate in steps:
        try:
          config = self.restore_config(candidate)  # Read even if unused: intact = all of it.
          accepted = accept(candidate, config) if accept is not None else None
          state, step = self.restore(candidate, state_like, data_iterator), candidate
          break
        except DamagedCheckpointError as e:
          skipped.setdefault(e.step, e)
      agreed = _agree_over_processes(-1 if step is None else step)
      if agreed is None:
        break
      steps = [s for s in steps if s <= agreed]
    if step is None and skipped:
      raise self.none_intact(list(skipped.values()))
    return state, step, list(skipped.values()), accepted

  def none_intact(self, damaged: list) -> CheckpointError:
    listed = "; ".join(str(e) for e in damaged)
    return CheckpointError(f"no intact checkpoint in {self.directory}: {listed}; "
                           "move them away to start over, or use another --workdir")

  def set_aside(self, step: int) -> str:
    """Moves a damaged checkpoint to `<dir>_damaged/` (kept, never deleted), so the
    run can save that step again. Process 0 moves it; every process reloads."""
    target = os.path.join(self.directory + "_damaged", str(step))
    suffix = 1
    while paths.resolve(target).exists():
      target = os.path.join(self.directory + "_damaged", f"{step}.{suffix}")
      suffix += 1
    if jax.process_index() == 0:  # On a bucket a "rename" copies, then deletes.
      paths.resolve(target).parent.mkdir(parents=True, exist_ok=True)
      paths.resolve(os.path.join(self.directory, str(step))).rename(paths.resolve(target))
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      multihost_utils.sync_global_devices(f"jaxseg set aside checkpoint {step}")
    self.manager.reload()
    return target

  def restore_arrays(self, step: int) -> dict:
    """The saved state as a nested dict of numpy arrays (no template; for inspection)."""
    restored = self._restore(step, {"state": ocp.args.StandardRestore()})
    return jax.device_get(restored["state"])

  def restore_config(self, step: int) -> dict:
    return self._restore(step, {"config": ocp.args.JsonRestore()})["config"]

  def restore_meta(self, step: int) -> dict | None:
    """The dataset meta saved with `step`; None for checkpoints written before it was."""
    if not paths.resolve(os.path.join(self.directory, str(step), "meta")).is_dir():
      return None
    return self._restore(step, {"meta": ocp.args.JsonRestore()})["meta"]

  def reached_preemption(self, step: int) -> bool:
    """Multi-process: whether every process agreed to stop at `step` (jax's
    preemption sync point, fed by SIGTERM on any host)."""
    return self.manager.reached_preemption(step)

  def wait(self) -> None:
    self.manager.wait_until_finished()
    if self._best is not None:
      self._best.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves, then closes; safe to call more than once."""
    if self.manager is None:
      return
    self.wait()
    self.manager.close()
    if self._best is not None:
      self._best.close()
    self.manager = self._best = None


def _agree_over_processes(step: int) -> int | None:
  """The smallest `step` over all processes, or None if they already agree."""
  if jax.process_count() == 1:
    return None
  from jax.experimental import multihost_utils

  steps = np.asarray(multihost_utils.process_allgather(np.int32(step)))
  return None if steps.min() == steps.max() else int(steps.min())


def resolve(checkpoint: str, workdir: str) -> tuple[str, int | None]:
  """`eval.checkpoint` -> (checkpoint directory, step or None for the latest).

  '' = latest in `<workdir>/checkpoints`; '12' = step 12 there; 'best' = the
  best-by-mIoU checkpoint (`<workdir>/checkpoints_best`); a path
  '.../checkpoints/12' = that step of that directory; a path to a checkpoints
  directory = its latest.
  """
  default_dir = os.path.join(workdir, "checkpoints")
  if not checkpoint:
    return default_dir, None
  if checkpoint == "best":
    return default_dir + "_best", None
  if checkpoint.isdigit():
    return default_dir, int(checkpoint)
  path = paths.text_of(os.path.expanduser(checkpoint.rstrip("/")))
  if os.path.basename(path).isdigit():
    return os.path.dirname(path), int(os.path.basename(path))
  return path, None


def open_existing(checkpoint: str, workdir: str, train_hint: str
                  ) -> tuple[Checkpointer, int | None]:
  """(Checkpointer, step or None for the newest intact) of what `eval.checkpoint`
  names; FileNotFoundError ending in `train_hint` (the command that would have
  written it) when there is none."""
  directory, step = resolve(checkpoint, workdir)
  if not paths.resolve(directory).is_dir():  # Checked first: the manager would create it.
    raise FileNotFoundError(f"no checkpoint in {directory}; train first ({train_hint})")
  ckpt = Checkpointer(directory, keep=None)  # Reading: keep every step there.
  available = list(ckpt.manager.all_steps())
  if not available or (step is not None and step not in available):
    ckpt.close()
    raise FileNotFoundError(
        f"no checkpoint {'' if step is None else f'step {step} '}in {ckpt.directory} "
        f"(steps there: {sorted(available) or 'none'}); train first ({train_hint})")
  return ckpt, step
