"""`hub_model_id`: upload the trained model (or adapter) to the Hugging Face Hub once training is done.

Compute nodes often have no internet. The push comes after the model is saved, so when the Hub cannot be reached
the run still ends with the trained model in output_dir and one error saying how to upload it by hand.
"""

from __future__ import annotations

import logging
import os
import socket

from hpcft.core.schema import TrainConfig
from hpcft.trainer.data.data_sources import hub_reachable

log = logging.getLogger("hpcft.trainer")

# Checkpoints and hpcft's own run files stay local; the Hub gets what from_pretrained needs.
NOT_PUSHED = ["checkpoint-*", "checkpoint-*/**", "metrics.jsonl", "stacks/**", "merged/**", "runs/**"]


def push_to_hub(cfg: TrainConfig) -> str | None:
    """Upload output_dir to hub_model_id; returns an error message (nothing raised) when it cannot."""
    repo, folder = cfg.hub_model_id, cfg.output_dir
    by_hand = (
        f"the trained model is kept in {folder}; upload it from a machine with internet: hf upload {repo} {folder}"
    )
    if not hub_reachable():
        return f"hub_model_id: the Hugging Face Hub is unreachable from {socket.gethostname()}; {by_hand}"
    if not (os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")):
        log.warning("hub_model_id: no HF_TOKEN in the job's environment; trying the token cached by `hf auth login`")
    from huggingface_hub import HfApi

    try:
        api = HfApi()
        api.create_repo(repo, private=bool(cfg.hub_private_repo), exist_ok=True)
        api.upload_folder(
            repo_id=repo, folder_path=folder, ignore_patterns=NOT_PUSHED, commit_message="Trained with hpcft"
        )
    except Exception as exc:  # any Hub or network failure: keep the model, say why
        return f"hub_model_id: pushing to {repo} failed ({str(exc).splitlines()[0]}); {by_hand}"
    log.info("pushed %s to the Hugging Face Hub as %s", folder, repo)
    return None
