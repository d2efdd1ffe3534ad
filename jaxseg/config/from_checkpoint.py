"""The config of a checkpoint's run, rebuilt for `--mode eval` and `--mode predict`.

The saved values go over the saved experiment's current config, the component
sections are filled as at load (config.fill_sections, keys no longer read
dropped), and `--set` may change only how to infer and where the data lives.
"""

from __future__ import annotations

import sys

import ml_collections

from jaxseg.config.loading import load_experiment
from jaxseg.config.migrate import migrate
from jaxseg.config.overrides import flat_dict, flat_keys
from jaxseg.config.resolve import apply_overrides, component_sections, fill_sections, validate
from jaxseg.config.run_sections import get_base_config
from jaxseg.errors import ConfigError
from jaxseg.registry import UnknownNameError

# What `--set` may change when eval or predict rebuild a run from its checkpoint:
# how to infer and where the data lives. Anything else would describe another
# model than the one whose weights are restored.
CHECKPOINT_SETTABLE_PREFIXES = ("eval.", "predict.")
# data.folder.root: a folder dataset's prepared name pins its content, not its path,
# so the same data evaluates from wherever it was moved to.
CHECKPOINT_SETTABLE_KEYS = ("data.dir", "data.manual_dir", "data.worker_count",
                            "data.folder.root")


def _as_tuples(value):
  """JSON lists back to the tuples configs are written with (nested too)."""
  return tuple(_as_tuples(v) for v in value) if isinstance(value, list) else value


def config_from_checkpoint(saved: dict, overrides: list[str] = (), requested: str = ""
                           ) -> ml_collections.ConfigDict:
  """The locked config of a checkpoint's run, with `--set` overrides of inference keys.

  The saved values go over the saved experiment's current config, so a key
  added since the checkpoint was written takes its default. An override of any
  other key is refused (ConfigError naming it) unless it equals the saved value,
  so a training command line can be reused with `--mode eval`. `requested`: the
  `--exp` given; one that is not the checkpoint's experiment is said (a warning), as
  the checkpoint's own config is what runs.
  """
  if requested and saved.get("experiment") and requested != saved["experiment"]:
    from jaxseg.runtime import distributed

    if distributed.is_main_process():
      print(f"warning: --exp {requested} is not the checkpoint's experiment "
            f"({saved['experiment']}); using the checkpoint's own config", file=sys.stderr,
            flush=True)
  try:
    cfg = load_experiment(saved.get("experiment", ""))
  except (ConfigError, UnknownNameError):  # Renamed or removed since: the shared defaults.
    cfg = get_base_config()
  # A component section is the checkpoint's (over the experiment's values, so a key
  # added since takes the experiment's value or its default); elsewhere only keys
  # this version still has are taken. Keys no longer read anywhere are dropped.
  components = {section.name for section in component_sections()}
  template = set(flat_keys(cfg))
  for key, value in migrate(flat_dict(saved)).items():
    head = key.split(".")[0]
    if key in template or (head in components and "." in key):
      *parents, leaf = key.split(".")
      node = cfg
      for parent in parents:  # A component's group the experiment does not set is made.
        if parent not in node:
          node[parent] = ml_collections.ConfigDict()
        node = node[parent]
        if not isinstance(node, ml_collections.ConfigDict):
          break
      if not isinstance(node, ml_collections.ConfigDict):
        continue  # An old key whose parent is now a value: no longer read.
      value = _as_tuples(value)
      if leaf in node and isinstance(node[leaf], float) and isinstance(value, int):
        value = float(value)
      try:
        node[leaf] = value
      except TypeError:  # ml_collections keeps each key's type; the meaning changed since.
        raise ConfigError(f"the checkpoint's {key}={value!r} does not fit this version's "
                          f"config (now {node[leaf]!r})") from None
  fill_sections(cfg, "the checkpoint's config", drop_unknown=True)
  restored = flat_dict(cfg.to_dict())
  apply_overrides(cfg, list(overrides))
  for key, value in flat_dict(cfg.to_dict()).items():
    settable = key.startswith(CHECKPOINT_SETTABLE_PREFIXES) or key in CHECKPOINT_SETTABLE_KEYS
    if value != restored[key] and not settable:
      raise ConfigError(
          f"--set {key}: eval and predict rebuild the model from the checkpoint's config "
          f"(which has {key}={restored[key]!r}); only eval.*, predict.* and "
          f"{', '.join(CHECKPOINT_SETTABLE_KEYS)} may be set")
  cfg.lock()
  validate(cfg)
  return cfg
