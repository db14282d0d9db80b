"""A batch that meets ``execution_timeout`` stops its runs, reports every item and fails (real ``dag.test()``).

On the worker (``deferrable=False``) the timeout is Airflow's own: its Task SDK raises
``AirflowTaskTimeout`` (SIGALRM) inside the batch's event loop, as on a real worker.

Deferred, ``dag.test()`` runs the trigger inline and never enforces a deferral's timeout (Airflow
3.3's ``_run_inline_trigger`` awaits the first event, however long). So the test plays the two
parts Airflow's scheduler and triggerer play, and nothing of the provider's: ``TimesOut`` runs the
real ``BatchTrigger`` until the emulator has started ``after`` runs (the deferral's timeout lapsing
mid-batch, at a moment that does not depend on how long ``dag.test()`` takes to start a task: on
Airflow 3.1 that alone can eat a few seconds of ``execution_timeout``), then cancels it as the
triggerer does when the scheduler times the deferral out, and fires nothing; the operator defers
with ``method_name="__fail__"`` and the reason the scheduler writes (``{"error": "Trigger
timeout"}``), so ``dag.test()`` resumes the task through the same ``resume_execution`` a real
worker calls after a deferral timeout. That the operator bounds its deferral by what is left of
``execution_timeout`` is asserted on the way.

Checked on the emulators: the task fails with the timeout message; the XCom and ``results_to`` hold
every item with its status (bought: succeeded; stopped: failed, saying so; never sent: not_sent;
Docify in flight: unknown); one stop request per running Dify run and the runs end ``stopped``; no
item's run was started twice (each item's ``label`` is on exactly one emulator run). A run Dify does
not show stopped (the stop ignored) keeps its ledger row, so a retry re-attaches instead of paying
for a second run.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_helpers import console_text, needs_trigger_xcom_in_dag_test, new_dag, run_dag
from docify_provider.operators.dify import DifyBatchWorkflowOperator
from docify_provider.operators.dify_openapi import DifyBatchAppOperator
from docify_provider.operators.docify import DocifyBatchScenarioOperator
from docify_provider.testing.dify import LONG_APP_KEY
from docify_provider.testing.dify_openapi import LONG_APP_ID
from docify_provider.testing.keys import SUMMARY_KEY
from helpers import SUMMARY_INPUTS

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

#: Two quick items, two that outlast the timeout, two never sent (at most 2 at once).
SECONDS = [0.2, 0.2, 30, 30, 30, 30]
EXPECTED = ["succeeded", "succeeded", "failed", "failed", "not_sent", "not_sent"]


#: The emulator ``TimesOut`` watches (set by each deferred test; one test process at a time).
WATCH: dict[str, Any] = {}


class TimesOut(BaseTrigger):
    """The scheduler's and triggerer's part of a deferral timeout (module docstring): run the batch trigger
    until ``after`` runs have started on the watched emulator, then cancel it and fire nothing."""

    def __init__(self, *, inner: dict[str, Any], after: int) -> None:
        super().__init__()
        self.inner, self.after = inner, after

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{__name__}.TimesOut", {"inner": self.inner, "after": self.after}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from docify_provider.triggers.batch import BatchTrigger

        running = asyncio.ensure_future(anext(BatchTrigger(**self.inner).run()))
        emu = WATCH["emu"]
        while emu.runs_started() < self.after and not running.done():
            await asyncio.sleep(0.02)
        assert not running.done(), "the batch ended before its timeout"
        await asyncio.sleep(0.5)  # the runs' task ids are in the ledger (they arrive with their first event)
        running.cancel()  # what the triggerer does to a trigger whose deferral timed out
        with pytest.raises(asyncio.CancelledError):
            await running
        return
        yield  # an async generator that fires nothing


class DefersUntilTimeout:
    """Defers as the batch operator does, to ``TimesOut``, and resumes as Airflow does after the timeout."""

    after: int

    def defer(self, *, trigger: Any, method_name: str, kwargs: Any = None, timeout: Any = None) -> Any:
        assert method_name == "execute_complete" and timeout is not None, "the deferral is bounded"
        assert timeout <= self.execution_timeout, "by what is left of execution_timeout"  # type: ignore[attr-defined]
        wrapper = TimesOut(inner=trigger.serialize()[1], after=self.after)
        fail = {"error": "Trigger timeout"}  # TriggerFailureReason.TRIGGER_TIMEOUT, as the scheduler stores it
        return super().defer(trigger=wrapper, method_name="__fail__", kwargs=fail, timeout=timeout)  # type: ignore[misc]


class DifyTimesOut(DefersUntilTimeout, DifyBatchWorkflowOperator):
    after = 4  # the two quick items done, two slow ones going


class DifyAppTimesOut(DefersUntilTimeout, DifyBatchAppOperator):
    after = 4


class DocifyTimesOut(DefersUntilTimeout, DocifyBatchScenarioOperator):
    after = 2


def labelled(seconds: list[float]) -> list[dict[str, Any]]:
    return [{"seconds": s, "steps": 1, "label": f"doc-{i}"} for i, s in enumerate(seconds)]


def run_six(dag_id: str, operator: Any, results: Any, seconds: float, **kwargs: Any) -> Any:
    """One batch task of ``operator`` over the six ``SECONDS`` items, two at a time, its items written to
    ``results``, with an ``execution_timeout`` of ``seconds``, run through ``dag.test()``."""
    with new_dag(dag_id) as dag:
        operator(
            task_id="batch",
            inputs=labelled(SECONDS),
            max_concurrency=2,
            results_to=str(results),
            execution_timeout=timedelta(seconds=seconds),
            **kwargs,
        )
    return run_dag(dag)


def flat(text: str) -> str:
    """``text`` on one line: Airflow 3.0 prints the task's exception in a box, wrapped at ~100 columns."""
    return " ".join(text.replace("│", " ").split())


