"""A retry finds its form (issue 17 item 6): a try that re-attaches to a paused run asks again.

Found on a real deployment: clearing a task that waits on its human-input form started a try that
re-attached to the same Dify run (good: no second run) but lost the form ("form None, actions
[none], expires never"), waited on plain run polling, and failed an Airflow answer with "Dify
stream trigger reported None"; Dify never got the answer.

Here try 1 of each operator that can pause asks Airflow and defers, and then its worker is lost
(:class:`_Lost`: the defer to the human-input trigger raises, as a clear or a dead worker ends the
try). ``retries=1`` starts try 2, which re-attaches through the ledger. Checked: try 2 finds the
form again (from Dify's paused-run state; the task state's record names it), re-uses the one
Airflow request, the person's answer reaches Dify exactly once (the emulator's accepted form
POSTs) and one run is bought; a form that expired meanwhile fails try 2 at once and says what to
do; an answer that arrives with no form to post it to fails saying so. The same flow against a
real scheduler, with a clear through the REST API, is ``tests/deployment/test_dify_hitl_deployment.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from airflow.triggers.base import BaseTrigger, TriggerEvent
from test_dify_hitl import _answer_in_airflow, _records, _wait_for

from airflow_helpers import AIRFLOW_LINE, console_text, new_dag, run_dag
from docify_provider.operators.dify import DifyRunWorkflowOperator, DifyStreamWorkflowOperator

pytestmark = [
    # The tests where an answer is given in Airflow are marked hitl_line, and also run on Airflow 3.1, the
    # first line with human-in-the-loop (scripts/test.sh): the trigger fires on that answer there, 3.3
    # resumes the task itself. A form that expired takes the same path on every line: newest line only.
    # (None on 3.0: skipped.)
    pytest.mark.timeout(180),
    pytest.mark.skipif(AIRFLOW_LINE < (3, 1), reason="Airflow human-in-the-loop requests are 3.1+"),
]

LOST = "worker lost while the task waited on its form (test)"


class RestAnswer(BaseTrigger):
    """What Airflow 3.3 does when a REST answer (``PATCH .../hitlDetails``) lands on a task deferred on
    any trigger while it has a HITL record: it resumes the task with the answer as its event
    (``HITLDetail.as_resume_event_payload``), without the defer kwargs a human-input wait adds."""

    def __init__(self, option: str, params: dict[str, Any]) -> None:
        super().__init__()
        self.option, self.params = option, params

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{__name__}.RestAnswer", {"option": self.option, "params": self.params}

    async def run(self) -> Any:
        yield TriggerEvent(
            {
                "chosen_options": [self.option],
                "params_input": self.params,
                "responded_at": "2026-01-01T00:00:00+00:00",
                "responded_by_user": {"id": "reviewer-1", "name": "Rita Reviewer"},
                "timedout": False,
            }
        )


#: DAG ids whose try 2 was already resumed by a RestAnswer (once per DAG: the re-attach after the
#: answer defers on the same trigger class again).
_ANSWERED: set[str] = set()


def _lost(cls: type, answer_while_following: Callable[[], tuple[str, dict[str, Any]]] | None = None) -> type:
    """``cls`` whose try 1 ends right after it asked Airflow and deferred on the form, as a clear of
    the waiting task (or a lost worker) ends it: the defer raises, the try fails, try 2 starts.

    With ``answer_while_following``, try 2's first deferral while it follows the re-attached run
    (before it has met the pause) is resumed by an Airflow REST answer (:class:`RestAnswer`) that
    the callable returns (it may act first, e.g. answer the form in Dify)."""

    class _Lost(cls):  # type: ignore[misc, valid-type]
        def defer(self, *, trigger: Any, **kwargs: Any) -> Any:
            kind, tried = type(trigger).__name__, getattr(trigger, "try_number", None)
            if kind == "HumanInputTrigger" and tried == 1:
                raise RuntimeError(LOST)
            following = kind in ("DifyWorkflowTrigger", "DifyAppRunTrigger") and tried == 2
            if answer_while_following and following and self.dag_id not in _ANSWERED:
                _ANSWERED.add(self.dag_id)
                return super().defer(trigger=RestAnswer(*answer_while_following()), method_name="execute_complete")
            return super().defer(trigger=trigger, **kwargs)

    _Lost.__name__ = f"Lost{cls.__name__}"
    return _Lost


def _tries(dag_id: str) -> int:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return max(session.scalars(select(TaskInstance.try_number).where(TaskInstance.dag_id == dag_id)).all() or [0])


def _answer_in_try_2(dag_id: str, option: str, params: dict[str, Any]) -> threading.Thread:
    """A person who answers the task's request once try 2 runs (the request try 1 raised)."""

    def answer() -> None:
        def pending() -> Any:
            if _tries(dag_id) < 2:
                return None
            return [r for r in _records(dag_id) if r["live"] and not r["answered"]]

        found = _wait_for(pending, timeout=120)
        if found:
            time.sleep(0.5)  # try 2 deferred (or is about to): the answer lands while it waits
            _answer_in_airflow(found[0]["ti_id"], option, params)

    thread = threading.Thread(target=answer, name="hitl-person-try-2", daemon=True)
    thread.start()
    return thread


