"""Handing buffered history rows over in batches, and writing a batch into the cell."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from actionhost_backfill.dialects import bulk
from actionhost_backfill.nova.models import build_metadata
from actionhost_backfill.sim.columns import COLUMNS, WRITTEN_TABLES


@dataclass
class Batch:
    """What :meth:`HistoryBuilder.take` hands over: rows to insert, then changes."""

    rows: dict[str, list[list]]
    updates: dict[str, dict[int, dict[str, object]]]
    soft_deletes: list[tuple[str, str, datetime | None]]


class BatchWriting:
    """``HistoryBuilder``'s hand-over (:meth:`take`) and writes (:meth:`write_batch`)."""

    __slots__ = ()

    def discard(self) -> None:
        """Drop everything buffered or pending, as if written (a dry run)."""
        self.take()

    def pending(self) -> int:
        return sum(len(v) for v in self.rows.values())

    def _layout(self, name: str, base: str) -> tuple[tuple[str, ...], list[int] | None]:
        """The columns to insert into ``name`` and, if some are missing there, which to keep."""
        layout = self._layouts.get(name)
        if layout is None:
            assert self._meta is not None
            present = set(self._meta.tables[name].c.keys())
            columns = COLUMNS[base]
            keep = [i for i, c in enumerate(columns) if c in present]
            if len(keep) == len(columns):
                layout = (columns, None)
            else:
                layout = (tuple(columns[i] for i in keep), keep)
            self._layouts[name] = layout
        return layout

    def write(self, conn: sa.Connection, *, chunk: int = 5000) -> dict[str, int]:
        """Insert everything buffered (foreign-key order), then apply pending changes."""
        return self.write_batch(conn, self.take(), chunk=chunk)

    def take(self) -> Batch:
        """Hand over everything buffered or pending; later changes to it become UPDATEs.

        The batch can be written (:meth:`write_batch`) on another thread while
        this builder goes on buffering, as long as batches are written in order.
        """
        batch = Batch(self.rows, self._updates, self._soft_deletes)
        self.rows = defaultdict(list)
        self._updates = defaultdict(dict)
        self._soft_deletes = []
        self._buffered.clear()
        self._buffered_instances.clear()
        for open_events in (self._open_events, self._latest_events):
            for names in open_events.values():
                for entry in names.values():
                    if isinstance(entry[0], list):
                        entry[0] = entry[0][0]
        return batch

    def write_batch(
        self, conn: sa.Connection, batch: Batch, *, chunk: int = 5000
    ) -> dict[str, int]:
        """Insert a batch's rows (foreign-key order), then apply its changes to written rows."""
        if self._meta is None:
            names = set(sa.inspect(conn).get_table_names())
            self._meta = build_metadata(
                with_host="host"
                in {c["name"] for c in sa.inspect(conn).get_columns("instance_actions_events")},
                with_shadow="shadow_instances" in names,
            )
            self._present = names
        written: dict[str, int] = {}
        for base in WRITTEN_TABLES:
            for name in (base, f"shadow_{base}"):
                rows = batch.rows.get(name)
                if not rows:
                    continue
                if name not in self._present:
                    raise KeyError(f"table {name} is missing from the cell schema")
                columns, keep = self._layout(name, base)
                if keep is not None:
                    rows = [[row[i] for i in keep] for row in rows]
                bulk.insert_rows(conn, name, columns, rows)
                written[name] = len(rows)
        self._apply_updates(conn, batch.updates, chunk)
        self._apply_soft_deletes(conn, batch.soft_deletes, chunk)
        return written

    def _apply_updates(
        self, conn: sa.Connection, updates: dict[str, dict[int, dict]], chunk: int
    ) -> None:
        assert self._meta is not None
        for name, by_id in updates.items():
            table = self._meta.tables[name]
            shapes: dict[tuple[str, ...], list[dict]] = defaultdict(list)
            for row_id, values in by_id.items():
                params = {f"v_{key}": value for key, value in values.items() if key in table.c}
                params["v_id"] = row_id
                shapes[tuple(sorted(params))].append(params)
            for shape, params in shapes.items():
                statement = (
                    table.update()
                    .where(table.c.id == sa.bindparam("v_id"))
                    .values({key[2:]: sa.bindparam(key) for key in shape if key != "v_id"})
                )
                for part in bulk.chunks(params, chunk):
                    conn.execute(statement, part)

    def _apply_soft_deletes(
        self, conn: sa.Connection, soft_deletes: list[tuple[str, str, datetime | None]], chunk: int
    ) -> None:
        assert self._meta is not None
        by_table: dict[str, list[dict]] = defaultdict(list)
        for name, instance_uuid, at in soft_deletes:
            by_table[name].append({"v_uuid": instance_uuid, "v_at": at})
        for name, params in by_table.items():
            table = self._meta.tables[name]
            statement = (
                table.update()
                .where(table.c.instance_uuid == sa.bindparam("v_uuid"), table.c.deleted == 0)
                .values(deleted=table.c.id, deleted_at=sa.bindparam("v_at"))
            )
            for part in bulk.chunks(params, chunk):
                conn.execute(statement, part)
