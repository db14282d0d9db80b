#!/usr/bin/env bash
# Test command: installs everything it needs, then lint, type-check, the docs site, the package check
# (the wheel and sdist, scripts/check_package.py) and the version matrix. Each test runs once, on the
# newest line, unless the reason to run it on an older one is written next to it:
#   Airflow 3.3 (newest line): the whole suite: the in-process tests (unit, wire, the three emulators
#       over loopback, dag.test() runs, the contract suite) in pytest-xdist workers; then the
#       deployments (real scheduler, triggerer, dag processor and API server processes; Celery with
#       Redis; a browser) two at a time; last, alone, the two (`solo`) that time a triggerer's failover.
#   Airflow 3.0: the `airflow_line` tests (pyproject.toml: what depends on the line; each mark says
#       why) and the triggerer-restart deployment (`restart_guard`).
#   Airflow 3.1: the `hitl_line` tests: a person's answer in Airflow under dag.test(), and two deployments.
#   Airflow 3.2: provider registration and the `airflow dify` CLI group, and the five example pipelines and three quick starts
#       pipelines under `airflow dags test` (scripts/demo.py --all).
# The pure wire and emulator tests (no Airflow) run once. Lines that lack a feature skip its tests
# with the reason.
# Each line installs from its own lock file (requirements/, see scripts/lock.sh) into its own venv,
# the provider as a built wheel. Arguments go to the 3.3 pytest runs; DOCIFY_MATRIX=0 runs only 3.3.
# DOCIFY_WORKERS (default 4) is the number of xdist workers of the in-process runs: their tests wait
# on sockets and timers more than they compute, so more workers than cores pay off.
set -uo pipefail
cd "$(dirname "$0")/.."

failed=0 passed_parts=0 total_passed=0 total_failed=0 total_skipped=0
timings=()
log_dir=out/test-logs
mkdir -p "$log_dir"

# Adds the counts of pytest's closing line in $1 to the totals.
count() {
  local line
  line=$(grep -E '^=+ .*(passed|failed|error).* in [0-9.]+s' "$1" | tail -1)
  for kind in passed failed skipped error; do
    n=$(grep -oE "[0-9]+ $kind" <<<"$line" | grep -oE '^[0-9]+' || true)
    n=${n:-0}
    case $kind in
      passed) total_passed=$((total_passed + n)) ;;
      failed | error) total_failed=$((total_failed + n)) ;;
      skipped) total_skipped=$((total_skipped + n)) ;;
    esac
  done
}

# part NAME COMMAND...: runs one part, keeps its output in out/test-logs/NAME.log, times it.
part() {
  local name=$1 start=$SECONDS rc
  shift
  echo "==> $name"
  "$@" 2>&1 | tee "$log_dir/$name.log"
  rc=${PIPESTATUS[0]}
  timings+=("$(printf '%-34s %5ds  %s' "$name" $((SECONDS - start)) "$([ "$rc" = 0 ] && echo ok || echo "FAILED ($rc)")")")
  if [ "$rc" = 0 ]; then passed_parts=$((passed_parts + 1)); else failed=$((failed + 1)); fi
  return 0
}

workers=${DOCIFY_WORKERS:-4}

# pytest_part NAME PYTEST ARGS...: a pytest run as a part (its slowest tests listed at the end of its
# log); "no tests collected" (arguments that select none of its tests) is not a failure; its counts go
# to the totals.
pytest_part() {
  local name=$1
  shift
  part "$name" bash -c '"$@"; rc=$?; [ "$rc" = 5 ] && rc=0; exit "$rc"' _ "$@" -p no:cacheprovider --durations=15
  count "$log_dir/$name.log"
}

