"""One run's config: the experiment, `--set` overrides (choices first), the component
sections filled from the chosen components' declarations, every value checked,
locked. Also the batch sizes checked against the devices a run finds."""

from __future__ import annotations

import ml_collections

from jaxseg.config import run_sections
from jaxseg.config.checks import check_representable
from jaxseg.config.loading import load_experiment
from jaxseg.config.overrides import flat_dict, flat_keys, parse_value
from jaxseg.errors import ConfigError
from jaxseg.registry import UnknownNameError, unknown_name_message


def component_sections() -> list:
  """The sections filled from their chosen components' signatures (jaxseg/config/sections.py)."""
  # Lazy: the components import jax; config loading stays light otherwise.
  from jaxseg import losses, models, optim
  from jaxseg.data import augment, datasets

  return [datasets.SECTION, augment.SECTION, models.SECTION, losses.SECTION, optim.SECTION]


def _unknown_key(cfg: ml_collections.ConfigDict, key: str) -> str:
  """Why `key` is not in `cfg`: another component's key, or a typo (the closest keys)."""
  head, _, leaf = key.partition(".")
  for section in component_sections():
    if section.name == head and leaf:
      return section.inapplicable(leaf, cfg[head])
  return unknown_name_message("config key", key, flat_keys(cfg))


def apply_overrides(cfg: ml_collections.ConfigDict, overrides: list[str]
                    ) -> ml_collections.ConfigDict:
  """Applies 'a.b=value' strings in order; unknown keys fail with the closest ones."""
  keys = flat_keys(cfg)
  for override in overrides:
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep:
      raise ConfigError(f"--set {override!r}: expected KEY=VALUE, e.g. optim.lr=0.01")
    if key not in keys:
      inside = [k for k in keys if k.startswith(key + ".")]
      if inside:  # A group (model.backbone): its keys are set one by one.
        raise ConfigError(f"--set {override!r}: {key} is a group; set its keys one by "
                          f"one: {', '.join(inside)}")
      raise ConfigError(_unknown_key(cfg, key))
    *parents, leaf = key.split(".")
    node = cfg
    for parent in parents:
      node = node[parent]
    node[leaf] = parse_value(text, node[leaf], key)
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
  stops the run at load, before any data preparation. A component section's checks
  live with its component (imported here, lazily: components import jax); the run
  sections' beside their defaults in run_sections.py."""
  from jaxseg import losses, models, optim
  from jaxseg.data import augment, datasets
  from jaxseg.models import weights

  checks = [("data", datasets.validate_config), ("augment", augment.validate_config),
            ("model", models.validate_config), ("model", weights.validate_config),
            ("loss", losses.validate_config), ("optim", optim.validate_config),
            ("train", run_sections.validate_train), ("eval", run_sections.validate_eval),
            ("predict", run_sections.validate_predict), ("browse", run_sections.validate_browse)]
  try:
    check_representable(flat_dict(cfg.to_dict()))  # Every number, whatever reads it.
    for section in component_sections():  # Each argument as its component declares it.
      section.check(cfg[section.name])
    for section, validate_section in checks:
      validate_section(cfg[section])
  except (ValueError, UnknownNameError) as e:
    raise ConfigError(str(e)) from None


def config_lines(cfg: ml_collections.ConfigDict) -> list[str]:
  """`key = value` of every key (`--print_config`), each component argument followed
  by its meaning and range as its component declares them."""
  meanings = {}
  for section in component_sections():
    meanings.update(section.meanings(cfg[section.name]))
  lines = []
  for key, value in flat_dict(cfg.to_dict()).items():
    line = f"{key} = {value!r}"
    lines.append(f"{line:<48}  # {meanings[key]}" if key in meanings else line)
  return lines


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

