"""A run request turned away (429, "not started") is waited on and sent again, on every backend and path.

The one failure after which sending a run again is safe (``RunNotStartedError``): the single-run
operators wait (``Retry-After``, else backoff) and send again, on the worker (blocking runs, worker
streams, the account API's runs) and in the triggerer (deferred streams), within
``max_wait_not_started`` and ``execution_timeout``. Real ``dag.test()`` runs against each
backend's emulator: Dify's turn-aways come from its cap of runs at once (``max_active_requests``,
held by another run of the app), Docify's from a 429 fault with ``Retry-After`` (Docify documents
no cap); the emulators count the runs started (= billed).
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from airflow_helpers import (
    console_text,
    needs_trigger_xcom_in_dag_test,
    new_dag,
    run_dag,
    run_trigger_for,
    set_xcom,
)
from docify_provider.testing.dify import LONG_APP_KEY
from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN, LONG_APP_ID
from docify_provider.testing.faults import Fault

pytestmark = pytest.mark.timeout(120)

WAIT_LINE = "Turned away by the server (429, run not started): waiting "
#: The run operators of each backend's ``mode``: the endpoint its run request goes to.
RUN_ENDPOINT = {"blocking": "run", "streaming": "stream", "deferred": "stream"}
BATCH = {
    "docify": "DocifyBatchScenarioOperator",
    "dify": "DifyBatchWorkflowOperator",
    "dify_openapi": "DifyBatchAppOperator",
}
LONG_INPUTS = {"seconds": 0.1, "steps": 1}


def _turned_away(emu: Any) -> int:
    """Run requests the emulator answered 429."""
    return sum(1 for r in emu.requests if r.endpoint in ("run", "stream") and r.status == 429)


class _Blocker:
    """Another run of the Dify app holding its only slot (``max_active_requests=1``) for ``seconds``,
    started by the task's ``pre_execute`` (``dag.test()`` takes seconds to start a task)."""

    def __init__(self, contract: Any, emu: Any, seconds: float) -> None:
        self.contract, self.emu, self.seconds = contract, emu, seconds
        self.events: Any = None

    def start(self, context: Any = None) -> None:
        if self.events is not None:  # pre_execute runs again when a deferred task resumes
            return
        contract, emu, seconds = self.contract, self.emu, self.seconds
        emu.max_active_requests = 1
        if contract.name == "dify":
            from docify_provider.dify.client import DifyClient
            from docify_provider.dify.config import DifyClientConfig

            self.client: Any = DifyClient(DifyClientConfig(api_key=LONG_APP_KEY, base_url=emu.base_url))
            self.events = iter(self.client.stream_workflow({"seconds": seconds, "steps": 2}, user="blocker"))
        else:
            from docify_provider.dify_openapi.client import DifyOpenAPIClient
            from docify_provider.dify_openapi.config import DifyOpenAPIClientConfig

            self.client = DifyOpenAPIClient(DifyOpenAPIClientConfig(api_key=ACCOUNT_TOKEN, base_url=emu.base_url))
            self.events = iter(self.client.run_app(LONG_APP_ID, {"seconds": seconds, "steps": 2}))
        next(self.events)  # workflow_started: the run holds the slot

    def close(self) -> None:
        if self.events is not None:
            list(self.events)
            self.client.close()


def _long_runs(contract: Any, emu: Any) -> int:
    if contract.name == "dify":
        return int(emu.runs_started(key=LONG_APP_KEY))
    return int(emu.runs_started(ACCOUNT_TOKEN, app=LONG_APP_ID))


def test_a_run_turned_away_waits_and_is_bought_once(contract: Any, mode: str, backend_emu: Any, capfd: Any) -> None:
    emu = backend_emu
    blocker = None
    if contract.name == "docify":
        emu.inject(Fault(RUN_ENDPOINT[mode], "status", status=429, retry_after=1, times=2))
        kwargs: dict[str, Any] = {}
    else:  # the app's cap of runs at once, held by another run for 2 s
        blocker = _Blocker(contract, emu, seconds=2.0)
        kwargs = {"dify_conn_id": "dify_long"} if contract.name == "dify" else {"app": LONG_APP_ID}
        start = blocker.start  # a closure, not the bound method: a DAG copy must not copy the emulator

        kwargs.update(inputs=LONG_INPUTS, pre_execute=lambda context: start(context))
    try:
        with new_dag(f"{contract.name}_429_{mode}") as dag:
            contract.operator(mode, task_id="stream", **kwargs)
        out = run_dag(dag)
    finally:
        if blocker is not None:
            blocker.close()
    text = console_text(capfd)
    assert out.state("stream") == "success", text[-4000:]
    assert WAIT_LINE in text and "before sending again (attempt 2; waited 0s of at most 600s)" in text
    if contract.name == "docify":
        assert "waiting 1.0s before sending again (attempt 3; waited 1s of at most 600s)" in text
        assert _turned_away(emu) == 2 and contract.runs(emu, "cheap") == 1, "sent three times, bought once"
    else:
        assert _turned_away(emu) >= 1
        assert _long_runs(contract, emu) == 2, "the blocker's run and this task's, each once"


