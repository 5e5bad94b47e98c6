"""A primary and one replica: MariaDB with GTID replication, PostgreSQL streaming."""

from __future__ import annotations

from pathlib import Path

from tests.topology.servers import MariaDB, PostgreSQL, free_port


def mariadb_pair(base: Path) -> tuple[MariaDB, MariaDB]:
    """Primary (binary log, server id 1) and a GTID replica (server id 2) that reports
    its host and port, so ``SHOW SLAVE HOSTS`` on the primary finds it."""
    primary = MariaDB(
        base / "primary", server_id=1, extra=["--log-bin=mysql-bin", "--binlog-format=ROW"]
    )
    replica_port = free_port()
    replica = MariaDB(
        base / "replica",
        server_id=2,
        extra=["--report-host=127.0.0.1", f"--report-port={replica_port}", "--read-only=ON"],
    )
    replica.port = replica_port
    for server in (primary, replica):
        server.base.mkdir(parents=True)
        server.install()
        server.start()
    replica.sql(
        f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={primary.port}, "
        "MASTER_USER='root', MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos; START SLAVE;"
    )
    return primary, replica


def postgresql_pair(base: Path) -> tuple[PostgreSQL, PostgreSQL]:
    """Primary and a hot standby made with ``pg_basebackup -R`` (streaming)."""
    primary = PostgreSQL(base / "primary")
    primary.init()
    primary.start()
    replica = PostgreSQL(base / "replica")
    replica.own()
    replica._as_postgres(
        str(Path(primary_bin()) / "pg_basebackup"),
        "-h",
        "127.0.0.1",
        "-p",
        str(primary.port),
        "-U",
        "postgres",
        "-D",
        str(replica.datadir),
        "-R",
        "-X",
        "stream",
    )
    with open(replica.datadir / "postgresql.conf", "a") as conf:
        conf.write(f"\nport = {replica.port}\nunix_socket_directories = '{replica.sockets}'\n")
    replica.start()
    return primary, replica


def primary_bin() -> str:
    from tests.topology.servers import PG_BIN

    return str(PG_BIN)
