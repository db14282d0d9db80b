"""The invoice pipeline on a real Airflow: scheduler, triggerer, dag processor and API server as
separate processes. Checks what a user would check the morning after: the DAG run succeeded, the
table has a row per document, the attachments are on disk, Docify billed one run per document,
the streams were held by the triggerer, and the key is in no log."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from docify_provider.testing import INVOICE_KEY, Fault
from docify_provider.testing.samples import make_sample_invoices
from tests.deployment import ROOT, landed_invoice_rows, running_deployment

pytestmark = [pytest.mark.deployment, pytest.mark.slow, pytest.mark.timeout(900)]

DAG_ID = "example_docify_invoices"


def test_invoice_pipeline_runs_deferred_on_a_real_deployment(tmp_path: Path, docify_emulator) -> None:
    inbox, out, db = tmp_path / "inbox", tmp_path / "out", tmp_path / "results.db"
    make_sample_invoices(inbox, 3)
    # Streams of a few seconds, as real scenarios take. A stream that ends within a second of the
    # deferral can hit an Airflow LocalExecutor race ("reported that the task instance ... finished
    # with state success, but the task instance's state attribute is queued"): the scheduler fails
    # the resumed task and drops the trigger's event, and try 2 fails closed on the pending marker
    # (one run billed, its result lost). Seen once under load; Airflow's, not the provider's.
    docify_emulator.inject(Fault("stream", "slow_events", interval=0.6, key=INVOICE_KEY, times=None))
    connections = {
        "docify_invoices": {"conn_type": "docify", "host": docify_emulator.base_url, "password": INVOICE_KEY},
        "docify_results_db": {"conn_type": "sqlite", "host": str(db)},
    }
    started = time.monotonic()
    with running_deployment(tmp_path / "home", dags_folder=ROOT / "example_dags", connections=connections) as dep:
        dep.wait_for_dag(DAG_ID)
        run_id = dep.trigger(DAG_ID, {"input_dir": str(inbox), "output_dir": str(out)})
        state = dep.wait_for_run(DAG_ID, run_id)
        tasks = dep.task_states(DAG_ID, run_id)
        logs = dep.read_logs()
    elapsed = time.monotonic() - started
    print(f"deployment test: DAG run {state} in {elapsed:.1f}s (including start-up)")

    assert state == "success", f"tasks: {tasks}\n{logs[-6000:]}"
    landed_invoice_rows(db, inbox, out, 3)
    assert docify_emulator.runs_started(INVOICE_KEY) == 3, "one paid run per document, none twice"
    # The triggerer writes each deferred stream's progress to the task's own trigger log.
    trigger_logs = sorted((tmp_path / "home" / "logs").rglob("task_id=extract/*/attempt=1.log.trigger.*.log"))
    assert len(trigger_logs) == 3, "every mapped stream must have been held by the triggerer"
    for path in trigger_logs:
        text = path.read_text(errors="replace")
        assert "Docify stream START: session" in text
        assert "Docify stream COMPLETE" in text
    print("streamed task log (triggerer):")
    for line in trigger_logs[0].read_text(errors="replace").splitlines():
        if "Docify" in line:
            print("   ", line[:220])
    assert INVOICE_KEY not in logs
