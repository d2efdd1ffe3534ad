"""Evaluation: inference (whole, sliding window, multi-scale + flip), metrics,
the evaluation loop and `--mode eval`, and the reports."""