def check_dify_timeout(outcome: Any, emu: Any, text: str, results: Any, limit: str) -> None:
    """What every Dify case shows (module docstring)."""
    text = flat(text)
    assert outcome.state("batch") == "failed", text[-5000:]
    assert "BatchTimeoutError" in text and f"Batch stopped at execution_timeout ({limit})" in text, text[-5000:]
    assert "2 item(s) done, 0 failed, 2 stopped, 0 in flight and not stopped (unknown or paused), 2 never sent" in text
    assert "A retry sends only what is left: the failed, stopped and never-sent items" in text
    items = outcome.xcom("batch")["items"]
    assert [item["status"] for item in items] == EXPECTED, items
    for item in items[2:4]:
        assert item["error"].startswith("stopped at execution_timeout: Dify run ") and item["workflow_run_id"]
        assert "is stopped; a retry sends this item again (a new run)" in item["error"]
    assert all("not sent before execution_timeout" in item["error"] for item in items[4:])
    assert items[0]["outputs"] and items[1]["outputs"], "the bought results are reported, not dropped"
    assert [json.loads(line)["status"] for line in results.read_text().splitlines()] == EXPECTED
    runs = emu.run_list()
    labels = sorted(run["inputs"]["label"] for run in runs)
    assert labels == ["doc-0", "doc-1", "doc-2", "doc-3"], "each item sent once, the unsent ones never"
    stopped = {item["workflow_run_id"] for item in items[2:4]}
    assert {run["id"] for run in runs if run["status"] == "stopped"} == stopped
    logged = set(re.findall(r"Stopped Dify task \S+ \(run (\S+)\): it is now stopped", text))
    assert logged == stopped, "one line per stopped run, with what it became"


