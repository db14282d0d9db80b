"""execution_timeout stops a *deferred* Dify run, on a real deployment, for both Dify backends.

Airflow 3 does not bound a deferral by ``execution_timeout``: only the trigger's own timeout does,
and ``dag.test()`` does not enforce it, so this needs a real scheduler (it fails timed-out
triggers, then resumes the task with ``__fail__``), triggerer, dag processor and API server as
separate processes. The long app would run for two and a half minutes; each task allows 30 s (a
new triggerer takes up to 10 s to start its first trigger). Checked for the Service API
(``tests/dags/dify_deferred_timeout.py``) and the account API
(``tests/dags/dify_openapi_deferred_timeout.py``): the task fails on its first try with a deferral
timeout, the operator asks Dify to stop the task and the emulator's run ends ``stopped``, one run
billed, the log says what the status became, and the credential is in no log.

A deferred batch (``tests/dags/dify_batch_deferred_timeout.py``, its own emulator) meets its
timeout the same way: the task, resumed with the trigger's timeout, stops the two runs left going
(both end ``stopped``), reports every item (two done, two stopped, two never sent) and fails with
``BatchTimeoutError``; no item was started twice.

One deployment serves the three DAGs and the runs time out side by side: the start-up and the wait
for the timeout are paid once; each case's checks are a subtest of their own.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from docify_provider.testing.dify import LONG_APP_KEY, DifyEmulator
from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN, LONG_APP_ID, DifyOpenAPIEmulator
from tests.deployment import ROOT, Timeline, running_deployment, trigger_dag, wait_task_end, wait_until

pytestmark = [
    pytest.mark.deployment,
    pytest.mark.slow,
    pytest.mark.timeout(420),
]

TASK_ID = "too_long"
DAGS = {"dify": "dify_deferred_timeout", "dify_openapi": "dify_openapi_deferred_timeout"}
BATCH_DAG = "dify_batch_deferred_timeout"


@dataclass
class TimedOut:
    """What one backend's timed-out run left: its task instance, the emulator's run, the seconds from
    the run's start to the task's failure."""

    emu: Any
    ti: dict[str, Any]
    run: Any
    seconds: float


@pytest.fixture
def timed_out(tmp_path: Path) -> Iterator[tuple[dict[str, TimedOut], str, TimedOut]]:
    """Both runs and the batch, timed out, and every log the deployment wrote."""
    dags = tmp_path / "dags"
    dags.mkdir()
    for dag_id in [*DAGS.values(), BATCH_DAG]:
        shutil.copy(ROOT / "tests" / "dags" / f"{dag_id}.py", dags / f"{dag_id}.py")
    home = tmp_path / "home"
    timeline = Timeline("task log")
    print()
    options: dict[str, Any] = {"ping_interval": 1.0, "idle_close_seconds": 300.0}
    with DifyEmulator(**options) as dify, DifyOpenAPIEmulator(**options) as account, DifyEmulator(**options) as bulk:
        emus = {"dify": dify, "dify_openapi": account}
        connections = {
            "dify_long": {"conn_type": "dify", "host": dify.base_url, "password": LONG_APP_KEY},
            "dify_account": {"conn_type": "dify_openapi", "host": account.base_url, "password": ACCOUNT_TOKEN},
            "dify_batch_long": {"conn_type": "dify", "host": bulk.base_url, "password": LONG_APP_KEY},
        }
        # How often the scheduler fails timed-out triggers (default 15 s).
        env = {"AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2"}
        with running_deployment(home, dags_folder=dags, connections=connections, env=env) as dep:
            timeline.mark("deployment up")
            run_ids = {name: trigger_dag(dep, dag_id, "timeout") for name, dag_id in DAGS.items()}
            batch_run = trigger_dag(dep, BATCH_DAG, "timeout")
            wait_until("the runs to start", lambda: all(len(emu.runs) >= 1 for emu in emus.values()), timeout=120)
            started = timeline.mark("both Dify runs started (deferred streams)")
            outcomes = {}
            for name, dag_id in DAGS.items():
                ti = wait_task_end(dep, dag_id, run_ids[name], TASK_ID, timeout=150)
                ended = timeline.mark(f"{name}: task {ti['state']} (try {ti['try_number']})")
                [run] = emus[name].runs
                wait_until(f"the {name} run to be stopped", lambda run=run: run.status == "stopped", timeout=20)
                timeline.mark(f"{name}: Dify run {run.status}")
                outcomes[name] = TimedOut(emus[name], ti, run, ended - started)
            ti = wait_task_end(dep, BATCH_DAG, batch_run, TASK_ID, timeout=150)
            timeline.mark(f"batch: task {ti['state']} (try {ti['try_number']})")
            batch = TimedOut(bulk, ti, bulk.runs, 0.0)
            logs = "\n".join(p.read_text(errors="replace") for p in (home / "logs").rglob("*.log"))
        timeline.print_sequence()
        yield outcomes, logs, batch


def test_execution_timeout_stops_a_deferred_run(
    timed_out: tuple[dict[str, TimedOut], str, TimedOut], subtests: Any
) -> None:
    outcomes, logs, batch = timed_out
    for backend, out in outcomes.items():
        with subtests.test(backend=backend):
            print(
                f"{backend} deferred execution_timeout: run start -> task failed {out.seconds:.1f}s; run {out.run.status}"
            )
            assert (out.ti["state"], out.ti["try_number"]) == ("failed", 1), out.ti
            if backend == "dify":
                assert out.emu.runs_started(key=LONG_APP_KEY) == 1
                assert any(r.endpoint == "stop" for r in out.emu.requests), "a stop request reached Dify"
            else:
                assert out.emu.runs_started(ACCOUNT_TOKEN, app=LONG_APP_ID) == 1
                assert out.emu.stop_requests(ACCOUNT_TOKEN, app=LONG_APP_ID) >= 1
            assert out.run.status == "stopped", "the Dify task was stopped, not left running (and billed)"
            assert f"Dify run {out.run.id} is now stopped after the stop request" in logs, logs[-3000:]
    assert "execution_timeout while deferred: stopping Dify task" in logs, logs[-3000:]
    with subtests.test(backend="batch"):
        assert (batch.ti["state"], batch.ti["try_number"]) == ("failed", 1), batch.ti
        flat = " ".join(logs.split())
        assert "Batch stopped at execution_timeout (0:00:30): 2 item(s) done, 0 failed, 2 stopped, 0 in flight" in flat
        assert "2 never sent, of 6" in flat, flat[-3000:]
        labels = sorted(run.inputs["label"] for run in batch.run)
        assert labels == ["doc-0", "doc-1", "doc-2", "doc-3"], "each item started once, the unsent ones never"
        wait_until("the batch's runs to be stopped", lambda: [r.status for r in batch.run].count("stopped") == 2, 20)
        assert batch.emu.stop_requests(key=LONG_APP_KEY) == 2
    assert LONG_APP_KEY not in logs and ACCOUNT_TOKEN not in logs
