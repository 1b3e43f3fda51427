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

# TF.js in Node.js (pure-JavaScript @tensorflow/tfjs), to run converted TF.js models for verification.
# Reinstalled only when the lock file changes. --ignore-scripts: nothing here needs install scripts.
if command -v npm >/dev/null 2>&1; then
    stamp=node/node_modules/.convbot-lock.sha256
    lock_hash=$(sha256sum node/package-lock.json | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$lock_hash" ]; then
        (cd node && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
        echo "$lock_hash" > "$stamp"
    fi
else
    echo "warning: npm not found; TF.js artifacts will not be executed (install Node.js 20 and npm)" >&2
fi
echo "convbot is set up in $(pwd)/.venv"
