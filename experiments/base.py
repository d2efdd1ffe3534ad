"""What experiment files share: the base config every one starts from (the library's,
jaxseg/config/run_sections.py) and the `loss=NAME` variant option.

`python run.py --exp NAME --print_config` shows a run's whole config.
"""

from __future__ import annotations

import ml_collections

from jaxseg import losses
from jaxseg.config.run_sections import get_base_config  # noqa: F401  (experiment files' import)

# Variant options shared by experiments: `--exp NAME:loss=dice` trains with that loss.
LOSS_VARIANT = {"loss": set(losses.LOSSES.names())}


def apply_loss_variant(cfg: ml_collections.ConfigDict, options: dict[str, str]) -> None:
  """Applies the `loss=NAME` variant option (parsed with LOSS_VARIANT) to `cfg`."""
  if "loss" in options:
    cfg.loss.terms = options["loss"]
