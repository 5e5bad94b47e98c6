"""The throwaway servers of the harness leave the machine's own server alone.

A starting ``mariadbd`` (the bootstrap one run by ``mariadb-install-db`` too)
deletes every ``#sql*`` file in its tmpdir.  Left at the default ``/tmp``, a
throwaway server destroyed the temporary tables of statements running on the
machine's server at that moment (seen as "Error on delete of
'/tmp/#sql-temptable-...'" in another test).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests import harness
from tests.topology.servers import MariaDB


@pytest.mark.backends("mysql")
def test_a_throwaway_mariadb_keeps_out_of_the_machine_servers_tmpdir(server_url, tmp_path):
    engine = harness.admin_engine("mysql")
    with engine.connect() as conn:
        machine_tmpdir = Path(conn.exec_driver_sql("SELECT @@tmpdir").scalar().split(":")[0])
    engine.dispose()
    canary = machine_tmpdir / f"#sql-ahb-canary-{uuid.uuid4().hex}.MAI"
    canary.touch()
    server = MariaDB(tmp_path / "throwaway")
    try:
        server.base.mkdir(parents=True)
        server.install()
        server.start()
        throwaway = sa.create_engine(server.url)
        with throwaway.connect() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        throwaway.dispose()
        assert canary.exists(), f"a throwaway server deleted {canary}"
    finally:
        server.remove()
        canary.unlink(missing_ok=True)
