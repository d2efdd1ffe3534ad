"""Configs: experiment files loaded, overridden, filled from the components'
declarations, checked and locked; a checkpoint's config for eval and predict."""
