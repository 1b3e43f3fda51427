#!/usr/bin/env bash
# The whole test suite, from a fresh checkout: set up, lint, type-check, test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
