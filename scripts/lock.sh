#!/usr/bin/env bash
# Regenerates the lock file of every Airflow line the package claims (run after changing the
# dependencies in pyproject.toml; needs .venv from scripts/bootstrap.sh for uv).
#
# requirements/dev.lock is the newest line (3.3.x) with the dev tools; uv keeps its existing pins
# unless you pass --upgrade or --upgrade-package NAME. The older lines are resolved as of the day
# their newest patch release came out (--exclude-newer), which is what Airflow's own constraint
# files pin: an unconstrained install of 3.0.6 today pulls a cadwyn, fastapi, universal-pathlib
# and svcs too new for it. Only common-compat and httpx-sse may be newer there, since the provider
# needs releases that came later (their floors are pinned in requirements/airflow-3.0.in).
set -euo pipefail
cd "$(dirname "$0")/.."
UV=.venv/bin/uv
PYV=3.11

"$UV" pip compile -q pyproject.toml --extra dev --python-version "$PYV" -o requirements/dev.lock "$@"

lock() {  # line, day after its newest release, extra
  "$UV" pip compile -q pyproject.toml "requirements/airflow-$1.in" --extra "$3" --python-version "$PYV" \
    --exclude-newer "$2" --exclude-newer-package "apache-airflow-providers-common-compat=2026-12-01" \
    --exclude-newer-package "httpx-sse=2026-12-01" \
    -o "requirements/airflow-$1.lock"
}
lock 3.0 2025-08-30 test       # the airflow_line tests and the triggerer-restart deployment run on it
lock 3.1 2026-03-12 test       # the airflow_line tests and two human-in-the-loop deployments run on it
lock 3.2 2026-05-30 test       # the airflow_line tests and the example pipelines run on it
