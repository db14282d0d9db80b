"""Mapped deferrable Dify streams outrun the app's cap on a real deployment: none fails, each bought once.

The issue's failing row, smaller: ``DOCUMENTS`` mapped ``DifyStreamWorkflowOperator`` tasks
(deferrable, no pool) against a Dify app that takes ``CAP`` runs at once (the emulator's
``max_active_requests``, answered 429 ``too_many_requests`` beyond it). API server, scheduler, dag
processor and triggerer as separate processes, LocalExecutor. Without the wait, every deferred run
the triggerer sent beyond the cap failed its document; the trigger waits and sends it again. Checked: every mapped task succeeded, the emulator started exactly one run per document, it turned
run requests away (so the cap was hit), and the triggers logged their waits. The figures are
printed with ``pytest -s``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from docify_provider.testing.dify import LONG_APP_KEY, DifyEmulator
from tests.deployment import ROOT, api, running_deployment, trigger_dag, wait_until

pytestmark = [pytest.mark.deployment, pytest.mark.slow, pytest.mark.timeout(600)]

DAG_ID = "dify_capped_mapped"
DOCUMENTS = 24
CAP = 4


def test_mapped_deferred_streams_over_a_cap_wait_instead_of_failing(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "tests" / "dags" / f"{DAG_ID}.py", dags / f"{DAG_ID}.py")
    with DifyEmulator(ping_interval=1.0, idle_close_seconds=300.0, max_active_requests=CAP) as emu:
        connections = {"dify_long": {"conn_type": "dify", "host": emu.base_url, "password": LONG_APP_KEY}}
        with running_deployment(tmp_path / "home", dags_folder=dags, connections=connections) as dep:
            run_id = trigger_dag(dep, DAG_ID, "capped")
            started = time.monotonic()

            def ended() -> list[dict[str, Any]] | None:
                body = api(dep, "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
                tis = (body or {}).get("task_instances") or []
                done = [ti for ti in tis if ti.get("state") in ("success", "failed", "upstream_failed")]
                return tis if len(tis) == DOCUMENTS and len(done) == DOCUMENTS else None

            tis = wait_until("every mapped task to end", ended, timeout=420)
            seconds = time.monotonic() - started
            logs = "\n".join(p.read_text(errors="replace") for p in (tmp_path / "home" / "logs").rglob("*.log"))
        turned_away = sum(1 for r in emu.requests if r.endpoint == "stream" and r.status == 429)
        print(
            f"\n{DOCUMENTS} mapped deferred streams, cap {CAP}: {seconds:.0f} s, "
            f"{emu.runs_started(key=LONG_APP_KEY)} runs started, {turned_away} run requests turned away (429), "
            f"{logs.count('Turned away by the server (429, run not started)')} waits logged"
        )
    assert sorted(ti["state"] for ti in tis) == ["success"] * DOCUMENTS
    assert emu.runs_started(key=LONG_APP_KEY) == DOCUMENTS, "one run per document"
    assert turned_away > 0, "the deferred tasks did not outrun the cap: nothing was tested"
    assert "Turned away by the server (429, run not started): waiting" in logs
    assert LONG_APP_KEY not in logs