class _Watchdog(threading.Thread):
    """Keeps a broken build from hanging the test: a try that lost the form waits on plain run
    polling with no end (``dag.test()`` bounds no deferral), so after ``seconds`` a run still paused
    is stopped in Dify (the task then ends and the test's assertions say what went wrong).
    ``cancel()`` before asserting that a run stays paused."""

    def __init__(self, emu: Any, seconds: float = 90.0) -> None:
        super().__init__(name="hitl-watchdog", daemon=True)
        self.emu, self.seconds, self.cancelled, self.fired = emu, seconds, threading.Event(), False
        self.start()

    def run(self) -> None:
        if self.cancelled.wait(self.seconds):
            return
        for run in self.emu.runs:
            if run.status == "paused":
                self.fired = True
                self.emu.stop_run(run)

    def cancel(self) -> None:
        self.cancelled.set()


def _run(dag: Any, emu: Any) -> Any:
    """``run_dag`` under a :class:`_Watchdog`; fails when the watchdog had to stop a waiting run."""
    watchdog = _Watchdog(emu)
    try:
        outcome = run_dag(dag)
    finally:
        watchdog.cancel()
    assert not watchdog.fired, "the task still waited on the paused run after 90 s; the watchdog stopped it"
    return outcome


def _form_posts(emu: Any, status: int = 200) -> int:
    """Form answers the emulator accepted (200) or refused as already given (412)."""
    return sum(
        1
        for r in emu.requests
        if r.method == "POST" and r.status == status and ("form" in str(r.endpoint) or "human" in r.path)
    )


SERVICE = [
    pytest.param(DifyRunWorkflowOperator, {}, id="blocking"),
    pytest.param(DifyStreamWorkflowOperator, {"deferrable": True}, id="stream-deferred"),
    pytest.param(DifyStreamWorkflowOperator, {"deferrable": False}, id="stream-worker"),
]


def _service_dag(name: str, cls: type, kwargs: dict[str, Any], retry_delay: float = 0) -> Any:
    with new_dag(name) as dag:
        _lost(cls)(
            task_id="review",
            dify_conn_id="dify_human",
            inputs={"topic": "budget"},
            validate=False,
            pause_poll_interval=0.2,
            retries=1,
            retry_delay=timedelta(seconds=retry_delay),
            **kwargs,
        )
    return dag


