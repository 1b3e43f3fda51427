#!/usr/bin/env bash
# Set up everything convbot needs in this checkout: .venv/ from the lock file, convbot itself.
# Safe to run again; it only changes what differs from the lock.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
if ! .venv/bin/python -m uv --version >/dev/null 2>&1; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
fi
# The lock pins every package, TensorFlow and tensorflowjs included (see pyproject.toml for why ydf is pinned).
.venv/bin/python -m uv pip sync --quiet --python .venv/bin/python requirements.lock
.venv/bin/python -m uv pip install --quiet --python .venv/bin/python --no-deps -e .
echo "convbot is set up in $(pwd)/.venv"
