"""train_and_evaluate(cfg, workdir): the training loop (resume, evaluation every
`train.eval_every` steps and at the end, checkpoints, preemption)."""

from __future__ import annotations

import collections
import json
import os
import sys

import jax
import ml_collections

from jaxseg import paths
from jaxseg.config.resolve import validate_batch_sizes
from jaxseg.data import datasets
from jaxseg.errors import ConfigError, NonFiniteError, Preempted
from jaxseg.evaluation import report
from jaxseg.evaluation.eval_mode import evaluate_and_log
from jaxseg.models import pretrained as pretrained_weights
from jaxseg.runtime import distributed, profiling, runinfo, runlog, step_cost
from jaxseg.runtime.build import build, load_pretrained
from jaxseg.runtime.checkpoint import (Checkpointer, DamagedCheckpointError, check_resume_config,
                                       config_changes)
from jaxseg.runtime.sharding import DevicePrefetcher, make_mesh
from jaxseg.runtime.workdir import WorkdirLock
from jaxseg.runtime.writer import MetricsWriter
from jaxseg.training import force_resume
from jaxseg.training.preemption import StopRequest
from jaxseg.training.steps import to_host

# Batches on device ahead of the step that runs: the next one, and the one after
# it in flight, so host-to-device copies overlap compute. Changes no result.
DEVICE_PREFETCH = 2
# Steps dispatched but not finished. The host waits for the step this many
# behind before dispatching more: the device never idles (the later ones are
# queued), yet a SIGTERM is answered within a few steps and the progress bar's
# rate is the device's, not the dispatcher's.
MAX_STEPS_IN_FLIGHT = 2


class PastTheEndError(ConfigError):
  """train.steps is below the step of the checkpoint to resume (run.py: status 2)."""


def _checkpointer(cfg, workdir: str) -> Checkpointer:
  return Checkpointer(os.path.join(workdir, "checkpoints"), cfg.train.keep_checkpoints)


def _stop_if_nonfinite(cfg, first_bad: int, step: int, ckpt: Checkpointer) -> None:
  """Raises NonFiniteError if a step since the start went non-finite (skipping off)."""
  if first_bad < 0 or cfg.train.skip_nonfinite:
    return
  ckpt.wait()
  last = ckpt.latest_step()
  where = f"step {last} in {ckpt.directory}" if last is not None else "none"
  raise NonFiniteError(
      f"non-finite loss or gradient norm at step {first_bad} (noticed at step {step}); "
      f"nothing saved after it. Last good checkpoint: {where}. Lower optim.lr, set "
      "optim.clip_grad_norm, or --set train.skip_nonfinite=true to skip such updates")


def _resume_check(cfg, force: bool):
  """accept(step, config) -> {key: (old, new)}, the changes this run makes to that
  checkpoint's config. Refuses (raises) a checkpoint past `train.steps` (its state
  is not that of any step this run reaches) and changes that cannot be honoured."""

  def accept(step: int, config: dict) -> dict[str, tuple]:
    if step > cfg.train.steps:
      raise PastTheEndError(
          f"cannot resume: the checkpoint is at step {step}, past train.steps={cfg.train.steps}; "
          f"set train.steps to {step} or more, or use a new --workdir")
    if not force:
      return check_resume_config(config, cfg.to_dict())
    # Every change is said on resuming; those of the state or data position are refused.
    changes = config_changes(config, cfg.to_dict())
    force_resume.check_changes(changes)
    return changes

  return accept


def _check_config(ckpt: Checkpointer, accept) -> tuple[int | None, dict]:
  """Fail fast, before anything is built: (step, accepted changes) of the newest
  readable checkpoint config; (None, {}) without one."""
  damaged = []
  for step in sorted(ckpt.manager.all_steps(), reverse=True):
    try:
      config = ckpt.restore_config(step)
    except DamagedCheckpointError as e:
      damaged.append(e)  # Said, and set aside, by _resume if an older one is intact.
      continue
    return step, accept(step, config)
  if damaged:
    raise ckpt.none_intact(damaged)
  return None, {}


