"""The toolkit's one exception family and the exit codes it maps to.

Only the CLI catches :class:`ActionHostError`: it prints ``str(error)`` as one
line on stderr and exits with ``error.exit_code``.  Messages name the thing
that is wrong and the option, GRANT or command that fixes it.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Exit codes, in the spirit of ``nova-manage db online_data_migrations``."""

    OK = 0
    """Done: nothing (more) to do."""
    PARTIAL = 1
    """Progress made, more to do: run the same command again."""
    INTERVENE = 2
    """Errors that need a person: database down, lost connection, retries exhausted."""
    BUSY = 3
    """Another backfill or revert holds this database's runner lock: try later
    (``schema downgrade`` refuses to drop the state while one does, whatever the flags)."""
    DRIFT = 4
    """The database no longer matches the toolkit's record: ``verify`` found audited
    values changed, ``schema status`` found applied revisions undone, or a resumed
    run found its written rows NULL (a cell restored from a backup?)."""
    WRONG_HOSTS = 5
    """``validate`` found inferred hosts that differ from the ones Nova recorded."""
    BAD_INPUT = 127
    """Bad flag, URL, credentials, privileges or not a Nova database, or a request
    refused because it would throw away the undo (``schema downgrade`` while runs
    have unreverted hosts, without ``--discard-audit``); nothing was changed."""


#: Which code --all-cells reports when cells differ, most urgent first: bad
#: input (nothing ran as asked), intervene (a person must act), wrong hosts
#: (do not backfill), drift (values changed since the run), busy (try later),
#: partial (run again), done.  ``max()`` would rank busy above intervene.
PRECEDENCE = (
    ExitCode.BAD_INPUT,
    ExitCode.INTERVENE,
    ExitCode.WRONG_HOSTS,
    ExitCode.DRIFT,
    ExitCode.BUSY,
    ExitCode.PARTIAL,
    ExitCode.OK,
)


def most_urgent(codes: list[int]) -> int:
    """The code of ``codes`` that comes first in :data:`PRECEDENCE` (unknown codes first)."""
    rank = {int(code): i for i, code in enumerate(PRECEDENCE)}
    return min(codes, key=lambda c: rank.get(c, -1), default=int(ExitCode.OK))


EXIT_CODE_HELP = (
    "Exit codes: 0 done; 1 partial, more to do (run again); 2 error, intervene "
    "(database unreachable or failing); 3 busy, another runner holds the lock; "
    "4 drift, the database no longer matches the toolkit's record (verify; schema status; "
    "a resumed run on a restored cell); 5 validate found wrong hosts (do not backfill; report them); "
    "127 bad input, or a downgrade refused to drop unreverted runs' audit; nothing changed."
)


class ActionHostError(Exception):
    """Root of every error the toolkit reports to an operator."""

    exit_code: ExitCode = ExitCode.INTERVENE


class BadInput(ActionHostError):
    """The invocation cannot work as given (flag, URL, credentials, privileges)."""

    exit_code = ExitCode.BAD_INPUT


class NotANovaDatabase(BadInput):
    """Required Nova cell tables are missing."""


class IncompatibleSchema(BadInput):
    """An existing object has a shape the toolkit cannot safely use."""


class PrivilegeError(BadInput):
    """The database user lacks a privilege; the message names the GRANT."""


class DatabaseUnavailable(ActionHostError):
    """The server could not be reached or went away."""

    exit_code = ExitCode.INTERVENE


class WorkerFailed(ActionHostError):
    """A planner worker process (``backfill --workers``) died or could not decide a chunk."""

    exit_code = ExitCode.INTERVENE


class RunnerBusy(ActionHostError):
    """Another runner holds this database's lock."""

    exit_code = ExitCode.BUSY


class AuditAtRisk(BadInput):
    """Dropping the state would discard the audit of runs whose hosts are not reverted."""


class StateMismatch(ActionHostError):
    """The state schema describes another copy of the cell (restored or re-created)."""

    exit_code = ExitCode.DRIFT


class SchemaNotReady(BadInput):
    """The toolkit's revisions are not applied yet."""
