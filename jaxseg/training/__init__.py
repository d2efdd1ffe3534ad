"""Training: the loop, its jitted steps, the train state, optimizers and
schedules, preemption, and what `--force` may change on resume."""
