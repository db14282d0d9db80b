#!/usr/bin/env bash
# Test command: installs everything it needs, then lint, type-check and the version matrix. What runs
# where (each test once, unless the reason to run it again on another line is written next to it):
#   Airflow 3.3 (newest line): the whole suite, once: the in-process tests (unit, wire, the three
#       emulators over loopback, dag.test() runs, the contract suite) in pytest-xdist workers, then the
#       deployments (real scheduler, triggerer, dag processor and API server processes; Celery with
#       Redis; a browser) two at a time (tests that share a deployment stay on one worker: xdist_group).
#   Airflow 3.0, 3.1, 3.2 (the older lines): the tests marked `airflow_line` (pyproject.toml; each mark
#       says why: compat paths, the ledger's store, XCom rules, human-in-the-loop, registration), in
#       process; the pure wire and emulator tests (no Airflow) are not run again. Besides:
#         3.0: the triggerer-restart deployment (`restart_guard`: the restart guard on a real 3.0
#              triggerer; 3.0's dag.test() gives in-process triggers no XCom access)
#         3.1: two human-in-the-loop deployments (`hitl_line`: the first HITL line, where the trigger
#              fires on the answer; 3.3 resumes the task itself)
#         3.2: the five example pipelines under `airflow dags test` (scripts/demo.py --all: the CLI
#              users run first, on the line with HITL and conn-fields; every line runs the same
#              pipelines in process, tests/airflow/test_example_dags.py)
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

# pytest_part NAME PYTEST ARGS...: a pytest run as a part; "no tests collected" (arguments that select
# none of its tests) is not a failure; its counts go to the totals.
pytest_part() {
  local name=$1
  shift
  part "$name" bash -c '"$@"; rc=$?; [ "$rc" = 5 ] && rc=0; exit "$rc"' _ "$@" -p no:cacheprovider
  count "$log_dir/$name.log"
}

part setup-3.3 bash -c 'bash scripts/services.sh && bash scripts/bootstrap.sh'
[ "$failed" = 0 ] || { echo "set-up failed"; exit 1; }
part ruff .venv/bin/ruff check docify_provider tests example_dags scripts benchmarks
part mypy .venv/bin/mypy
pytest_part pytest-airflow-3.3 .venv/bin/pytest -n "$workers" -m "not deployment" "$@"
pytest_part deployments-airflow-3.3 .venv/bin/pytest -n 2 --dist loadgroup -m deployment "$@"

if [ "${DOCIFY_MATRIX:-1}" != 0 ]; then
  in_process="airflow_line and not deployment"
  part setup-3.0 bash scripts/bootstrap.sh 3.0
  pytest_part pytest-airflow-3.0 .venv-3.0/bin/pytest -n "$workers" --dist loadgroup -m "$in_process or restart_guard"
  part setup-3.1 bash scripts/bootstrap.sh 3.1
  pytest_part pytest-airflow-3.1 .venv-3.1/bin/pytest -n "$workers" --dist loadgroup -m "$in_process or hitl_line"
  part setup-3.2 bash scripts/bootstrap.sh 3.2
  pytest_part pytest-airflow-3.2 .venv-3.2/bin/pytest -n "$workers" -m "$in_process"
  part example-pipelines-airflow-3.2 .venv-3.2/bin/python scripts/demo.py --all --out out/matrix-3.2
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
