"""Data package: configs shipped inside the hpcft wheel (read with importlib.resources)."""
