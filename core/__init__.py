"""hpcft's core: the training config's schema, its validation and rules, and the names both sides share (files,
environment variables, the manifest), plus a torch-free loader of a resolved train.yaml.

Imported by the launcher (login node) and the trainer (compute node); imports nothing else of hpcft.
"""
