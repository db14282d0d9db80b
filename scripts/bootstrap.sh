#!/usr/bin/env bash
# Creates a virtualenv with everything the provider, its tests and its example pipelines need.
#   scripts/bootstrap.sh          .venv: the newest Airflow line (requirements/dev.lock), the
#                                 project editable, with the dev tools
#   scripts/bootstrap.sh 3.0      .venv-3.0: that line's lock (requirements/airflow-3.0.lock) and the
#                                 project built and installed as a wheel, as a user would install it
# Idempotent: re-installs dependencies only when the lock file or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
line=${1:-}
if [ -z "$line" ]; then
  venv=.venv lock=requirements/dev.lock
else
  venv=.venv-$line lock=requirements/airflow-$line.lock
  [ -f "$lock" ] || { echo "no lock file $lock for Airflow line $line" >&2; exit 2; }
  bash scripts/bootstrap.sh  # the newest line's venv holds uv
fi
if [ ! -x "$venv/bin/python" ]; then
  "$PY" -m venv "$venv"
fi
stamp=$venv/.docify-installed
want=$(cat "$lock" pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -z "$line" ]; then
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/python -m pip install -q --upgrade uv
    .venv/bin/uv pip install -q --python .venv/bin/python -r "$lock" -e ".[dev]"
    echo "$want" > "$stamp"
  fi
else
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/uv pip install -q --python "$venv/bin/python" -r "$lock"
    echo "$want" > "$stamp"
  fi
  # The wheel of the working tree, every time (cheap): what `pip install airflow-provider-docify` gives.
  # Built in the tree, where setuptools reuses build/lib: a module since deleted from the tree stays
  # in the wheel (a build/lib from before issue 18 still ships docify_provider/client), so it goes first.
  rm -rf build
  .venv/bin/uv pip install -q --python "$venv/bin/python" --no-deps --reinstall-package airflow-provider-docify \
    --compile-bytecode .
fi
# Bytecode of everything installed, once per install: without it (uv writes none; PYTHONDONTWRITEBYTECODE,
# set on many CI machines, keeps Python from writing it) every Airflow process the tests start (each
# deployment component, each task, each CLI call) compiles Airflow from source again: twice the CPU.
if [ "$(cat "$venv/.docify-compiled" 2>/dev/null)" != "$want" ]; then
  "$venv/bin/python" -m compileall -q -j 0 "$venv/lib" >/dev/null 2>&1 || true
  echo "$want" > "$venv/.docify-compiled"
fi