def _resume(ckpt: Checkpointer, state, train_iter, accept):
  """(state, start step) from the newest intact checkpoint, or (state, 0) without one.
  Newer damaged ones are said in one line each and moved to checkpoints_damaged/."""
  state, step, skipped, changes = ckpt.restore_newest_intact(state, train_iter, accept)
  for damaged in skipped:
    moved = ckpt.set_aside(damaged.step)
    if distributed.is_main_process():
      print(f"warning: skipped checkpoint {damaged.step} in {ckpt.directory}: {damaged.path} "
            f"is damaged ({damaged.reason}); moved it to {moved}", file=sys.stderr, flush=True)
  if step is None:
    return state, 0
  if distributed.is_main_process():
    changed = "".join(f"; {k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())
    print(f"resuming from step {step} in {ckpt.directory}{changed}", flush=True)
  return state, step


def train_and_evaluate(cfg: ml_collections.ConfigDict, workdir: str, force: bool = False) -> dict:
  """Trains (resuming from the latest checkpoint in `workdir`), then evaluates.

  `force` resumes even when the config differs from the checkpoint's in keys
  that should not change (checkpoint.RESUMABLE_KEYS lists those that may).
  """
  distributed.initialize()  # Before any jax backend starts; a no-op if run.py did it.
  # Before the workdir is claimed or any data prepared: the batch must split over the
  # devices (the mesh spans them all).
  validate_batch_sizes(cfg, "train", jax.device_count(), jax.process_count())
  with WorkdirLock(workdir):
    ckpt = _checkpointer(cfg, workdir)
    try:
      return _train(cfg, workdir, force, ckpt)
    finally:
      # Also on an error (e.g. in the final eval): never leave a save half-written.
      ckpt.close()


def _train(cfg: ml_collections.ConfigDict, workdir: str, force: bool, ckpt: Checkpointer):
  cfg = runinfo.with_resolved_dtype(cfg)  # Before comparing with, or saving, a checkpoint.
  accept = _resume_check(cfg, force)
  resumed, changes = _check_config(ckpt, accept)  # Before building anything: fail fast.
  mesh = make_mesh()
  if force and resumed is not None:  # The state must still fit (shapes only, no data).
    force_resume.check_state(ckpt, resumed, cfg, mesh, changes)
  if distributed.is_main_process():
    print(runinfo.start_line(cfg, mesh, "train"), flush=True)
  # A resumed run restores its weights: pretrained ones are needed only to start, and
  # are fetched, read and checked against the model (or refused, in seconds) before
  # the dataset is prepared.
  pretrained = pretrained_weights.resolve(cfg) if ckpt.latest_step() is None else None

  # Data: prepared once by its tfds builder, read with grain (random access).
  from jaxseg.data.pipeline import train_loader  # Kept local: only training reads it.

  dataset = datasets.prepare(cfg.data)
  meta = datasets.meta_of(dataset)
  # Split names against the prepared dataset, before the model is built or trained.
  train_split, eval_split = datasets.check_splits(dataset, cfg.data)
  train_iter = iter(train_loader(dataset.as_data_source(train_split), cfg, meta.ignore_index))
  eval_source = dataset.as_data_source(eval_split)

  # Model, optimizer, sharded state and jitted steps; then the pretrained weights,
  # then the newest intact checkpoint (which, when there is one, replaces both).
  run = build(cfg, meta, mesh)
  state = load_pretrained(run.state, pretrained)
  state, start = _resume(ckpt, state, train_iter, accept)
  # Checkpoints take the prefetcher's state: the position after the batches the
  # steps consumed, not after those already sent ahead, so resuming stays exact.
  batches = DevicePrefetcher(train_iter, mesh, size=DEVICE_PREFETCH)
  config, meta_json = cfg.to_dict(), meta.to_json()  # What every checkpoint stores with it.
  if distributed.is_main_process():  # The effective config, overrides applied.
    paths.write_bytes(os.path.join(workdir, "config.json"), json.dumps(config, indent=2))
  # Steps after the checkpoint are trained again: what they logged is dropped.
  writer = MetricsWriter(workdir, tensorboard=cfg.train.tensorboard, resume_step=start)
  if writer.dropped:  # A fresh start (start 0) drops what a killed first attempt logged.
    print(f"dropped {writer.dropped} metrics.jsonl records after step {start} (trained again)",
          flush=True)

  def first_bad() -> int:  # One tiny host sync; called at checkpoint and stop points only.
    return int(jax.device_get(state.first_nonfinite_step))

  skipped_said = int(jax.device_get(state.nonfinite_steps))  # Said before a resume.
  bar = runlog.progress_bar(total=cfg.train.steps, initial=start, desc="train", unit="step")
  clock, cost = runlog.StepClock(start), None
  profiler = profiling.StepProfiler(cfg.train.profile_steps, workdir)
  in_flight = collections.deque()
  with StopRequest(ckpt) as stop:
    for step in range(start + 1, cfg.train.steps + 1):
      with clock.waiting_for_data():
        batch = next(batches)
      if cost is None:  # Compiles the step (its first call reuses it) to count its FLOPs.
        cost = step_cost.measure(run.train_step, state, batch, cfg)
        if distributed.is_main_process():
          runlog.say("cost: " + ", ".join(cost.fields()))
        clock.restart(step - 1)  # Compile time is not step time.
      # No transfer to the host here but at log, eval and checkpoint points.
      with profiler.step(step) as outputs:
        state, step_metrics = run.train_step(state, batch)
        outputs.append(step_metrics)
      in_flight.append(step_metrics["loss"])
      if len(in_flight) > MAX_STEPS_IN_FLIGHT:
        in_flight.popleft().block_until_ready()
      bar.update(1)
      if step % cfg.train.log_every == 0 or step == cfg.train.steps:
        values = to_host(step_metrics)  # The one host sync per log interval.
        values.update(runlog.interval_values(clock, step, cfg.train.steps,
                                             cfg.train.batch_size, cost))
        writer.write(step, values)
        if distributed.is_main_process():
          runlog.say(runlog.log_line(step, cfg.train.steps, values))
        _stop_if_nonfinite(cfg, values["first_nonfinite_step"], step, ckpt)
        skipped_said = runlog.say_skipped(values, step, skipped_said, bar)
      if cfg.train.eval_every and step % cfg.train.eval_every == 0 and step != cfg.train.steps:
        _stop_if_nonfinite(cfg, first_bad(), step, ckpt)
        summary, _ = evaluate_and_log(run, state, eval_source, step, writer)
        ckpt.save_if_best(step, state.for_eval(), config, meta_json, summary["miou"])
        if distributed.is_main_process():
          runlog.say(f"step {step}: evaluation\n{report.summary_table(summary, meta.class_names)}")
        clock.restart(step)  # Evaluation time is not step time.
      if step % cfg.train.checkpoint_every == 0 and step != cfg.train.steps:
        _stop_if_nonfinite(cfg, first_bad(), step, ckpt)
        ckpt.save(step, state, batches, config, meta_json)
      if step != cfg.train.steps and stop.should_stop(step):
        profiler.stop()
        _stop_if_nonfinite(cfg, first_bad(), step, ckpt)
        if ckpt.latest_step() != step:
          ckpt.save(step, state, batches, config, meta_json)
        ckpt.close()
        bar.close()
        writer.close()
        raise Preempted(f"{stop.signal_name}: saved a checkpoint at step {step} in "
                        f"{ckpt.directory}; run the same command again to resume")
  bar.close()
  profiler.stop()
  _stop_if_nonfinite(cfg, first_bad(), cfg.train.steps, ckpt)
  if ckpt.latest_step() != cfg.train.steps:
    ckpt.save(cfg.train.steps, state, batches, config, meta_json)
  summary, _ = evaluate_and_log(run, state, eval_source, cfg.train.steps, writer)
  ckpt.save_if_best(cfg.train.steps, state.for_eval(), config, meta_json, summary["miou"])
  ckpt.close()
  writer.close()
  if distributed.is_main_process():
    print(report.summary_table(summary, meta.class_names))
  return summary