def _assert_found_and_posted_once(outcome: Any, text: str, emu: Any, runs_started: int) -> None:
    assert outcome.state("review") == "success", text[-6000:]
    assert outcome.try_number("review") == 2, "try 1 was lost while it waited; try 2 finished the run"
    assert LOST in text
    xcom = outcome.xcom("review")
    assert xcom["outputs"]["decision"] == "approve" and xcom["outputs"]["comment"] == "after the clear"
    assert runs_started == 1, "try 2 re-attached to the same run"
    assert _form_posts(emu) == 1, "the answer reached Dify exactly once"
    (record,) = [r for r in _records(outcome.dag_id) if r["live"]]
    assert record["subject"].startswith("Review — Review Gate, run ") and record["answered"], (
        "one request, raised by try 1, answered"
    )
    assert "found its form again" in text
    assert "form None" not in text and "[none]" not in text and "reported None" not in text
    assert emu.form_token(xcom["workflow_run_id"]) not in text


@pytest.mark.hitl_line
@pytest.mark.parametrize(("cls", "kwargs"), SERVICE)
def test_a_retry_finds_the_form_and_the_answer_reaches_dify_once(dify_conns, capfd, cls, kwargs):
    emu = dify_conns
    dag = _service_dag("retry_finds_form", cls, kwargs)
    person = _answer_in_try_2(dag.dag_id, "Approve", {"comment": "after the clear"})
    outcome = _run(dag, emu)
    person.join(timeout=5)
    text = console_text(capfd)
    _assert_found_and_posted_once(outcome, text, emu, emu.runs_started())


@pytest.mark.parametrize(("cls", "kwargs"), SERVICE[:2])
def test_a_retry_that_finds_its_form_expired_fails_at_once(dify_conns, capfd, cls, kwargs):
    emu = dify_conns
    emu.form_expiry_seconds = 4.0  # try 1 asks before it lapses; try 2 starts after it
    dag = _service_dag("retry_form_expired", cls, kwargs, retry_delay=6)
    outcome = _run(dag, emu)
    text = console_text(capfd)
    assert outcome.state("review") == "failed", text[-6000:]
    assert outcome.try_number("review") == 2
    (run,) = emu.runs
    assert run.status == "paused" and emu.runs_started() == 1
    assert _form_posts(emu) == 0
    assert f"Dify run {run.id} paused for human input: the form 'Review' expired at" in text
    assert "found when try 2 re-attached to the run" in text
    assert "force_rerun=True" in text, "the message says how to start a new run"
    assert "form None" not in text and "reported None" not in text


# -- an Airflow answer that resumes a try holding no form ------------------------------------------


@pytest.mark.hitl_line
def test_an_answer_that_resumes_a_following_try_finds_the_form_and_reaches_dify_once(dify_conns, capfd):
    """Try 2 re-attaches deferred (following the run, no form yet) and a REST answer resumes it
    there (3.3): it finds the form in Dify's paused state, sees it is the one try 1 asked for, posts."""
    emu = dify_conns
    with new_dag("retry_answer_following") as dag:
        _lost(DifyStreamWorkflowOperator, lambda: ("Approve", {"comment": "after the clear"}))(
            task_id="review",
            dify_conn_id="dify_human",
            inputs={"topic": "budget"},
            validate=False,
            deferrable=True,
            pause_poll_interval=0.2,
            retries=1,
            retry_delay=timedelta(seconds=0),
        )
    outcome = _run(dag, emu)
    text = console_text(capfd)
    assert outcome.state("review") == "success", text[-6000:]
    assert outcome.try_number("review") == 2
    xcom = outcome.xcom("review")
    assert xcom["outputs"]["decision"] == "approve" and xcom["outputs"]["comment"] == "after the clear"
    assert "found the form again in Dify's paused-run state ('Review', asked for by try 1): posting" in text
    assert _form_posts(emu) == 1 and emu.runs_started() == 1
    assert "reported None" not in text and emu.form_token(xcom["workflow_run_id"]) not in text