@needs_trigger_xcom_in_dag_test
@pytest.mark.parametrize("backend", ["dify", "dify_openapi"])
def test_deferred_batch_at_execution_timeout_stops_its_runs_and_reports_every_item(
    request: Any, backend: str, capfd: Any, tmp_path: Any
) -> None:
    emu = WATCH["emu"] = request.getfixturevalue("dify_conns" if backend == "dify" else "openapi_conn")
    results = tmp_path / "items.jsonl"
    target = {"dify_conn_id": "dify_long"} if backend == "dify" else {"app": LONG_APP_ID}
    operator = DifyTimesOut if backend == "dify" else DifyAppTimesOut
    outcome = run_six(f"{backend}_batch_deferred_timeout", operator, results, 30, **target)
    text = console_text(capfd)
    assert "deferring to the triggerer" in text and "did not finish the batch" not in text
    check_dify_timeout(outcome, emu, text, results, "0:00:30")
    if backend == "dify":
        assert emu.stop_requests(key=LONG_APP_KEY) == 2 and emu.runs_started(key=LONG_APP_KEY) == 4
    else:
        assert emu.stop_requests(app=LONG_APP_ID) == 2 and emu.runs_started(app=LONG_APP_ID) == 4


@needs_trigger_xcom_in_dag_test
def test_a_deferred_batch_trigger_meets_its_own_deadline_stops_sending_and_the_task_stops_the_runs(
    dify_conns: Any, capfd: Any, tmp_path: Any
) -> None:
    """No stand-in this time: the real ``BatchTrigger`` holds the try's ``execution_timeout`` as its own
    deadline (``dag.test()`` enforces none), stops sending before it, fires ``timed_out`` just before it,
    and the task resumes through ``execute_complete`` to stop the runs left going and report every item.

    How many items got a slot before sending stopped depends on how much of the 25 s the task's start
    took (``dag.test()`` on a loaded machine took 12 s to start it), so this checks what holds whatever the split: the
    quick items done, every run sent is stopped or done, nothing sent twice, the rest never sent."""
    emu = dify_conns
    results = tmp_path / "items.jsonl"
    outcome = run_six(
        "dify_batch_deferred_own_deadline", DifyBatchWorkflowOperator, results, 25, dify_conn_id="dify_long"
    )
    text = flat(console_text(capfd))
    assert outcome.state("batch") == "failed", text[-5000:]
    assert "Batch trigger at execution_timeout: sending stopped 5s before it" in text, text[-5000:]
    assert "BatchTimeoutError" in text and "Batch stopped at execution_timeout (0:00:25)" in text
    items = outcome.xcom("batch")["items"]
    statuses = [item["status"] for item in items]
    assert statuses[:2] == ["succeeded", "succeeded"] and items[0]["outputs"], items
    stopped = [item for item in items[2:] if item["status"] == "failed"]
    assert stopped and all(item["error"].startswith("stopped at execution_timeout: Dify run ") for item in stopped)
    assert statuses[2:] == ["failed"] * len(stopped) + ["not_sent"] * (4 - len(stopped)), statuses
    assert [json.loads(line)["status"] for line in results.read_text().splitlines()] == statuses
    runs = emu.run_list()
    assert sorted(run["inputs"]["label"] for run in runs) == [f"doc-{i}" for i in range(2 + len(stopped))]
    assert {run["id"] for run in runs if run["status"] == "stopped"} == {item["workflow_run_id"] for item in stopped}
    assert emu.stop_requests(key=LONG_APP_KEY) == len(stopped)


def test_worker_batch_at_execution_timeout_stops_its_runs_and_reports_every_item(
    dify_conns: Any, capfd: Any, caplog: Any, tmp_path: Any
) -> None:
    """``deferrable=False``: Airflow's ``AirflowTaskTimeout`` lands in the runner's event loop, which is
    closed; the stopped items' rows are written from a new one (a retry must read them failed)."""
    emu = dify_conns
    results = tmp_path / "items.jsonl"
    outcome = run_six(
        "dify_batch_worker_timeout", DifyBatchWorkflowOperator, results, 4, dify_conn_id="dify_long", deferrable=False
    )
    text = console_text(capfd)
    check_dify_timeout(outcome, emu, text, results, "0:00:04")
    assert "Could not record" not in caplog.text, "the stopped items' rows are durable"
    assert emu.stop_requests(key=LONG_APP_KEY) == 2 and emu.runs_started(key=LONG_APP_KEY) == 4


