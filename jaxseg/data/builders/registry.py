"""DATASETS: dataset name -> tfds builder class.

A leaf module, so builder files can register themselves without importing
`jaxseg.data.datasets`; read it through that module, which imports every
builder and so holds every name.
"""

from __future__ import annotations

from jaxseg.registry import Registry

DATASETS: Registry = Registry("dataset")
