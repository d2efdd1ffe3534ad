"""Losses: the LOSSES registry, completed here by importing every module that
registers into it (pixel losses; Dice, Tversky, Lovász), and the `loss` section's
combination of them.

Every loss takes (logits_BHWC f32, labels_BHW int, valid_BHW bool) and its own
`loss` keys as keyword-only parameters, and returns a scalar; ignored pixels
never contribute and an all-ignore batch gives loss 0 with finite gradients.
Adding a loss: a registered function in pixel.py or region.py (or a new module
imported here), its test, and its line in docs/losses_metrics.md.
"""

from jaxseg.losses import pixel, region  # noqa: F401  (each registers its losses)
from jaxseg.losses.base import LOSSES  # noqa: F401
from jaxseg.losses.combine import (  # noqa: F401
    SECTION, make_loss, parse_terms, term, validate_config)
