"""The `hpcft` command line: thin argparse wiring over plain functions (no torch is imported here)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hpcft.launcher import __version__
from hpcft.launcher.errors import ConfigError

# Command-line job options and the launch keys they set (command line wins over profile and config).
LAUNCH_OPTIONS = {
    "nodes": int, "time": str, "partition": str, "account": str, "job_name": str, "gpus_per_node": int,
    "procs_per_node": int, "cpus_per_task": int, "mem": str, "image": str, "qos": str,
}


def add_render_options(parser: argparse.ArgumentParser, config_required: bool = True) -> None:
    """Options shared by render, validate, submit and interactive."""
    parser.add_argument("config", nargs=None if config_required else "?", help="training config (YAML)")
    parser.add_argument("--profile", "-p", required=True, help="cluster profile (see `hpcft profiles list`)")
    for key, kind in LAUNCH_OPTIONS.items():
        flag = "--" + key.replace("_", "-")
        parser.add_argument(flag, dest=f"launch_{key}", type=kind, metavar=key.upper(),
                            help=f"job option launch.{key}")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (also accepted as a bare KEY=VALUE argument)")


def split_overrides(args: argparse.Namespace, extra: list[str]) -> None:
    """Bare KEY=VALUE words after the config are overrides; anything else is a usage error."""
    for word in extra:
        if "=" not in word or word.startswith("-"):
            raise ConfigError(f"unrecognized argument '{word}'; overrides look like key=value (e.g. lr=1e-5)")
        args.overrides.append(word)


def cli_launch(args: argparse.Namespace) -> dict:
    return {key: getattr(args, f"launch_{key}") for key in LAUNCH_OPTIONS
            if getattr(args, f"launch_{key}", None) is not None}


def job_from_args(args: argparse.Namespace):
    """Load and validate the job the arguments describe (prints warnings to stderr)."""
    from hpcft.launcher.config import load_job

    job = load_job(args.config, args.profile, overrides=args.overrides, cli_launch=cli_launch(args))
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
        from hpcft.launcher.config import load_train_yaml

        load_train_yaml(args.config)
    print(f"{args.config}: OK")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from hpcft.launcher.forecast import format_forecast, make_forecast

    job = job_from_args(args)
    forecast = make_forecast(job, tokens_per_s=args.tokens_per_s, gpu_memory_gib=args.gpu_memory_gib,
                             model_config=args.model_config)
    print(format_forecast(job, forecast))
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    from hpcft.launcher.profiles import available_profiles, load_profile, profile_as_yaml

    if args.action == "list":
        for name, source in available_profiles().items():
            description = load_profile(name).description
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpcft",
        description="Fine-tune LLMs on Slurm: one axolotl-style YAML + a cluster profile -> a correct job.",
        epilog="Example: hpcft render --profile cscs cfg.yaml --nodes 4   then   sbatch runs/<name>/<stamp>/job.sbatch",
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
    validate.set_defaults(func=cmd_validate)

    plan = sub.add_parser(
        "plan", help="before submitting: parameters, memory per GPU, batch, steps, time and node-hours",
        epilog="Example: hpcft plan --profile cscs cfg.yaml --nodes 4")
    add_render_options(plan)
    plan.add_argument("--tokens-per-s", type=float, metavar="N",
                      help="training tokens/s per GPU for the time estimate (default: the profile's table)")
    plan.add_argument("--gpu-memory-gib", type=float, metavar="GIB", help="GPU memory (default: the profile's)")
    plan.add_argument("--model-config", metavar="PATH",
                      help="a model folder or config.json to size the model from (default: base_model's)")
    plan.set_defaults(func=cmd_plan)

    profiles = sub.add_parser("profiles", help="list cluster profiles or show one, merged")
    profiles.add_argument("action", choices=["list", "show"])
    profiles.add_argument("name", nargs="?")
    profiles.set_defaults(func=cmd_profiles)

    from hpcft.launcher.image import add_image_commands

    add_image_commands(sub)

    reference = sub.add_parser("reference", help="print the config reference (Markdown) generated from the schema")
    reference.set_defaults(func=cmd_reference)

    try:
        from hpcft.launcher.lifecycle_cli import add_lifecycle_commands
    except ImportError:  # pragma: no cover - only while the lifecycle module is absent
        pass
    else:
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
        if extra:
            if not hasattr(args, "overrides"):
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
            split_overrides(args, extra)
        return args.func(args)
    except ConfigError as exc:
        print(f"hpcft: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
