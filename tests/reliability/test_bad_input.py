"""Bad input: one line naming the problem and the fix, the documented exit code, no
password anywhere, and the Nova tables and the state schema exactly as they were."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from actionhost_backfill.db import parse_url
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill
from actionhost_backfill.errors import ExitCode
from actionhost_backfill.sim.simulate import SimulationOptions
from tests import harness

from .common import simulated

SECRET = "hunter2-Zq9"
BAD = ExitCode.BAD_INPUT
DOWN = ExitCode.INTERVENE
ALL = ("sqlite", "postgresql", "mysql")


@pytest.fixture
def prepared(blank_db):
    cell = simulated(blank_db, SimulationOptions(seed=4, events=1500, hosts=6, days=120))
    assert run_backfill(parse_url(blank_db), BackfillOptions()).outcome == "complete"
    yield cell
    cell.dispose()


def _with_password(cell: harness.Cell) -> str:
    """The cell URL with a password where the server ignores it (PostgreSQL trusts 127.0.0.1)."""
    if cell.backend == "postgresql":
        return cell.sa_url.set(password=SECRET).render_as_string(hide_password=False)
    return cell.url


def _other_database(cell: harness.Cell, name: str) -> str:
    url = cell.sa_url.set(database=name)
    if cell.backend == "postgresql":
        url = url.set(password=SECRET)
    return url.render_as_string(hide_password=False)


def _conf(tmp: Path, text: str) -> str:
    path = tmp / f"{uuid.uuid4().hex[:6]}.conf"
    path.write_text(text)
    return str(path)


# (name, backends, argv(cell, tmp) -> list, exit code, words the message must contain)
CASES = [
    (
        "malformed url",
        ALL,
        lambda c, t: ["status", "--db", f"::nope:{SECRET}::"],
        BAD,
        "not a database URL",
    ),
    (
        "unknown driver",
        ALL,
        lambda c, t: ["status", "--db", f"oracle://scott:{SECRET}@db/orcl"],
        BAD,
        "unsupported database",
    ),
    ("in-memory sqlite", ALL, lambda c, t: ["backfill", "--db", "sqlite://"], BAD, "in-memory"),
    (
        "missing sqlite file",
        ALL,
        lambda c, t: ["backfill", "--db", f"sqlite:///{t}/typo.sqlite"],
        BAD,
        "does not exist",
    ),
    (
        "unreachable host",
        ALL,
        lambda c, t: ["backfill", "--db", f"postgresql://nova:{SECRET}@127.0.0.1:1/nova"],
        DOWN,
        "127.0.0.1",
    ),
    (
        "missing database",
        ("postgresql", "mysql"),
        lambda c, t: ["backfill", "--db", _other_database(c, "no_such_db_x")],
        BAD,
        "no_such_db_x",
    ),
    (
        "wrong password",
        ("mysql",),
        lambda c, t: [
            "backfill",
            "--db",
            c.sa_url.set(password=SECRET).render_as_string(hide_password=False),
        ],
        BAD,
        "password",
    ),
    (
        "not a nova database",
        ("postgresql", "mysql"),
        lambda c, t: [
            "backfill",
            "--db",
            _other_database(c, "postgres" if c.backend == "postgresql" else "mysql"),
        ],
        BAD,
        "Nova",
    ),
    ("no database given", ALL, lambda c, t: ["backfill"], BAD, "--db"),
    (
        "unknown flag",
        ALL,
        lambda c, t: ["backfill", "--db", _with_password(c), "--batchsize", "5"],
        BAD,
        "--batchsize",
    ),
    (
        "batch size 0",
        ALL,
        lambda c, t: ["backfill", "--db", _with_password(c), "--batch-size", "0"],
        BAD,
        "--batch-size",
    ),
    (
        "negative sleep",
        ALL,
        lambda c, t: ["backfill", "--db", _with_password(c), "--sleep", "-1"],
        BAD,
        "--sleep",
    ),
    (
        "negative target seconds",
        ALL,
        lambda c, t: ["backfill", "--db", _with_password(c), "--target-batch-seconds", "-2"],
        BAD,
        "--target-batch-seconds",
    ),
    (
        "max rows 0",
        ALL,
        lambda c, t: ["backfill", "--db", _with_password(c), "--max-rows", "0"],
        BAD,
        "--max-rows",
    ),
    (
        "negative lock timeout",
        ALL,
        lambda c, t: ["backfill", "--db", _with_password(c), "--lock-timeout", "-5"],
        BAD,
        "--lock-timeout",
    ),
    (
        "negative retries",
        ALL,
        lambda c, t: ["backfill", "--db", _with_password(c), "--max-retries", "-1"],
        BAD,
        "--max-retries",
    ),
    (
        "not a number",
        ALL,
        lambda c, t: ["backfill", "--db", _with_password(c), "--batch-size", "lots"],
        BAD,
        "--batch-size",
    ),
    (
        "unknown run for revert",
        ALL,
        lambda c, t: ["revert", "--db", _with_password(c), "--run", "999"],
        BAD,
        "999",
    ),
    (
        "bad state schema name",
        ALL,
        lambda c, t: ["status", "--db", _with_password(c), "--state-schema", "x;drop"],
        BAD,
        "--state-schema",
    ),
    (
        "state schema is public",
        ("postgresql",),
        lambda c, t: ["status", "--db", _with_password(c), "--state-schema", "public"],
        BAD,
        "public",
    ),
    (
        "state schema missing",
        ALL,
        lambda c, t: ["verify", "--db", _with_password(c), "--state-schema", "elsewhere"],
        BAD,
        "schema upgrade",
    ),
    (
        "bad downgrade target",
        ALL,
        lambda c, t: ["schema", "downgrade", "nonsense", "--db", _with_password(c)],
        BAD,
        "nonsense",
    ),
    (
        "downgrade would drop the audit of runs not reverted",
        ALL,
        lambda c, t: ["schema", "downgrade", "base", "--db", _with_password(c)],
        BAD,
        "wrote hosts that are not reverted",
    ),
    ("bad sql dialect", ALL, lambda c, t: ["schema", "sql", "--dialect", "oracle"], BAD, "oracle"),
    (
        "unknown instance",
        ALL,
        lambda c, t: ["events", "list", "no-such-instance", "--db", _with_password(c)],
        BAD,
        "no instance",
    ),
    (
        "bad role",
        ALL,
        lambda c, t: ["events", "show", "x", "req-x", "--as", "root", "--db", _with_password(c)],
        BAD,
        "--as",
    ),
    (
        "bad --since",
        ALL,
        lambda c, t: ["failures", "--since", "last week", "--db", _with_password(c)],
        BAD,
        "--since",
    ),
    (
        "bad --top",
        ALL,
        lambda c, t: ["failures", "--top", "0", "--db", _with_password(c)],
        BAD,
        "--top",
    ),
    (
        "simulate into a nova db",
        ALL,
        lambda c, t: ["simulate", "--db", _with_password(c)],
        BAD,
        "already holds",
    ),
    (
        "nova.conf missing",
        ALL,
        lambda c, t: ["status", "--nova-conf", f"{t}/none.conf"],
        BAD,
        "no such file",
    ),
    (
        "nova.conf is a directory",
        ALL,
        lambda c, t: ["status", "--nova-conf", str(t)],
        BAD,
        "directory",
    ),
    (
        "nova.conf malformed",
        ALL,
        lambda c, t: ["status", "--nova-conf", _conf(t, "no section here\n")],
        BAD,
        "INI",
    ),
    (
        "nova.conf without [database]",
        ALL,
        lambda c, t: [
            "status",
            "--nova-conf",
            _conf(t, "[api_database]\nconnection = sqlite:///x\n"),
        ],
        BAD,
        "[database]",
    ),
    (
        "all cells, api db unreachable",
        ALL,
        lambda c, t: [
            "status",
            "--all-cells",
            "--api-db",
            f"mysql+pymysql://nova:{SECRET}@127.0.0.1:1/nova_api",
        ],
        DOWN,
        "127.0.0.1",
    ),
    ("all cells without api db", ALL, lambda c, t: ["backfill", "--all-cells"], BAD, "--api-db"),
    (
        "all cells, zero parallel cells",
        ALL,
        lambda c, t: ["status", "--all-cells", "--parallel-cells", "0", "--api-db", c.url],
        BAD,
        "--parallel-cells",
    ),
    (
        "accuracy without a simulation",
        ("sqlite",),
        lambda c, t: ["accuracy", "--db", _plain_cell(t)],
        BAD,
        "schema upgrade",
    ),
]


def _plain_cell(tmp: Path) -> str:
    cell = harness.Cell(f"sqlite:///{tmp}/plain.sqlite")
    cell.build()
    cell.dispose()
    return cell.url


@pytest.mark.parametrize(
    ("name", "backends", "argv", "code", "words"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_input(prepared, backend, tmp_path, monkeypatch, name, backends, argv, code, words):
    for var in ("ACTIONHOST_DB_URL", "ACTIONHOST_API_DB_URL", "ACTIONHOST_STATE_SCHEMA"):
        monkeypatch.delenv(var, raising=False)
    before = prepared.checksum()
    result = harness.cli(*argv(prepared, tmp_path))
    assert result.exit_code == code, (result.exit_code, result.stderr, result.stdout)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert words in lines[0], lines[0]
    assert SECRET not in result.stdout + result.stderr
    assert prepared.checksum() == before
    assert not os.path.exists(tmp_path / "typo.sqlite")
