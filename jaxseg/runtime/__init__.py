"""What a run stands on: building its parts, checkpoints, the workdir and its
lock, devices and processes, failures, logs, costs, profiles and caches."""