part setup-3.3 bash -c 'bash scripts/services.sh && bash scripts/bootstrap.sh'
[ "$failed" = 0 ] || { echo "set-up failed"; exit 1; }
part ruff .venv/bin/ruff check docify_provider tests example_dags scripts benchmarks
part mypy .venv/bin/mypy
part unasync .venv/bin/python scripts/unasync.py --check
part import-contracts .venv/bin/lint-imports
# The docs site (mkdocs.yml, docs/): --strict fails on a broken link or anchor, a page missing from the
# nav, or a file or section the pages include (pymdownx.snippets) that does not exist. Into out/site/.
part docs env NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet
# The wheel and sdist as PyPI would take them (scripts/check_package.py): uv builds both into out/dist;
# the LICENSE in both, no tests or build leftovers, the package complete, one version, twine check.
part package .venv/bin/python scripts/check_package.py --build --out out/dist
pytest_part pytest-airflow-3.3 .venv/bin/pytest -n "$workers" -m "not deployment" "$@"
pytest_part deployments-airflow-3.3 .venv/bin/pytest -n 2 -m "deployment and not solo" "$@"
pytest_part solo-deployments-airflow-3.3 .venv/bin/pytest -m "deployment and solo" "$@"

if [ "${DOCIFY_MATRIX:-1}" != 0 ]; then
  # The older lines run what differs on them (the marks and paths below say why), in process first,
  # then alone the deployments that line needs. dag.test() costs about 3 s of CPU a task before 3.3
  # (its in-process Execution API is rebuilt for each task), so nothing runs there without a reason.
  part setup-3.0 bash scripts/bootstrap.sh 3.0
  # airflow_line: the oldest line, where the most differs (Variable store, None-valued XComs, no HITL,
  # masking inside the triggerer's loop, the trigger event a retry inherits, universal-pathlib 0.2).
  pytest_part pytest-airflow-3.0 .venv-3.0/bin/pytest -n "$workers" -m "airflow_line and not deployment"
  # restart_guard: the restart guard on a real 3.0 triggerer (3.0's dag.test() gives triggers no XCom).
  pytest_part deployments-airflow-3.0 .venv-3.0/bin/pytest -m restart_guard tests/deployment
  part setup-3.1 bash scripts/bootstrap.sh 3.1
  # hitl_line: the first line with human-in-the-loop (the trigger fires on an Airflow answer there).
  pytest_part pytest-airflow-3.1 .venv-3.1/bin/pytest -n "$workers" -m "hitl_line and not deployment"
  pytest_part deployments-airflow-3.1 .venv-3.1/bin/pytest -m hitl_line tests/deployment
  part setup-3.2 bash scripts/bootstrap.sh 3.2
  # 3.2 reads the connection form (conn-fields) and the `airflow dify` CLI group from provider info.
  pytest_part pytest-airflow-3.2 .venv-3.2/bin/pytest -n 2 -m airflow_line tests/airflow/test_provider.py \
    tests/dify_openapi/test_dify_login_cli.py
  # The five example pipelines and three quick starts under `airflow dags test`: the CLI users run first, on the line with
  # human-in-the-loop and conn-fields (every pipeline also runs in process on 3.3). Two at a time (--jobs 2), each
  # lane in an Airflow home of its own: an `airflow dags test` is one process, on one core.
  part example-pipelines-airflow-3.2 .venv-3.2/bin/python scripts/demo.py --all --jobs 2 --out out/matrix-3.2
  if grep -q "^==> Summary published .*: yes" "$log_dir/example-pipelines-airflow-3.2.log"; then
    total_passed=$((total_passed + 2))
  else
    total_failed=$((total_failed + 1))
  fi
fi

echo
echo "==> time per part"
printf '    %s\n' "${timings[@]}"
echo "    total $((SECONDS))s"
echo
# The closing line: every test of the pytest runs plus the two example-pipeline checks of 3.2.
if [ "$failed" = 0 ]; then
  echo "matrix: $total_passed passed, $total_failed failed, $total_skipped skipped"
  exit 0
fi
echo "matrix: $total_passed passed, $((total_failed > 0 ? total_failed : failed)) failed, $total_skipped skipped"
exit 1
