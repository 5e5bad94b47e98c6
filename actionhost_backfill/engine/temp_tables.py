"""Temporary tables on the runner's own connection: created from a SELECT, indexed, dropped.

The evidence snapshot (``engine.evidence_tables``) and the planner keep
their tables on one connection through these.  Where ``CREATE TABLE ...
SELECT`` would lock every row it reads (MySQL under REPEATABLE READ,
statement-based binlog) the rows are copied through the client instead.
"""

from __future__ import annotations

import sqlalchemy as sa

from actionhost_backfill import dialects
from actionhost_backfill.dialects import bulk


class TemporaryTables:
    """Temporary tables on one connection; ``metadata`` holds the ones declared here."""

    def __init__(self, conn: sa.Connection):
        self.conn = conn
        self.dialect = dialects.for_connection(conn)
        # MySQL under REPEATABLE READ (statement-based binlog) would lock every
        # row CREATE ... SELECT reads: copy through the client instead.
        self.copy_through_client = self.dialect.copies_through_client(conn)
        self.metadata = sa.MetaData()

    def create_temp(
        self,
        name: str,
        select: sa.Select | sa.CompoundSelect,
        index_columns: list[str],
        *,
        columns: sa.Table | None = None,
        grouped_by: str | None = None,
    ) -> None:
        """CREATE TEMPORARY TABLE ``name`` AS ``select``, indexed on ``index_columns``;
        ``columns``: its declaration, when it is not in ``metadata``.

        ``grouped_by``: the rows are written in the order of this column, so the
        rows of one value (an instance's events) lie together: reading a chunk
        of values through the index then touches a few pages per value, not a
        page per row scattered over the whole table.
        """
        conn = self.conn
        self.drop_temp(name)
        conn.commit()
        if grouped_by is not None:
            select = select.order_by(sa.literal_column(grouped_by))
        if self.copy_through_client:
            self._copy_through_client(name, select, columns)
        else:
            compiled = select.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
            # Compiled for the driver's paramstyle: exec_driver_sql un-doubles any %%.
            conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {name} AS {compiled}")
        for column in index_columns:
            conn.exec_driver_sql(f"CREATE INDEX {name}_{column}_ix ON {name} ({column})")
        self.dialect.analyze_temp(conn, name)
        conn.commit()

    def _copy_through_client(self, name: str, select, columns: sa.Table | None) -> None:
        """Non-locking reads on a second connection, inserted here in chunks."""
        target = columns if columns is not None else self.metadata.tables[name]
        self.create_empty(target)
        keys = [c.name for c in target.columns]
        with self.conn.engine.connect() as reader:
            result = reader.execution_options(stream_results=True).execute(select)
            while rows := result.fetchmany(10_000):
                bulk.insert_rows(self.conn, name, keys, [tuple(row) for row in rows])
        self.conn.commit()

    def create_empty(self, table: sa.Table) -> None:
        """CREATE TEMPORARY TABLE with ``table``'s columns (and primary key)."""
        quote = self.conn.dialect.identifier_preparer.quote
        columns = ", ".join(
            f"{quote(c.name)} {c.type.compile(dialect=self.conn.dialect)}"
            + (" PRIMARY KEY" if c.primary_key else "")
            for c in table.columns
        )
        self.conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {table.name} ({columns})")

    def drop_temp(self, name: str) -> None:
        self.dialect.drop_temp(self.conn, name)

    def drop(self) -> None:
        for name in self.metadata.tables:
            self.drop_temp(name)
        self.conn.commit()
