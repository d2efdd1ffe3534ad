"""Experiment files: each module's `get_config(variant)` returns a ConfigDict."""
