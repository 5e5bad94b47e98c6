"""Stock ``alembic`` from the checkout: upgrade, current, history and --sql all work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from actionhost_backfill.nova.catalog import HOST_INDEX

ROOT = Path(__file__).resolve().parent.parent


def alembic(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), *args]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIONHOST_")}
    full_env.update(env or {})
    return subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env=full_env, timeout=120
    )


@pytest.mark.backends("sqlite", "postgresql", "mysql")
def test_stock_alembic_commands(cell, backend):
    done = alembic("-x", f"db={cell.url}", "upgrade", "head")
    assert done.returncode == 0, done.stderr
    assert HOST_INDEX in cell.index_names()
    done = alembic("current", env={"ACTIONHOST_DB_URL": cell.url})
    assert done.returncode == 0, done.stderr
    assert "0003_backfill_state (head)" in done.stdout
    done = alembic("-x", f"db={cell.url}", "history")
    assert "<base> -> 0001_host_column" in done.stdout
    assert cell.nova_version() == "ab450ba04102"
    done = alembic("-x", f"db={cell.url}", "downgrade", "base")
    assert done.returncode == 0, done.stderr
    assert HOST_INDEX not in cell.index_names()


@pytest.mark.backends("sqlite", "postgresql", "mysql")
def test_stock_alembic_reensure_rebuilds_what_the_version_table_claims(cell, backend):
    assert alembic("-x", f"db={cell.url}", "upgrade", "head").returncode == 0
    cell.execute(
        f"ALTER TABLE instance_actions_events DROP INDEX {HOST_INDEX}"
        if backend == "mysql"
        else f"DROP INDEX {HOST_INDEX}"
    )
    plain = alembic("-x", f"db={cell.url}", "upgrade", "head")
    assert plain.returncode == 0, plain.stderr
    assert HOST_INDEX not in cell.index_names(), "stock semantics: the version table is at head"
    done = alembic("-x", f"db={cell.url}", "-x", "reensure=true", "upgrade", "head")
    assert done.returncode == 0, done.stderr
    assert HOST_INDEX in cell.index_names()
    done = alembic("current", env={"ACTIONHOST_DB_URL": cell.url})
    assert "0003_backfill_state (head)" in done.stdout
    done = alembic("-x", f"db={cell.url}", "-x", "reensure=true", "downgrade", "0001_host_column")
    assert done.returncode == 0, done.stderr
    assert HOST_INDEX not in cell.index_names(), "a downgrade is not undone by re-ensuring"


def test_stock_alembic_offline_sql_hides_password():
    done = alembic(
        "-x", "db=mysql+pymysql://nova:hunter2-secret@db.example/nova", "upgrade", "head", "--sql"
    )
    assert done.returncode == 0, done.stderr
    assert "CREATE TABLE IF NOT EXISTS nova_actionhost.actionhost_version" in done.stdout
    assert "hunter2-secret" not in done.stdout + done.stderr


def test_stock_alembic_bad_url_is_one_clean_line():
    done = alembic("-x", "db=oracle://scott:tiger-secret@db/nova", "current")
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "FAILED: -x db oracle://scott:***@db/nova: unsupported database" in output
    assert "tiger-secret" not in output
    assert "Traceback" not in output
