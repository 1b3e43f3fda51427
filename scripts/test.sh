#!/usr/bin/env bash
# The whole test suite, from a fresh checkout: set up, lint, type-check, test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

# PostgreSQL 15 for the database tests: tests/db_fixtures.py starts its own private server on
# 127.0.0.1 (no system cluster, no service), so only the binaries are needed.
if [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends postgresql-common >/dev/null
    sed -ri 's/^#?[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' \
        /etc/postgresql-common/createcluster.conf
    apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
fi
# Redis for the Celery backend's tests: tests/redis_fixtures.py starts its own private server on 127.0.0.1.
if ! command -v redis-server >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
# systemd-analyze verifies deploy/convbot.service in the tests.
if ! command -v systemd-analyze >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi

.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
