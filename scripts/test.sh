#!/usr/bin/env bash
# Test command: installs everything into .venv, then lint, type-check and the whole test suite
# (unit, emulator over loopback, Airflow dag.test() runs, and the deployment test).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
echo "==> ruff"
.venv/bin/ruff check docify_provider tests example_dags scripts benchmarks
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
exec .venv/bin/pytest -p no:cacheprovider "$@"
