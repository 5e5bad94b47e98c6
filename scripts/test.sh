#!/usr/bin/env bash
# Install everything from nothing and run the whole test suite on SQLite,
# PostgreSQL and MariaDB/MySQL.  This is the README's test command and what
# .ci/run calls.  Extra arguments go to pytest (e.g. --backend sqlite, -k name).
#
# Needs: python3 (>= 3.10) with venv, PostgreSQL on 127.0.0.1:5432 (user
# postgres, trust) and MariaDB on 127.0.0.1:3306 (root, no password); see
# tests/conftest.py for the variables that point elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
# The optional compiled MySQL driver, when its build dependencies are here
# (.ci/run installs them): tests/test_mysqlclient.py runs over it. A failed build
# is not fatal here: those tests then skip, or fail under CI=true.
if command -v pkg-config >/dev/null && { pkg-config --exists libmariadb || pkg-config --exists mysqlclient; }; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,mysqlclient]' ||
        echo "scripts/test.sh: could not build mysqlclient (optional): its tests skip" >&2
fi

# A real Nova in its own scratch virtualenv, for the tests that run Nova's own
# db sync and archiver against our revisions (Nova is never our dependency).
if [ "${ACTIONHOST_SKIP_REAL_NOVA:-}" != "1" ]; then
    if ! .cache/nova-venv/bin/python -c 'import nova.db.migration' 2>/dev/null; then
        rm -rf .cache/nova-venv
        "$PYTHON" -m venv .cache/nova-venv
        .cache/nova-venv/bin/python -m pip install -q --disable-pip-version-check \
            -c tests/realnova/constraints.txt nova PyMySQL 'psycopg[binary]' psycopg2-binary
    fi
    export ACTIONHOST_NOVA_PYTHON="$PWD/.cache/nova-venv/bin/python"
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
