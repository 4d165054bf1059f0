"""Data package: templates shipped inside the hpcft wheel (read with importlib.resources)."""
