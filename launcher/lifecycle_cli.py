"""argparse wiring for the job lifecycle verbs: submit, interactive, logs, status, cancel (cli.py calls
`add_lifecycle_commands`). Each handler is thin: it parses, calls a function of lifecycle.py, prints."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

from hpcft.launcher import lifecycle, slurm


def add_lifecycle_commands(sub: argparse._SubParsersAction) -> None:
    from hpcft.launcher.cli import add_render_options

    submit = sub.add_parser(
        "submit", help="render a run directory and submit it to Slurm",
        epilog="Example: hpcft submit --profile cscs cfg.yaml --nodes 4 --follow\n"
               "         hpcft submit --profile cscs cfg.yaml --sweep learning_rate=1e-5,2e-5,5e-5",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_render_options(submit)
    submit.add_argument("-o", "--out", help="run directory to write (default runs/<job_name>/<timestamp>)")
    submit.add_argument("--follow", "-f", action="store_true",
                        help="print the job's logs until it ends; exit with the job's exit status")
    submit.add_argument("--dry-run", action="store_true", help="render and print the sbatch command only")
    submit.add_argument("--backend", choices=lifecycle.BACKENDS, default="sbatch",
                        help="sbatch (the rendered job.sbatch) or submitit (its executor, same torchrun command)")
    submit.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2,...",
                        help="one job array over the grid of all --sweep options (repeat for more keys)")
    submit.set_defaults(func=cmd_submit)

    interactive = sub.add_parser(
        "interactive", help="open a shell on a compute node in the batch job's container and environment",
        epilog="Example: hpcft interactive --profile cscs cfg.yaml --time 01:00:00")
    add_render_options(interactive, config_required=False)
    interactive.add_argument("-o", "--out", help="run directory to write (default runs/<job_name>/<timestamp>)")
    interactive.add_argument("--dry-run", action="store_true", help="print the srun command only")
    interactive.set_defaults(func=cmd_interactive)

    logs = sub.add_parser("logs", help="print (and follow) a job's logs, prefixed by node/rank")
    logs.add_argument("ref", nargs="?", default="latest", help="JOBID, RUN_DIR or 'latest' (default)")
    logs.add_argument("-f", "--follow", action="store_true", help="follow until the job ends")
    logs.add_argument("--rank", type=int, help="only this node rank (the Slurm task, SLURM_PROCID)")
    logs.add_argument("--errors", action="store_true", help="show the first traceback of the first failing rank")
    logs.set_defaults(func=cmd_logs)

    status = sub.add_parser("status", help="a table of hpcft runs: state, elapsed, restarts, last step and loss")
    status.add_argument("ref", nargs="?", help="JOBID or RUN_DIR (default: runs submitted in the last day)")
    status.add_argument("--all", action="store_true", help="every run hpcft has submitted")
    status.set_defaults(func=cmd_status)

    cancel = sub.add_parser("cancel", help="cancel a job (all tasks of a sweep)")
    cancel.add_argument("ref", help="JOBID or RUN_DIR")
    cancel.set_defaults(func=cmd_cancel)


def _command_line(args: argparse.Namespace) -> list[str]:
    return ["hpcft", *getattr(args, "argv", [])]


def cmd_submit(args: argparse.Namespace) -> int:
    from hpcft.launcher.cli import cli_launch, job_from_args

    job = job_from_args(args)
    sweep = None
    if args.sweep:
        sweep = lifecycle.load_sweep(args.config, args.profile, args.overrides, cli_launch(args), args.sweep, job)
    result = lifecycle.submit_run(job, out_dir=args.out, backend=args.backend, dry_run=args.dry_run, sweep=sweep,
                                  command_line=_command_line(args))
    if args.dry_run:
        print(shlex.join(result.command))
        print(f"run directory: {result.run_dir} (not submitted)", file=sys.stderr)
        return 0
    points = f" ({len(sweep)} array tasks)" if sweep else ""
    print(f"submitted job {result.job_id}{points}: {result.run_dir}")
    if not args.follow:
        print(f"follow it with: hpcft logs -f {result.job_id}", file=sys.stderr)
        return 0
    return lifecycle.follow_job(lifecycle.RunRef(result.job_id, result.run_dir))


def cmd_interactive(args: argparse.Namespace) -> int:
    from hpcft.launcher.cli import cli_launch, job_from_args
    from hpcft.launcher.config import load_job

    if args.config:
        job = job_from_args(args)
    else:
        # No training config: a session with the profile's environment only (a placeholder model and data).
        with tempfile.TemporaryDirectory() as tmp:
            placeholder = Path(tmp) / "interactive.yaml"
            placeholder.write_text("base_model: none\ndatasets:\n  - path: none\nlaunch:\n  job_name: interactive\n"
                                   f"output_dir: {json.dumps(str(Path.cwd()))}\n")
            job = load_job(placeholder, args.profile, overrides=args.overrides, cli_launch=cli_launch(args))
    if not args.dry_run:
        from hpcft.launcher.image import check_image

        check_image(job)
    run_dir, argv, torchrun_line = lifecycle.prepare_interactive(job, out_dir=args.out,
                                                                 command_line=_command_line(args))
    print(shlex.join(argv))
    if args.dry_run:
        return 0
    if args.config:
        print(f"hpcft: in the session, train with:\n  {torchrun_line}", file=sys.stderr)
    sys.stdout.flush()
    slurm.exec_interactive(argv)
    return 0  # not reached: the process became srun


def cmd_logs(args: argparse.Namespace) -> int:
    run = lifecycle.resolve_run(args.ref)
    if args.errors:
        return lifecycle.show_errors(run)
    code = lifecycle.follow_job(run, follow=args.follow, rank=args.rank)
    return code if args.follow else 0


def cmd_status(args: argparse.Namespace) -> int:
    runs = [lifecycle.resolve_run(args.ref)] if args.ref else lifecycle.recent_runs(args.all)
    if not runs:
        print("no hpcft runs submitted in the last day (hpcft status --all lists every one)", file=sys.stderr)
        return 0
    print(lifecycle.format_status_table(lifecycle.status_rows(runs)))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    run = lifecycle.resolve_run(args.ref)
    lifecycle.cancel_run(run)
    print(f"cancelled job {run.job_id}" + (f" ({run.run_dir})" if run.run_dir else ""))
    return 0

