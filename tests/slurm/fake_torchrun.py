"""Stands in for `python -m torch.distributed.run ... -m hpcft.trainer train train.yaml` in the Slurm tests.

The test profile points `python:` at a wrapper that runs this file, so a rendered job.sbatch runs unchanged
through sbatch and srun on both nodes, but in a fraction of a second and without torch. It reports where it
runs, can sleep, fail on one rank with a real traceback, exit with a chosen code, write metrics.jsonl, and show
the environment it got (HPCFT_FAKE_SHOW_ENV=A,B prints values; HPCFT_FAKE_HASH_ENV=A,B prints sha256 digests, for
secrets that must arrive without being printed).
"""

import hashlib
import json
import os
import socket
import sys
import time

import yaml


def main(argv: list[str]) -> int:
    opts = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    train_yaml = argv[-1]
    # torchrun gets no --node_rank (c10d numbers the nodes as they join); with no rendezvous, the fake takes
    # Slurm's task number.
    rank = int(opts.get("node_rank", os.environ.get("SLURM_PROCID", "-1")))
    print(
        f"fake-torchrun host={socket.gethostname()} SLURM_PROCID={os.environ.get('SLURM_PROCID')} "
        f"node_rank={rank} nnodes={opts.get('nnodes')} rdzv={opts.get('rdzv_endpoint')} "
        f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')} train_yaml={train_yaml}",
        flush=True,
    )
    for name in filter(None, os.environ.get("HPCFT_FAKE_SHOW_ENV", "").split(",")):
        print(f"env {name}={os.environ.get(name)}", flush=True)
    for name in filter(None, os.environ.get("HPCFT_FAKE_HASH_ENV", "").split(",")):
        print(f"sha256 {name}={hashlib.sha256(os.environ.get(name, '').encode()).hexdigest()}", flush=True)
    with open(train_yaml) as handle:
        output_dir = yaml.safe_load(handle).get("output_dir")
    steps = int(os.environ.get("HPCFT_FAKE_STEPS", "3"))
    sleep = float(os.environ.get("HPCFT_FAKE_SLEEP", "0"))
    if rank == 0 and output_dir:
        os.makedirs(output_dir, exist_ok=True)
    for step in range(1, steps + 1):
        if rank == 0 and output_dir:
            with open(os.path.join(output_dir, "metrics.jsonl"), "a") as handle:
                handle.write(json.dumps({"step": step, "loss": round(2.0 / step, 4)}) + "\n")
        print(f"step {step} on rank {rank}", flush=True)
        time.sleep(sleep / steps)
    if str(rank) == os.environ.get("HPCFT_FAKE_FAIL_RANK"):
        raise ValueError(f"fake failure on node rank {rank}")
    return int(os.environ.get("HPCFT_FAKE_EXIT", "0"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
