"""The batch operators in real Airflow runs (``dag.test()``) against each emulator over 127.0.0.1.

What the money rules say, checked on the emulators' own counters (``runs_started`` = billed):
every item started once under a concurrency cap (429 "not started" waited out, never a failure);
a failing item is a result, and ``allowed_failures`` decides the task; the XCom holds every item
even when the task fails; a retry sends only the failed and never-sent items (bought ones reused,
Dify runs left going re-attached); ``results_to`` gets one JSON line per item; bad input is
refused before any upload or run, naming the item and the parameter.

Most run deferrable (the default: ``dag.test()`` runs the batch trigger inline, the task reports the
items from the ledger); ``deferrable=False`` where the worker's own run is the point (a try cut by
``execution_timeout``, uploads per item). ``test_batch_deferred.py`` checks the trigger itself.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_helpers import console_text, new_dag, run_dag
from docify_provider.operators.dify import DifyBatchWorkflowOperator
from docify_provider.operators.dify_openapi import DifyBatchAppOperator
from docify_provider.operators.docify import DocifyBatchScenarioOperator
from docify_provider.testing.dify import LONG_APP_KEY
from docify_provider.testing.dify_openapi import LONG_APP_ID, TEXT_APP_ID
from docify_provider.testing.faults import Fault
from docify_provider.testing.keys import INVOICE_KEY, SUMMARY_KEY
from helpers import SUMMARY_INPUTS

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


def summaries(n: int) -> list[dict[str, Any]]:
    return [{**SUMMARY_INPUTS, "text": f"Document {i}. It has two sentences."} for i in range(n)]


def check_items(xcom: dict[str, Any], n: int, id_field: str) -> list[dict[str, Any]]:
    items = xcom["items"]
    assert [item["index"] for item in items] == list(range(n)), "items come back in input order"
    for item in items:
        assert set(item) >= {"status", id_field, "outputs", "error"}
    return items


def statuses(items: list[dict[str, Any]]) -> list[str]:
    return [item["status"] for item in items]


# -- Docify ----------------------------------------------------------------------------------------


@pytest.mark.airflow_line("the batch's asset event through the line's outlet_events")
def test_docify_batch_with_a_429_and_a_failing_item_within_allowed_failures(docify_conns, capfd, tmp_path):
    emu = docify_conns
    emu.inject(Fault("stream", "status", status=429, retry_after=0.1, times=2))
    emu.inject(Fault("stream", "failed_run", message="Bad scan", times=1))
    results = tmp_path / "out" / "summaries.jsonl"
    with new_dag("docify_batch") as dag:
        DocifyBatchScenarioOperator(
            task_id="batch",
            docify_conn_id="docify_summary",
            inputs=summaries(8),
            max_concurrency=3,
            allowed_failures=1,
            results_to=f"file://{results}",
            emit_asset_events=True,
            progress_every=0.2,
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("batch") == "success", text[-5000:]
    xcom = outcome.xcom("batch")
    items = check_items(xcom, 8, "session_id")
    assert xcom["counts"]["succeeded"] == 7 and xcom["counts"]["failed"] == 1
    assert xcom["counts"]["turned_away"] == 2, "both 429s waited out and sent again"
    assert emu.runs_started(SUMMARY_KEY) == 8, "every document started once; the 429s started none"
    ok = [item for item in items if item["status"] == "succeeded"]
    assert all(item["session_id"] and item["outputs"]["summary"] for item in ok)
    failed = next(item for item in items if item["status"] == "failed")
    assert "Bad scan" in failed["error"]
    # results_to: one JSON line per item, in input order; one asset event for the batch
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert [line["index"] for line in lines] == list(range(8)) and statuses(lines) == statuses(items)
    assert xcom["results_to"] == f"file://{results}"
    events = outcome.asset_events()
    assert len(events) == 1 and events[0][0] == results.resolve().as_uri()
    assert events[0][1]["succeeded"] == 7 and events[0][1]["failed"] == 1
    assert "Batch progress: " in text and "documents/h" in text
    assert "deferring to the triggerer" in text, "deferrable by default: the trigger ran the items"


def test_docify_bad_input_is_refused_before_any_upload_or_run(docify_conns, capfd, invoice_png):
    emu = docify_conns
    good = {"invoice_image": str(invoice_png)}
    with new_dag("docify_batch_bad") as dag:
        DocifyBatchScenarioOperator(
            task_id="batch",
            docify_conn_id="docify_invoice",
            inputs=[good, {"invoice_imag": str(invoice_png)}, good, {"invoice_image": "/no/such/file.png"}],
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("batch") == "failed"
    assert "DocifyInputError" in text or "DocifyFileError" in text
    assert "item 1: " in text and "invoice_imag" in text, "the bad item and its parameter are named"
    assert "Nothing was uploaded or run" in text
    assert emu.uploads == [] and emu.runs_started() == 0


def test_docify_files_are_uploaded_per_item(docify_conns, capfd, invoice_png):
    emu = docify_conns
    with new_dag("docify_batch_files") as dag:
        DocifyBatchScenarioOperator(
            task_id="batch",
            docify_conn_id="docify_invoice",
            inputs=[{"invoice_image": str(invoice_png)}, {"invoice_image": f"file://{invoice_png}"}],
            deferrable=False,
        )
    outcome = run_dag(dag)
    assert outcome.state("batch") == "success", console_text(capfd)[-4000:]
    assert len(emu.uploads) == 2 and emu.runs_started(INVOICE_KEY) == 2
    assert outcome.xcom("batch")["counts"]["succeeded"] == 2


def test_docify_retry_after_a_partial_failure_sends_only_the_failed_item(docify_conns, capfd):
    emu = docify_conns
    emu.inject(Fault("stream", "failed_run", message="Bad scan", times=1))
    with new_dag("docify_batch_retry") as dag:
        DocifyBatchScenarioOperator(
            task_id="batch", docify_conn_id="docify_summary", inputs=summaries(6), max_concurrency=2, retries=1
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("batch") == "success" and outcome.try_number("batch") == 2, text[-5000:]
    assert "Batch failed: 1 item(s) did not succeed; allowed_failures allows 0" in text
    assert "AirflowFailException" not in text, "a failed item is a result: the retry sends it (fail_fast)"
    counts = outcome.xcom("batch")["counts"]
    assert counts["succeeded"] == 6 and counts["reused"] == 5
    assert emu.runs_started(SUMMARY_KEY) == 7, "try 2 sent the failed item only"


def test_the_items_are_pushed_when_the_task_fails_on_allowed_failures(docify_conns, capfd):
    emu = docify_conns
    emu.inject(Fault("stream", "failed_run", message="Bad scan", times=2))
    with new_dag("docify_batch_fail") as dag:
        DocifyBatchScenarioOperator(
            task_id="batch", docify_conn_id="docify_summary", inputs=summaries(5), allowed_failures=0.25
        )
    outcome = run_dag(dag)
    assert outcome.state("batch") == "failed"
    xcom = outcome.xcom("batch")
    items = check_items(xcom, 5, "session_id")
    assert statuses(items).count("failed") == 2 and xcom["counts"]["succeeded"] == 3
    assert "allowed_failures allows 1" in console_text(capfd)
    assert emu.runs_started(SUMMARY_KEY) == 5


# -- Dify Service API --------------------------------------------------------------------------------


def test_dify_batch_under_the_servers_cap_with_a_failing_item(dify_conns, capfd, tmp_path):
    emu = dify_conns
    emu.max_active_requests = 2
    emu.inject(Fault("stream", "error_event", times=1))
    with new_dag("dify_batch") as dag:
        # --8<-- [start:dify-batch]
        DifyBatchWorkflowOperator(
            task_id="batch",
            dify_conn_id="dify_long",
            inputs=[{"seconds": 0.3, "steps": 1} for _ in range(8)],  # or an XComArg resolving to a list
            max_concurrency=4,  # the limiter goes lower when Dify answers 429 (its cap)
            allowed_failures=0.2,  # a count (int) or a fraction (float); default 0
            results_to=str(tmp_path / "dify.jsonl"),  # JSON Lines, one line per document (any object storage URL)
        )
        # --8<-- [end:dify-batch]
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("batch") == "success", text[-5000:]
    xcom = outcome.xcom("batch")
    items = check_items(xcom, 8, "workflow_run_id")
    assert statuses(items).count("succeeded") == 7 and statuses(items).count("failed") == 1
    assert xcom["counts"]["turned_away"] > 0, "the cap of 2 was met (429 not started) and waited out"
    assert emu.runs_started(key=LONG_APP_KEY) == 8
    assert len({item["workflow_run_id"] for item in items}) == 8
    assert len((tmp_path / "dify.jsonl").read_text().splitlines()) == 8


def test_dify_retry_after_execution_timeout_sends_only_the_stopped_and_unsent(dify_conns, capfd):
    """Try 1 is cut by execution_timeout mid-batch: it stops its runs in flight (tests/airflow/test_batch_timeout.py),
    so try 2 sends the stopped items again (a new run each: Dify showed the old ones stopped) and the items
    never sent, and reuses the ones bought: every item has one run that was not stopped."""
    emu = dify_conns
    with new_dag("dify_batch_timeout") as dag:
        DifyBatchWorkflowOperator(
            task_id="batch",
            dify_conn_id="dify_long",
            # Pairs of 1 s runs: try 1 is cut at 4 s with a pair in flight and a pair never sent; try 2
            # needs ~1.2 s, so the same timeout leaves it room even on a loaded machine.
            inputs=[{"seconds": 1.0, "steps": 1, "label": f"doc-{i}"} for i in range(10)],
            max_concurrency=2,
            execution_timeout=timedelta(seconds=4),
            deferrable=False,  # on the worker: dag.test() runs a trigger inline, without its timeout
            retries=1,
            retry_delay=timedelta(seconds=0),
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("batch") == "success" and outcome.try_number("batch") == 2, text[-5000:]
    assert "Batch stopped at execution_timeout (0:00:04)" in text
    assert "AirflowFailException" not in text, "BatchTimeoutError goes to the retries (fail_fast)"
    counts = outcome.xcom("batch")["counts"]
    assert counts["succeeded"] == 10 and counts["reused"] >= 2
    runs = emu.run_list()
    stopped = [run for run in runs if run["status"] == "stopped"]
    assert emu.stop_requests(key=LONG_APP_KEY) >= len(stopped), "stopped by try 1, not by Dify"
    assert emu.runs_started(key=LONG_APP_KEY) == 10 + len(stopped), "only the stopped items were sent again"
    kept = sorted(run["inputs"]["label"] for run in runs if run["status"] != "stopped")
    assert kept == sorted(f"doc-{i}" for i in range(10)), "one run per item that was not stopped"


def test_dify_bad_input_is_refused_before_any_upload_or_run(dify_conns, capfd, tmp_path):
    emu = dify_conns
    document = tmp_path / "notes.txt"
    document.write_text("quarterly notes")
    with new_dag("dify_batch_bad") as dag:
        DifyBatchWorkflowOperator(
            task_id="batch",
            dify_conn_id="dify_document",
            inputs=[{"document": str(document)}, {"documnt": str(document)}],
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("batch") == "failed"
    assert "DifyInputError" in text and "item 1: " in text and "documnt" in text
    assert emu.upload_count() == 0 and emu.runs_started() == 0


def test_inputs_that_are_not_a_list_are_refused_naming_the_parameter(dify_conns, capfd):
    with new_dag("dify_batch_not_list") as dag:
        DifyBatchWorkflowOperator(task_id="batch", dify_conn_id="dify_long", inputs={"seconds": 1})
    outcome = run_dag(dag)
    assert outcome.state("batch") == "failed"
    assert "inputs must be a list of input dicts" in console_text(capfd)
    assert dify_conns.runs_started() == 0


# -- Dify account API --------------------------------------------------------------------------------


def test_dify_app_batch_under_the_servers_cap_with_a_failing_item(openapi_conn, capfd, tmp_path):
    emu = openapi_conn
    emu.max_active_requests = 2
    emu.inject(Fault("stream", "error_event", times=1))
    results = tmp_path / "apps.jsonl"
    with new_dag("dify_app_batch") as dag:
        DifyBatchAppOperator(
            task_id="batch",
            app=LONG_APP_ID,
            inputs=[{"seconds": 0.3, "steps": 1} for _ in range(6)],
            max_concurrency=4,
            allowed_failures=1,
            results_to=f"file://{results}",
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("batch") == "success", text[-5000:]
    xcom = outcome.xcom("batch")
    items = check_items(xcom, 6, "workflow_run_id")
    assert statuses(items).count("succeeded") == 5 and statuses(items).count("failed") == 1
    assert xcom["counts"]["turned_away"] > 0
    assert emu.runs_started(app=LONG_APP_ID) == 6
    assert len(results.read_text().splitlines()) == 6


def test_dify_app_bad_input_is_refused_before_any_run(openapi_conn, capfd):
    emu = openapi_conn
    with new_dag("dify_app_batch_bad") as dag:
        DifyBatchAppOperator(task_id="batch", app=TEXT_APP_ID, inputs=[{"topic": "tea"}, {"tone": "formal"}])
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("batch") == "failed"
    assert "item 1: " in text and "topic" in text and "Nothing was uploaded or run" in text
    assert emu.runs_started() == 0


def test_an_empty_batch_succeeds_with_no_items(dify_conns, tmp_path: Path):
    with new_dag("dify_batch_empty") as dag:
        DifyBatchWorkflowOperator(task_id="batch", dify_conn_id="dify_long", inputs=[])
    outcome = run_dag(dag)
    assert outcome.state("batch") == "success"
    xcom = outcome.xcom("batch")
    assert xcom["items"] == [] and xcom["counts"]["total"] == 0


def test_docify_item_whose_outcome_is_unknown_is_reported_and_never_resent(docify_conns, capfd):
    """A stream cut after Docify started the run: no status endpoint, so the item is "unknown" in
    try 1 and in try 2 alike, and only the items that never ran are sent; nothing is paid twice."""
    emu = docify_conns
    emu.inject(Fault("stream", "drop_mid_stream", after_events=2, times=1))
    with new_dag("docify_batch_unknown") as dag:
        DocifyBatchScenarioOperator(
            task_id="batch", docify_conn_id="docify_summary", inputs=summaries(4), max_concurrency=1, retries=1
        )
    outcome = run_dag(dag)
    assert outcome.state("batch") == "failed" and outcome.try_number("batch") == 2
    items = check_items(outcome.xcom("batch"), 4, "session_id")
    unknown = [item for item in items if item["status"] == "unknown"]
    assert len(unknown) == 1 and unknown[0]["session_id"]
    assert "not re-sent" in unknown[0]["error"] and "no status endpoint" in unknown[0]["error"]
    assert emu.runs_started(SUMMARY_KEY) == 4, "the unknown item was not sent again by try 2"


@pytest.mark.airflow_line("where the batch state goes once the task succeeds (task_state_store is 3.3+)")
def test_a_successful_batch_moves_its_state_out_of_variables(dify_conns):
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from airflow_helpers import AIRFLOW_LINE

    with new_dag("dify_batch_settle") as dag:
        DifyBatchWorkflowOperator(
            task_id="batch", dify_conn_id="dify_long", inputs=[{"seconds": 0.05, "steps": 1} for _ in range(3)]
        )
    outcome = run_dag(dag)
    assert outcome.state("batch") == "success"
    with create_session() as session:
        left = session.scalars(select(Variable.key).where(Variable.key.like(f"docify_state:{outcome.dag_id}:%"))).all()
    assert left == [], "no Variable piles up after a successful batch"
    if AIRFLOW_LINE >= (3, 3):
        from airflow.models.task_state_store import TaskStateStoreModel

        with create_session() as session:
            keys = session.scalars(
                select(TaskStateStoreModel.key).where(TaskStateStoreModel.dag_id == outcome.dag_id)
            ).all()
        assert {"dify_batch:0", "dify_batch:r0"} <= set(keys), "kept where clearing the task finds it"


def test_inputs_from_an_upstream_task(docify_conns, capfd):
    """``inputs`` as an XComArg: the list an upstream task returned (as a DAG maps documents)."""
    from airflow.sdk import task

    emu = docify_conns
    with new_dag("docify_batch_xcomarg") as dag:

        @task
        def documents() -> list[dict[str, Any]]:
            return summaries(3)

        DocifyBatchScenarioOperator(task_id="batch", docify_conn_id="docify_summary", inputs=documents())
    outcome = run_dag(dag)
    assert outcome.state("batch") == "success", console_text(capfd)[-4000:]
    assert outcome.xcom("batch")["counts"]["succeeded"] == 3 and emu.runs_started(SUMMARY_KEY) == 3


# -- arguments, without a run ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_concurrency": 2.5}, "max_concurrency"),
        ({"allowed_failures": -1}, "allowed_failures"),
        ({"allowed_failures": 1.5}, "allowed_failures"),
        ({"allowed_failures": "5"}, "allowed_failures"),
        ({"progress_every": 0}, "progress_every"),
    ],
)
def test_bad_arguments_are_refused_when_the_dag_is_parsed(kwargs, named):
    with pytest.raises(ValueError, match=named):
        DifyBatchWorkflowOperator(task_id="batch", inputs=[], **kwargs)


def test_allowed_failures_as_a_count_or_a_fraction():
    from docify_provider.operators.batch import failures_allowed

    assert failures_allowed(0, 100) == 0
    assert failures_allowed(3, 100) == 3
    assert failures_allowed(0.05, 100) == 5
    assert failures_allowed(0.05, 10) == 0, "a fraction rounds down: 0.5 of an item allows none"
    assert failures_allowed(1.0, 7) == 7


def test_over_a_thousand_items_the_xcom_holds_keys_of_chunks():
    from docify_provider.operators.batch import XCOM_CHUNK, XCOM_ITEMS_INLINE

    pushed: dict[str, Any] = {}

    class TI:
        def xcom_push(self, key: str, value: Any) -> None:
            pushed[key] = value

    op = DifyBatchWorkflowOperator(task_id="batch", inputs=[])
    items = [{"index": i, "status": "succeeded"} for i in range(XCOM_ITEMS_INLINE + 1)]
    xcom = op._xcom({"ti": TI()}, {"counts": {}}, items)  # type: ignore[arg-type]
    assert xcom["items"] is None and xcom["item_keys"] == ["items_0", "items_1", "items_2"]
    assert [len(pushed[key]) for key in xcom["item_keys"]] == [XCOM_CHUNK, XCOM_CHUNK, 1]
    assert [item["index"] for key in xcom["item_keys"] for item in pushed[key]] == list(range(len(items)))


# -- files: uploaded per item, attachments stored per item --------------------------------------------


def test_dify_files_uploaded_and_attachments_stored_per_item(dify_conns, capfd, tmp_path):
    from docify_provider._core.files import safe_file_name

    emu = dify_conns
    docs = []
    for i in range(3):
        path = tmp_path / f"doc{i}.txt"
        path.write_text(f"document number {i}")
        docs.append({"document": str(path)})
    store = tmp_path / "store"
    with new_dag("dify_batch_files") as dag:
        DifyBatchWorkflowOperator(
            task_id="batch", dify_conn_id="dify_document", inputs=docs, attachments_to=f"file://{store}"
        )
    outcome = run_dag(dag)
    assert outcome.state("batch") == "success", console_text(capfd)[-4000:]
    assert emu.upload_count() == 3 and emu.runs_started(key="app-EmuDocumentWorkflow00002") == 3
    folder = store / safe_file_name(outcome.dag_id) / safe_file_name(outcome.run_id) / "batch"
    for item in check_items(outcome.xcom("batch"), 3, "workflow_run_id"):
        (file,) = item["files"]
        path = Path(file["path"])
        assert path.parent == folder / str(item["index"]), file
        assert path.stat().st_size == file["file_size"] and file["file_url"].startswith(emu.files_base)


def test_docify_attachments_stored_per_item(docify_conns, capfd, invoice_png, tmp_path):
    store = tmp_path / "store"
    with new_dag("docify_batch_attachments") as dag:
        DocifyBatchScenarioOperator(
            task_id="batch",
            docify_conn_id="docify_invoice",
            inputs=[{"invoice_image": str(invoice_png)}] * 2,
            attachments_to=str(store),
        )
    outcome = run_dag(dag)
    assert outcome.state("batch") == "success", console_text(capfd)[-4000:]
    paths = [Path(item["files"][0]["path"]) for item in outcome.xcom("batch")["items"]]
    assert [p.parent.name for p in paths] == ["0", "1"] and all(p.name.endswith("_extracted.csv") for p in paths)
    assert all(p.stat().st_size > 0 for p in paths)


def test_a_retry_does_not_check_or_upload_again_what_was_bought(docify_conns, capfd, invoice_png, tmp_path):
    """Between the tries the source of a bought item disappears (a temporary file cleaned up): the
    retry reuses that item without looking at its inputs, and sends the failed one only."""
    emu = docify_conns
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    first.write_bytes(invoice_png.read_bytes())
    second.write_bytes(invoice_png.read_bytes())
    emu.inject(Fault("stream", "failed_run", message="Bad scan", times=1))
    with new_dag("docify_batch_retry_files") as dag:
        DocifyBatchScenarioOperator(
            task_id="batch",
            docify_conn_id="docify_invoice",
            inputs=[{"invoice_image": str(first)}, {"invoice_image": str(second)}],
            max_concurrency=1,
            retries=1,
            on_retry_callback=lambda context: second.unlink(),
        )
    outcome = run_dag(dag)
    assert outcome.state("batch") == "success" and outcome.try_number("batch") == 2, console_text(capfd)[-4000:]
    assert not second.exists(), "the source of the bought item was gone before try 2"
    items = outcome.xcom("batch")["items"]
    assert [item["reused"] for item in items] == [False, True]
    assert emu.runs_started(INVOICE_KEY) == 3 and len(emu.uploads) == 3, "try 2 uploaded and sent item 0 only"


def test_a_ledger_that_cannot_be_read_sends_nothing(docify_conns, capfd):
    """Between the tries the batch's state becomes unreadable: try 2 fails closed, sending nothing."""
    from airflow.sdk import Variable

    from docify_provider.durable.state import variable_key

    def corrupt(context: Any) -> None:
        ti = context["ti"]
        Variable.set(variable_key(ti.dag_id, ti.run_id, ti.task_id, -1, "docify_batch:0"), "{not json")

    emu = docify_conns
    emu.inject(Fault("stream", "failed_run", message="Bad scan", times=1))
    with new_dag("docify_batch_unreadable") as dag:
        DocifyBatchScenarioOperator(
            task_id="batch",
            docify_conn_id="docify_summary",
            inputs=summaries(3),
            retries=1,
            on_retry_callback=corrupt,
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("batch") == "failed" and outcome.try_number("batch") == 2
    assert "LedgerError" in text and "nothing is sent" in text
    assert emu.runs_started(SUMMARY_KEY) == 3, "try 2 sent nothing"
