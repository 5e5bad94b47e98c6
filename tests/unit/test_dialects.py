"""The dialect layer: classes registered by name, MariaDB told apart once, DDL built
without a server, and no backend question asked outside ``dialects/``."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy.engine import make_url

from actionhost_backfill import dialects
from actionhost_backfill.dialects.base import Dialect, SchemaChange, dialect_class
from actionhost_backfill.dialects.mysql import MariaDB, MySQL
from actionhost_backfill.dialects.postgresql import PostgreSQL
from actionhost_backfill.dialects.sqlite import SQLite

PACKAGE = Path(dialects.__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "name, cls",
    [("postgresql", PostgreSQL), ("mysql", MySQL), ("mariadb", MariaDB), ("sqlite", SQLite)],
)
def test_each_class_is_registered_under_its_dialect_name(name, cls):
    assert dialect_class(name) is cls
    assert isinstance(dialects.for_backend(name), cls)


def test_an_unknown_backend_gets_the_base_dialect():
    assert dialect_class("oracle") is Dialect


@pytest.mark.parametrize("is_mariadb, cls", [(True, MariaDB), (False, MySQL)])
def test_mariadb_behind_a_mysql_url_is_told_apart_from_the_connection(is_mariadb, cls):
    conn = SimpleNamespace(dialect=SimpleNamespace(name="mysql", is_mariadb=is_mariadb))
    assert type(dialects.for_connection(conn)) is cls


def test_mariadb_is_the_mysql_family():
    assert dialects.family_of(make_url("mariadb+pymysql://u@h/nova")) == "mysql"
    assert dialects.family_of("mariadb") == "mysql"
    assert MariaDB.name == MySQL.name == "mysql"


class _Op:
    """Alembic's ``op`` as an offline script sees it: statements collected in order."""

    def __init__(self):
        self.statements: list[str] = []

    def execute(self, sql: str) -> None:
        self.statements.append(sql)

    def get_context(self):
        return SimpleNamespace(autocommit_block=_NoBlock)


class _NoBlock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _offline(lock_timeout: float = 2.5) -> tuple[_Op, SchemaChange]:
    op = _Op()
    return op, SchemaChange(op=op, lock_timeout=lock_timeout, say=print, comment=lambda _: None)


def test_postgresql_offline_index_is_built_concurrently_under_the_lock_timeout():
    op, change = _offline()
    PostgreSQL().offline_create_index(change, "events", "events_host_idx", "host")
    assert "NOT i.indisvalid" in op.statements[0]
    assert op.statements[1:] == [
        "SET lock_timeout = '2500ms'",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS events_host_idx ON events (host)",
        "RESET lock_timeout",
    ]


def test_mysql_offline_column_is_added_only_where_missing_by_a_prepared_statement():
    op, change = _offline()
    MySQL().offline_add_host_column(
        change, ("events", "shadow_events"), "VARCHAR(255)", 255, "0001", "ledger", "nova_ah"
    )
    assert op.statements[0] == "SET SESSION lock_wait_timeout = 3"
    adds = [s for s in op.statements if s.startswith("SET @actionhost_ddl")]
    assert [("ADD COLUMN host VARCHAR(255) NULL, ALGORITHM=INSTANT" in s) for s in adds] == [
        True,
        True,
    ]
    assert all("IF(@actionhost_missing," in s for s in adds)


#: A question about the backend: comparing a dialect's or URL's backend name, or MariaDB's flag.
_QUESTION = re.compile(
    r"dialect\.name\s*(==|!=|in\b|not in\b)"
    r"|get_backend_name\(\)\s*(==|!=|in\b|not in\b)"
    r"|\.backend\s*(==|!=|in\b|not in\b)"
    r"|\bis_mariadb\b"
    r"|\bbackend\s*(==|!=)\s*['\"]"
)
#: Where a backend may still be named: URL and driver validation, and the simulator's
#: statistics refresh (``Dialect.analyze_database`` replaces it).
_ALLOWED = ("db.py",)


def test_no_code_outside_dialects_asks_which_backend_it_is_on():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("dialects/") or relative.startswith(_ALLOWED):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if _QUESTION.search(line):
                found.append(f"{relative}:{number}: {line.strip()}")
    assert found == []
