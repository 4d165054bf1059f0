"""One module per feature's configuration: its typed settings, its rules, and the torch-free facts about it that
both the login node and the trainer need (the DeepSpeed preset, the parallel layout, which data fields a type needs).

May import hpcft.core only.
"""
