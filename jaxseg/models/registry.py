"""MODELS: model name -> factory `(num_classes, *, <its model keys>) -> nn.Module`.

A leaf module so that model files can register themselves without importing the
`jaxseg.models` package they belong to; read it through `jaxseg.models`, which
imports every model module and so holds every name.
"""

from __future__ import annotations

from jaxseg.registry import Registry

MODELS: Registry = Registry("model")
