#!/usr/bin/env python
"""jaxseg command line: python run.py --exp NAME[:VARIANT] [--set key=value ...].

--exp also takes a path to an experiment file: --exp path/to/my_exp.py[:VARIANT].

Exit status: 0 done, 1 error, 2 bad config or command line (including a config
that differs from the checkpoint's on resume), 3 stopped by SIGTERM/SIGINT after
saving a checkpoint (run again to resume), 4 stopped on a NaN/Inf loss or gradient.
"""

from __future__ import annotations

import argparse
import os
import sys


def _parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--exp", default="demo", help="experiment NAME[:VARIANT], or a file: "
                 "path/to/my_exp.py[:VARIANT] (default: demo)")
  p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                 help="override a config value, e.g. --set optim.lr=0.02 (repeatable)")
  p.add_argument("--workdir", default=None, help="default: runs/<exp>")
  p.add_argument("--mode", choices=("train", "eval", "predict"), default="train",
                 help="eval/predict use the checkpoint eval.checkpoint names (default: latest)")
  p.add_argument("--input", default=None, help="predict: an image file or a folder of images")
  p.add_argument("--output", default=None, help="predict: output folder (default: "
                 "<workdir>/predictions)")
  p.add_argument("--list", action="store_true", help="list experiments and registry names")
  p.add_argument("--force", action="store_true",
                 help="resume even if the config differs from the checkpoint's in keys "
                      "that should not change (model, optimizer, data, ...)")
  return p.parse_args(argv)


def _list() -> None:
  from jaxseg import losses, optim
  from jaxseg.config import experiment_names
  from jaxseg.data.datasets import dataset_names
  from jaxseg.data.transforms import AUGMENTATIONS
  from jaxseg.models import model_names

  sections = {"experiments": experiment_names(), "models": model_names(),
              "datasets": dataset_names(), "losses": losses.LOSSES.names(),
              "optimizers": optim.OPTIMIZERS.names(), "schedules": optim.SCHEDULES.names(),
              "augmentations": AUGMENTATIONS.names()}
  for title, names in sections.items():
    print(f"{title}: {', '.join(names)}")


def main(argv=None) -> int:
  args = _parse_args(argv)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  from absl import flags, logging

  # grain's worker processes read absl flags; mark them parsed outside absl.app.
  flags.FLAGS.mark_as_parsed()
  logging.set_verbosity(logging.ERROR)  # tfds' info chatter would break the progress bar.
  from jaxseg import distributed

  distributed.initialize()  # Before any jax backend starts (multi-process runs only).
  if args.list:
    _list()
    return 0
  from jaxseg.config import ConfigError, build_config, run_name

  try:
    cfg = build_config(args.exp, args.overrides)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  workdir = args.workdir or os.path.join("runs", run_name(args.exp))
  from jaxseg import train
  from jaxseg.checkpoint import CheckpointError
  from jaxseg.data.datasets import DatasetError
  from jaxseg.workdir import WorkdirBusyError

  try:
    if args.mode == "train":
      train.train_and_evaluate(cfg, workdir, force=args.force)
    elif args.mode == "eval":
      train.evaluate_checkpoint(cfg, workdir)
    else:
      if not args.input:
        print("error: --mode predict needs --input PATH (an image or a folder)", file=sys.stderr)
        return 2
      from jaxseg import predict

      predict.predict(cfg, workdir, args.input,
                      args.output or os.path.join(workdir, "predictions"))
  except ConfigError as e:  # E.g. resuming with changed settings.
    print(f"error: {e}", file=sys.stderr)
    return 2
  except train.Preempted as e:
    print(f"stopped: {e}", file=sys.stderr)
    return 3
  except train.NonFiniteError as e:
    print(f"error: {e}", file=sys.stderr)
    return 4
  # A missing or bad file, a damaged checkpoint, a workdir in use: the message names it.
  except (FileNotFoundError, DatasetError, CheckpointError, WorkdirBusyError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
