"""hpcft's trainer: runs inside the job under torchrun (needs the `train` extra); train.py is the story of a run,
data/, model/, loop/, reporting/ and objectives/ its parts. May import hpcft.core; never the launcher."""
