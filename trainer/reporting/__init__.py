"""What a run reports: the metrics line and metrics.jsonl, trackers (SwanLab, the /metrics endpoint), progress
bars, in-training evaluation and sample records. May import hpcft.core and hpcft.trainer."""
