"""PostgreSQL privileges: what the connected user lacks, and the GRANT that fixes it.

:class:`PostgreSQLPrivileges` is the part of the PostgreSQL dialect that asks the
catalog (``has_*_privilege``, table ownership) before a command runs and turns a
permission-denied error into a GRANT hint.
"""

from __future__ import annotations

import re

import sqlalchemy as sa

from actionhost_backfill.dialects.base import (
    VERSION_TABLE,
    Dialect,
    MissingPrivilege,
    PrivilegeRequest,
    StateLocation,
    statement_privilege,
)


def ident(name: str) -> str:
    """``name`` as a PostgreSQL identifier in a statement an operator copies."""
    return name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else '"' + name.replace('"', '""') + '"'


class PostgreSQLPrivileges(Dialect):
    """Privilege probes and GRANT hints of
    :class:`~actionhost_backfill.dialects.postgresql.PostgreSQL`."""

    def missing_privileges(
        self, conn: sa.Connection, request: PrivilegeRequest
    ) -> list[MissingPrivilege]:
        def one(sql: str, **params):
            return conn.execute(sa.text(sql), params).first()

        user, database = one("SELECT current_user, current_database()")
        to = ident(user)
        missing: list[MissingPrivilege] = []
        unread = [
            t
            for t in request.read
            if one("SELECT has_table_privilege(to_regclass(:t), 'SELECT')", t=t)[0] is False
        ]
        if unread:
            missing.append(
                MissingPrivilege(
                    "SELECT",
                    ", ".join(unread),
                    "reads Nova's tables",
                    f"GRANT SELECT ON {', '.join(map(ident, unread))} TO {to};",
                )
            )
        if (
            request.temporary
            and not one("SELECT has_database_privilege(current_database(), 'TEMP')")[0]
        ):
            missing.append(
                MissingPrivilege(
                    "TEMP",
                    f"database {database}",
                    "the evidence snapshot and the plan are temporary tables",
                    f"GRANT TEMP ON DATABASE {ident(database)} TO {to};",
                )
            )
        for table in dict.fromkeys(request.alter + request.index):
            row = one(
                "SELECT pg_has_role(current_user, c.relowner, 'USAGE'), r.rolname, r.rolsuper "
                "FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE c.oid = to_regclass(:t)",
                t=table,
            )
            if row is None or row[0]:
                continue
            what = " and ".join(
                sql
                for sql, tables in (
                    ("ALTER TABLE ADD COLUMN", request.alter),
                    ("CREATE INDEX", request.index),
                )
                if table in tables
            )
            fix = (
                f"`schema upgrade` as {row[1]} (a superuser owns the table: do not grant that role)"
                if row[2]
                else f"GRANT {ident(row[1])} TO {to}; (or run `schema upgrade` as {row[1]})"
            )
            missing.append(
                MissingPrivilege(
                    f"ownership ({what})",
                    f"{table} (owned by {row[1]})",
                    "PostgreSQL lets only a table's owner add a column or build an index",
                    fix,
                )
            )
        for table in request.update:
            if (
                one("SELECT has_column_privilege(to_regclass(:t), 'host', 'UPDATE')", t=table)[0]
                is False
            ):
                missing.append(
                    MissingPrivilege(
                        "UPDATE",
                        table,
                        "writes the host column",
                        f"GRANT UPDATE (host) ON {ident(table)} TO {to};",
                    )
                )
        missing.extend(self._state_privileges(conn, request, database, to))
        if (request.replicas or request.load) and not one(
            "SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')"
        )[0]:
            uses = " and ".join(
                text
                for text, wanted in (
                    ("--max-lag reads pg_stat_replication", request.replicas),
                    ("--max-load reads pg_stat_activity", request.load),
                )
                if wanted
            )
            missing.append(
                MissingPrivilege(
                    "pg_read_all_stats",
                    "the server",
                    f"{uses}, whose columns other users' sessions hide",
                    f"GRANT pg_monitor TO {to};",
                )
            )
        return missing

    def _state_privileges(
        self, conn: sa.Connection, request: PrivilegeRequest, database: str, to: str
    ) -> list[MissingPrivilege]:
        if request.state is None:
            return []
        schema = request.location.schema
        exists = conn.execute(
            sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :n"), {"n": schema}
        ).first()
        if not exists:
            if (
                request.state != "create"
                or conn.execute(
                    sa.text("SELECT has_database_privilege(current_database(), 'CREATE')")
                ).scalar()
            ):
                return []
            return [
                MissingPrivilege(
                    "CREATE",
                    f"database {database}",
                    f'creates the state schema "{schema}"',
                    f"GRANT CREATE ON DATABASE {ident(database)} TO {to}; (or, as the "
                    f"database owner, CREATE SCHEMA {ident(schema)} AUTHORIZATION {to};)",
                )
            ]
        wanted = {
            "read": ["SELECT"],
            "write": ["SELECT", "INSERT", "UPDATE", "DELETE"],
            "create": ["SELECT", "INSERT", "UPDATE", "DELETE"],
        }[request.state]
        lacking: list[str] = []
        usage = conn.execute(
            sa.text("SELECT has_schema_privilege(:s, 'USAGE')"), {"s": schema}
        ).scalar()
        if not usage:
            lacking.append("USAGE")
        if (
            request.state == "create"
            and not conn.execute(
                sa.text("SELECT has_schema_privilege(:s, 'CREATE')"), {"s": schema}
            ).scalar()
        ):
            lacking.append("CREATE")
        # By oid: resolving "schema.table" would itself need USAGE on the schema.
        for privilege in wanted:
            held = conn.execute(
                sa.text(
                    "SELECT bool_and(has_table_privilege(c.oid, :p)) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = :s AND c.relkind = 'r' AND c.relname = ANY(:t)"
                ),
                {"s": schema, "t": list(request.state_tables), "p": privilege},
            ).scalar()
            if held is False:
                lacking.append(privilege)
        sequences = (
            request.state != "read"
            and conn.execute(
                sa.text(
                    "SELECT bool_and(has_sequence_privilege(c.oid, 'USAGE')) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = :s AND c.relkind = 'S'"
                ),
                {"s": schema},
            ).scalar()
            is False
        )
        if not lacking and not sequences:
            return []
        grants = []
        if "USAGE" in lacking or "CREATE" in lacking:
            on_schema = ", ".join(p for p in ("USAGE", "CREATE") if p in lacking)
            grants.append(f"GRANT {on_schema} ON SCHEMA {ident(schema)} TO {to};")
        on_tables = [p for p in lacking if p not in ("USAGE", "CREATE")]
        if on_tables:
            grants.append(
                f"GRANT {', '.join(on_tables)} ON ALL TABLES IN SCHEMA {ident(schema)} TO {to};"
            )
        if sequences:
            lacking.append("sequence USAGE")
            grants.append(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {ident(schema)} TO {to};")
        why = {
            "read": "reads the toolkit's own tables",
            "write": "records runs, checkpoints and the audit",
            "create": "creates the state tables and records revisions",
        }[request.state]
        return [MissingPrivilege(", ".join(lacking), f'schema "{schema}"', why, " ".join(grants))]

    def state_access(self, conn: sa.Connection, location: StateLocation) -> str:
        # The catalog shows every schema and table to everyone; only the toolkit's
        # own tables matter (the schema may also hold a simulation's truth tables).
        row = conn.execute(
            sa.text(
                "SELECT has_schema_privilege(n.oid, 'USAGE'), "
                "bool_and(has_table_privilege(c.oid, 'SELECT')), count(c.oid) "
                "FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid "
                "AND c.relkind = 'r' AND c.relname IN (:version, 'audit') "
                "WHERE n.nspname = :n GROUP BY n.oid"
            ),
            {"n": location.schema, "version": VERSION_TABLE},
        ).first()
        if row is None:
            return "absent"
        usage, select, toolkit_tables = row
        if toolkit_tables and (not usage or select is False):
            return "unreadable"
        return "readable"

    def privilege_hint(self, statement: str | None, message: str, user: str, database: str) -> str:
        to = ident(user)
        privilege = statement_privilege(statement)
        if "temporary tables" in message:
            return (
                "the statement needs the TEMP privilege: run "
                f"GRANT TEMP ON DATABASE {ident(database)} TO {to};"
            )
        owner = re.search(r"must be owner of (?:table|relation|index) (\S+)", message)
        if owner:
            return (
                f"only the owner of {owner.group(1)} may do this: run it as the table's owner, "
                f"or GRANT <owner role> TO {to};"
            )
        denied = re.search(r"permission denied for (table|schema|database|sequence) (\S+)", message)
        if denied:
            kind, name = denied.groups()
            if kind == "schema":
                wanted = "CREATE" if privilege == "CREATE" else "USAGE"
                return (
                    f"the statement needs {wanted} on schema {name}: run "
                    f"GRANT {wanted} ON SCHEMA {name} TO {to};"
                )
            if kind == "database":
                return (
                    f"the statement needs CREATE on database {name}: run "
                    f"GRANT CREATE ON DATABASE {name} TO {to};"
                )
            if kind == "sequence":
                return (
                    f"the statement needs USAGE on sequence {name}: run "
                    f"GRANT USAGE ON SEQUENCE {name} TO {to};"
                )
            wanted = (
                privilege if privilege in ("SELECT", "INSERT", "UPDATE", "DELETE") else "SELECT"
            )
            return (
                f"the statement needs the {wanted} privilege: run GRANT {wanted} ON {name} TO {to};"
            )
        return super().privilege_hint(statement, message, user, database)

    def write_grant(self, user: str, table: str, schema: str | None, database: str | None) -> str:
        if schema is None:
            return f"GRANT UPDATE (host) ON {table} TO {user};"
        return (
            f"GRANT USAGE ON SCHEMA {schema} TO {user}; "
            f"GRANT ALL ON ALL TABLES IN SCHEMA {schema} TO {user};"
        )
