"""A non-editable wheel carries the revisions and runs every schema command."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from actionhost_backfill.nova.models import create_cell_schema

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        timeout=600,
    )
    (path,) = out.glob("actionhost_backfill-*.whl")
    return path


def test_wheel_ships_revisions_and_environment(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for revision in sorted((ROOT / "versions").glob("*.py")):
        assert f"actionhost_backfill/versions/{revision.name}" in names
    assert "actionhost_backfill/schema/migrations/env.py" in names
    assert "actionhost_backfill/schema/migrations/script.py.mako" in names


@pytest.mark.slow
def test_wheel_install_runs_schema_commands(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        check=True,
        timeout=900,
    )
    cell = tmp_path / "nova.sqlite"
    engine = sa.create_engine(f"sqlite:///{cell}")
    create_cell_schema(engine)
    engine.dispose()
    tool = env_dir / "bin" / "actionhost-backfill"
    # Run outside the checkout so nothing can import the source tree.
    where = subprocess.run(
        [str(python), "-c", "import actionhost_backfill; print(actionhost_backfill.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    ).stdout
    assert str(env_dir) in where, where
    for args, code in (
        (["schema", "sql", "--dialect", "mysql"], 0),
        (["schema", "status", "--db", f"sqlite:///{cell}"], 1),
        (["schema", "upgrade", "--db", f"sqlite:///{cell}"], 0),
        (["schema", "status", "--db", f"sqlite:///{cell}"], 0),
        (["schema", "downgrade", "base", "--db", f"sqlite:///{cell}"], 0),
    ):
        done = subprocess.run(
            [str(tool), *args], capture_output=True, text=True, cwd=tmp_path, timeout=120
        )
        assert done.returncode == code, (args, done.stdout, done.stderr)
    assert "actionhost_events_host_idx" in done.stdout or "dropped index" in done.stdout
