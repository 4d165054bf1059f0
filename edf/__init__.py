"""Data package: edf shipped inside the hpcft wheel (read with importlib.resources)."""
