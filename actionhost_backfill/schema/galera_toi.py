"""The Galera cluster's stall under Total Order Isolation, estimated before an index build.

Without ``--galera-rolling``, ``schema upgrade`` builds the host index under TOI
(Galera's default for DDL): every node stops committing meanwhile, about
:data:`TOI_SECONDS_PER_MILLION` seconds per million events.  :func:`refuse_long_toi`
refuses a build estimated to stall longer than ``--galera-max-toi-stall``.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import URL

from actionhost_backfill import db
from actionhost_backfill.dialects import for_connection, for_url, galera
from actionhost_backfill.errors import BadInput
from actionhost_backfill.nova import catalog

#: Seconds of cluster-wide write stall per million events for a TOI index build,
#: measured with bench/galera_toi.py (runbook 05: 1,736 / 1,851 ms at 1 M).
TOI_SECONDS_PER_MILLION = 1.8
#: ``schema upgrade`` on Galera refuses a TOI build estimated to stall longer.
DEFAULT_MAX_TOI_STALL = 5.0


class TOIStallRefused(BadInput):
    """``schema upgrade`` on Galera would stall the cluster too long under TOI."""


def toi_stall(url: URL) -> tuple[float, int] | None:
    """On a Galera node whose events lack an index led by host: the estimated
    cluster-wide stall of a TOI build (seconds) and the rows it is estimated from.
    None elsewhere (not Galera, the index already there, not a Nova database)."""
    if not for_url(url).may_be_galera:
        return None
    engine = db.create_engine(url, attach="never")
    try:
        with db.connect(engine) as conn:
            if not for_connection(conn).is_galera(conn):
                return None
            if catalog.EVENTS not in catalog.list_tables(conn):
                return None
            if any(ix.valid for ix in catalog.host_indexes(conn)):
                return None
            rows = galera.table_rows(conn, catalog.EVENTS)
    except sa.exc.DBAPIError as exc:
        raise db.translate_error(exc, url) from None
    finally:
        engine.dispose()
    return rows / 1e6 * TOI_SECONDS_PER_MILLION, rows


def refuse_long_toi(url: URL, max_stall: float) -> None:
    """Refuse a TOI index build estimated to stall the cluster longer than ``max_stall``."""
    found = toi_stall(url)
    if found is None:
        return
    stall, rows = found
    if stall > max_stall:
        raise TOIStallRefused(
            f"Galera cluster: building the index under TOI would stop every node's commits "
            f"for about {stall:.0f} s (~{rows:,} events x {TOI_SECONDS_PER_MILLION} s per "
            f"million, runbook 05), over --galera-max-toi-stall {max_stall:g} s: pass "
            "--galera-rolling to build it node by node (RSU), or --galera-toi to accept the stall"
        )
