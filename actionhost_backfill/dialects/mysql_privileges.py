"""MySQL and MariaDB privileges: what the connected user lacks, and the GRANT that fixes it.

:class:`Grants` reads the user's (and its enabled roles') privileges from the
catalog; :class:`MySQLPrivileges` is the part of the MySQL dialect that probes
them before a command runs and turns an access-denied error into a GRANT hint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sqlalchemy as sa

from actionhost_backfill.dialects.base import (
    Dialect,
    MissingPrivilege,
    PrivilegeRequest,
    StateLocation,
    statement_privilege,
)


def _like(pattern: str, name: str) -> bool:
    """Whether ``name`` matches a database-level grant's name (a LIKE pattern)."""
    regex = ""
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            regex += re.escape(pattern[i + 1])
            i += 2
            continue
        regex += ".*" if char == "%" else "." if char == "_" else re.escape(char)
        i += 1
    return re.fullmatch(regex, name) is not None


_GRANT_LINE = re.compile(r"^GRANT (.+?) ON (\S+) TO ")


def _split_privileges(text: str) -> list[tuple[str, str | None]]:
    """``SELECT, UPDATE (`host`, `id`)`` -> [("SELECT", None), ("UPDATE", "host"), ...]."""
    found: list[tuple[str, str | None]] = []
    for match in re.finditer(r"\s*([A-Z][A-Z ]*?)\s*(?:\(([^)]*)\))?\s*(?:,|$)", text):
        name = match.group(1).strip()
        if not name:
            continue
        if match.group(2):
            found.extend((name, c.strip().strip("`")) for c in match.group(2).split(","))
        else:
            found.append((name, None))
    return found


@dataclass
class Grants:
    """The privileges of the connected user (and its enabled roles), from the catalog.

    ``information_schema.*_PRIVILEGES`` list the user's own grants; the
    privileges of its enabled roles are not there (MariaDB), so those are read
    with ``SHOW GRANTS FOR role``.
    """

    user: str
    host: str
    glob: set[str] = field(default_factory=set)
    schema: list[tuple[str, str]] = field(default_factory=list)
    """(database name pattern, privilege)."""
    table: set[tuple[str, str, str]] = field(default_factory=set)
    column: set[tuple[str, str, str, str]] = field(default_factory=set)

    @classmethod
    def read(cls, conn: sa.Connection) -> Grants:
        current = str(conn.exec_driver_sql("SELECT CURRENT_USER()").scalar())
        user, _, host = current.rpartition("@")
        grants = cls(user, host)
        grantee = f"'{user}'@'{host}'"

        def rows(sql: str) -> list[tuple]:
            return [tuple(r) for r in conn.exec_driver_sql(sql, (grantee,))]

        i_s = "information_schema"
        grants.glob = {
            r[0]
            for r in rows(f"SELECT PRIVILEGE_TYPE FROM {i_s}.USER_PRIVILEGES WHERE GRANTEE = %s")
        }
        grants.schema = rows(
            f"SELECT TABLE_SCHEMA, PRIVILEGE_TYPE FROM {i_s}.SCHEMA_PRIVILEGES WHERE GRANTEE = %s"
        )
        grants.table = set(
            rows(
                f"SELECT TABLE_SCHEMA, TABLE_NAME, PRIVILEGE_TYPE FROM {i_s}.TABLE_PRIVILEGES "
                "WHERE GRANTEE = %s"
            )
        )
        grants.column = set(
            rows(
                f"SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, PRIVILEGE_TYPE "
                f"FROM {i_s}.COLUMN_PRIVILEGES WHERE GRANTEE = %s"
            )
        )
        try:
            roles = [
                r[0]
                for r in conn.exec_driver_sql(
                    f"SELECT ROLE_NAME FROM {i_s}.ENABLED_ROLES WHERE ROLE_NAME IS NOT NULL"
                )
            ]
        except sa.exc.DBAPIError:
            conn.rollback()
            roles = []
        for role in roles:
            for (line,) in conn.exec_driver_sql(f"SHOW GRANTS FOR `{role}`"):
                grants._add_grant_line(str(line))
        conn.rollback()
        return grants

    def _add_grant_line(self, line: str) -> None:
        match = _GRANT_LINE.match(line)
        if match is None or "." not in match.group(2):
            return  # a role granted to the role, or a routine
        database, _, table = match.group(2).partition(".")
        database, table = database.strip("`").replace("\\\\", "\\"), table.strip("`")
        for privilege, column in _split_privileges(match.group(1)):
            privilege = "ALL" if privilege.startswith("ALL") else privilege
            if database == "*":
                self.glob.add(privilege)
            elif table == "*":
                self.schema.append((database, privilege))
            elif column is None:
                self.table.add((database, table, privilege))
            else:
                self.column.add((database, table, column, privilege))

    def has(
        self, privilege: str, database: str, table: str | None = None, column: str | None = None
    ) -> bool:
        """Whether ``privilege`` is held on the database (or its table, or column)."""
        wanted = {privilege, "ALL"}
        if self.glob & wanted:
            return True
        if any(p in wanted and _like(pattern, database) for pattern, p in self.schema):
            return True
        if table is not None and any((database, table, p) in self.table for p in wanted):
            return True
        return column is not None and any(
            (database, table, column, p) in self.column for p in wanted
        )

    def has_global(self, privilege: str) -> bool:
        return bool(self.glob & {privilege, "ALL"})

    def anything_on(self, database: str) -> bool:
        """Whether any privilege at all names this database (then it would be visible)."""
        return (
            bool(self.glob - {"USAGE"})
            or any(_like(pattern, database) for pattern, _ in self.schema)
            or any(d == database for d, _, _ in self.table)
        )

    def to(self) -> str:
        return f"'{self.user}'@'{self.host}'"


