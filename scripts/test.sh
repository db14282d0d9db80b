#!/usr/bin/env bash
# Test command: installs everything it needs, then lint, type-check and the version matrix:
#   Airflow 3.3 (newest line): the whole suite (unit, emulator over loopback, dag.test() runs, the
#                              LocalExecutor, triggerer-restart and CeleryExecutor deployments)
#   Airflow 3.0 (oldest line): the whole suite but the deployment tests, plus the triggerer-restart
#                              deployment (the restart guard on a real 3.0 triggerer)
#   Airflow 3.1, 3.2:          the example pipelines under `airflow dags test`; on 3.1 (the first line
#                              with human-in-the-loop) also the HITL tests, in dag.test() and deployed
# Each line installs from its own lock file (requirements/, see scripts/lock.sh) into its own venv,
# the provider as a built wheel. Arguments go to the 3.3 pytest run; DOCIFY_MATRIX=0 runs only it.
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

part setup-3.3 bash -c 'bash scripts/services.sh && bash scripts/bootstrap.sh'
[ "$failed" = 0 ] || { echo "set-up failed"; exit 1; }
part ruff .venv/bin/ruff check docify_provider tests example_dags scripts benchmarks
part mypy .venv/bin/mypy
part import-contracts .venv/bin/lint-imports
part pytest-airflow-3.3 .venv/bin/pytest -p no:cacheprovider "$@"
count "$log_dir/pytest-airflow-3.3.log"

if [ "${DOCIFY_MATRIX:-1}" != 0 ]; then
  part setup-3.0 bash scripts/bootstrap.sh 3.0
  part pytest-airflow-3.0 .venv-3.0/bin/pytest -p no:cacheprovider -m "not deployment or restart_guard"
  count "$log_dir/pytest-airflow-3.0.log"
  for line in 3.1 3.2; do
    part "setup-$line" bash scripts/bootstrap.sh "$line"
    part "example-pipelines-airflow-$line" ".venv-$line/bin/python" scripts/demo.py --all --out "out/matrix-$line"
    if grep -q "^==> Summary published .*: yes" "$log_dir/example-pipelines-airflow-$line.log"; then
      total_passed=$((total_passed + 2))
    else
      total_failed=$((total_failed + 1))
    fi
    if [ "$line" = 3.1 ]; then  # human-in-the-loop's first line: its tests, in dag.test() and deployed
      part pytest-airflow-3.1 .venv-3.1/bin/pytest -p no:cacheprovider tests/airflow/test_dify_hitl.py \
        tests/airflow/test_dify_hitl_retry.py tests/deployment/test_dify_hitl_deployment.py tests/deployment/test_dify_hitl_two_forms_deployment.py
      count "$log_dir/pytest-airflow-3.1.log"
    fi
  done
fi

echo
echo "==> time per part"
printf '    %s\n' "${timings[@]}"
echo "    total $((SECONDS))s"
echo
# The closing line: every test of both pytest runs plus the two example pipelines per middle line.
if [ "$failed" = 0 ]; then
  echo "matrix: $total_passed passed, $total_failed failed, $total_skipped skipped"
  exit 0
fi
echo "matrix: $total_passed passed, $((total_failed > 0 ? total_failed : failed)) failed, $total_skipped skipped"
exit 1
