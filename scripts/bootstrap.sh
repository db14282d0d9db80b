#!/usr/bin/env bash
# Creates .venv with everything the provider, its tests and its example pipeline need.
# Idempotent: re-installs only when the lock file or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.docify-installed
want=$(cat requirements/dev.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade uv
  .venv/bin/uv pip install -q --python .venv/bin/python -r requirements/dev.lock -e ".[dev]"
  echo "$want" > "$stamp"
fi
