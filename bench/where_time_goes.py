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
calling thread applies (``engine/pipeline.py``), and with ``--workers N`` (the
default is the backfill's) its planners decide in processes of their own
(``engine/workers.py``).  cProfile sees one thread, so every thread the run
starts gets a profiler of its own, and so does every planner process: a
``sitecustomize`` module put first on their ``PYTHONPATH`` profiles a
process started by ``multiprocessing``'s spawn and writes its statistics
when it exits.  All are merged: the split covers the runner, its threads and
its planners.  A thread or process blocked on another (the hand-over queue, a
lock, a planner's pipe, the runner waiting for the planners) is idle, not
working: that time is shown apart, as ``waiting on another thread or
process``, and left out of the percentages.

The cyclic garbage collector's time is charged by cProfile to whatever function
was running when it started, in any layer: it is also measured on its own
(``gc.callbacks``, in the planners too) and printed apart, with how many full
collections ran.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from unittest import mock

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

#: Put first on the planners' ``PYTHONPATH``: profiles a process that
#: multiprocessing's spawn started (not its resource tracker) and, when it
#: exits, writes its statistics and its garbage collections to $WHERE_TIME_GOES_DIR.
_SITECUSTOMIZE = """
import sys

if "--multiprocessing-fork" in sys.argv:
    import atexit, cProfile, gc, json, os, time

    _out = os.path.join(os.environ["WHERE_TIME_GOES_DIR"], f"planner-{os.getpid()}")
    _gc = {"seconds": 0.0, "full": 0, "started": 0.0}

    def _timed(phase, info):
        if phase == "start":
            _gc["started"] = time.perf_counter()
        else:
            _gc["seconds"] += time.perf_counter() - _gc["started"]
            _gc["full"] += info["generation"] == 2

    def _write():
        _profile.disable()
        _profile.dump_stats(_out + ".pstats")
        with open(_out + ".json", "w") as f:
            json.dump({"seconds": _gc["seconds"], "full": _gc["full"]}, f)

    gc.callbacks.append(_timed)
    _profile = cProfile.Profile()
    atexit.register(_write)
    _profile.enable()
"""


def _idle_caller(caller: tuple, stats: dict) -> bool:
    """Whether a C function called from ``caller`` waits on another process:
    a planner on its pipe, the runner on its planners (``multiprocessing``,
    directly or through ``selectors``)."""
    filename = caller[0].replace("\\", "/")
    if "/multiprocessing/" in filename:
        return True
    if filename.endswith("/selectors.py"):
        callers = stats.get(caller, (0, 0, 0, 0, {}))[4]
        return any("/multiprocessing/" in c[0].replace("\\", "/") for c in callers)
    return False


def layers_of(key: tuple, stats: dict) -> Counter:
    """One function's self time by layer: a C function that some callers use to
    wait on another process is split by caller."""
    filename, _, function = key
    _, _, tottime, _, callers = stats[key]
    where = layer(filename, function)
    idle = 0.0
    if filename == "~" and where != "waiting":
        idle = sum(t[2] for caller, t in callers.items() if _idle_caller(caller, stats))
    split = Counter({where: tottime - idle})
    split["waiting"] += idle
    return split


def split_by_layer(stats: dict) -> Counter:
    """Every function's self time in one layer (``waiting`` apart)."""
    split: Counter = Counter()
    for key in stats:
        split.update(layers_of(key, stats))
    return split


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
    parser.add_argument(
        "--workers", type=int, default=None, help="Planners (default: the backfill's default)."
    )
    args = parser.parse_args()
    url = parse_url(args.db)
    with tempfile.TemporaryDirectory(prefix="where-time-goes-") as planners:
        Path(planners, "sitecustomize.py").write_text(_SITECUSTOMIZE)
        path = os.pathsep.join(p for p in (planners, os.environ.get("PYTHONPATH")) if p)
        # Set for the run (the planners inherit them), restored afterwards.
        with mock.patch.dict(os.environ, PYTHONPATH=path, WHERE_TIME_GOES_DIR=planners):
            return _profiled(url, args, Path(planners))


def _profiled(url, args, planners: Path) -> int:
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
        options = {} if args.workers is None else {"workers": args.workers}
        result = run_backfill(url, BackfillOptions(include_shadow=True, **options))
    finally:
        profile.disable()
        threading.Thread.run = run
        gc.callbacks.remove(timed)
    location = resolve_state_location(url)
    engine = create_engine(url, location)
    with engine.connect() as conn:
        forget_runs(conn, location.schema)
    engine.dispose()
    planner_stats = sorted(planners.glob("planner-*.pstats"))
    for written in planners.glob("planner-*.json"):
        theirs = json.loads(written.read_text())
        collecting["seconds"] += theirs["seconds"]
        collecting["full"] += theirs["full"]
    stats = pstats.Stats(profile, *threads, *(str(p) for p in planner_stats))
    split = split_by_layer(stats.stats)
    total = sum(split[name] for name in LAYERS)
    print(
        f"{result.examined:,} events in {result.elapsed:.1f}s under the profiler "
        f"(plan {result.plan_seconds:.1f}s, {result.batches} batches, "
        f"{1 + len(threads)} threads and {len(planner_stats)} planner processes "
        f"profiled, {url.drivername})"
    )
    for name in LAYERS:
        print(f"{name:>10}: {split[name]:7.2f}s  {100 * split[name] / total:5.1f}%")
    print(f"   waiting on another thread or process: {split['waiting']:.2f}s (not in the split)")
    print(
        f"   garbage collection: {collecting['seconds']:.2f}s, {collecting['full']} full "
        "collections (charged above to the functions they interrupted)"
    )
    if args.top:
        ranked = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[: args.top]
        for key, (_, _, tottime, _, _) in ranked:
            filename, line, function = key
            where = f"{Path(filename).name}:{line}" if filename != "~" else "C"
            mostly = layers_of(key, stats.stats).most_common(1)[0][0]
            print(f"  {tottime:7.2f}s  {mostly:>10}  {function} ({where})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