def _missing_on(
    grants: Grants, privileges: list[str], database: str, table: str | None = None
) -> list[str]:
    return [p for p in privileges if not grants.has(p, database, table)]


class MySQLPrivileges(Dialect):
    """Privilege probes and GRANT hints of :class:`~actionhost_backfill.dialects.mysql.MySQL`
    (MariaDB's differences asked of :attr:`is_mariadb`)."""

    is_mariadb: bool

    def missing_privileges(
        self, conn: sa.Connection, request: PrivilegeRequest
    ) -> list[MissingPrivilege]:
        grants = Grants.read(conn)
        db, to = request.database, grants.to()
        mariadb = self.is_mariadb
        missing: list[MissingPrivilege] = []

        def add(privileges: list[str], on: str, why: str, target: str) -> None:
            if privileges:
                listed = ", ".join(privileges)
                missing.append(
                    MissingPrivilege(listed, on, why, f"GRANT {listed} ON {target} TO {to};")
                )

        unread = [t for t in request.read if not grants.has("SELECT", db, t)]
        if unread:
            add(["SELECT"], f"{', '.join(unread)} in `{db}`", "reads Nova's tables", f"`{db}`.*")
        if request.temporary:
            add(
                _missing_on(grants, ["CREATE TEMPORARY TABLES"], db),
                f"database `{db}`",
                "the evidence snapshot and the plan are temporary tables",
                f"`{db}`.*",
            )
        # The host column and its index are added with ALTER TABLE (online DDL):
        # MariaDB needs ALTER on the table; MySQL also CREATE and INSERT.
        alter_needs = ["ALTER"] if mariadb else ["ALTER", "CREATE", "INSERT"]
        for table in dict.fromkeys(request.alter + request.index):
            why = " and ".join(
                what
                for what, tables in (
                    ("adds the host column", request.alter),
                    ("adds the host index", request.index),
                )
                if table in tables
            )
            add(
                _missing_on(grants, alter_needs, db, table),
                f"`{db}`.`{table}`",
                f"schema upgrade {why} (ALTER TABLE)",
                f"`{db}`.`{table}`",
            )
        for table in request.update:
            if not grants.has("UPDATE", db, table, "host"):
                missing.append(
                    MissingPrivilege(
                        "UPDATE",
                        f"`{db}`.`{table}`",
                        "writes the host column",
                        f"GRANT UPDATE (host) ON `{db}`.`{table}` TO {to};",
                    )
                )
        missing.extend(self._state_privileges(grants, request))
        if request.replicas:
            new = mariadb and conn.dialect.server_version_info >= (10, 5)
            if not (grants.has_global("REPLICATION MASTER ADMIN" if new else "REPLICATION SLAVE")):
                privilege = "REPLICATION MASTER ADMIN" if new else "REPLICATION SLAVE"
                add([privilege], "*.*", "--max-lag lists the replicas (SHOW SLAVE HOSTS)", "*.*")
            monitors = (
                ["SLAVE MONITOR", "REPLICA MONITOR", "SUPER"]
                if new
                else ["REPLICATION CLIENT", "BINLOG MONITOR", "SUPER"]
            )
            if not any(grants.has_global(p) for p in monitors):
                add(
                    [monitors[0]],
                    "*.* (on the replicas too)",
                    "--max-lag reads SHOW SLAVE STATUS on each replica with the same user",
                    "*.*",
                )
        return missing

    def _state_privileges(
        self, grants: Grants, request: PrivilegeRequest
    ) -> list[MissingPrivilege]:
        if request.state is None:
            return []
        state = request.location.schema
        wanted = {
            "read": ["SELECT"],
            "write": ["SELECT", "INSERT", "UPDATE", "DELETE"],
            "create": ["CREATE", "INDEX", "SELECT", "INSERT", "UPDATE", "DELETE"],
        }[request.state]
        if request.state == "create":
            lacking = _missing_on(grants, wanted, state)
        else:
            tables = request.state_tables or (None,)
            lacking = [p for p in wanted if not all(grants.has(p, state, t) for t in tables)]
        if not lacking:
            return []
        why = {
            "read": "reads the toolkit's own tables",
            "write": "records runs, checkpoints and the audit",
            "create": "creates the state database and its tables, and records revisions",
        }[request.state]
        listed = ", ".join(lacking)
        return [
            MissingPrivilege(
                listed,
                f"database `{state}`",
                why,
                f"GRANT {listed} ON `{state}`.* TO {grants.to()};",
            )
        ]

    def state_access(self, conn: sa.Connection, location: StateLocation) -> str:
        visible = conn.execute(
            sa.text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :n"),
            {"n": location.schema},
        ).first()
        grants = Grants.read(conn)
        if visible:
            readable = grants.has("SELECT", location.schema) or any(
                d == location.schema and p == "SELECT" for d, _, p in grants.table
            )
            return "readable" if readable else "unreadable"
        if grants.has_global("SHOW DATABASES") or grants.anything_on(location.schema):
            return "absent"
        return "unknown"

    def privilege_hint(self, statement: str | None, message: str, user: str, database: str) -> str:
        grantee = f"'{user}'@'%'"
        # 1142: "UPDATE command denied to user 'u'@'h' for table `db`.`t`"
        table = re.search(
            r"(\w[\w ]*?) command denied to user '([^']*)'@'([^']*)' for table [`']?([^`'\s]+)"
            r"(?:[`']?\.[`']?([^`'\s]+))?",
            message,
        )
        if table:
            privilege, name, host = table.group(1).upper(), table.group(2), table.group(3)
            target = (
                f"`{table.group(4)}`.`{table.group(5)}`"
                if table.group(5)
                else f"`{database}`.`{table.group(4)}`"
            )
            return (
                f"the statement needs the {privilege} privilege: run "
                f"GRANT {privilege} ON {target} TO '{name}'@'{host}';"
            )
        # 1227: "Access denied; you need (at least one of) the X privilege(s)"
        needed = re.search(r"you need \(at least one of\) the (.+?) privilege", message)
        if needed:
            first = needed.group(1).split(",")[-1].strip()
            return (
                f"the statement needs the {needed.group(1)} privilege: run "
                f"GRANT {first} ON *.* TO {grantee}; (use your account's host part)"
            )
        # 1044: "Access denied for user 'u'@'h' to database 'd'"
        denied = re.search(r"for user '([^']*)'@'([^']*)' to database '([^']*)'", message)
        privilege = statement_privilege(statement)
        if denied and privilege:
            return (
                f"the statement needs the {privilege} privilege: run GRANT {privilege} ON "
                f"`{denied.group(3)}`.* TO '{denied.group(1)}'@'{denied.group(2)}';"
            )
        return super().privilege_hint(statement, message, user, database)

    def write_grant(self, user: str, table: str, schema: str | None, database: str | None) -> str:
        if schema is None:  # a Nova table: only its host column is written
            return f"GRANT UPDATE (host) ON `{database}`.`{table}` TO '{user}'@'%';"
        return f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{schema}`.* TO '{user}'@'%';"