@pytest.mark.hitl_line
def test_an_answer_with_no_form_to_post_it_to_fails_saying_so(dify_conns, capfd):
    """As above, but the form was answered in Dify meanwhile: the Airflow answer has no open form to
    go to, and the task fails saying so (nothing posted), never "reported None"."""
    emu = dify_conns

    def answered_in_dify_first() -> tuple[str, dict[str, Any]]:
        (run,) = emu.runs
        emu.submit_form(emu.form_token(run.id), action="reject", inputs={"comment": "in Dify"})
        emu.wait_run_finished(run.id)
        return "Approve", {"comment": "too late"}

    with new_dag("retry_answer_no_form") as dag:
        _lost(DifyStreamWorkflowOperator, answered_in_dify_first)(
            task_id="review",
            dify_conn_id="dify_human",
            inputs={"topic": "budget"},
            validate=False,
            deferrable=True,
            pause_poll_interval=0.2,
            retries=1,
            retry_delay=timedelta(seconds=0),
        )
    outcome = _run(dag, emu)
    text = console_text(capfd)
    assert outcome.state("review") == "failed", text[-6000:]
    assert outcome.try_number("review") == 2
    assert "An Airflow answer ('Approve' by Rita Reviewer) resumed this task, but the task holds no" in text
    assert "names no open form" in text and "Nothing was posted to Dify" in text
    assert "If the run still waits on a form, answer it in Dify (" in text
    assert "Then clear the task: it re-attaches to the run" in text
    assert _form_posts(emu) == 0, "the Airflow answer was not posted"
    assert "reported None" not in text and "form None" not in text


# -- the account API (DifyRunAppOperator, DifyAccountForms) ------------------------------------------


def _account_dag(name: str, deferrable: bool, retry_delay: float = 0) -> Any:
    from docify_provider.operators.dify_openapi import DifyRunAppOperator
    from docify_provider.testing.dify_openapi import HUMAN_INPUT_APP_ID

    with new_dag(name) as dag:
        _lost(DifyRunAppOperator)(
            task_id="review",
            app=HUMAN_INPUT_APP_ID,
            inputs={"topic": "budget"},
            deferrable=deferrable,
            pause_poll_interval=0.2,
            retries=1,
            retry_delay=timedelta(seconds=retry_delay),
        )
    return dag


@pytest.mark.hitl_line
@pytest.mark.parametrize("deferrable", [True, False], ids=["deferred", "worker"])
def test_account_retry_finds_the_form_and_the_answer_reaches_dify_once(openapi_conn, capfd, deferrable):
    from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN, HUMAN_INPUT_APP_ID

    emu = openapi_conn
    dag = _account_dag("acct_retry_finds_form", deferrable)
    person = _answer_in_try_2(dag.dag_id, "Approve", {"comment": "after the clear"})
    outcome = _run(dag, emu)
    person.join(timeout=5)
    text = console_text(capfd)
    _assert_found_and_posted_once(outcome, text, emu, emu.runs_started(ACCOUNT_TOKEN, app=HUMAN_INPUT_APP_ID))
    assert ACCOUNT_TOKEN not in text


def test_account_retry_that_finds_its_form_expired_fails_at_once(openapi_conn, capfd):
    from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN, HUMAN_INPUT_APP_ID

    emu = openapi_conn
    emu.form_expiry_seconds = 4.0
    dag = _account_dag("acct_retry_form_expired", True, retry_delay=6)
    outcome = _run(dag, emu)
    text = console_text(capfd)
    assert outcome.state("review") == "failed", text[-6000:]
    assert outcome.try_number("review") == 2
    (run,) = emu.runs
    assert run.status == "paused" and emu.runs_started(ACCOUNT_TOKEN, app=HUMAN_INPUT_APP_ID) == 1
    assert _form_posts(emu) == 0
    assert f"Dify run {run.id} paused for human input: the form 'Review' expired at" in text
    assert "found when try 2 re-attached to the run" in text and "force_rerun=True" in text