@needs_trigger_xcom_in_dag_test
def test_deferred_docify_batch_at_execution_timeout_reports_its_in_flight_items_unknown(
    docify_conns: Any, capfd: Any
) -> None:
    """Docify has no stop endpoint: the items in flight are reported unknown (never re-sent), none stopped."""
    emu = WATCH["emu"] = docify_conns
    emu.event_interval = 2.0  # each stream outlasts the timeout
    with new_dag("docify_batch_deferred_timeout") as dag:
        DocifyTimesOut(
            task_id="batch",
            docify_conn_id="docify_summary",
            inputs=[{**SUMMARY_INPUTS, "text": f"Document {i}. It has two sentences."} for i in range(4)],
            max_concurrency=2,
            execution_timeout=timedelta(seconds=30),
        )
    outcome = run_dag(dag)
    text = flat(console_text(capfd))
    assert outcome.state("batch") == "failed", text[-5000:]
    assert "Batch stopped at execution_timeout (0:00:30)" in text, text[-5000:]
    assert "none stopped (Docify runs cannot be stopped), 2 in flight and not stopped" in text
    assert "execution_timeout with 2 Docify run(s) sent and not settled; Docify runs cannot be stopped" in text
    assert "re-attached by run id" not in text, "Docify runs are not re-attached: the message does not say so"
    items = outcome.xcom("batch")["items"]
    assert [item["status"] for item in items] == ["unknown", "unknown", "not_sent", "not_sent"], items
    assert all(
        "in flight at execution_timeout" in item["error"] and "not re-sent" in item["error"] for item in items[:2]
    )
    assert emu.runs_started(SUMMARY_KEY) == 2, "the items in flight were sent once, the others never"


def test_a_run_not_shown_stopped_keeps_its_row_so_a_retry_reattaches_instead_of_paying_again(
    dify_conns: Any, capfd: Any
) -> None:
    """Dify answers the stop with success and the run goes on (``ignore_stop``): the item is not settled
    failed (a retry would pay for a second run while the first one runs): it is reported unknown, its
    ledger row stays "sent" with the run id, which a retry re-attaches to."""
    from airflow.models.variable import Variable

    from docify_provider.durable.state import variable_key
    from docify_provider.testing.faults import Fault

    emu = dify_conns
    emu.inject(Fault("stop", "ignore_stop", times=2))
    with new_dag("dify_batch_worker_timeout_ignored") as dag:
        DifyBatchWorkflowOperator(
            task_id="batch",
            dify_conn_id="dify_long",
            inputs=labelled([30, 30]),
            max_concurrency=2,
            deferrable=False,
            execution_timeout=timedelta(seconds=3),
        )
    outcome = run_dag(dag)
    text = flat(console_text(capfd))
    assert outcome.state("batch") == "failed", text[-5000:]
    assert "0 stopped, 2 in flight and not stopped (unknown or paused), 0 never sent" in text, text[-5000:]
    items = outcome.xcom("batch")["items"]
    assert [item["status"] for item in items] == ["unknown", "unknown"], items
    assert all("was running after the stop at execution_timeout: a retry re-attaches" in i["error"] for i in items)
    assert emu.stop_requests(key=LONG_APP_KEY) == 2 and [run.status for run in emu.runs] == ["running"] * 2
    rows = json.loads(Variable.get(variable_key(outcome.dag_id, outcome.run_id, "batch", -1, "dify_batch:0")))
    assert [row[:2] for row in rows["items"].values()] == [["s", item["workflow_run_id"]] for item in items]
