"""`python -m hpcft.trainer {train,preprocess,merge-lora,make-tiny}`: the trainer's command line inside the job."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from hpcft.launcher.errors import ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hpcft.trainer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train from a rendered train.yaml (run under torchrun on every node)")
    train.add_argument("config", help="path to train.yaml")
    pre = sub.add_parser("preprocess", help="tokenize and pack the datasets into dataset_prepared_path (no GPU)")
    pre.add_argument("config", help="path to train.yaml")
    pre.add_argument("--dataset-processes", type=int, metavar="N",
                     help="tokenize with N processes (default: dataset_processes from the config)")
    merge = sub.add_parser("merge-lora", help="merge the trained LoRA adapter into the base model")
    merge.add_argument("config", help="path to train.yaml")
    merge.add_argument("--lora-dir", help="the adapter folder (default: output_dir)")
    merge.add_argument("--out-dir", help="where to write the merged model (default: output_dir/merged)")
    tiny = sub.add_parser("make-tiny", help="write a tiny random Llama and tokenizer (demo and tests; no Hub)")
    tiny.add_argument("dir", help="folder to write the model into")
    return parser


def _setup_logging() -> None:
    # Replicas log errors only: N ranks repeating every info line would bury rank 0's.
    level = logging.INFO if os.environ.get("RANK", "0") == "0" else logging.ERROR
    logging.basicConfig(level=level, format="[hpcft %(levelname)s] %(message)s", stream=sys.stderr)
    # DeepSpeed 0.19 calls collectives that torch 2.13 deprecates, one warning per call: thousands of log lines.
    warnings.filterwarnings("ignore", message=r"`torch\.distributed\.\w+` is deprecated", category=FutureWarning)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the sub-command, turn bad input into one line and exit code 2."""
    args = _parser().parse_args(argv)
    _setup_logging()
    try:
        if args.command == "train":
            from hpcft.trainer.train import train

            return train(args.config)
        if args.command == "preprocess":
            from hpcft.trainer.prepare import run_preprocess

            run_preprocess(args.config, args.dataset_processes)
            return 0
        if args.command == "merge-lora":
            from hpcft.trainer.merge_lora import merge_lora

            print(merge_lora(args.config, args.lora_dir, args.out_dir))
            return 0
        if args.command == "make-tiny":
            from hpcft.trainer.tiny import make_tiny_model

            make_tiny_model(args.dir)
            print(args.dir)
            return 0
    except ConfigError as exc:
        print(f"hpcft: error: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