def test_the_bound_ends_the_waits_and_a_retry_sends_what_was_never_started(
    contract: Any, mode: str, backend_emu: Any, capfd: Any
) -> None:
    """Past ``max_wait_not_started`` the task fails saying how long, how often and what to do; the pending
    record was forgotten (the run was not started), so the retry sends it instead of calling it unknown."""
    emu = backend_emu
    emu.inject(Fault(RUN_ENDPOINT[mode], "status", status=429, retry_after=1, times=3))
    with new_dag(f"{contract.name}_429_bound_{mode}", default_args={"retries": 1, "retry_delay": timedelta(0)}) as dag:
        contract.operator(mode, task_id="stream", max_wait_not_started=2.5)
    out = run_dag(dag)
    text = console_text(capfd)
    assert out.state("stream") == "success" and out.try_number("stream") == 2, text[-4000:]
    # two waits of 1 s (Retry-After); under load the third 429 comes later, so 2 s or 3 s of waiting
    assert re.search(r"turned the run request away 3 times \(HTTP 429, not started\); the task waited [23]s", text)
    assert "would pass max_wait_not_started=2.5s. No run was started or billed" in text
    assert "Airflow pool sized to" in text and BATCH[contract.name] in text and "--include-deferred" in text
    assert _turned_away(emu) == 3 and contract.runs(emu, "cheap") == 1


@pytest.mark.backends(modes=("blocking", "deferred"))
def test_zero_fails_at_the_first_429_as_before(contract: Any, mode: str, backend_emu: Any, capfd: Any) -> None:
    emu = backend_emu
    emu.inject(Fault(RUN_ENDPOINT[mode], "status", status=429, retry_after=1, times=1))
    with new_dag(f"{contract.name}_429_zero_{mode}") as dag:
        contract.operator(mode, task_id="stream", max_wait_not_started=0)
    out = run_dag(dag)
    text = console_text(capfd)
    assert out.state("stream") == "failed"
    assert "RunNotStartedError" in text and "turned the run request away (HTTP 429, not started)" in text
    assert WAIT_LINE not in text and "No run was started or billed" not in text
    assert _turned_away(emu) == 1 and contract.runs(emu, "cheap") == 0


@pytest.mark.backends("docify", modes=("blocking", "deferred"))
def test_no_wait_passes_execution_timeout(contract: Any, mode: str, backend_emu: Any, capfd: Any) -> None:
    emu = backend_emu
    emu.inject(Fault(RUN_ENDPOINT[mode], "status", status=429, retry_after=2, times=None))
    with new_dag(f"docify_429_timeout_{mode}") as dag:
        contract.operator(mode, task_id="stream", execution_timeout=timedelta(seconds=4))
    started = time.monotonic()
    out = run_dag(dag)
    text = console_text(capfd)
    assert out.state("stream") == "failed"
    assert "would pass the task's execution_timeout. No run was started or billed" in text, text[-3000:]
    assert "AirflowTaskTimeout" not in text and "TaskDeferralTimeout" not in text
    assert _turned_away(emu) >= 1 and contract.runs(emu, "cheap") == 0
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("value", [-1, "60", True, float("nan"), float("inf")])
def test_a_bad_value_fails_when_the_dag_is_parsed(contract: Any, value: Any) -> None:
    mode = contract.modes[0]
    with pytest.raises(ValueError, match="max_wait_not_started must be"):
        contract.operator(mode, task_id="stream", max_wait_not_started=value)


@needs_trigger_xcom_in_dag_test
@pytest.mark.backends("docify", "dify")  # the account API's runs are sent from the worker, never by a trigger
def test_the_trigger_marks_nothing_sent_while_it_waits(contract: Any, backend_emu: Any) -> None:
    """A triggerer restarted while its trigger waits after a 429 must send the run, not report it unknown:
    the restart marker is back at "deferred" for the whole wait, then "sent" with the run's id."""
    emu = backend_emu
    with new_dag(f"{contract.name}_429_marker") as dag:
        contract.operator("deferred", task_id="stream")
    out = run_dag(dag)
    assert out.state("stream") == "success" and contract.runs(emu, "cheap") == 1
    (classpath, kwargs) = _stored_trigger(out)
    assert kwargs["max_wait_not_started"] == 600.0 and kwargs["not_started_deadline"] is None
    assert contract.credential not in json.dumps(kwargs, default=str)

    # The trigger as a triggerer would re-create it for a task that has just deferred.
    from docify_provider.xcom import dify_marker, stream_marker

    fresh = (stream_marker if contract.name == "docify" else dify_marker)("deferred", deferred_at="now")
    set_xcom(contract.marker_key, fresh, dag_id=out.dag_id, task_id="stream", run_id=out.run_id)
    emu.inject(Fault("stream", "status", status=429, retry_after=2, times=1))
    module, _, name = classpath.rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)
    events: list[Any] = []
    runner = threading.Thread(target=lambda: events.append(run_trigger_for(out, "stream", cls(**kwargs))))
    runner.start()
    seen: list[Any] = []
    deadline = time.monotonic() + 10
    while runner.is_alive() and time.monotonic() < deadline:
        marker = out.xcom("stream", key=contract.marker_key)
        if _turned_away(emu) == 1 and marker:
            seen.append(marker["state"])
        time.sleep(0.1)
    runner.join(20)
    assert events and events[0].payload["status"] == "success", events
    assert "deferred" in seen, f"during the wait the marker must say nothing was sent; saw {seen}"
    final = out.xcom("stream", key=contract.marker_key)
    assert final["state"] == "sent" and final["sent"] is True
    assert contract.runs(emu, "cheap") == 2, "the earlier run and the trigger's, each bought once"


def _stored_trigger(out: Any) -> tuple[str, dict[str, Any]]:
    """The classpath and kwargs of the run's trigger row (what a restarted triggerer re-creates)."""
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = [
            (r.classpath, dict(r.kwargs))
            for r in session.scalars(select(Trigger))
            if r.kwargs.get("dag_id") == out.dag_id
        ]
    ((classpath, kwargs),) = rows
    return classpath, kwargs
