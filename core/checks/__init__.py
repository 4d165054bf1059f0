"""Login-node checks of what a config points at, so that a job does not fail on the node after the queue wait:
dataset file heads, chat templates, DeepSpeed JSON, checkpoints, scheduler kwargs, Slurm log options.

May import hpcft.core only.
"""
