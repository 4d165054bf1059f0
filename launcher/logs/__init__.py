"""A job's logs: finding them (RunPaths), streaming them with node/rank labels, naming the first failure (torch
elastic's error files, else a log scan), and the loss curve in the terminal.

May import hpcft.core and hpcft.launcher."""
