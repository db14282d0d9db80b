"""execution_timeout stops a *deferred* Dify run, on a real deployment.

Airflow 3 does not bound a deferral by ``execution_timeout``: only the trigger's own timeout does,
and ``dag.test()`` does not enforce it, so this needs a real scheduler (it fails timed-out
triggers), triggerer, dag processor and API server as separate processes. The long app would
run for two and a half minutes; the task allows 30 s (a new triggerer takes up to 10 s to start
its first trigger). Checked: the task fails on its first try with a deferral
timeout, the operator asks Dify to stop the task (``POST /workflows/tasks/{task_id}/stop`` with
the run's user) and the emulator's run ends ``stopped``, one run billed, the log says what the
status became, and the key is in no log.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from docify_provider.testing.dify import LONG_APP_KEY, DifyEmulator
from tests.deployment import ROOT, Timeline, running_deployment, trigger_dag, wait_task_end, wait_until

pytestmark = [pytest.mark.deployment, pytest.mark.slow, pytest.mark.timeout(420)]

DAG_FILE = ROOT / "tests" / "dags" / "dify_deferred_timeout.py"
DAG_ID, TASK_ID = "dify_deferred_timeout", "too_long"


def test_execution_timeout_stops_a_deferred_dify_run(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(DAG_FILE, dags / DAG_FILE.name)
    home = tmp_path / "home"
    timeline = Timeline("task log")
    print()
    with DifyEmulator(ping_interval=1.0, idle_close_seconds=300.0) as emu:
        connections = {"dify_long": {"conn_type": "dify", "host": emu.base_url, "password": LONG_APP_KEY}}
        env = {
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            # How often the scheduler fails timed-out triggers (default 15 s).
            "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2",
        }
        with running_deployment(home, dags_folder=dags, connections=connections, env=env) as dep:
            timeline.mark("deployment up")
            run_id = trigger_dag(dep, DAG_ID, "timeout")
            wait_until("the run to start on Dify", lambda: emu.runs_started(key=LONG_APP_KEY) >= 1, timeout=120)
            started = timeline.mark("the Dify run started (deferred stream)")
            ti = wait_task_end(dep, DAG_ID, run_id, TASK_ID, timeout=150)
            ended = timeline.mark(f"task {ti['state']} (try {ti['try_number']})")
            [run] = emu.runs
            wait_until("the Dify run to be stopped", lambda: run.status == "stopped", timeout=20)
            timeline.mark(f"Dify run {run.status}")
            logs = "\n".join(p.read_text(errors="replace") for p in (home / "logs").rglob("*.log"))
    timeline.print_sequence()
    print(f"dify deferred execution_timeout: run start -> task failed {ended - started:.1f}s; run {run.status}")
    assert (ti["state"], ti["try_number"]) == ("failed", 1), ti
    assert emu.runs_started(key=LONG_APP_KEY) == 1
    assert run.status == "stopped", "the Dify task was stopped, not left running (and billed)"
    assert any(r.endpoint == "stop" for r in emu.requests), "a stop request reached Dify"
    assert "execution_timeout while deferred: stopping Dify task" in logs, logs[-3000:]
    assert f"Dify run {run.id} is now stopped after the stop request" in logs, logs[-3000:]
    assert LONG_APP_KEY not in logs
