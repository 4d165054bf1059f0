"""The training loop around the Trainer: its arguments, optimizers and schedule, checkpoints and resume, the
distributed set-up, elastic restarts, fault injection, the stop file and the hang watchdog. May import hpcft.core and
hpcft.trainer."""
