"""train_and_evaluate(cfg, workdir): the training loop, and evaluation of a checkpoint."""

from __future__ import annotations

import json
import os
import time

import jax
import ml_collections
import tqdm

from jaxseg import report
from jaxseg.assemble import Run, assemble
from jaxseg.checkpoint import Checkpointer
from jaxseg.evaluate import evaluate
from jaxseg.sharding import global_batch
from jaxseg.steps import to_host
from jaxseg.writer import MetricsWriter


def _evaluate_and_log(run: Run, state, step: int, writer: MetricsWriter) -> dict:
  summary, _ = evaluate(run.eval_step, state, run.source(run.cfg.data.eval_split), run.cfg,
                        run.meta, run.mesh)
  writer.write(step, {f"eval/{k}": v for k, v in summary.items()})
  return summary


def train_and_evaluate(cfg: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (resuming from the latest checkpoint in `workdir`), then evaluates."""
  os.makedirs(workdir, exist_ok=True)
  run = assemble(cfg)
  writer = MetricsWriter(workdir)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), cfg.train.keep_checkpoints)
  loader = run.source(cfg.data.train_split)
  from jaxseg.data.pipeline import train_loader  # Kept local: only training reads it.

  train_iter = iter(train_loader(loader, cfg, run.meta.ignore_index))
  state, start = run.state, 0
  if (latest := ckpt.latest_step()) is not None:
    state = ckpt.restore(latest, state, train_iter)
    start = latest
    print(f"resuming from step {start} in {ckpt.directory}")
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      json.dump(cfg.to_dict(), f, indent=2)

  bar = tqdm.tqdm(total=cfg.train.steps, initial=start, desc="train", unit="step",
                  disable=jax.process_index() != 0, dynamic_ncols=True)
  last_time, last_step = time.perf_counter(), start
  for step in range(start + 1, cfg.train.steps + 1):
    state, step_metrics = run.train_step(state, global_batch(run.mesh, next(train_iter)))
    bar.update(1)
    if step % cfg.train.log_every == 0 or step == cfg.train.steps:
      values = to_host(step_metrics)  # The one host sync per log interval.
      now = time.perf_counter()
      values["img_per_s"] = (step - last_step) * cfg.train.batch_size / (now - last_time)
      last_time, last_step = now, step
      writer.write(step, values)
      bar.set_postfix(loss=f"{values['loss']:.4f}", img_s=f"{values['img_per_s']:.0f}")
    if cfg.train.eval_every and step % cfg.train.eval_every == 0 and step != cfg.train.steps:
      summary = _evaluate_and_log(run, state, step, writer)
      bar.write(f"step {step}: val mIoU {summary['miou']:.4f}")
    if step % cfg.train.checkpoint_every == 0 and step != cfg.train.steps:
      ckpt.save(step, state, train_iter, cfg.to_dict())
  bar.close()
  if ckpt.latest_step() != cfg.train.steps:
    ckpt.save(cfg.train.steps, state, train_iter, cfg.to_dict())
  ckpt.close()
  summary = _evaluate_and_log(run, state, cfg.train.steps, writer)
  if jax.process_index() == 0:
    print(report.summary_table(summary, run.meta.class_names))
  return summary


def evaluate_checkpoint(cfg: ml_collections.ConfigDict, workdir: str) -> dict:
  """Evaluates the latest checkpoint in `workdir` on the eval split."""
  run = assemble(cfg)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), cfg.train.keep_checkpoints)
  latest = ckpt.latest_step()
  if latest is None:
    raise FileNotFoundError(f"no checkpoint in {ckpt.directory}; train first "
                            f"(python run.py --exp {cfg.experiment} --workdir {workdir})")
  state = ckpt.restore(latest, run.state)
  ckpt.close()
  summary = _evaluate_and_log(run, state, latest, MetricsWriter(workdir))
  if jax.process_index() == 0:
    print(f"checkpoint step {latest}")
    print(report.summary_table(summary, run.meta.class_names))
  return summary
