"""A deferred batch whose triggerer is SIGKILLed mid-batch on a real deployment: every item run once.

API server, scheduler, dag processor and a triggerer run as separate processes (LocalExecutor).
One ``DifyBatchWorkflowOperator`` task (``tests/dags/dify_batch_triggerer_restart.py``: 30 items,
4 s runs, 10 at a time) defers to its ``BatchTrigger``; once the second wave of runs has started,
the triggerer's whole process group is SIGKILLed and a new triggerer is started. It re-creates the
trigger from its kwargs, which loads the batch's ledger (Airflow Variables): the items bought are
reused, the runs left going are re-attached by their run id, the items never sent are sent.
Checked on the emulator's counters: 30 runs started (none twice), the task succeeded on try 1 with
30 items succeeded, the new trigger re-attached (run detail / events endpoints) instead of re-sending,
and the key is in no log. ``[triggerer] triggerer_health_check_threshold`` is lowered to 6 s so the new
triggerer takes the orphaned trigger over sooner (the path is the same). Timings: ``pytest -s``.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from docify_provider.testing.dify import LONG_APP_KEY, DifyEmulator
from tests.deployment import ROOT, Deployment, Timeline, api, running_deployment, task_xcom, trigger_dag, wait_until

pytestmark = [pytest.mark.deployment, pytest.mark.slow, pytest.mark.timeout(300)]

DAG_FILE = ROOT / "tests" / "dags" / "dify_batch_triggerer_restart.py"
DAG_ID = "dify_batch_triggerer_restart"
ITEMS = 30
HEALTH_THRESHOLD = 6


def task_instance(dep: Deployment, run_id: str) -> dict[str, Any]:
    return api(dep, "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/batch") or {}


def trigger_logs(home: Path, run_id: str) -> list[Path]:
    """The try-1 trigger logs of the task, oldest triggerer job first."""
    folder = home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / "task_id=batch"
    return sorted(folder.glob("attempt=1.log.trigger.*.log"), key=lambda p: int(p.name.split(".")[-2]))


def live_group_members(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(stat.parent.name))
    return members


def test_batch_trigger_killed_mid_batch_runs_every_item_once(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(DAG_FILE, dags / DAG_FILE.name)
    home = tmp_path / "home"
    timeline = Timeline("test")
    print()
    with DifyEmulator(ping_interval=1.0, idle_close_seconds=300.0) as emu:
        connections = {"dify_long": {"conn_type": "dify", "host": emu.base_url, "password": LONG_APP_KEY}}
        env = {
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(HEALTH_THRESHOLD),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        }
        with running_deployment(home, dags_folder=dags, connections=connections, env=env) as dep:
            timeline.mark("deployment up")
            run_id = trigger_dag(dep, DAG_ID, "batch_restart")
            timeline.mark(f"DAG run {run_id} triggered")

            def mid_batch() -> bool:
                return task_instance(dep, run_id).get("state") == "deferred" and emu.runs_started() >= 12

            wait_until("the batch deferred with its second wave of runs started", mid_batch, timeout=120, interval=0.2)
            time.sleep(0.5)  # the second wave's run ids reach the ledger with their first event
            started_at_kill = emu.runs_started()
            completed_at_kill = emu.runs_completed()
            timeline.mark(f"mid-batch: {started_at_kill} runs started, {completed_at_kill} completed")
            pgid = dep.procs["triggerer"].pid
            dep.stop("triggerer", sig=signal.SIGKILL)
            timeline.mark("triggerer process group SIGKILLed")
            wait_until("the triggerer's processes to die", lambda: not live_group_members(pgid), 10, 0.1)
            dep.start("triggerer")
            timeline.mark("new triggerer started")
            state = dep.wait_for_run(DAG_ID, run_id, timeout=180)
            timeline.mark(f"DAG run {state}")
            ti = task_instance(dep, run_id)
            xcom = task_xcom(dep, DAG_ID, run_id, "batch")
            logs = dep.read_logs()
            trigger_files = trigger_logs(home, run_id)
            restarted = trigger_files[-1].read_text(errors="replace") if trigger_files else ""
    total = time.monotonic() - timeline.start
    timeline.print_sequence()
    counts = (xcom or {}).get("counts") or {}
    print(f"runs_started {emu.runs_started()} (at the kill {started_at_kill}), counts {counts}, wall {total:.0f}s")
    context = f"task {ti}\nlogs in {home}"
    assert state == "success" and ti.get("state") == "success" and ti.get("try_number") == 1, context
    assert emu.runs_started(key=LONG_APP_KEY) == ITEMS, "every item run exactly once across the restart"
    assert counts.get("succeeded") == ITEMS and counts.get("total") == ITEMS, context
    assert len(trigger_files) == 2, "the batch trigger ran on both triggerers"
    assert "sent earlier" in restarted and "re-attaching to it instead of starting a new run" in restarted, context
    # Re-attached by id: the run's detail (a run already ended) or its events (one still going).
    reads = sum(1 for r in emu.requests if r.endpoint in ("run_detail", "events"))
    reattached = restarted.count("re-attaching to it instead of starting a new run")
    assert reattached > 0 and reads >= reattached, "the runs left going were re-attached by id"
    assert LONG_APP_KEY not in logs, "the API key reached a log file"
