"""Where a backfill's time goes: one run under cProfile, its self time split by layer.

    python bench/where_time_goes.py --db postgresql+psycopg://postgres@127.0.0.1/ahbench_x

The database must hold a history with NULL hosts and the toolkit's schema
(``bench/run.py --keep`` leaves one).  The hosts the run fills are set back
to NULL afterwards (and its runs forgotten) so it can be profiled again.
Every function's *self* time goes to exactly one layer, so the layers add up
to the total:

* server: waiting on the database (socket reads, psycopg's wait, sqlite3's C calls);
* driver: the DB-API driver in Python (PyMySQL decoding and escaping, psycopg);
* sqlalchemy: statement compilation, result processing;
* inference: the rules (``actionhost_backfill/inference`` except evidence loading);
* toolkit: the rest of the toolkit (evidence loading, planner, applier, state);
* other: everything else (stdlib, tqdm, ...).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actionhost_backfill.db import create_engine, parse_url  # noqa: E402
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill  # noqa: E402
from actionhost_backfill.state.location import resolve_state_location  # noqa: E402
from bench.run import forget_runs  # noqa: E402

_SERVER_CALLS = ("recv", "recv_into", "poll", "select", "wait", "execute", "executemany", "commit")


def layer(filename: str, function: str) -> str:
    path = filename.replace("\\", "/")
    if path.startswith("~") or path == "<built-in>":  # C functions
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
    if "/pymysql/" in path or "/psycopg/" in path or "/psycopg_binary/" in path:
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
    profile.enable()
    result = run_backfill(url, BackfillOptions(include_shadow=True))
    profile.disable()
    location = resolve_state_location(url)
    engine = create_engine(url, location)
    with engine.connect() as conn:
        forget_runs(conn, location.schema)
    engine.dispose()
    stats = pstats.Stats(profile)
    split: Counter = Counter()
    for (filename, _, function), (_, _, tottime, _, _) in stats.stats.items():
        split[layer(filename, function)] += tottime
    total = sum(split.values())
    print(
        f"{result.examined:,} events in {result.elapsed:.1f}s under the profiler "
        f"(plan {result.plan_seconds:.1f}s, {result.batches} batches)"
    )
    for name in ("server", "driver", "sqlalchemy", "inference", "toolkit", "other"):
        print(f"{name:>10}: {split[name]:7.2f}s  {100 * split[name] / total:5.1f}%")
    if args.top:
        ranked = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[: args.top]
        for (filename, line, function), (_, _, tottime, _, _) in ranked:
            where = f"{Path(filename).name}:{line}" if filename != "~" else "C"
            print(f"  {tottime:7.2f}s  {layer(filename, function):>10}  {function} ({where})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
