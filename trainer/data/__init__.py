"""The data path in the job: load each dataset, format and tokenize it (masking labels), deduplicate, pack, and
cache the result by content (prepare.py); streaming reads while training. May import hpcft.core and hpcft.trainer."""
