"""Data package: cluster_profiles shipped inside the hpcft wheel (read with importlib.resources)."""
