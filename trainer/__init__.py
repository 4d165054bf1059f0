"""hpcft's trainer: runs inside the job under torchrun (needs the `train` extra)."""
