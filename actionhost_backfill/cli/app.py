"""The Typer application: one root group whose ``main`` owns errors and exit codes.

Commands raise :class:`ActionHostError` (or ``typer.Exit``); only this module
turns them into a one-line message on stderr and a documented exit code, so
the codes are the same under a shell and under ``CliRunner``.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

try:  # recent Typer vendors Click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - Typer with Click as a dependency
    from click.exceptions import ClickException, UsageError
from typer import Abort

from actionhost_backfill import __version__
from actionhost_backfill.cli.common import (
    emit_json_error,
    json_requested,
    reset_output,
    stdout_closed,
    stdout_is_broken,
)
from actionhost_backfill.errors import EXIT_CODE_HELP, ActionHostError, ExitCode
from actionhost_backfill.redact import install_log_scrubber, scrub

_OPTIONS = {"debug": False}


class RootGroup(TyperGroup):
    """Maps every failure to one scrubbed line and an exit code."""

    def main(
        self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra: Any
    ):
        _OPTIONS["debug"] = False
        reset_output()
        argv = list(args) if args is not None else sys.argv[1:]
        failure: tuple[str, str] | None = None  # (one-line message, error type) for --json
        try:
            result = super().main(
                args=args,
                prog_name=prog_name,
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
            code = result if isinstance(result, int) else ExitCode.OK
        except SystemExit as exc:
            # Typer's main exits 1 when printing (help, usage) hit a closed pipe.
            if exc.code != 1 or not stdout_is_broken():
                raise
            stdout_closed()
            code = ExitCode.OK
        except UsageError as exc:
            message = f"{scrub(exc.format_message().replace(chr(10), ' '))} (see --help)"
            _error(message)
            code, failure = ExitCode.BAD_INPUT, (message, "UsageError")
        except ClickException as exc:
            message = scrub(exc.format_message())
            _error(message)
            code, failure = ExitCode.BAD_INPUT, (message, "UsageError")
        except Abort:
            print("aborted", file=sys.stderr)
            code, failure = ExitCode.PARTIAL, ("aborted", "Aborted")
        except ActionHostError as exc:
            if _OPTIONS["debug"]:
                print(scrub(traceback.format_exc()), file=sys.stderr)
            message = scrub(str(exc))
            _error(message)
            code, failure = exc.exit_code, (message, type(exc).__name__)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            code, failure = ExitCode.PARTIAL, ("interrupted", "Interrupted")
        except Exception as exc:  # a bug: still one line, never a password
            if isinstance(exc, BrokenPipeError) and stdout_is_broken():
                # The reader of stdout went away (| head) while click printed: not an error.
                stdout_closed()
                code = ExitCode.OK
                if standalone_mode:
                    sys.exit(int(code))
                return int(code)
            if _OPTIONS["debug"]:
                print(scrub(traceback.format_exc()), file=sys.stderr)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            message = (
                f"internal error {type(exc).__name__}: {scrub(first)} "
                "(run again with --debug for the traceback, and please report it)"
            )
            _error(message)
            code, failure = ExitCode.INTERVENE, (message, "InternalError")
        if failure is not None and json_requested(argv):
            emit_json_error(failure[0], int(code), failure[1])
        if standalone_mode:
            sys.exit(int(code))
        return int(code)


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


app = typer.Typer(
    cls=RootGroup,
    name="actionhost-backfill",
    help=(
        "Fill instance_actions_events.host in OpenStack Nova cell databases: "
        "schema revisions, a resumable backfill, and operator reports.\n\n"
        "Typical order: schema status -> schema upgrade -> backfill --dry-run -> "
        "backfill -> verify.\n\n" + EXIT_CODE_HELP
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # No Rich markup: help text names nova.conf sections such as [database],
    # which Rich would read as style tags and drop.
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"actionhost-backfill {__version__}")
        raise typer.Exit(0)


class QuietPoolResets(logging.Filter):
    """Drop SQLAlchemy's traceback for a connection it could not reset on its way
    back to the pool.  That happens when the server dropped the connection (a
    restart, ``KILL``): the toolkit reports the lost connection itself, in one
    line with its exit code, and the pool's traceback says nothing more.
    ``--debug`` shows it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.name.startswith("sqlalchemy.pool")
            and str(record.msg).startswith("Exception during reset")
        )


@app.callback()
def root(
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Show tracebacks (passwords still masked) and debug logs."),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Fill instance_actions_events.host in Nova cell databases."""
    _OPTIONS["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    install_log_scrubber()
    if not debug:
        for handler in logging.getLogger().handlers:
            if not any(isinstance(f, QuietPoolResets) for f in handler.filters):
                handler.addFilter(QuietPoolResets())
