"""The `convertctl` command. Subcommands are imported only when invoked, so `--help` stays instant."""

from __future__ import annotations

import importlib
import json
import os
import sys

import click

from convertctl import __version__
from convertctl.cli import state
from convertctl.errors import EXIT_INTERNAL, EXIT_USAGE, ConvertctlError

# name -> (module, attribute, one-line help). The help is here so listing commands imports nothing; `{targets}`
# is filled in with the registered targets' names (targets/registry.py lists their packages, importing none).
COMMANDS = {
    "run": ("convertctl.cli.run", "run", "Run a recipe end to end: export, check, optimize, build, verify, time."),
    "export": ("convertctl.cli.export", "export", "Export a model to ONNX and verify it against the source."),
    "check": ("convertctl.cli.check", "check", "Check operator support on each target ({targets})."),
    "optimize": ("convertctl.cli.optimize", "optimize", "Simplify an ONNX model; roll back if outputs change."),
    "build": ("convertctl.cli.build", "build", "Build target artifacts ({targets}) and verify them."),
    "quantize": ("convertctl.cli.quantize", "quantize", "INT8/FP16 for every target from one calibration, with reports."),
    "recipe": ("convertctl.cli.recipe", "recipe", "Validate a recipe, or write a commented template."),
    "targets": ("convertctl.cli.targets", "targets", "List the targets, their precisions and whether installed."),
    "diff": ("convertctl.cli.diff", "diff", "Compare two manifests: accuracy and latency deltas; exit 4/5 on regression."),
    "plan": ("convertctl.cli.plan", "plan", "A CI build matrix (one job per recipe x target) for GitHub or GitLab."),
    "merge": ("convertctl.cli.merge", "merge", "Collect the jobs' manifests into one release index and report."),
}


def with_targets(text: str) -> str:
    """A help text with `{targets}` replaced by the targets' names: help lists what is registered, never a copy."""
    from convertctl.targets.registry import target_names

    return text.replace("{targets}", ", ".join(target_names()))


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_help_text(self, ctx, formatter):
        self.help = with_targets(self.help or "")
        super().format_help_text(ctx, formatter)

    def format_commands(self, ctx, formatter):
        rows = [(name, with_targets(help_)) for name, (_, _, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="convertctl")
@click.option("-v", "--verbose", is_flag=True, help="More output; tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the final result.")
@click.option("--json", "json_output", is_flag=True, help="Machine-readable result on stdout; logs on stderr.")
def cli(verbose, quiet, json_output):
    """convertctl: trained models to verified ONNX and deployable artifacts for each target ({targets}).

    \b
    Quick start:
      convertctl recipe init my.yaml      # a commented recipe template
      convertctl run recipes/efficientnet_lite0.yaml
    Exit codes: 0 ok, 1 internal error, 2 usage/recipe error, 3 unsupported operator,
    4 accuracy gate failed, 5 performance regression.
    """
    state.verbose = state.verbose or verbose
    state.quiet = state.quiet or quiet
    state.json_output = state.json_output or json_output


def _json_wanted(argv) -> bool:
    # errors can happen before a subcommand's --json is parsed (a bad option, a check in a decorator)
    return state.json_output or "--json" in (argv if argv is not None else sys.argv[1:])


def _fail(exc: BaseException, code: int, message: str, hint: str | None, argv=None) -> None:
    if state.verbose:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    if _json_wanted(argv):
        print(json.dumps({"status": "error", "exit_code": code, "error": message, "hint": hint}), flush=True)
    from convertctl.cli.ui import print_error

    print_error(message, hint)
    sys.exit(code)


def _interrupted(signum: int, argv) -> None:
    """Stop the children, say so on one line (and in JSON with --json), exit 128 + the signal."""
    import signal

    from convertctl import processes

    processes.stop_all()
    name = signal.Signals(signum).name
    code = 128 + signum
    if _json_wanted(argv):
        print(json.dumps({"status": "interrupted", "exit_code": code, "error": f"interrupted by {name}",
                          "hint": None}), flush=True)
    print(f"interrupted by {name}: stopped (no output folder was replaced)", file=sys.stderr)
    sys.exit(code)


def main(argv=None, *, supervised: bool = True) -> None:
    """The `convertctl` entry point. `supervised=False` runs the command in this process even where it would
    load runtimes in a supervised child (convertctl/supervisor.py): for callers that embed the CLI, as the
    in-process runner of the tests does."""
    from convertctl import processes, supervisor

    # convertctl sends nothing anywhere. OpenVINO's convert_model and NNCF send usage telemetry unless they see
    # CI=true (their documented switch, read when they start); the sender they fork from a background thread
    # also took numpy's OpenBLAS threads with it and made later np.linalg calls spin forever.
    os.environ["CI"] = "true"

    words = sys.argv[1:] if argv is None else list(argv)
    if supervised and supervisor.wanted(words):  # runtimes load in a child (supervisor.py)
        sys.exit(supervisor.supervise(words))
    supervisor.enter_child()
    processes.install_signal_handlers()
    try:
        code = cli.main(args=argv, prog_name="convertctl", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:  # click turns KeyboardInterrupt into Abort
        import signal

        cause = exc.__cause__ if isinstance(exc, click.exceptions.Abort) else exc
        _interrupted(cause.signum if isinstance(cause, processes.Interrupted) else signal.SIGINT, argv)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code if exc.exit_code else EXIT_USAGE
        if _json_wanted(argv):
            print(json.dumps({"status": "error", "exit_code": code, "error": exc.format_message(), "hint": None}))
        sys.exit(code)
    except ConvertctlError as exc:
        _fail(exc, exc.exit_code, exc.message, exc.hint, argv)
    except Exception as exc:  # an unexpected failure is a bug: say so, traceback only with -v
        _fail(exc, EXIT_INTERNAL, f"internal error: {type(exc).__name__}: {exc}",
              None if state.verbose else "run again with -v for the traceback, and report it", argv)
    sys.exit(code if isinstance(code, int) else 0)
