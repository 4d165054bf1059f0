"""`python -m hpcft.trainer {train,preprocess,merge-lora,make-tiny,doctor}`: the trainer's command line in the job."""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import sys
import warnings

from hpcft.core.errors import ConfigError
from hpcft.trainer.reporting.progress import quiet_progress_bars_in_logs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hpcft.trainer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train from a rendered train.yaml (run under torchrun on every node)")
    train.add_argument("config", help="path to train.yaml")
    pre = sub.add_parser("preprocess", help="tokenize and pack the datasets into dataset_prepared_path (no GPU)")
    pre.add_argument("config", help="path to train.yaml")
    pre.add_argument(
        "--dataset-processes",
        type=int,
        metavar="N",
        help="tokenize with N processes (default: dataset_processes from the config)",
    )
    merge = sub.add_parser("merge-lora", help="merge the trained LoRA adapter into the base model")
    merge.add_argument("config", help="path to train.yaml")
    merge.add_argument("--lora-dir", help="the adapter folder (default: output_dir)")
    merge.add_argument("--out-dir", help="where to write the merged model (default: output_dir/merged)")
    tiny = sub.add_parser("make-tiny", help="write a tiny random Llama and tokenizer (demo and tests; no Hub)")
    tiny.add_argument("dir", help="folder to write the model into")
    doctor = sub.add_parser(
        "doctor", help="node health probe that `hpcft doctor` runs under torchrun on every node", add_help=False
    )
    doctor.add_argument("probe_args", nargs=argparse.REMAINDER, help="see python -m hpcft.trainer doctor --help")
    return parser


def _setup_logging() -> None:
    # Before transformers/datasets are imported: their progress bars would garble a batch job's log.
    quiet_progress_bars_in_logs()
    # Replicas log errors only: N ranks repeating every info line would bury rank 0's.
    level = logging.INFO if os.environ.get("RANK", "0") == "0" else logging.ERROR
    logging.basicConfig(level=level, format="[hpcft %(levelname)s] %(message)s", stream=sys.stderr)
    logging.getLogger("torchao").addFilter(_torchao_cuda_libraries_on_cpu)
    # torchao 0.18 registers two enums with torch's pytree the way torch 2.13 deprecates: two lines per rank per run.
    logging.getLogger("torch.utils._pytree").addFilter(lambda r: "register_constant() on Enum" not in r.getMessage())
    # DeepSpeed 0.19 calls collectives that torch 2.13 deprecates, one warning per call: thousands of log lines.
    warnings.filterwarnings("ignore", message=r"`torch\.distributed\.\w+` is deprecated", category=FutureWarning)


def _torchao_cuda_libraries_on_cpu(record: logging.LogRecord) -> bool:
    """False for torchao's "Failed to load .../_C...so" warnings on a machine without CUDA: those libraries are
    its CUDA kernels, expected not to load there (transformers imports torchao in every run once it is installed)."""
    if not record.getMessage().startswith("Failed to load"):
        return True
    import torch

    return torch.cuda.is_available()


def note_worker() -> None:
    """Next to this rank's error file, note who it is (global rank, node, host): torch's file does not say."""
    from hpcft.core.protocol import WORKER_NOTE, worker_note

    note = worker_note(dict(os.environ))
    if note is None:
        return
    path = os.path.join(os.path.dirname(os.environ["TORCHELASTIC_ERROR_FILE"]), WORKER_NOTE)
    try:
        with open(path, "w") as handle:
            json.dump(note, handle)
    except OSError as exc:  # a read-only or vanished log dir must not stop training
        logging.getLogger("hpcft.trainer").warning("could not write %s: %s", path, exc)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the sub-command, turn bad input into one line and exit code 2."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["doctor"]:  # its own options (doctor_probe.parse_args), passed through untouched
        from hpcft.trainer.doctor_probe import run

        return run(argv[1:])
    args = _parser().parse_args(argv)
    _setup_logging()
    try:
        if args.command == "train":
            from torch.distributed.elastic.multiprocessing.errors import record

            from hpcft.trainer.train import train

            note_worker()
            from hpcft.trainer.reporting.image_info import log_image

            log_image()
            # record: an exception on this rank is written to torchrun's TORCHELASTIC_ERROR_FILE (in the run
            # directory, see job.sbatch), where `hpcft logs --errors` finds the first failure of the job.
            return record(train)(args.config)
        if args.command == "preprocess":
            from hpcft.trainer.data.prepare import run_preprocess

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


def exit_before_native_teardown(code: int) -> None:
    """Leave the process once Python's own exit work is done, without the C++ libraries' teardown.

    A run that trained and saved everything was seen to die at interpreter exit with SIGABRT ("terminate called
    without an active exception": threads of torch's gloo process groups, still referenced from DeepSpeed and
    accelerate, torn down after the interpreter; pytorch/pytorch#179291 describes the race). torchrun then reports
    the rank as failed and a finished job ends FAILED. So: run the atexit handlers (logging, wandb, datasets'
    temporary files) while everything is alive, flush, and exit with the run's own code."""
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_before_native_teardown(main())
