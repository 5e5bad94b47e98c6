"""Database URLs from ``nova.conf``, read the way oslo.config reads them.

Files are read in order and later files win key by key (``--nova-conf
/etc/nova/nova.conf --nova-conf /etc/nova/nova.conf.d/90-db.conf``).  Only
``[database] connection`` and ``[api_database] connection`` are used.  Values
are taken literally (no ``%`` interpolation, as in oslo.config).
"""

from __future__ import annotations

import configparser
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from actionhost_backfill.errors import BadInput

#: Read when no --db, ACTIONHOST_DB_URL or --nova-conf is given and the file
#: exists, as ``nova-manage`` does (oslo.config's default config file).
DEFAULT_PATH = "/etc/nova/nova.conf"


@dataclass(frozen=True)
class NovaConf:
    paths: tuple[str, ...]
    database: str | None
    api_database: str | None

    def require_database(self) -> str:
        if not self.database:
            raise BadInput(
                f"{self._where()} sets no [database] connection: add it, or pass --db URL"
            )
        return self.database

    def require_api_database(self) -> str:
        if not self.api_database:
            raise BadInput(
                f"{self._where()} sets no [api_database] connection: add it, or pass --api-db URL"
            )
        return self.api_database

    def _where(self) -> str:
        return ", ".join(self.paths) if self.paths else "nova.conf"


def read(paths: Sequence[str | Path]) -> NovaConf:
    """Read ``paths`` in order (later files win); a missing or malformed file is bad input."""
    parser = configparser.ConfigParser(interpolation=None, strict=False, default_section="DEFAULT")
    parser.optionxform = str  # keys are case-sensitive in oslo.config
    for raw in paths:
        path = Path(raw)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise BadInput(f"--nova-conf {path}: no such file") from None
        except IsADirectoryError:
            raise BadInput(f"--nova-conf {path} is a directory: pass the file") from None
        except PermissionError:
            raise BadInput(
                f"--nova-conf {path}: permission denied: run as a user who can read it "
                "(e.g. nova), or pass --db"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(
                f"--nova-conf {path}: cannot read it ({exc.__class__.__name__})"
            ) from None
        try:
            parser.read_string(text, source=str(path))
        except configparser.Error as exc:
            first = str(exc).splitlines()[0]
            raise BadInput(f"--nova-conf {path} is not a valid INI file: {first}") from None
    return NovaConf(
        paths=tuple(str(p) for p in paths),
        database=_get(parser, "database"),
        api_database=_get(parser, "api_database"),
    )


def _get(parser: configparser.ConfigParser, section: str) -> str | None:
    if not parser.has_section(section):
        return None
    value = parser.get(section, "connection", fallback=None)
    return value.strip() or None if value is not None else None


def config_files(nova_conf: Sequence[str] | None) -> list[str]:
    """The nova.conf files to read: ``--nova-conf``, else :data:`DEFAULT_PATH` if it exists."""
    if nova_conf:
        return list(nova_conf)
    return [DEFAULT_PATH] if Path(DEFAULT_PATH).is_file() else []


def database_url(db: str | None, nova_conf: Sequence[str] | None) -> str | None:
    """``--db`` (or ACTIONHOST_DB_URL) wins; else ``[database] connection`` from nova.conf.

    Without ``--nova-conf``, ``/etc/nova/nova.conf`` is read when it exists.
    """
    if db:
        return db
    files = config_files(nova_conf)
    if files:
        return read(files).require_database()
    return None
