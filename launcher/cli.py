"""The `hpcft` command line: all of its argparse wiring. Each handler is thin: it parses, calls a plain function
of a launcher module, prints. Nothing here imports torch; heavy modules are imported by the handler that needs them.
Longer than most modules on purpose: every verb's options are here, in one place, and nowhere else."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from hpcft.core.errors import ConfigError
from hpcft.launcher import __version__
from hpcft.launcher.resolve_path import current_folder

# Command-line job options and the launch keys they set (command line wins over profile and config).
LAUNCH_OPTIONS = {
    "nodes": int,
    "time": str,
    "partition": str,
    "account": str,
    "job_name": str,
    "gpus_per_node": int,
    "procs_per_node": int,
    "cpus_per_task": int,
    "mem": str,
    "image": str,
    "qos": str,
}


def add_render_options(parser: argparse.ArgumentParser, config_required: bool = True) -> None:
    """Options shared by render, validate, submit and interactive."""
    parser.add_argument("config", nargs=None if config_required else "?", help="training config (YAML)")
    parser.add_argument("--profile", "-p", required=True, help="cluster profile (see `hpcft profiles list`)")
    for key, kind in LAUNCH_OPTIONS.items():
        flag = "--" + key.replace("_", "-")
        parser.add_argument(flag, dest=f"launch_{key}", type=kind, metavar=key.upper(), help=f"job option launch.{key}")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (also accepted as a bare KEY=VALUE argument)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse config keys that have no effect (keys axolotl lacks too) instead of warning",
    )


def split_overrides(args: argparse.Namespace, extra: list[str]) -> None:
    """Bare KEY=VALUE words after the config are overrides; anything else is a usage error."""
    for word in extra:
        if "=" not in word or word.startswith("-"):
            raise ConfigError(f"unrecognized argument '{word}'; overrides look like key=value (e.g. lr=1e-5)")
        args.overrides.append(word)


def cli_launch(args: argparse.Namespace) -> dict:
    return {
        key: getattr(args, f"launch_{key}")
        for key in LAUNCH_OPTIONS
        if getattr(args, f"launch_{key}", None) is not None
    }


def job_from_args(args: argparse.Namespace):
    """Load and validate the job the arguments describe (prints warnings to stderr)."""
    from hpcft.launcher.config import load_job

    job = load_job(
        args.config,
        args.profile,
        overrides=args.overrides,
        cli_launch=cli_launch(args),
        strict=getattr(args, "strict", False),
    )
    for warning in job.warnings:
        print(f"hpcft: warning: {warning}", file=sys.stderr)
    return job


def cmd_render(args: argparse.Namespace) -> int:
    from hpcft.launcher.render import render_run_dir

    job = job_from_args(args)
    run_dir = render_run_dir(job, out_dir=args.out, command_line=["hpcft", *args.argv])
    print(run_dir)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    if args.profile:
        job_from_args(args)
    else:
        from hpcft.core.yaml_config import load_train_yaml

        warnings: list[str] = []
        load_train_yaml(args.config, strict=args.strict, warnings=warnings)
        for warning in warnings:
            print(f"hpcft: warning: {warning}", file=sys.stderr)
    print(f"{args.config}: OK")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from hpcft.launcher.estimates.forecast import format_forecast, make_forecast

    job = job_from_args(args)
    forecast = make_forecast(
        job, tokens_per_s=args.tokens_per_s, gpu_memory_gib=args.gpu_memory_gib, model_config=args.model_config
    )
    print(format_forecast(job, forecast))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from hpcft.launcher.jobs.doctor import doctor_job, run_doctor

    job = doctor_job(args.profile, args.config, args.overrides, cli_launch(args))
    for warning in job.warnings:
        print(f"hpcft: warning: {warning}", file=sys.stderr)
    code, report = run_doctor(
        job,
        max_mib=args.max_mib,
        write_mib=args.write_mib,
        iters=args.iters,
        out_dir=args.out,
        command_line=["hpcft", *args.argv],
    )
    print(report)
    return code


def cmd_profiles(args: argparse.Namespace) -> int:
    from hpcft.launcher.profiles import available_profiles, load_profile, profile_as_yaml

    # As `git branch`: no verb lists them; a name alone shows that profile.
    if args.action not in (None, "list", "show"):
        args.action, args.name = "show", args.action
    if args.action in (None, "list"):
        for name, source in available_profiles().items():
            try:
                description = load_profile(name).description
            except ConfigError as exc:  # one broken profile of the user's hides none of the others
                print(f"hpcft: warning: profile '{name}' cannot be used: {exc}", file=sys.stderr)
                continue
            print(f"{name:12s} {description}  [{source}]")
        return 0
    if not args.name:
        raise ConfigError("`hpcft profiles show` needs a profile name, e.g. `hpcft profiles show cscs`")
    print(profile_as_yaml(load_profile(args.name)), end="")
    return 0


def cmd_reference(args: argparse.Namespace) -> int:
    from hpcft.launcher.reference import config_reference_markdown

    print(config_reference_markdown(), end="")
    return 0


def add_lifecycle_commands(sub: argparse._SubParsersAction) -> None:
    """submit, interactive, logs, status, cancel."""
    submit = sub.add_parser(
        "submit",
        help="render a run directory and submit it to Slurm",
        epilog="Example: hpcft submit --profile cscs cfg.yaml --nodes 4 --follow\n"
        "         hpcft submit --profile cscs cfg.yaml --sweep learning_rate=1e-5,2e-5,5e-5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_render_options(submit)
    submit.add_argument("-o", "--out", help="run directory to write (default runs/<job_name>/<timestamp>)")
    submit.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="print the job's logs until it ends; exit with the job's exit status",
    )
    submit.add_argument("--dry-run", action="store_true", help="render and print the sbatch command only")
    submit.add_argument(
        "--backend",
        choices=("sbatch", "submitit"),  # submit.BACKENDS, spelled here so that --help does not load it
        default="sbatch",
        help="sbatch (the rendered job.sbatch) or submitit (its executor, same torchrun command)",
    )
    submit.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="one job array over the grid of all --sweep options (repeat for more keys)",
    )
    submit.set_defaults(func=cmd_submit)

    interactive = sub.add_parser(
        "interactive",
        help="open a shell on a compute node in the batch job's container and environment",
        epilog="Example: hpcft interactive --profile cscs cfg.yaml --time 01:00:00",
    )
    add_render_options(interactive, config_required=False)
    interactive.add_argument("-o", "--out", help="run directory to write (default runs/<job_name>/<timestamp>)")
    interactive.add_argument("--dry-run", action="store_true", help="print the srun command only")
    interactive.set_defaults(func=cmd_interactive)

    logs = sub.add_parser("logs", help="print (and follow) a job's logs, prefixed by node/rank")
    logs.add_argument("ref", nargs="?", default="latest", help="JOBID, RUN_DIR or 'latest' (default)")
    logs.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="follow until the job ends, starting from the last 10 lines (see --tail, --all)",
    )
    logs.add_argument(
        "--tail", type=int, metavar="N", help="only the last N lines of each log file (read from its end)"
    )
    logs.add_argument("--all", action="store_true", help="with -f: print the whole log first, not its last lines")
    logs.add_argument("--rank", type=int, help="only this node rank (the Slurm task, SLURM_PROCID)")
    logs.add_argument(
        "--grep",
        metavar="PATTERN",
        help="only lines matching this Python regular expression (the [host/rank] label excluded)",
    )
    logs.add_argument(
        "--errors",
        action="store_true",
        help="the first failure: rank, host and traceback (from torch's error files, else the logs), "
        "and how many ranks failed after it",
    )
    logs.set_defaults(func=cmd_logs)

    status = sub.add_parser("status", help="a table of hpcft runs: state, elapsed, restarts, last step and loss")
    status.add_argument("ref", nargs="?", help="JOBID or RUN_DIR (default: runs submitted in the last day)")
    status.add_argument("--all", action="store_true", help="every run hpcft has submitted")
    status.add_argument("--no-plot", action="store_true", help="with a RUN: the table only, no loss curve")
    status.set_defaults(func=cmd_status)

    plot = sub.add_parser(
        "plot",
        help="draw a run's loss and learning-rate curve into a PNG (also while it runs)",
        epilog="Example: hpcft plot latest -o loss.png",
    )
    plot.add_argument(
        "ref", nargs="?", default="latest", help="JOBID, RUN_DIR, a training output_dir, or 'latest' (default)"
    )
    plot.add_argument("-o", "--out", help="PNG to write (default: loss.png in the run directory)")
    plot.set_defaults(func=cmd_plot)

    cancel = sub.add_parser("cancel", help="cancel a job (all tasks of a sweep)")
    cancel.add_argument("ref", help="JOBID or RUN_DIR")
    cancel.set_defaults(func=cmd_cancel)


def _command_line(args: argparse.Namespace) -> list[str]:
    return ["hpcft", *getattr(args, "argv", [])]


def cmd_submit(args: argparse.Namespace) -> int:
    from hpcft.launcher.jobs.submit import submit_run
    from hpcft.launcher.jobs.sweeps import check_sweep_size, load_sweep
    from hpcft.launcher.slurm import max_array_size

    if args.sweep:
        check_sweep_size(args.sweep, max_array_size())  # before anything is loaded, let alone rendered
    job = job_from_args(args)
    sweep = None
    if args.sweep:
        sweep = load_sweep(args.config, args.profile, args.overrides, cli_launch(args), args.sweep, job)
    result = submit_run(
        job, out_dir=args.out, backend=args.backend, dry_run=args.dry_run, sweep=sweep, command_line=_command_line(args)
    )
    if args.dry_run:
        print(shlex.join(result.command))
        print(f"run directory: {result.run_dir} (not submitted)", file=sys.stderr)
        return 0
    points = f" ({len(sweep)} array tasks)" if sweep else ""
    if result.preprocess_job_id:
        print(
            f"submitted preprocessing job {result.preprocess_job_id} ({result.preprocess_reason}); the training "
            "job starts when it has completed"
        )
    print(f"submitted job {result.job_id}{points}: {result.run_dir}")
    for warning in result.warnings:
        print(f"hpcft: warning: {warning}", file=sys.stderr)
    if not args.follow:
        print(f"follow it with: hpcft logs -f {result.job_id}", file=sys.stderr)
        return 0
    from hpcft.launcher.jobs.runs import RunRef
    from hpcft.launcher.logs.job_logs import follow_job

    code = follow_job(RunRef(result.job_id, result.run_dir))
    try:
        print_curves(str(result.run_dir))
    except Exception as exc:  # noqa: BLE001 - the job's exit status is the answer here, not a curve that failed
        print(f"hpcft: no loss curve: {exc}", file=sys.stderr)
    return code


def cmd_interactive(args: argparse.Namespace) -> int:
    from hpcft.launcher.config import load_job

    if args.config:
        job = job_from_args(args)
    else:
        # No training config: a session with the profile's environment only (a placeholder model and data).
        with tempfile.TemporaryDirectory() as tmp:
            placeholder = Path(tmp) / "interactive.yaml"
            placeholder.write_text(
                "base_model: none\ndatasets:\n  - path: none\nlaunch:\n  job_name: interactive\n"
                f"output_dir: {json.dumps(str(Path.cwd()))}\n"
            )
            job = load_job(placeholder, args.profile, overrides=args.overrides, cli_launch=cli_launch(args))
    if not args.dry_run:
        from hpcft.launcher.runtimes.image import check_image

        check_image(job)
    from hpcft.launcher.jobs.interactive import prepare_interactive

    run_dir, argv, torchrun_line = prepare_interactive(job, out_dir=args.out, command_line=_command_line(args))
    print(shlex.join(argv))
    if args.dry_run:
        return 0
    if args.config:
        print(f"hpcft: in the session, train with:\n  {torchrun_line}", file=sys.stderr)
    sys.stdout.flush()
    from hpcft.launcher import slurm

    slurm.exec_interactive(argv)
    return 0  # not reached: the process became srun


def cmd_logs(args: argparse.Namespace) -> int:
    from hpcft.launcher.jobs.runs import resolve_run
    from hpcft.launcher.logs.job_logs import follow_job, show_errors

    if args.tail is not None and args.tail < 0:
        raise ConfigError(f"--tail {args.tail}: give a number of lines >= 0")
    grep = None
    if args.grep is not None:
        try:
            grep = re.compile(args.grep.encode())
        except re.error as exc:
            raise ConfigError(f"--grep '{args.grep}' is not a valid regular expression ({exc})") from None
    run = resolve_run(args.ref)
    if args.errors:
        return show_errors(run)
    tail = args.tail
    if tail is None and args.follow and not args.all:
        tail = 10  # as `tail -f`: the recent lines, then what comes
    code = follow_job(run, follow=args.follow, rank=args.rank, grep=grep, tail=tail)
    return code if args.follow else 0


def cmd_status(args: argparse.Namespace) -> int:
    from hpcft.launcher.jobs.runs import recent_runs, resolve_run
    from hpcft.launcher.jobs.status import format_status_table, run_details, status_rows

    runs = [resolve_run(args.ref)] if args.ref else recent_runs(args.all)
    if not runs:
        print("no hpcft runs submitted in the last day (hpcft status --all lists every one)", file=sys.stderr)
        return 0
    problems: list[str] = []
    print(format_status_table(status_rows(runs, problems)))
    details = run_details(runs)
    if details:
        print(details)
    if args.ref and not args.no_plot:
        print_curves(args.ref)
    for problem in problems:
        print(f"hpcft: error: {problem}", file=sys.stderr)
    from hpcft.launcher.slurm import SLURM_EXIT_CODE

    return SLURM_EXIT_CODE if problems else 0


def print_curves(ref: str) -> None:
    """Draw the loss curve(s) of a run in the terminal, and say where its loss.png is."""
    from hpcft.core.loss_curve import read_curve
    from hpcft.launcher.logs.job_logs import use_color
    from hpcft.launcher.logs.plot import curve_sources, curve_title, terminal_plot

    for source in curve_sources(ref):
        curve = read_curve(source.output_dir)
        if not curve:
            print(f"{source.label}: no step logged yet in {source.output_dir}", file=sys.stderr)
            continue
        width = min(120, max(60, shutil.get_terminal_size((100, 24)).columns - 2))
        print()
        print(terminal_plot(curve, curve_title(source, curve), width=width, color=use_color(sys.stdout)))
        if source.png.is_file():
            print(f"loss.png: {source.png}")


def cmd_plot(args: argparse.Namespace) -> int:
    from hpcft.core.loss_curve import read_curve, write_png
    from hpcft.launcher.logs.plot import curve_sources, curve_title

    drawn = 0
    for source in curve_sources(args.ref, args.out):
        curve = read_curve(source.output_dir)
        if not curve:
            print(f"hpcft: {source.label}: no step logged yet in {source.output_dir}", file=sys.stderr)
            continue
        print(write_png(curve, source.png, title=curve_title(source, curve)))
        drawn += 1
    return 0 if drawn else 1


def cmd_cancel(args: argparse.Namespace) -> int:
    from hpcft.launcher.jobs.cancel import cancel_run
    from hpcft.launcher.jobs.runs import resolve_run

    run = resolve_run(args.ref)
    ids = cancel_run(run)
    print(f"cancelled job {' and '.join(ids)}" + (f" ({run.run_dir})" if run.run_dir else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpcft",
        description="Fine-tune LLMs on Slurm: one axolotl-style YAML + a cluster profile -> a correct job.",
        epilog="Example: hpcft render --profile cscs cfg.yaml --nodes 4   then   sbatch "
        "runs/<name>/<stamp>/job.sbatch\n"
        "Exit codes: 0 success, 2 bad input (config, profile, command line), 69 Slurm unavailable or refused "
        "the job;\n`submit --follow` and `logs -f` exit with the job's own status.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hpcft {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    render = sub.add_parser("render", help="write a self-contained run directory (sbatch, EDF, configs)")
    add_render_options(render)
    render.add_argument("-o", "--out", help="run directory to write (default runs/<job_name>/<timestamp>)")
    render.set_defaults(func=cmd_render)

    validate = sub.add_parser("validate", help="check a config (and profile) without writing anything")
    validate.add_argument("config")
    validate.add_argument("--profile", "-p", help="also merge and check against this profile")
    for key, kind in LAUNCH_OPTIONS.items():
        validate.add_argument("--" + key.replace("_", "-"), dest=f"launch_{key}", type=kind, help=argparse.SUPPRESS)
    validate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    validate.add_argument(
        "--strict",
        action="store_true",
        help="refuse config keys that have no effect (keys axolotl lacks too) instead of warning",
    )
    validate.set_defaults(func=cmd_validate)

    plan = sub.add_parser(
        "plan",
        help="before submitting: parameters, memory per GPU, batch, steps, time and node-hours",
        epilog="Example: hpcft plan --profile cscs cfg.yaml --nodes 4",
    )
    add_render_options(plan)
    plan.add_argument(
        "--tokens-per-s",
        type=float,
        metavar="N",
        help="training tokens/s per GPU for the time estimate (default: the profile's table)",
    )
    plan.add_argument("--gpu-memory-gib", type=float, metavar="GIB", help="GPU memory (default: the profile's)")
    plan.add_argument(
        "--model-config",
        metavar="PATH",
        help="a model folder or config.json to size the model from (default: base_model's)",
    )
    plan.set_defaults(func=cmd_plan)

    doctor = sub.add_parser(
        "doctor",
        help="check nodes, container and network with a short job run like training (per-node table)",
        epilog="Example: hpcft doctor --profile cscs --nodes 8 --account a127   (exit 1 when a node is slow or "
        "broken; it prints the --exclude line)",
    )
    add_render_options(doctor, config_required=False)
    doctor.add_argument("-o", "--out", help="run directory to write (default runs/hpcft-doctor/<timestamp>)")
    doctor.add_argument("--max-mib", type=int, default=1024, help="largest all-reduce message in MiB (default 1024)")
    doctor.add_argument("--write-mib", type=int, default=256, help="MiB each node writes to time the filesystem")
    doctor.add_argument("--iters", type=int, default=5, help="timed all-reduces per message size")
    doctor.set_defaults(func=cmd_doctor)

    profiles = sub.add_parser("profiles", help="list cluster profiles or show one, merged")
    profiles.add_argument("action", nargs="?", metavar="list | show | NAME", help="default: list")
    profiles.add_argument("name", nargs="?")
    profiles.set_defaults(func=cmd_profiles)

    from hpcft.launcher.runtimes.image import add_image_commands

    add_image_commands(sub)

    reference = sub.add_parser("reference", help="print the config reference (Markdown) generated from the schema")
    reference.set_defaults(func=cmd_reference)

    add_lifecycle_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.argv = argv
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        current_folder()  # a deleted working folder: one line here, not a traceback wherever a path is made absolute
        if extra:
            if not hasattr(args, "overrides"):
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
            split_overrides(args, extra)
        return args.func(args)
    except ConfigError as exc:
        print(f"hpcft: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `hpcft profiles list | head -1`: the reader has what it wanted; stop quietly, as cat and grep do. stdout
        # goes to /dev/null so that Python's flush at exit does not fail on the closed pipe again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # Commands import slurm.py only when they talk to Slurm: if it is not loaded, no SlurmError was raised.
        slurm = sys.modules.get("hpcft.launcher.slurm")
        if slurm is None or not isinstance(exc, slurm.SlurmError):
            raise
        print(f"hpcft: error: {exc}", file=sys.stderr)
        return slurm.SLURM_EXIT_CODE


if __name__ == "__main__":
    raise SystemExit(main())
