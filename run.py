#!/usr/bin/env python
"""jaxseg command line: python run.py --exp NAME[:VARIANT] [--set key=value ...].

--exp also takes a path to an experiment file: --exp path/to/my_exp.py[:VARIANT].

Exit status: 0 done, 1 an I/O or resource error (missing file, unwritable
directory, full disk, out of memory), 2 bad config or command line (including a
config that differs from the checkpoint's on resume), 3 stopped by SIGTERM/SIGINT
after saving a checkpoint (run again to resume), 4 stopped on a NaN/Inf loss or
gradient. Errors a user can fix are one line on stderr; --debug adds the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback


def _parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--exp", default=None, help="experiment NAME[:VARIANT], or a file: "
                 "path/to/my_exp.py[:VARIANT] (default: demo; eval/predict: the checkpoint's, "
                 "a different one given is warned about)")
  p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                 help="override a config value, e.g. --set optim.lr=0.02 (repeatable)")
  p.add_argument("--workdir", default=None, help="default: runs/<exp>")
  p.add_argument("--mode", choices=("train", "eval", "predict", "browse"), default="train",
                 help="eval/predict use the checkpoint eval.checkpoint names (default: latest), "
                      "rebuilt from its own config: --set takes eval.*/predict.* keys only; "
                      "browse draws browse.count training (augmented) and val examples")
  p.add_argument("--input", default=None, help="predict: an image file or a folder of images")
  p.add_argument("--output", default=None, help="predict: output folder (default: "
                 "<workdir>/predictions); browse: (default: <workdir>/browse)")
  p.add_argument("--list", action="store_true", help="list experiments and registry names")
  p.add_argument("--print_config", action="store_true",
                 help="print the run's whole config (experiment, variant, --set) and exit")
  p.add_argument("--debug", action="store_true",
                 help="print the traceback of an error (and library logs) as well")
  p.add_argument("--force", action="store_true",
                 help="resume even if the config differs from the checkpoint's in keys "
                      "that should not change (model, optimizer, data, ...)")
  return p.parse_args(argv)


def _list() -> None:
  from jaxseg import losses, optim
  from jaxseg.config.loading import experiment_names, experiment_variants
  from jaxseg.data.augment import AUGMENTATIONS
  from jaxseg.data.datasets import dataset_names
  from jaxseg.models import model_names

  sections = {"experiments": experiment_names(), "models": model_names(),
              "datasets": dataset_names(), "losses": losses.LOSSES.names(),
              "optimizers": optim.OPTIMIZERS.names(), "schedules": optim.SCHEDULES.names(),
              "augmentations": AUGMENTATIONS.names()}
  for title, names in sections.items():
    print(f"{title}: {', '.join(names)}")
  print("variants (--exp NAME:VARIANT,...; LOSS = one of losses):")
  for name in experiment_names():
    print(f"  {name}: {experiment_variants(name) or '(none declared)'}")


class NotWritableError(OSError):
  """A directory the run must write to cannot be created or written."""


def _check_writable(path: str, what: str, read_only_ok: bool = False) -> None:
  """`path` must be a writable directory, or creatable (its nearest existing parent
  is one), so an unwritable one fails now, with its name, not after training.
  `read_only_ok`: an existing read-only directory passes (data.dir may hold
  prepared data; preparing into it reports the failed write). A URL (gs://): its
  bucket must exist and credentials be found (paths.check_url)."""
  from jaxseg import paths as jpaths

  if jpaths.is_url(path):
    jpaths.check_url(path, what)
    return
  path = os.path.abspath(os.path.expanduser(path))
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    problem = f"{existing} is not a directory"
  elif not os.access(existing, os.W_OK) and not (read_only_ok and existing == path):
    problem = f"{existing} is not writable"
  else:
    return
  flag = f"{what} DIR" if what.startswith("--") else f"--set {what}=DIR"
  raise NotWritableError(f"cannot write to {what} {path}: {problem}; pass a writable one "
                         f"({flag})")


def _user_error(e: BaseException, args, cfg, paths: dict[str, str]) -> tuple[int, str] | None:
  """(exit status, one line) for an error a user can fix; None for a bug."""
  from jaxseg.errors import EXIT_IO, EXIT_PREEMPTED, USER_ERRORS
  from jaxseg.runtime import failures

  # A bad value or flag, weights that do not fit, preemption, a non-finite loss.
  if isinstance(e, USER_ERRORS) and e.exit_status != EXIT_IO:
    return e.exit_status, f"{'stopped' if e.exit_status == EXIT_PREEMPTED else 'error'}: {e}"
  if failures.disk_full(e):
    path = failures.failed_path(e)
    if path is None:  # A plain write() names no file: name every place the run writes.
      places = " or ".join(f"{what} {p}" for what, p in paths.items())
      return EXIT_IO, f"error: disk full; free space on {places}, or choose another"
    under = sorted(((len(p), f"{what} {p}") for what, p in paths.items()
                    if os.path.abspath(path).startswith(os.path.join(os.path.abspath(p), ""))),
                   reverse=True)  # The most specific: --output inside --workdir names --output.
    where = f"{under[0][1]}, or choose another" if under else "that disk"
    return EXIT_IO, f"error: disk full writing {path}; free space on {where}"
  if isinstance(e, failures.OutOfMemoryError):
    return EXIT_IO, f"error: {e}"
  if failures.out_of_memory(e):
    keys = {"train": failures.train_keys, "eval": failures.eval_keys,
            "predict": failures.predict_keys}.get(args.mode)
    hint = f"; {keys(cfg)}" if keys else " (host memory: lower browse.count)"
    return EXIT_IO, f"error: out of memory in --mode {args.mode}{hint}"
  # A dataset or checkpoint that cannot be used, a workdir in use, an unwritable path
  # (after the checks above: a full disk under them is named as such).
  if isinstance(e, (*USER_ERRORS, NotWritableError)):
    return EXIT_IO, f"error: {e}"
  if isinstance(e, OSError):  # A missing or unreadable file: name it.
    if e.errno is None or not e.filename:
      return EXIT_IO, f"error: {e}"
    return EXIT_IO, f"error: {e.strerror}: {e.filename}"
  return None


def main(argv=None) -> int:
  args = _parse_args(argv)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  from absl import flags, logging

  # grain's worker processes read absl flags; mark them parsed outside absl.app.
  flags.FLAGS.mark_as_parsed()
  # tfds' info chatter would break the progress bar, and orbax logs every failed
  # write before raising it: the one-line error below says it all (--debug: shown).
  logging.set_verbosity(logging.ERROR if args.debug else logging.FATAL)
  from jaxseg.runtime import compile_cache, distributed

  compile_cache.enable()  # Before anything compiles: eval/predict/resume reuse programs.
  distributed.initialize()  # Before any jax backend starts (multi-process runs only).
  if distributed.jax.distributed.is_initialized():  # Several processes: gloo's chatter.
    distributed.silence_native_stdout()
  if args.list:
    _list()
    return 0
  cfg, paths = None, {}
  try:
    from jaxseg.config.loading import run_name
    from jaxseg.config.resolve import build_config

    explicit_exp, args.exp = args.exp is not None, args.exp or "demo"
    cfg = build_config(args.exp, args.overrides)
    if args.print_config:
      from jaxseg.config.resolve import config_lines

      print("\n".join(config_lines(cfg)))
      return 0
    if args.mode != "train" and not explicit_exp:  # The checkpoint's own one is used.
      cfg.experiment = ""  # Nothing to compare it with (config/from_checkpoint.py).
    workdir = args.workdir or os.path.join("runs", run_name(args.exp))
    paths = {"--workdir": workdir, "data.dir": os.path.expanduser(cfg.data.dir)}
    from jaxseg.paths import resolve

    resolve(workdir, "--workdir")  # An unknown URL scheme: refused, never a local folder.
    return _run(args, cfg, workdir, paths)
  except Exception as e:  # noqa: BLE001  (re-raised unless a user can fix it)
    failure = _user_error(e, args, cfg, paths)
    if failure is None:
      raise
    if args.debug:
      traceback.print_exc()
  # Printed after the except block has let go of the failed frames, whose progress
  # bars print their last state as they close: the error stays the last line.
  status, line = failure
  print(line, file=sys.stderr)
  return status


def _run(args, cfg, workdir: str, paths: dict[str, str]) -> int:
  # Each mode checks its batch sizes against the devices once, before any data: eval
  # and predict on the checkpoint's config, which is the one in effect there.
  if args.mode == "browse":  # Reads data only: no device batch to split.
    output = args.output
    if output is not None:
      paths["--output"] = output
    _check_writable(output or workdir, "--output" if output else "--workdir")
    _check_writable(cfg.data.dir, "data.dir", read_only_ok=True)
    from jaxseg.data import browse

    for path in browse.browse(cfg, workdir, output):
      print(path)
    return 0

  if args.mode == "predict":
    if not args.input:
      print("error: --mode predict needs --input PATH (an image or a folder)", file=sys.stderr)
      return 2
    output = args.output or os.path.join(workdir, "predictions")
    paths.clear()  # Predict reads --workdir and never data.dir: it writes --output alone.
    paths["--output"] = output
    _check_writable(output, "--output")
    from jaxseg.prediction import predict

    predict.predict(cfg, workdir, args.input, output, args.overrides)
    return 0
  _check_writable(workdir, "--workdir")
  _check_writable(cfg.data.dir, "data.dir", read_only_ok=True)
  if args.mode == "train":
    from jaxseg.training import train

    train.train_and_evaluate(cfg, workdir, force=args.force)
  else:
    from jaxseg.evaluation import eval_mode

    eval_mode.evaluate_checkpoint(cfg, workdir, args.overrides)
  return 0


if __name__ == "__main__":
  sys.exit(main())
