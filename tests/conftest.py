"""Real databases, one fixture, three backends.

Every database-touching test takes the ``cell`` (or ``blank_db``) fixture and
runs once per backend: SQLite (a file in a temp dir), PostgreSQL and
MySQL/MariaDB (a fresh database on the running server, dropped afterwards).
Servers: ``ACTIONHOST_TEST_PG_URL`` (default postgres on 127.0.0.1:5432) and
``ACTIONHOST_TEST_MYSQL_URL`` (default root on 127.0.0.1:3306).  With
``CI=true`` an unreachable server fails the run; elsewhere its tests skip.
"""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests import harness

BACKENDS = ("sqlite", "postgresql", "mysql")


def pytest_addoption(parser):
    parser.addoption(
        "--backend",
        action="append",
        choices=BACKENDS,
        help="Run database tests on these backends only (repeatable). CI runs all three.",
    )
    parser.addoption(
        "--long",
        action="store_true",
        help="Run the long versions of the reliability suite (200 kills per backend).",
    )


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("--backend") or BACKENDS
        only = getattr(metafunc.function, "backends", None)
        marker = metafunc.definition.get_closest_marker("backends")
        if marker is not None:
            only = marker.args
        names = [b for b in BACKENDS if b in chosen and (only is None or b in only)]
        metafunc.parametrize("backend", names, scope="function")


def pytest_configure(config):
    config.addinivalue_line("markers", "backends(*names): run only on these backends")


@pytest.fixture(scope="session")
def servers() -> dict[str, str | None]:
    """Admin URLs of the reachable servers (None when unreachable)."""
    found: dict[str, str | None] = {"sqlite": "sqlite://"}
    for name, url in (("postgresql", harness.PG_ADMIN_URL), ("mysql", harness.MYSQL_ADMIN_URL)):
        found[name] = url if harness.reachable(url) else None
    return found


@pytest.fixture
def server_url(backend, servers) -> str:
    url = servers[backend]
    if url is None:
        message = f"{backend} server not reachable ({harness.admin_url_for(backend)})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}: CI requires every backend")
        pytest.skip(message)
    return url


@pytest.fixture
def blank_db(backend, server_url, tmp_path):
    """A fresh, empty database on ``backend``; returns its URL string."""
    if backend == "sqlite":
        path = tmp_path / "nova.sqlite"
        sa.create_engine(f"sqlite:///{path}").connect().close()
        yield f"sqlite:///{path}"
        return
    name = f"ahb_{uuid.uuid4().hex[:10]}"
    harness.create_database(backend, name)
    try:
        yield str(make_url(server_url).set(database=name).render_as_string(hide_password=False))
    finally:
        harness.drop_database(backend, name)


@pytest.fixture
def cell(blank_db) -> harness.Cell:
    """A Nova-shaped cell database with the host column (Nova since Icehouse)."""
    cell = harness.Cell(blank_db)
    cell.build()
    yield cell
    cell.dispose()


@pytest.fixture
def bare_cell(blank_db) -> harness.Cell:
    """A cell database whose schema the test builds itself (``cell.build(...)``)."""
    cell = harness.Cell(blank_db)
    yield cell
    cell.dispose()
