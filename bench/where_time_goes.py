"""Where a backfill's time goes: one run under cProfile, its self time split by layer.

    python bench/where_time_goes.py --db postgresql+psycopg://postgres@127.0.0.1/ahbench_x

The database must hold a history with NULL hosts and the toolkit's schema
(``bench/run.py --keep`` leaves one).  The hosts the run fills are set back
to NULL afterwards (and its runs forgotten) so it can be profiled again.
Every function's *self* time goes to exactly one layer, so the layers add up
to the total:

* server: waiting on the database (socket reads, psycopg's wait, sqlite3's C calls,
  mysqlclient's query);
* driver: the DB-API driver (PyMySQL decoding and escaping in Python, psycopg,
  mysqlclient's C row fetching);
* sqlalchemy: statement compilation, result processing;
* inference: the rules (``actionhost_backfill/inference`` except evidence loading);
* toolkit: the rest of the toolkit (evidence loading, planner, applier, state);
* other: everything else (stdlib, tqdm, ...).

On PostgreSQL and MariaDB the backfill decides in a planner thread while the
calling thread applies (``engine/pipeline.py``).  cProfile sees one thread, so
every thread the run starts gets a profiler of its own and the statistics are
merged: the split covers the planner and the applier.  A thread blocked on the
other (the hand-over queue, a lock) is idle, not working: that time is shown
apart, as ``waiting on the other thread``, and left out of the percentages.
The run decides with one planner (``--workers 1``): planners in processes of
their own (``engine/workers.py``) would do their work where no profiler sees it.

The cyclic garbage collector's time is charged by cProfile to whatever function
was running when it started, in any layer: it is also measured on its own
(``gc.callbacks``) and printed apart, with how many full collections ran.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actionhost_backfill.db import create_engine, parse_url  # noqa: E402
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill  # noqa: E402
from actionhost_backfill.state.location import resolve_state_location  # noqa: E402
from bench.run import forget_runs  # noqa: E402

_SERVER_CALLS = ("recv", "recv_into", "poll", "select", "wait", "execute", "executemany", "commit")
#: mysqlclient's calls that send a statement and wait for the server's answer (its
#: ``Connection.query`` is a C function listed under its own name).
_MYSQLCLIENT_SERVER = (
    "'query'",
    "Connection.query ",
    "'send_query'",
    "'read_query_result'",
    "'next_result'",
)
#: Layers reported; ``waiting`` is idle time, not part of the split.
LAYERS = ("server", "driver", "sqlalchemy", "inference", "toolkit", "other")


def layer(filename: str, function: str) -> str:
    path = filename.replace("\\", "/")
    if path.startswith("~") or path == "<built-in>":  # C functions
        if "_thread.lock" in function and "acquire" in function:
            return "waiting"  # a thread blocked on the other one (queue, lock, join)
        if "_mysql." in function or "Connection.query " in function:
            return "server" if any(n in function for n in _MYSQLCLIENT_SERVER) else "driver"
        if any(name in function for name in _SERVER_CALLS) and (
            "socket" in function
            or "sqlite3" in function
            or "select" in function
            or "poll" in function
            or "psycopg" in function
        ):
            return "server"
        return "other"
    if "/psycopg/" in path and function == "wait":  # Connection.wait: for the server's answer
        return "server"
    if "/psycopg/waiting" in path:
        return "server"
    if any(name in path for name in ("/pymysql/", "/MySQLdb/", "/psycopg/", "/psycopg_binary/")):
        return "driver"
    if "/sqlalchemy/" in path:
        return "sqlalchemy"
    if "/actionhost_backfill/inference/" in path:
        return "inference"
    if "/actionhost_backfill/" in path:
        return "toolkit"
    return "other"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--top", type=int, default=0, help="Also list the N costliest functions.")
    args = parser.parse_args()
    url = parse_url(args.db)
    profile = cProfile.Profile()
    threads: list[cProfile.Profile] = []
    run = threading.Thread.run

    def profiled_run(thread: threading.Thread) -> None:
        mine = cProfile.Profile()
        threads.append(mine)
        mine.enable()
        try:
            run(thread)
        finally:
            mine.disable()

    collecting: dict[str, float] = {"seconds": 0.0, "full": 0, "started": 0.0}

    def timed(phase: str, info: dict) -> None:
        if phase == "start":
            collecting["started"] = time.perf_counter()
            return
        collecting["seconds"] += time.perf_counter() - collecting["started"]
        collecting["full"] += info["generation"] == 2

    gc.callbacks.append(timed)
    threading.Thread.run = profiled_run  # every thread the backfill starts
    profile.enable()
    try:
        result = run_backfill(url, BackfillOptions(include_shadow=True, workers=1))
    finally:
        profile.disable()
        threading.Thread.run = run
        gc.callbacks.remove(timed)
    location = resolve_state_location(url)
    engine = create_engine(url, location)
    with engine.connect() as conn:
        forget_runs(conn, location.schema)
    engine.dispose()
    stats = pstats.Stats(profile, *threads)
    split: Counter = Counter()
    for (filename, _, function), (_, _, tottime, _, _) in stats.stats.items():
        split[layer(filename, function)] += tottime
    total = sum(split[name] for name in LAYERS)
    print(
        f"{result.examined:,} events in {result.elapsed:.1f}s under the profiler "
        f"(plan {result.plan_seconds:.1f}s, {result.batches} batches, "
        f"{1 + len(threads)} threads profiled, {url.drivername})"
    )
    for name in LAYERS:
        print(f"{name:>10}: {split[name]:7.2f}s  {100 * split[name] / total:5.1f}%")
    print(f"   waiting on the other thread: {split['waiting']:.2f}s (not in the split)")
    print(
        f"   garbage collection: {collecting['seconds']:.2f}s, {collecting['full']} full "
        "collections (charged above to the functions they interrupted)"
    )
    if args.top:
        ranked = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[: args.top]
        for (filename, line, function), (_, _, tottime, _, _) in ranked:
            where = f"{Path(filename).name}:{line}" if filename != "~" else "C"
            print(f"  {tottime:7.2f}s  {layer(filename, function):>10}  {function} ({where})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
