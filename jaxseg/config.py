"""Experiments: load by name or file (with variant), apply typed `--set` overrides, lock."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import pkgutil

import ml_collections

from jaxseg import experiment_errors
from jaxseg.registry import UnknownNameError, unknown_name_message


class ConfigError(ValueError):
  """A bad experiment name, variant or override; the message says what is valid."""


def experiment_names() -> list[str]:
  """The experiments `--exp NAME` finds: modules of the `experiments` package.

  `experiments` is a top-level package next to `jaxseg`, in the repository and
  in an installed copy alike (pyproject packages both), so experiment files and
  the user's own ones import `experiments.base` wherever they run.
  """
  import experiments

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
  import experiments

  try:
    return importlib.import_module(f"experiments.{name}")
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
    from experiments.base import get_base_config

    problem = experiment_errors.unknown_key(
        cfg, get_base_config(), {s.name for s in component_sections()}, path)
  if problem:
    raise ConfigError(problem)
  with cfg.unlocked():
    cfg.experiment = spec
  return cfg


def flat_keys(cfg: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  keys = []
  for key, value in cfg.items():
    path = f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict):
      keys.extend(flat_keys(value, path + "."))
    else:
      keys.append(path)
  return keys


def _parse_value(text: str, current, key: str):
  """Parses `text` to the type of the existing value (the config fixes each key's type)."""
  if isinstance(current, bool):
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
      return True
    if lowered in ("false", "0", "no"):
      return False
    raise ConfigError(f"--set {key}={text}: expected a bool (true/false)")
  if isinstance(current, str):
    return text
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    raise ConfigError(f"--set {key}={text}: expected a {type(current).__name__} "
                      f"like {current!r}") from None
  if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if isinstance(current, (tuple, list)):
    value = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if current and value and type(current[0]) is float:
      value = tuple(float(v) for v in value)
    return type(current)(value)
  if current is not None and type(value) is not type(current):
    raise ConfigError(f"--set {key}={text}: expected a {type(current).__name__} "
                      f"like {current!r}, got {type(value).__name__}")
  return value


def component_sections() -> list:
  """The sections filled from their chosen components' signatures (jaxseg/sections.py)."""
  # Lazy: the components import jax; config loading stays light otherwise.
  from jaxseg import losses, models, optim
  from jaxseg.data import augment, datasets

  return [datasets.SECTION, augment.SECTION, models.SECTION, losses.SECTION, optim.SECTION]


def _unknown_key(cfg: ml_collections.ConfigDict, key: str) -> str:
  """Why `key` is not in `cfg`: another component's key, or a typo (the closest keys)."""
  head, _, leaf = key.partition(".")
  for section in component_sections():
    if section.name == head and leaf and "." not in leaf:
      return section.inapplicable(leaf, cfg[head])
  return unknown_name_message("config key", key, flat_keys(cfg))


def apply_overrides(cfg: ml_collections.ConfigDict, overrides: list[str]) -> ml_collections.ConfigDict:
  """Applies 'a.b=value' strings in order; unknown keys fail with the closest ones."""
  keys = flat_keys(cfg)
  for override in overrides:
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep:
      raise ConfigError(f"--set {override!r}: expected KEY=VALUE, e.g. optim.lr=0.01")
    if key not in keys:
      raise ConfigError(_unknown_key(cfg, key))
    *parents, leaf = key.split(".")
    node = cfg
    for parent in parents:
      node = node[parent]
    node[leaf] = _parse_value(text, node[leaf], key)
  return cfg


def fill_sections(cfg: ml_collections.ConfigDict, where: str, drop_unknown: bool = False) -> None:
  """Replaces each component section of the (unlocked) `cfg` by its filled form:
  exactly the keys its chosen components take (sections.Section.fill)."""
  try:
    for section in component_sections():
      cfg[section.name] = section.fill(cfg[section.name].to_dict(), where, drop_unknown)
  except (ValueError, UnknownNameError) as e:
    raise ConfigError(str(e)) from None


def _is_choice(override: str) -> bool:
  key = override.partition("=")[0].strip()
  return any(key in section.choice_keys() for section in component_sections())


def build_config(spec: str, overrides: list[str] = ()) -> ml_collections.ConfigDict:
  """The locked config of one run: experiment, then overrides."""
  try:
    cfg = load_experiment(spec)
  except UnknownNameError as e:  # Raised by registries consulted inside get_config.
    raise ConfigError(str(e)) from None
  # Choices first: they decide which keys the sections have; then the other keys.
  overrides = list(overrides)
  apply_overrides(cfg, [o for o in overrides if _is_choice(o)])
  fill_sections(cfg, f"experiment {spec}")
  apply_overrides(cfg, [o for o in overrides if not _is_choice(o)])
  cfg.lock()
  validate(cfg)
  return cfg


def validate(cfg: ml_collections.ConfigDict) -> None:
  """Checks every section's values (names, enums, shapes, ranges), so a bad value
  stops the run at load, before any data preparation; each section's checks live
  with the component that reads it."""
  from jaxseg import browse, inference, losses, models, optim, predict, train
  from jaxseg.checks import check_representable
  from jaxseg.data import augment, datasets
  from jaxseg.models import weights

  checks = [("data", datasets.validate_config), ("augment", augment.validate_config),
            ("model", models.validate_config), ("model", weights.validate_config),
            ("loss", losses.validate_config), ("optim", optim.validate_config),
            ("train", train.validate_config), ("eval", inference.validate_config),
            ("predict", predict.validate_config), ("browse", browse.validate_config)]
  try:
    check_representable(flat_dict(cfg.to_dict()))  # Every number, whatever reads it.
    for section, validate_section in checks:
      validate_section(cfg[section])
  except (ValueError, UnknownNameError) as e:
    raise ConfigError(str(e)) from None


# Which global batch sizes each run mode splits over the devices.
BATCH_KEYS = {"train": ("train.batch_size", "eval.batch_size"), "eval": ("eval.batch_size",),
              "predict": ("predict.batch_size",)}


def validate_batch_sizes(cfg: ml_collections.ConfigDict, mode: str, num_devices: int,
                         num_processes: int) -> None:
  """Global batches must split evenly over every device and process (and, for
  training, each of train.grad_accum_steps micro-batches over the devices)."""
  where = f"{num_devices} devices ({num_processes} process{'es' * (num_processes != 1)})"
  for key in BATCH_KEYS[mode]:
    section, leaf = key.split(".")
    batch = cfg[section][leaf]
    if batch % num_devices or batch % num_processes:
      raise ConfigError(f"{key}={batch} must be divisible by the {where}; "
                        f"e.g. --set {key}={max(batch // num_devices, 1) * num_devices}")
  accum = cfg.train.grad_accum_steps
  if mode == "train" and cfg.train.batch_size % (accum * num_devices):
    raise ConfigError(f"train.batch_size={cfg.train.batch_size} must be divisible by "
                      f"train.grad_accum_steps={accum} x {where} = {accum * num_devices}")


def flat_dict(tree: dict, prefix: str = "") -> dict:
  """{'a.b': value} of a nested dict (e.g. `cfg.to_dict()` or a saved config)."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(flat_dict(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat
