"""A deferred stream whose run id was lost with its trigger's marker is found again in Dify's logs.

The deferred ``DifyStreamWorkflowOperator`` has its trigger send the run, so until the task resumes
the run id is only in the trigger's restart marker (an XCom). Here try 1's trigger sends the run and
streams it, and Airflow fails the try before the task resumes (as the scheduler race
apache/airflow#67287 fails it: :class:`_FailedBeforeResume` raises where the resume would begin).
The failure clears ``next_method``, so ``dag.test()`` starts try 2 from ``execute()`` and the Execution
API purges the task's XComs, the marker with them (checked: try 2 reads no marker). The ledger's
pending record, written before try 1 deferred, names the end user and the time but no run.

Checked: try 2 finds the one run of that user in the app's logs and re-attaches to it (one run in
the emulator, its result in XCom, the log line says so); with a second run of the same user in the
same window it fails closed naming both, and nothing is sent again. Real ``dag.test()`` against the
Dify emulator on 127.0.0.1; nothing of the provider is mocked.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from airflow_helpers import AIRFLOW_LINE, console_text, new_dag, run_dag, without_mask_requests
from docify_provider.operators.dify import DifyStreamWorkflowOperator
from docify_provider.testing.faults import Fault

pytestmark = [pytest.mark.timeout(120)]

TEXT_KEY = "app-EmuTextWorkflow0000000001"
USER = "lost-marker-user"
FAILED = "Airflow failed try 1 before it resumed (test: apache/airflow#67287)"
INPUTS = {"topic": "Airflow and Dify", "tone": "formal"}


def _flat(text: str) -> str:
    return " ".join(text.split())


def _failed_before_resume(emu: Any, also_run: bool = False) -> tuple[type, list[Any]]:
    """The stream operator whose try 1 is failed where its resume would begin; the markers try 2 read.

    ``also_run``: before try 1 is failed, another task sends a run as the same end user (the run
    this task's trigger sent cannot then be told from it)."""
    markers: list[Any] = []

    class _FailedBeforeResume(DifyStreamWorkflowOperator):
        def execute(self, context: Any) -> Any:
            markers.append(self._read_trigger_marker(context))
            return super().execute(context)

        def execute_complete(self, context: Any, event: Any = None, hitl: Any = None) -> Any:
            if context["ti"].try_number == 1:
                if also_run:
                    _another_run(emu)
                raise RuntimeError(FAILED)
            return super().execute_complete(context, event, hitl)

    return _FailedBeforeResume, markers


def _purged(marker: Any) -> bool:
    """Airflow 3.1+ starts try 2 with no ``next_method`` and purges the XComs; 3.0 resumes it with try 1's
    event (the provider then starts it from the top) and keeps them: there the ledger alone decides."""
    return marker is None or AIRFLOW_LINE < (3, 1)


def _another_run(emu: Any) -> str:
    """Another task's run of the same app as the same end user (a blocking run through the client)."""
    from docify_provider.dify.client import DifyClient
    from docify_provider.dify.config import DifyClientConfig

    with DifyClient(DifyClientConfig(base_url=emu.base_url, api_key=TEXT_KEY)) as client:
        return client.run_workflow(INPUTS, user=USER).workflow_run_id


def _dag(name: str, cls: type, conn_id: str = "dify_text", inputs: dict[str, Any] = INPUTS, **task: Any) -> Any:
    """``cls`` as task ``run``, deferred with one retry unless ``task`` says otherwise."""
    task = {"deferrable": True, "retries": 1, **task}
    with new_dag(name) as dag:
        cls(
            task_id="run",
            dify_conn_id=conn_id,
            inputs=inputs,
            pause_poll_interval=0.2,
            user=USER,
            validate=False,
            retry_delay=timedelta(seconds=0),
            **task,
        )
    return dag


def test_a_run_whose_marker_was_purged_is_found_in_the_logs_and_followed(dify_conns: Any, capfd: Any) -> None:
    emu = dify_conns
    cls, markers = _failed_before_resume(emu)
    outcome = run_dag(_dag("lost_marker", cls))
    text = _flat(console_text(capfd))
    assert FAILED in text
    assert outcome.state("run") == "success", text[-5000:]
    assert outcome.try_number("run") == 2
    assert _purged(markers[1]), "try 2 started with the marker purged (as Airflow's next-try start purges it)"
    assert emu.runs_started() == 1, "one run bought: try 2 re-attached to it"
    (run,) = emu.runs
    xcom = outcome.xcom("run")
    assert xcom["workflow_run_id"] == run.id and xcom["status"] == "succeeded" and xcom["outputs"]
    assert "Try 1 may have sent a Dify run request" in text and "looking for the run in the app's logs" in text
    assert f"Found Dify run {run.id} in the app's logs (end user '{USER}', created at or after" in text, text[-5000:]
    assert f"Deferring: the triggerer re-attaches to Dify run {run.id}" in text
    assert "outcome unknown" not in text
    assert TEXT_KEY not in without_mask_requests(text)


@pytest.mark.skipif(AIRFLOW_LINE < (3, 1), reason="Airflow human-in-the-loop requests are 3.1+")
def test_a_paused_run_whose_marker_was_purged_is_found_and_its_form_answered_once(dify_conns: Any, capfd: Any) -> None:
    """The same with a run that paused on its form: try 1's trigger fired the pause, Airflow failed the
    try before it resumed (the race of the deployment's clear test); try 2 finds the run, re-attaches,
    finds the form, asks Airflow, and the answer reaches Dify once."""
    from test_dify_hitl_retry import _answer_in_try_2, _form_posts
    from test_dify_hitl_retry import _run as run_watched

    emu = dify_conns
    cls, markers = _failed_before_resume(emu)
    dag = _dag("lost_marker_form", cls, "dify_human", {"topic": "budget"})
    person = _answer_in_try_2(dag.dag_id, "Approve", {"comment": "after the race"})
    outcome = run_watched(dag, emu)
    person.join(timeout=5)
    text = _flat(console_text(capfd))
    assert outcome.state("run") == "success", text[-5000:]
    assert outcome.try_number("run") == 2 and _purged(markers[1])
    (run,) = emu.runs
    assert f"Found Dify run {run.id} in the app's logs" in text
    xcom = outcome.xcom("run")
    assert xcom["workflow_run_id"] == run.id and xcom["outputs"]["comment"] == "after the race"
    assert emu.runs_started() == 1 and _form_posts(emu) == 1, "one run, the answer posted to Dify once"


def test_two_runs_of_the_same_user_since_the_request_fail_closed_naming_both(dify_conns: Any, capfd: Any) -> None:
    emu = dify_conns
    cls, markers = _failed_before_resume(emu, also_run=True)
    outcome = run_dag(_dag("lost_marker_two", cls))
    text = _flat(console_text(capfd))
    assert outcome.state("run") == "failed", text[-5000:]
    assert outcome.try_number("run") == 2 and _purged(markers[1])
    assert emu.runs_started() == 2, "this task's run and the other task's; nothing was sent again"
    ours, other = (run.id for run in emu.runs)
    assert "DifyOutcomeUnknownError" in text
    assert f"Looked for it in the app's logs (end user '{USER}', created at or after" in text, text[-5000:]
    assert "2 runs of end user" in text and ours in text and other in text
    assert "which one try 1 started cannot be told, so none is followed" in text
    assert "so it is not re-sent" in text and "set allow_resubmit=True or clear the task state" in text
    assert f"Found Dify run {ours}" not in text and f"Found Dify run {other}" not in text
    assert outcome.xcom("run") is None


def test_a_failed_trigger_that_cannot_tell_whether_it_sent_is_looked_for_too() -> None:
    """After a ``__fail__`` resume only the marker and the pending record tell: a marker that cannot be
    read (or names no run) with a pending record holding the user and time is looked for in the logs;
    one without them stays unknown, as before."""
    from docify_provider.durable.policy import DIFY, Action, Known, decide

    pending = {"sent_at": "2030-01-01T00:00:00+00:00", "try_number": 1, "user": USER, "workflow_run_id": None}
    for marker in ({}, {"state": "sent", "sent_at": "2030-01-01T00:00:01+00:00"}):
        known = Known.after_trigger_failure("Dify", "it crashed", None, marker, pending, DIFY)
        decision = decide(known, DIFY)
        assert (decision.action, decision.user, decision.who) == (Action.FIND, USER, "the Dify trigger")
    old = Known.after_trigger_failure("Dify", "it crashed", None, {}, {**pending, "user": None}, DIFY)
    assert decide(old, DIFY).action is Action.UNKNOWN


def test_an_unknown_outcome_whose_next_try_finds_the_run_is_left_to_the_retries(dify_conns: Any, capfd: Any) -> None:
    """``fail_fast``: a try whose outcome is unknown fails at once only when the next try would fail closed
    too. Here try 1's request starts the run and its connection drops before the answer, and try 1's own
    look in the logs is refused (403 once): it ends unknown, the pending record naming the end user and the
    time. Its next try would look the run up (``Action.FIND``), so the error goes to the retries, and
    try 2 finds the run and follows it: one run, paid once, no ``AirflowFailException``."""
    emu = dify_conns
    emu.inject(Fault("stream", "drop_before_response", run_started=True, times=1))
    emu.inject(Fault("logs", "status", status=403, times=1))
    outcome = run_dag(_dag("lost_id_left_to_retries", DifyStreamWorkflowOperator, deferrable=False, retries=2))
    text = _flat(console_text(capfd))
    assert outcome.state("run") == "success", text[-5000:]
    assert outcome.try_number("run") == 2
    assert "is left to the task's retries: the next try looks the run up in the app's logs" in text, text[-5000:]
    assert "AirflowFailException" not in text
    (run,) = emu.runs
    assert emu.runs_started() == 1, "try 2 re-attached to the run try 1 started"
    assert f"Found Dify run {run.id} in the app's logs" in text
    assert outcome.xcom("run")["workflow_run_id"] == run.id
