"""`--mode eval`: a checkpoint evaluated; and the one evaluation-and-record step that
training's evaluations share with it (metrics.jsonl record, reports folder)."""

from __future__ import annotations

import os

import jax
import ml_collections

from jaxseg.config.resolve import validate_batch_sizes
from jaxseg.data import datasets
from jaxseg.evaluation import inference, report
from jaxseg.evaluation.evaluate import evaluate_split
from jaxseg.runtime import distributed, runinfo
from jaxseg.runtime.build import Run, build_from_checkpoint
from jaxseg.runtime.workdir import WorkdirLock
from jaxseg.runtime.writer import MetricsWriter


def evaluate_and_log(run: Run, state, source, step: int, writer: MetricsWriter,
                      checkpoint: str | None = None) -> tuple[dict, str]:
  """(summary, reports folder) of evaluating on `source`. `checkpoint`: the path a
  separate `--mode eval` restored; its record says so and its reports get their own folder."""
  result = evaluate_split(run.eval_step, state.for_eval(), source, run.cfg, run.meta, run.mesh)
  workdir = os.path.dirname(writer.path)
  out = (os.path.join(workdir, "reports") if checkpoint is None
         else report.eval_reports_dir(workdir, run.cfg.eval.mode, step))
  record = {f"eval/{k}": v for k, v in result.summary.items()}
  scales, flip = inference.averaged_views(run.cfg.eval)
  record.update({"eval/mode": run.cfg.eval.mode, "eval/protocol": run.cfg.eval.protocol,
                 "eval/scales": list(scales), "eval/flip": flip,
                 "eval/run": "train" if checkpoint is None else "eval"})
  if checkpoint is not None:
    record.update({"eval/checkpoint": checkpoint, "eval/reports": out})
  writer.write(step, record)
  if distributed.is_main_process():  # After the write: the curves read metrics.jsonl.
    report.write_reports(workdir, step, result.summary, result.confusion, result.samples,
                         run.meta, run.cfg.predict.overlay_alpha, out=out, writer=writer)
  return result.summary, out


def evaluate_checkpoint(cfg: ml_collections.ConfigDict, workdir: str, overrides=()) -> dict:
  """Evaluates the checkpoint `eval.checkpoint` names (default: the newest intact one in
  `workdir`), rebuilt from its own config and dataset meta; `overrides` (`--set`
  strings) may change eval.* keys only (config.from_checkpoint.config_from_checkpoint). Only the
  eval split is read.
  """
  distributed.initialize()
  with WorkdirLock(workdir):
    # No pretrained weights are read: the checkpoint holds the model's.
    run, state, step, path = build_from_checkpoint(cfg, workdir, overrides)
    validate_batch_sizes(run.cfg, "eval", run.mesh.size, jax.process_count())
    if distributed.is_main_process():
      print(runinfo.start_line(run.cfg, run.mesh, "eval"), flush=True)
    dataset = datasets.prepare(run.cfg.data)
    _, eval_split = datasets.check_splits(dataset, run.cfg.data)
    writer = MetricsWriter(workdir, tensorboard=False)
    summary, out = evaluate_and_log(run, state, dataset.as_data_source(eval_split), step,
                                     writer, checkpoint=path)
    if distributed.is_main_process():
      print(f"checkpoint step {step}")
      print(report.summary_table(summary, run.meta.class_names))
      print(f"reports in {out}")
    return summary
