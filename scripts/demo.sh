#!/usr/bin/env bash
# Main job: installs everything into .venv, then runs the example invoice pipeline
# (bundled emulator by default; real Docify when DOCIFY_API_KEY is set).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python scripts/demo.py "$@"
