"""One throwaway MariaDB or PostgreSQL server: start, stop, restart, remove."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MARIADBD = "/usr/sbin/mariadbd"
PG_BIN = (
    Path(sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1])
    if Path("/usr/lib/postgresql").exists()
    else Path("/usr/bin")
)
#: Seconds a server gets to accept connections after start.
READY_TIMEOUT = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(check, what: str, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)  # polling a server's readiness; not synchronising test steps
    raise RuntimeError(f"{what} did not become ready within {timeout}s")


class MariaDB:
    """``mariadbd`` on ``port`` with its own datadir, socket and tmpdir under ``base``."""

    def __init__(
        self,
        base: Path,
        *,
        server_id: int = 1,
        extra: list[str] | None = None,
        user: str = "root",
    ):
        self.base = base
        self.user = user
        self.port = free_port()
        self.datadir = base / "data"
        self.tmpdir = base / "tmp"
        self.socket = base / "mysqld.sock"
        self.server_id = server_id
        self.extra = extra or []
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/mysql"

    def install(self) -> None:
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        if self.user != "root":
            for path in (self.base, self.tmpdir):
                shutil.chown(path, self.user, self.user)
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.datadir}",
                # Passed on to the bootstrap mariadbd, which (like any starting
                # mariadbd) deletes every #sql* file in its tmpdir: left at
                # /tmp, it destroyed the machine server's temporary tables.
                f"--tmpdir={self.tmpdir}",
                f"--user={self.user}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        log = open(self.base / "error.log", "ab")  # noqa: SIM115 (kept open by the server)
        self.process = subprocess.Popen(
            [
                MARIADBD,
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--tmpdir={self.tmpdir}",
                f"--socket={self.socket}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--pid-file={self.base / 'mysqld.pid'}",
                f"--server-id={self.server_id}",
                f"--user={self.user}",
                "--innodb-buffer-pool-size=32M",
                "--innodb-log-file-size=16M",
                "--skip-name-resolve",
                *self.extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _wait(self._answers_on_socket, f"mariadbd on {self.socket}")
        # root@127.0.0.1 does not exist after install: make it, over the socket
        # (a Galera joiner answers ping before its state transfer ends: error 1047).
        _wait(self._root_over_tcp, f"mariadbd on {self.socket} accepting statements")

    def _root_over_tcp(self) -> bool:
        try:
            self.sql(
                "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; "
                "GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
            )
        except RuntimeError as exc:
            if "ERROR 1047" in str(exc):
                return False
            raise
        return True

    def _answers_on_socket(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"mariadbd exited: {(self.base / 'error.log').read_text()[-2000:]}")
        done = subprocess.run(
            ["mariadb-admin", f"--socket={self.socket}", "-uroot", "ping"],
            capture_output=True,
        )
        return done.returncode == 0

    def sql(self, statements: str) -> str:
        done = subprocess.run(
            ["mariadb", f"--socket={self.socket}", "-uroot", "-N", "-B", "-e", statements],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"mariadb: {done.stderr.strip()}")
        return done.stdout

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        self.process.send_signal(sig)
        self.process.wait(timeout=120)
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


class PostgreSQL:
    """A PostgreSQL cluster run as the ``postgres`` user (the server refuses root)."""

    def __init__(self, base: Path):
        self.base = base
        self.port = free_port()
        self.datadir = base / "data"
        self.sockets = base / "run"
        self.started = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *argv: str) -> subprocess.CompletedProcess:
        command = list(argv)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        # cwd: the postgres user may not be able to enter the test's own directory.
        return subprocess.run(command, check=True, capture_output=True, text=True, cwd="/")

    def own(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")

    def init(self) -> None:
        self.own()
        self._as_postgres(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        )
        self.configure()

    def configure(self) -> None:
        with open(self.datadir / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.sockets}'\nwal_level = replica\n"
                "max_wal_senders = 5\nhot_standby = on\nshared_buffers = 32MB\n"
                "wal_receiver_status_interval = 1s\n"
            )
        with open(self.datadir / "pg_hba.conf", "a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")

    def start(self) -> None:
        self._as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.base / "server.log"),
            "-w",
            "-t",
            str(READY_TIMEOUT),
            "start",
        )
        self.started = True

    def stop(self, mode: str = "fast") -> None:
        if self.started:
            self._as_postgres(
                str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop"
            )
            self.started = False

    def remove(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
