"""Experiments: found by name or file, imported with one-line errors, `:variant` parsed,
and the experiment's config returned (unlocked; overrides come next)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil

import ml_collections

from jaxseg.config import experiment_errors
from jaxseg.config.run_sections import COMPONENT_SECTIONS, get_base_config
from jaxseg.errors import ConfigError
from jaxseg.registry import UnknownNameError, unknown_name_message


EXPERIMENTS_PACKAGE = "experiments"  # Next to jaxseg; `--exp NAME` imports its modules.


def experiment_names() -> list[str]:
  """The experiments `--exp NAME` finds: modules of the `experiments` package.

  `experiments` is a top-level package next to `jaxseg`, in the repository and
  in an installed copy alike (pyproject packages both), so experiment files and
  the user's own ones import `experiments.base` wherever they run. Found by name,
  as plugins are: the library never depends on an experiment.
  """
  experiments = importlib.import_module(EXPERIMENTS_PACKAGE)
  return sorted(m.name for m in pkgutil.iter_modules(experiments.__path__)
                if m.name != "base" and not m.name.startswith("_"))


def is_experiment_file(name: str) -> bool:
  """'path/to/my_exp.py' names a file; 'voc_fcn' an experiment module."""
  return name.endswith(".py") or os.sep in name or "/" in name


def run_name(spec: str) -> str:
  """'voc_fcn:smoke' -> 'voc_fcn_smoke', 'path/to/my_exp.py:smoke' -> 'my_exp_smoke'."""
  name, sep, variant = spec.partition(":")
  if is_experiment_file(name):
    name = os.path.splitext(os.path.basename(name))[0]
  return (name + "_" + variant if sep else name).replace(",", "_")


def _experiment_from_file(path: str):
  """Imports an experiment file that lives anywhere, under a name of its own."""
  full = os.path.abspath(os.path.expanduser(path))
  if not os.path.isfile(full):
    raise ConfigError(f"--exp {path}: no such experiment file (expected a .py file that "
                      "defines get_config(variant), like experiments/demo.py)")
  stem = os.path.splitext(os.path.basename(full))[0]
  spec = importlib.util.spec_from_file_location(f"_jaxseg_experiment_{stem}", full)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # noqa: BLE001  (any error of the user's file: one line, exit 2)
    raise ConfigError(experiment_errors.load_error(e, full, "importing it")) from e
  if not callable(getattr(module, "get_config", None)):
    raise ConfigError(f"{full}: defines no get_config(variant); an experiment file "
                      "returns its ConfigDict from one (see experiments/demo.py)")
  return module


def _experiment_module(name: str):
  if is_experiment_file(name):
    return _experiment_from_file(name)
  names = experiment_names()
  if name not in names:
    raise ConfigError(unknown_name_message("experiment", name, names) +
                      " (or a path to an experiment file, path/to/my_exp.py)")
  experiments = importlib.import_module(EXPERIMENTS_PACKAGE)
  try:
    return importlib.import_module(f"{EXPERIMENTS_PACKAGE}.{name}")
  except Exception as e:  # noqa: BLE001  (a broken experiment file: one line, exit 2)
    path = os.path.join(os.path.dirname(experiments.__file__), f"{name}.py")
    raise ConfigError(experiment_errors.load_error(e, path, "importing it")) from e


def experiment_variants(name: str) -> str | None:
  """'smoke, seed, loss=LOSS': the variants experiment `name` declares (its module's
  VARIANT_FLAGS and VARIANT_OPTIONS, which its get_config parses); None if undeclared."""
  module = _experiment_module(name)
  if not hasattr(module, "VARIANT_FLAGS"):
    return None
  options = getattr(module, "VARIANT_OPTIONS", {})
  return ", ".join([*sorted(module.VARIANT_FLAGS), *(f"{k}={k.upper()}" for k in sorted(options))])


def parse_variant(variant: str, known_flags: set[str], known_keys: dict[str, set[str] | None]
                  ) -> tuple[set[str], dict[str, str]]:
  """Splits 'smoke,loss=dice' into flags {'smoke'} and options {'loss': 'dice'}.

  `known_keys` maps each option to its allowed values (None = any value).
  """
  flags, options = set(), {}
  for token in filter(None, (t.strip() for t in variant.split(","))):
    key, sep, value = token.partition("=")
    if not sep:
      if key not in known_flags:
        raise ConfigError(unknown_name_message("variant", key, known_flags | set(known_keys)))
      flags.add(key)
      continue
    if key not in known_keys:
      raise ConfigError(unknown_name_message("variant option", key, known_keys))
    allowed = known_keys[key]
    if allowed is not None and value not in allowed:
      raise ConfigError(unknown_name_message(f"value for variant option {key!r}", value, allowed))
    options[key] = value
  return flags, options


def load_experiment(spec: str) -> ml_collections.ConfigDict:
  """'name[:variant]' or 'path/to/file.py[:variant]' -> the experiment's config.

  The config comes back unlocked; overrides come next.
  """
  name, _, variant = spec.partition(":")
  module = _experiment_module(name)
  path = os.path.abspath(module.__file__)
  try:
    cfg = module.get_config(variant)
  except (ConfigError, UnknownNameError):  # Already one line (e.g. an unknown variant).
    raise
  except Exception as e:  # noqa: BLE001  (a bug in the experiment file: one line, exit 2)
    raise ConfigError(experiment_errors.load_error(e, path, "in get_config")) from e
  problem = experiment_errors.bad_result(cfg, path)
  if problem is None:  # Run-level keys no run reads (`c.train.stepz = 3`) are typos.
    problem = experiment_errors.unknown_key(
        cfg, get_base_config(), set(COMPONENT_SECTIONS), path)
  if problem:
    raise ConfigError(problem)
  with cfg.unlocked():
    cfg.experiment = spec
  return cfg

