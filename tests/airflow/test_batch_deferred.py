"""Deferrable batches: one ``BatchTrigger`` holds every stream of a batch (real ``dag.test()``, emulators on 127.0.0.1).

``dag.test()`` runs the trigger inline, in process, with the Task SDK's channel (Airflow 3.1+), so its
ledger Variables are the real ones. Checked on the emulators' own counters (``runs_started`` = billed):
each backend's batch under a cap, with a failing item and a cut stream, every item started once; a
retry after a partial failure sends only the failed item; a trigger cancelled mid-batch and re-created
from its own serialised kwargs (a triggerer restart) re-attaches to Dify runs and reports Docify runs
unknown, never re-sending; a trigger that breaks mid-batch leaves the rest to the worker, which sends
only what was never sent; ``on_kill`` stops the Dify runs left going; kwargs stay small and keyless.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_helpers import console_text, needs_trigger_xcom_in_dag_test, new_dag, run_dag
from docify_provider.operators.dify import DifyBatchWorkflowOperator
from docify_provider.operators.dify_openapi import DifyBatchAppOperator
from docify_provider.operators.docify import DocifyBatchScenarioOperator
from docify_provider.testing.dify import LONG_APP_KEY
from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN, LONG_APP_ID
from docify_provider.testing.faults import Fault
from docify_provider.testing.keys import SUMMARY_KEY
from docify_provider.triggers.batch import BatchTrigger
from helpers import SUMMARY_INPUTS

# Airflow 3.0's dag.test() runs a trigger without the Task SDK's channel: the batch trigger cannot read
# its ledger there and hands the batch back to the worker (test_a_trigger_without_its_store_...).
pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


def summaries(n: int) -> list[dict[str, Any]]:
    return [{**SUMMARY_INPUTS, "text": f"Document {i}. It has two sentences."} for i in range(n)]


def long_runs(n: int, seconds: float) -> list[dict[str, Any]]:
    return [{"seconds": seconds, "steps": 1} for _ in range(n)]


def items_of(xcom: Mapping[str, Any], n: int) -> list[dict[str, Any]]:
    items = xcom["items"]
    assert [item["index"] for item in items] == list(range(n)), "items come back in input order"
    return items


def statuses(items: list[dict[str, Any]]) -> list[str]:
    return [item["status"] for item in items]


def ran_in_the_trigger(text: str) -> None:
    assert "deferring to the triggerer" in text and "in the triggerer, at most" in text
    assert "did not finish the batch" not in text, "the trigger ran the batch, not the worker"


# -- a trigger that is cancelled mid-batch, then re-created from its own kwargs -----------------------

#: The emulator the restart trigger watches (set by the test that uses it; one test process at a time).
WATCH: dict[str, Any] = {}


class RestartingTrigger(BaseTrigger):
    """Runs a ``BatchTrigger`` from ``inner`` (its serialised kwargs) until ``after`` runs have started on
    the watched emulator, cancels it (as a triggerer shutting down does), then:

    * ``restart``: re-creates it from ``serialize()`` and runs that to the end (a triggerer restart);
    * ``kill``: awaits its ``on_kill`` (the task cleared while deferred), then as ``restart``;
    * ``fail``: fires ``trigger_failed`` (the trigger broke mid-batch: the worker finishes).
    """

    def __init__(self, *, inner: dict[str, Any], mode: str, after: int) -> None:
        super().__init__()
        self.inner, self.mode, self.after = inner, mode, after

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{__name__}.RestartingTrigger", {"inner": self.inner, "mode": self.mode, "after": self.after}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        first = BatchTrigger(**self.inner)
        running = asyncio.ensure_future(anext(first.run()))
        emu = WATCH["emu"]
        while emu.runs_started() < self.after and not running.done():
            await asyncio.sleep(0.02)
        assert not running.done(), "the batch ended before the restart"
        await asyncio.sleep(0.4)  # the runs' ids are in the ledger (the ids arrive with their first event)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        if self.mode == "kill":
            await first.on_kill()
        if self.mode == "fail":
            yield TriggerEvent({"status": "trigger_failed", "sent": None, "message": "RuntimeError: broke mid-batch"})
            return
        classpath, kwargs = first.serialize()
        assert classpath == "docify_provider.triggers.batch.BatchTrigger"
        again = BatchTrigger(**json.loads(json.dumps(kwargs)))  # as a triggerer re-creates it from its row
        yield await anext(again.run())


class RestartingDifyBatch(DifyBatchWorkflowOperator):
    def __init__(self, *, mode: str, after: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode, self.after = mode, after

    def defer(self, *, trigger: Any, method_name: str, kwargs: Any = None, timeout: Any = None) -> Any:
        wrapper = RestartingTrigger(inner=trigger.serialize()[1], mode=self.mode, after=self.after)
        return super().defer(trigger=wrapper, method_name=method_name, kwargs=kwargs, timeout=timeout)


class RestartingDocifyBatch(DocifyBatchScenarioOperator):
    def __init__(self, *, mode: str, after: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode, self.after = mode, after

    def defer(self, *, trigger: Any, method_name: str, kwargs: Any = None, timeout: Any = None) -> Any:
        wrapper = RestartingTrigger(inner=trigger.serialize()[1], mode=self.mode, after=self.after)
        return super().defer(trigger=wrapper, method_name=method_name, kwargs=kwargs, timeout=timeout)


# -- each backend, deferred ----------------------------------------------------------------------------


@needs_trigger_xcom_in_dag_test
def test_docify_deferred_batch_with_a_429_a_failing_item_and_a_cut_stream(docify_conns, capfd, tmp_path):
    emu = docify_conns
    emu.inject(Fault("stream", "status", status=429, retry_after=0.1, times=2))
    emu.inject(Fault("stream", "failed_run", message="Bad scan", times=1))
    emu.inject(Fault("stream", "drop_mid_stream", after_events=2, times=1))
    results = tmp_path / "docify.jsonl"
    with new_dag("docify_batch_deferred") as dag:
        DocifyBatchScenarioOperator(
            task_id="batch",
            docify_conn_id="docify_summary",
            inputs=summaries(8),
            max_concurrency=3,
            allowed_failures=2,
            results_to=str(results),
            progress_every=0.2,
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("batch") == "success", text[-5000:]
    ran_in_the_trigger(text)
    xcom = outcome.xcom("batch")
    items = items_of(xcom, 8)
    counts = xcom["counts"]
    assert (counts["succeeded"], counts["failed"], counts["unknown"]) == (6, 1, 1), counts
    assert counts["turned_away"] == 2, "both 429s waited out and sent again, counted by the trigger"
    assert emu.runs_started(SUMMARY_KEY) == 8, "every document started once; the 429s started none"
    assert all(item["outputs"]["summary"] for item in items if item["status"] == "succeeded")
    assert "Bad scan" in next(item for item in items if item["status"] == "failed")["error"]
    unknown = next(item for item in items if item["status"] == "unknown")
    assert unknown["session_id"] and "not re-sent" in unknown["error"]
    assert [json.loads(line)["status"] for line in results.read_text().splitlines()] == statuses(items)
    assert "Batch progress: " in text and "Item 0 " in text


@needs_trigger_xcom_in_dag_test
def test_dify_deferred_batch_under_the_cap_with_a_failing_item_and_a_cut_stream(dify_conns, capfd):
    emu = dify_conns
    emu.max_active_requests = 2
    emu.inject(Fault("stream", "error_event", times=1))
    emu.inject(Fault("stream", "drop_mid_stream", after_events=2, times=1))
    with new_dag("dify_batch_deferred") as dag:
        DifyBatchWorkflowOperator(
            task_id="batch",
            dify_conn_id="dify_long",
            inputs=long_runs(8, 0.3),
            max_concurrency=4,
            allowed_failures=1,
            progress_every=0.2,
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("batch") == "success", text[-5000:]
    ran_in_the_trigger(text)
    xcom = outcome.xcom("batch")
    items = items_of(xcom, 8)
    assert statuses(items).count("succeeded") == 7 and statuses(items).count("failed") == 1
    assert xcom["counts"]["turned_away"] > 0, "the cap of 2 was met (429 not started) and waited out"
    # the trigger's writes count too: at least an intent and a run id for each of the 8 items' shard
    assert xcom["counts"]["store_writes"] >= 2, xcom["counts"]
    assert emu.runs_started(key=LONG_APP_KEY) == 8, "the cut stream was re-attached, not re-sent"
    assert len({item["workflow_run_id"] for item in items}) == 8


@needs_trigger_xcom_in_dag_test
def test_dify_app_deferred_batch_under_the_cap_with_a_failing_item(openapi_conn, capfd):
    emu = openapi_conn
    emu.max_active_requests = 2
    emu.inject(Fault("stream", "error_event", times=1))
    with new_dag("dify_app_batch_deferred") as dag:
        DifyBatchAppOperator(
            task_id="batch", app=LONG_APP_ID, inputs=long_runs(6, 0.3), max_concurrency=4, allowed_failures=1
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("batch") == "success", text[-5000:]
    ran_in_the_trigger(text)
    xcom = outcome.xcom("batch")
    items = items_of(xcom, 6)
    assert statuses(items).count("succeeded") == 5 and statuses(items).count("failed") == 1
    assert xcom["counts"]["turned_away"] > 0
    assert emu.runs_started(app=LONG_APP_ID) == 6
    assert ACCOUNT_TOKEN not in text


@needs_trigger_xcom_in_dag_test
def test_deferred_retry_after_a_partial_failure_sends_only_the_failed_item(docify_conns, capfd):
    emu = docify_conns
    emu.inject(Fault("stream", "failed_run", message="Bad scan", times=1))
    with new_dag("docify_batch_deferred_retry") as dag:
        DocifyBatchScenarioOperator(
            task_id="batch", docify_conn_id="docify_summary", inputs=summaries(6), max_concurrency=2, retries=1
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("batch") == "success" and outcome.try_number("batch") == 2, text[-5000:]
    assert "Batch failed: 1 item(s) did not succeed; allowed_failures allows 0" in text
    assert "AirflowFailException" not in text, "the resumed try's BatchFailedError goes to the retries"
    assert "5 bought, 0 sent earlier, 1 failed earlier" in text, "try 2's trigger read try 1's ledger"
    counts = outcome.xcom("batch")["counts"]
    assert counts["succeeded"] == 6 and counts["reused"] == 5
    assert emu.runs_started(SUMMARY_KEY) == 7, "try 2 sent the failed item only"


# -- restart, kill, failure ----------------------------------------------------------------------------


@needs_trigger_xcom_in_dag_test
def test_dify_trigger_recreated_mid_batch_reattaches_and_runs_every_item_once(dify_conns, capfd):
    emu = WATCH["emu"] = dify_conns
    with new_dag("dify_batch_restart") as dag:
        RestartingDifyBatch(
            task_id="batch",
            dify_conn_id="dify_long",
            inputs=long_runs(9, 1.5),
            max_concurrency=3,
            mode="restart",
            after=3,
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("batch") == "success", text[-5000:]
    assert "Batch trigger cancelled with 3 item(s) sent and not settled" in text
    assert "0 bought, 3 sent earlier" in text, "the re-created trigger found the first one's ledger"
    assert text.count("re-attaching to it instead of starting a new run") == 3
    items = items_of(outcome.xcom("batch"), 9)
    assert statuses(items) == ["succeeded"] * 9
    assert emu.runs_started(key=LONG_APP_KEY) == 9, "every item run once across the restart"


@needs_trigger_xcom_in_dag_test
def test_docify_trigger_recreated_mid_batch_reports_the_cut_items_unknown(docify_conns, capfd):
    emu = WATCH["emu"] = docify_conns
    emu.event_interval = 0.3  # each stream takes a second or two: the restart cuts the first two
    with new_dag("docify_batch_restart") as dag:
        RestartingDocifyBatch(
            task_id="batch",
            docify_conn_id="docify_summary",
            inputs=summaries(6),
            max_concurrency=2,
            allowed_failures=2,
            mode="restart",
            after=2,
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("batch") == "success", text[-5000:]
    items = items_of(outcome.xcom("batch"), 6)
    unknown = [item for item in items if item["status"] == "unknown"]
    assert statuses(items).count("succeeded") == 6 - len(unknown)
    assert len(unknown) == 2 and all("not re-sent" in item["error"] for item in unknown), text[-5000:]
    assert "Batch trigger cancelled with 2 item(s) sent and not settled" in text
    assert emu.runs_started(SUMMARY_KEY) == 6, "the items cut by the restart were not sent again"


@needs_trigger_xcom_in_dag_test
def test_a_trigger_that_breaks_mid_batch_leaves_the_rest_to_the_worker(dify_conns, capfd, caplog):
    emu = WATCH["emu"] = dify_conns
    with new_dag("dify_batch_trigger_failed") as dag:
        RestartingDifyBatch(
            task_id="batch", dify_conn_id="dify_long", inputs=long_runs(6, 1.5), max_concurrency=3, mode="fail", after=3
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("batch") == "success", text[-5000:]
    assert "The batch trigger did not finish the batch (RuntimeError: broke mid-batch)" in text
    worker = caplog.text  # the worker's runner logs through its module logger
    assert worker.count("re-attaching to it instead of starting a new run") == 3, "the worker re-attached"
    assert statuses(items_of(outcome.xcom("batch"), 6)) == ["succeeded"] * 6
    assert emu.runs_started(key=LONG_APP_KEY) == 6, "the worker sent only what the trigger never sent"


@needs_trigger_xcom_in_dag_test
def test_on_kill_stops_the_dify_runs_left_going(dify_conns, capfd):
    emu = WATCH["emu"] = dify_conns
    with new_dag("dify_batch_kill") as dag:
        RestartingDifyBatch(
            task_id="batch", dify_conn_id="dify_long", inputs=long_runs(5, 3.0), max_concurrency=2, mode="kill", after=2
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert "Batch trigger killed: stopping 2 Dify run(s) left going" in text, text[-5000:]
    assert text.count("Stopped Dify task") == 2 and emu.stop_requests() == 2
    assert emu.runs_started(key=LONG_APP_KEY) == 5, "the stopped runs were not sent again"
    items = items_of(outcome.xcom("batch"), 5)
    assert statuses(items).count("failed") == 2 and outcome.state("batch") == "failed"


def test_a_trigger_without_its_stored_inputs_hands_the_batch_to_the_worker(dify_conns, capfd):
    """The trigger cannot read its store (here: the inputs are gone): it fires trigger_failed, having
    sent nothing, and the worker runs the batch. On Airflow 3.0's dag.test() this is every batch."""
    from airflow.sdk import Variable

    from docify_provider.durable.state import variable_key

    class LosesItsInputs(DifyBatchWorkflowOperator):
        def defer(self, *, trigger: Any, method_name: str, kwargs: Any = None, timeout: Any = None) -> Any:
            _, k = trigger.serialize()
            Variable.delete(variable_key(k["dag_id"], k["run_id"], k["task_id"], -1, "dify_batch:in0"))
            return super().defer(trigger=trigger, method_name=method_name, kwargs=kwargs, timeout=timeout)

    emu = dify_conns
    with new_dag("dify_batch_no_inputs") as dag:
        LosesItsInputs(task_id="batch", dify_conn_id="dify_long", inputs=long_runs(4, 0.1))
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("batch") == "success", text[-5000:]
    assert "did not finish the batch" in text
    assert outcome.xcom("batch")["counts"]["succeeded"] == 4 and emu.runs_started(key=LONG_APP_KEY) == 4


# -- kwargs --------------------------------------------------------------------------------------------


def test_trigger_kwargs_stay_small_and_keyless_for_2000_items(dify_conns):
    from airflow.exceptions import AirflowSkipException

    seen: dict[str, Any] = {}

    class Records(DifyBatchWorkflowOperator):
        def defer(self, *, trigger: Any, method_name: str, kwargs: Any = None, timeout: Any = None) -> Any:
            seen["trigger"] = trigger.serialize()
            raise AirflowSkipException("recorded")

    with new_dag("dify_batch_kwargs") as dag:
        Records(task_id="batch", dify_conn_id="dify_long", inputs=long_runs(2000, 0.1))
    outcome = run_dag(dag)
    assert outcome.state("batch") == "skipped"
    classpath, kwargs = seen["trigger"]
    assert classpath == "docify_provider.triggers.batch.BatchTrigger"
    text = json.dumps(kwargs)
    assert len(text) < 2048, text
    assert kwargs["count"] == 2000 and LONG_APP_KEY not in text and "password" not in text
    assert BatchTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert dify_conns.runs_started() == 0
