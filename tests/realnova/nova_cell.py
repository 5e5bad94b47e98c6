"""Drive a real Nova (from a scratch virtualenv) against a cell database.

Run with the interpreter of a virtualenv where ``nova`` is installed (never
the toolkit's own environment: Nova is not a dependency):

    $NOVA_PYTHON nova_cell.py sync URL      # what `nova-manage db sync` does for a cell
    $NOVA_PYTHON nova_cell.py archive URL   # the cell part of `archive_deleted_rows`

Both print one JSON object on stdout; a failure prints
{"error": ..., "message": ...} on stderr and exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
import warnings


def _configure(url: str):
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    import nova.conf
    from nova.db.main import api as main_api

    conf = nova.conf.CONF
    conf([], project="nova", default_config_files=[], default_config_dirs=[])
    conf.set_override("connection", url, group="database")
    main_api.configure(conf)


def sync(url: str) -> dict:
    _configure(url)
    from nova.db import migration

    migration.db_sync(database="main")
    return {"version": migration.db_version(database="main")}


def archive(url: str, max_rows: int) -> dict:
    _configure(url)
    from nova import context
    from nova.db.main import api as main_api

    tables, uuids, total = main_api.archive_deleted_rows(
        context.get_admin_context(), max_rows, before=None, task_log=False
    )
    return {"tables": dict(tables), "instance_uuids": sorted(uuids), "total": total}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=("sync", "archive"))
    parser.add_argument("url")
    parser.add_argument("--max-rows", type=int, default=1000)
    args = parser.parse_args()
    try:
        result = sync(args.url) if args.command == "sync" else archive(args.url, args.max_rows)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), file=sys.stderr)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
