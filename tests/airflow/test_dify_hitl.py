"""A paused Dify run as an Airflow human-in-the-loop request, in real ``dag.test()`` runs.

The Dify side is the emulator over 127.0.0.1; the Airflow side is the real Task SDK writing the
``hitl_detail`` record through the in-process Execution API, and the real trigger reading it. The
person answering in Airflow is a thread that writes the answer into that record the way the
Required Actions page's REST call does (``PATCH .../hitlDetails``: chosen options, params,
responder, time); the REST call itself is exercised against a real api-server in
``tests/deployment/test_dify_hitl_deployment.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest

from airflow_helpers import AIRFLOW_LINE, console_text, new_dag, run_dag
from docify_provider.operators.dify import DifyStreamWorkflowOperator
from docify_provider.testing.dify import TWO_FORMS_APP_KEY

pytestmark = [
    # The tests where a person answers in Airflow are marked hitl_line, and also run on Airflow 3.1, the
    # first line with human-in-the-loop (scripts/test.sh): the trigger fires on that answer there, 3.3
    # resumes the task itself. An answer given in Dify and a form that expires take the same path on
    # every line (the trigger fires on Dify's state): newest line only. (None on 3.0: skipped.)
    pytest.mark.timeout(120),
    pytest.mark.skipif(AIRFLOW_LINE < (3, 1), reason="Airflow human-in-the-loop requests are 3.1+"),
]


#: A time as the request's body and the log write it: ``7 Dec 2026, 14:05 UTC``.
READABLE_TIME = r"\d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d UTC"
#: The body's deadline for the emulator's one-day forms, with what was left when it was asked.
READABLE_DEADLINE = re.compile(
    rf"\*\*Answer by {READABLE_TIME}\*\* \((1 d|23 h \d+ min) left when this request was made\)\. After that "
    "the form expires: Dify no longer takes an answer to it and this task fails; to go on, start a new run"
)


@pytest.fixture
def dify_hitl(dify_conns: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The ``dify_conns`` emulator plus a ``dify_two_forms`` connection (review, then sign-off)."""
    emu = dify_conns
    extra = {"max_retries": 2, "idle_timeout": 5, "connect_timeout": 2, "read_timeout": 10}
    conn = {"conn_type": "dify", "host": emu.base_url, "password": TWO_FORMS_APP_KEY, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_DIFY_TWO_FORMS", json.dumps(conn))
    return emu


def _records(dag_id: str) -> list[dict[str, Any]]:
    """Every HITL record (current tries and earlier ones) of ``dag_id``, oldest first."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session
    from sqlalchemy import select

    sources: list[tuple[Any, Any, Any]] = []
    try:  # Airflow 3.2+ archives earlier tries' records; 3.1 has no history table
        from airflow.models.hitl_history import HITLDetailHistory

        sources.append((HITLDetailHistory, TaskInstanceHistory, HITLDetailHistory.ti_history_id))
    except ImportError:
        pass
    sources.append((HITLDetail, TaskInstance, HITLDetail.ti_id))
    out = []
    with create_session() as session:
        for model, ti_model, key in sources:
            id_col = ti_model.task_instance_id if ti_model is TaskInstanceHistory else ti_model.id
            # Matched in Python: 3.1 keys records by a string column and task instances by a UUID
            # one, which SQLite stores in forms a join does not equate.
            tries = {
                str(ti_key): try_number
                for ti_key, try_number in session.execute(
                    select(id_col, ti_model.try_number).where(ti_model.dag_id == dag_id)
                ).all()
            }
            rows = [(row, tries[str(k)]) for row, k in session.execute(select(model, key)).all() if str(k) in tries]
            for row, try_number in rows:
                out.append(
                    {
                        "ti_id": str(getattr(row, "ti_id", None) or row.ti_history_id),
                        "try_number": try_number,
                        "subject": row.subject,
                        "body": row.body,
                        "options": list(row.options or []),
                        "params": dict(row.params or {}),
                        "answered": row.responded_at is not None,
                        "chosen_options": row.chosen_options,
                        "created_at": row.created_at,
                        "live": model is HITLDetail,
                    }
                )
    return sorted(out, key=lambda r: r["created_at"])


def _answer_in_airflow(ti_id: str, option: str, params: dict[str, Any]) -> None:
    """What ``PATCH /api/v2/dags/.../hitlDetails`` writes for a signed-in user."""
    from airflow._shared.timezones import timezone
    from airflow.models.hitl import HITLDetail
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        # Airflow 3.2+ keys the record by a UUID column; 3.1 by a 36-character string.
        row = session.scalar(select(HITLDetail).where(HITLDetail.ti_id == UUID(ti_id))) or session.scalar(
            select(HITLDetail).where(HITLDetail.ti_id == str(ti_id))
        )
        assert row is not None and row.responded_at is None
        row.responded_by = {"id": "reviewer-1", "name": "Rita Reviewer"}
        row.responded_at = timezone.utcnow()
        row.chosen_options = [option]
        row.params_input = params
        session.add(row)


def _wait_for(predicate: Callable[[], Any], timeout: float = 240) -> Any:
    # Long enough for a loaded machine (the request appears only once the try reached the trigger);
    # a person who gave up would leave the trigger waiting for an answer until the test timeout.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return None


class _Person(threading.Thread):
    """Answers the pending requests of one DAG in order; ``seen`` keeps each request as it was shown."""

    def __init__(self, dag_id: str, answers: list[tuple[str, dict[str, Any]]]) -> None:
        super().__init__(name="hitl-person", daemon=True)
        self.dag_id, self.answers = dag_id, answers
        self.seen: list[dict[str, Any]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for option, params in self.answers:
                done = {r["ti_id"] for r in self.seen}
                pending = _wait_for(
                    lambda done=done: [
                        r for r in _records(self.dag_id) if r["live"] and not r["answered"] and r["ti_id"] not in done
                    ]
                )
                if not pending:
                    return
                self.seen.append(pending[0])
                _answer_in_airflow(pending[0]["ti_id"], option, params)
        except BaseException as exc:  # surfaced by the test
            self.error = exc


@pytest.mark.hitl_line
def test_an_airflow_answer_is_posted_to_dify_and_the_run_finishes(dify_hitl, capfd):
    emu = dify_hitl
    with new_dag("dify_hitl_one") as dag:
        DifyStreamWorkflowOperator(
            task_id="review",
            dify_conn_id="dify_human",
            inputs={"topic": "budget"},
            validate=False,
            deferrable=True,
            pause_poll_interval=0.2,
        )
    outcome, text, person = _run_answered(dag, capfd, ("Approve", {"comment": "ship it"}))
    assert outcome.state("review") == "success", text[-5000:]
    (shown,) = person.seen
    xcom = outcome.xcom("review")
    run_id = xcom["workflow_run_id"]
    # What a person reads: the app and the run in the subject, a pointer to the field instead of the
    # raw placeholder, a readable deadline, and the field labelled and typed as Dify's paragraph.
    assert shown["subject"] == f"Review — Review Gate, run {run_id[:8]}"
    assert shown["options"] == ["Approve", "Reject"]
    assert "Please review the draft about budget: (see the field *Comment* below)" in shown["body"]
    assert "[comment]" not in shown["body"] and "{{#" not in shown["body"]
    assert READABLE_DEADLINE.search(shown["body"]), shown["body"]
    assert shown["params"]["comment"]["schema"] == {
        "title": "Comment",
        "type": ["string", "null"],
        "format": "multiline",
    }
    # The log: the expected pause once, at INFO; the run's closing line once, its time rounded.
    assert text.count(f"Dify run {run_id} paused for human input: form 'Review'") == 1, text[-6000:]
    assert not re.search(rf"WARNING[^\n]*Dify run {run_id} paused for human input", text)
    assert re.search(
        rf"Dify run {run_id} paused for human input: form 'Review', actions \[Approve, Reject\], "
        rf"expires {READABLE_TIME} \(in (1 d|23 h \d+ min)\)",
        text,
    ), text[-6000:]
    assert text.count(f"Dify run {run_id} succeeded in ") == 1, text[-6000:]
    assert re.search(rf"Dify run {run_id} succeeded in \d+\.\d+ s:", text)
    assert xcom["outputs"]["decision"] == "approve" and xcom["outputs"]["comment"] == "ship it"
    assert "Comment: ship it" in xcom["outputs"]["text"]
    assert emu.runs_started() == 1
    assert "Posted the Airflow answer to Dify run" in text and "answered by Rita Reviewer" in text
    assert emu.form_token(xcom["workflow_run_id"]) not in text


def _answer_second_form_in_dify(emu: Any, person: _Person, title: str, action: str, inputs: dict[str, Any]) -> Any:
    """A thread that, once the person answered the first form in Airflow, answers the run's next
    open form (``title``) in Dify's own UI (the emulator's form route), as a Dify user would."""

    def waiting_on_it() -> bool:
        """This DAG's task deferred on a human-input trigger for ``title`` (so the answer is not raced
        past). Only this DAG's trigger counts: an earlier test's row with the same title stays in the
        database, and answering on it answered the form before the task had seen it."""
        from airflow.models.taskinstance import TaskInstance
        from airflow.models.trigger import Trigger
        from airflow.utils.session import create_session
        from sqlalchemy import select

        query = (
            select(Trigger)
            .join(TaskInstance, TaskInstance.trigger_id == Trigger.id)
            .where(TaskInstance.dag_id == person.dag_id, Trigger.classpath.like("%HumanInputTrigger"))
        )
        with create_session() as session:
            rows = session.scalars(query).all()
            return any((dict(row.kwargs).get("hitl") or {}).get("title") == title for row in rows)

    def second_form() -> Any:
        if not person.seen or not waiting_on_it():
            return None
        for run in emu.runs:
            form = run.form
            if form is not None and form.node_title == title and not form.submitted and run.status == "paused":
                return form
        return None

    def answer() -> None:
        form = _wait_for(second_form)
        if form is not None:
            emu.submit_form(form.form_token, action, inputs)

    thread = threading.Thread(target=answer, name="dify-ui-person", daemon=True)
    thread.start()
    return thread


def _run_answered(
    dag: Any,
    capfd: Any,
    answer: tuple[str, dict[str, Any]],
    then_in_dify: tuple[Any, str, str, dict[str, Any]] | None = None,
) -> tuple[Any, str, _Person]:
    """Run ``dag`` while a person answers its first request in Airflow (``answer``) and, with
    ``then_in_dify`` (emulator, form title, action, inputs), a Dify user answers that later form in
    Dify; the outcome, what the run printed, and the person (who must have met no error)."""
    person = _Person(dag.dag_id, [answer])
    person.start()
    dify_user = _answer_second_form_in_dify(then_in_dify[0], person, *then_in_dify[1:]) if then_in_dify else None
    outcome = run_dag(dag)
    person.join(timeout=5)
    if dify_user is not None:
        dify_user.join(timeout=5)
    text = console_text(capfd)
    assert person.error is None, person.error
    return outcome, text, person


def _assert_second_form_waited_in_dify(text: str, title: str) -> None:
    assert f"paused on the form {title!r}, which is NOT asked in Airflow" in text
    assert "Airflow keeps one human-in-the-loop request per task (its tries share it)" in text
    assert "Answer it in Dify's console at " in text


@pytest.mark.hitl_line
def test_two_forms_the_first_in_airflow_the_second_in_dify(dify_hitl, capfd):
    """Airflow keeps one HITL record per task (carried over to the next try, content never replaced):
    the first form is asked in Airflow, the second is waited for in Dify, in the same try."""
    emu = dify_hitl
    with new_dag("dify_hitl_two") as dag:
        DifyStreamWorkflowOperator(
            task_id="review",
            dify_conn_id="dify_two_forms",
            inputs={"topic": "budget"},
            validate=False,
            deferrable=True,
            pause_poll_interval=0.2,
        )
    outcome, text, person = _run_answered(
        dag,
        capfd,
        ("Approve", {"comment": "fine"}),
        then_in_dify=(emu, "Final sign-off", "sign", {"signature": "signed, R."}),
    )
    assert outcome.state("review") == "success", text[-6000:]
    (first,) = person.seen
    run_id = outcome.xcom("review")["workflow_run_id"]
    subject = f"Outline review — Review and Sign-off, run {run_id[:8]}"
    assert (first["subject"], first["options"]) == (subject, ["Approve", "Reject"])
    # Two fields, each where the person reads about it: a paragraph (a text area) and a select (a
    # drop-down of its options, a value required, preselected with the form's default).
    assert "Comment: (see the field *Comment* below) Priority: (see the field *Priority* below)" in first["body"]
    comment, priority = first["params"]["comment"], first["params"]["priority"]
    assert (comment["value"], comment["schema"]["format"], comment["schema"]["title"]) == (
        "Looks fine",
        "multiline",
        "Comment",
    )
    assert priority["value"] == "normal"
    assert priority["schema"] == {"title": "Priority", "type": "string", "enum": ["low", "normal", "high"]}
    (record,) = _records(dag.dag_id)
    assert record["subject"] == subject and record["answered"], "one request, the first form's"
    assert outcome.try_number("review") == 1
    outputs = outcome.xcom("review")["outputs"]
    assert (outputs["outline_action"], outputs["comment"]) == ("approve", "fine")
    assert (outputs["sign_off_action"], outputs["signature"]) == ("sign", "signed, R.")
    assert emu.runs_started() == 1
    _assert_second_form_waited_in_dify(text, "Final sign-off")
    assert "Posted the Airflow answer to Dify run" in text


def test_an_answer_given_in_dify_is_noticed_and_nothing_is_posted(dify_hitl, capfd):
    emu = dify_hitl
    with new_dag("dify_hitl_dify_ui") as dag:
        DifyStreamWorkflowOperator(
            task_id="review",
            dify_conn_id="dify_human",
            inputs={"topic": "budget"},
            validate=False,
            deferrable=True,
            pause_poll_interval=0.2,
        )

    def answer_in_dify() -> None:
        if _wait_for(lambda: [r for r in _records(dag.dag_id) if r["live"]]):
            run = emu.runs[0]
            emu.submit_form(emu.form_token(run.id), action="reject", inputs={"comment": "not now"})

    thread = threading.Thread(target=answer_in_dify, daemon=True)
    thread.start()
    outcome = run_dag(dag)
    thread.join(timeout=5)
    text = console_text(capfd)
    assert outcome.state("review") == "success", text[-5000:]
    assert outcome.xcom("review")["outputs"]["decision"] == "reject"
    assert "the form was answered outside Airflow" in text
    assert "Posted the Airflow answer" not in text
    (record,) = _records(dag.dag_id)
    assert not record["answered"], "the Airflow request stays unanswered; Dify had the answer"
    assert emu.runs_started() == 1


def _assert_failed_on_expiry(dag: Any, emu: Any, capfd: Any) -> dict[str, Any]:
    """Run ``dag``, whose form expires unanswered: the task fails within a minute and says why, the
    Dify run stays paused, and the one request is unanswered and shows the expiry. Its record."""
    started = time.monotonic()
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("review") == "failed", text[-5000:]
    assert time.monotonic() - started < 60
    (run,) = emu.runs
    assert run.status == "paused"
    (record,) = _records(dag.dag_id)
    assert not record["answered"] and "**Answer by " in record["body"] and "this task fails" in record["body"]
    # The failure says when the form expired (readably), that the greyed-out request can no longer be
    # answered, and what to do next.
    assert re.search(
        rf"Dify run {run.id} paused for human input: the form 'Review' expired at {READABLE_TIME} without an answer",
        text,
    ), text[-5000:]
    assert "Airflow keeps showing its request, greyed out" in text and "To go on, start a new run" in text
    return record


def test_an_expired_form_fails_the_task_as_the_request_times_out(dify_hitl, capfd):
    emu = dify_hitl
    # Long enough that dag.test() asks Airflow before it lapses, also on 3.1 (about 3 s of CPU a task) with
    # every core busy (scripts/test.sh runs it in xdist workers); 4 s was not, there.
    emu.form_expiry_seconds = 10.0
    with new_dag("dify_hitl_expired") as dag:
        DifyStreamWorkflowOperator(
            task_id="review",
            dify_conn_id="dify_human",
            inputs={"topic": "budget"},
            validate=False,
            deferrable=True,
            pause_poll_interval=0.2,
        )
    record = _assert_failed_on_expiry(dag, emu, capfd)
    assert record["subject"] == f"Review — Review Gate, run {emu.runs[0].id[:8]}"
    assert emu.runs_started() == 1


# -- the account API backend (DifyRunAppOperator, DifyAccountForms) ---------------------------------


def _account_task(app: str, **kwargs: Any) -> Any:
    from docify_provider.operators.dify_openapi import DifyRunAppOperator

    return DifyRunAppOperator(
        task_id="review", app=app, inputs={"topic": "budget"}, deferrable=True, pause_poll_interval=0.2, **kwargs
    )


@pytest.mark.hitl_line
def test_account_form_answered_in_airflow_is_posted_back(openapi_conn, capfd):
    from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN, HUMAN_INPUT_APP_ID

    emu = openapi_conn
    with new_dag("acct_hitl_one") as dag:
        _account_task(HUMAN_INPUT_APP_ID)
    outcome, text, person = _run_answered(dag, capfd, ("Approve", {"comment": "ship it"}))
    assert outcome.state("review") == "success", text[-5000:]
    (shown,) = person.seen
    assert shown["options"] == ["Approve", "Reject"] and "comment" in shown["params"]
    xcom = outcome.xcom("review")
    assert shown["subject"] == f"Review — Review Gate, run {xcom['workflow_run_id'][:8]}"
    assert shown["params"]["comment"]["schema"]["format"] == "multiline"
    assert xcom["outputs"]["decision"] == "approve" and xcom["outputs"]["comment"] == "ship it"
    assert xcom["app_id"] == HUMAN_INPUT_APP_ID
    assert emu.runs_started(ACCOUNT_TOKEN, app=HUMAN_INPUT_APP_ID) == 1
    assert "Posted the Airflow answer to Dify run" in text and "answered by Rita Reviewer" in text
    assert emu.form_token(xcom["workflow_run_id"]) not in text
    assert ACCOUNT_TOKEN not in text


def test_account_form_answered_in_dify_is_noticed(openapi_conn, capfd):
    from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN, HUMAN_INPUT_APP_ID

    emu = openapi_conn
    with new_dag("acct_hitl_dify_ui") as dag:
        _account_task(HUMAN_INPUT_APP_ID)

    def answer_in_dify() -> None:
        if _wait_for(lambda: [r for r in _records(dag.dag_id) if r["live"]]):
            emu.answer_in_ui(emu.form_token(emu.runs[0].id), action="reject", inputs={"comment": "not now"})

    thread = threading.Thread(target=answer_in_dify, daemon=True)
    thread.start()
    outcome = run_dag(dag)
    thread.join(timeout=5)
    text = console_text(capfd)
    assert outcome.state("review") == "success", text[-5000:]
    assert outcome.xcom("review")["outputs"]["decision"] == "reject"
    assert "the form was answered outside Airflow" in text and "Posted the Airflow answer" not in text
    (record,) = _records(dag.dag_id)
    assert not record["answered"]
    assert emu.runs_started(ACCOUNT_TOKEN, app=HUMAN_INPUT_APP_ID) == 1


def test_account_form_expiry_fails_the_task(openapi_conn, capfd):
    from docify_provider.testing.dify_openapi import HUMAN_INPUT_APP_ID

    emu = openapi_conn
    emu.form_expiry_seconds = 10.0  # as above
    with new_dag("acct_hitl_expired") as dag:
        _account_task(HUMAN_INPUT_APP_ID)
    _assert_failed_on_expiry(dag, emu, capfd)


@pytest.mark.hitl_line
def test_account_two_forms_the_first_in_airflow_the_second_in_dify(openapi_conn, capfd):
    from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN, TWO_FORMS_APP_ID

    emu = openapi_conn
    with new_dag("acct_hitl_two") as dag:
        _account_task(TWO_FORMS_APP_ID)
    outcome, text, _person = _run_answered(
        dag,
        capfd,
        ("Approve", {"comment": "fine"}),
        then_in_dify=(emu, "Final sign-off", "sign", {"signature": "signed, R."}),
    )
    assert outcome.state("review") == "success", text[-6000:]
    (record,) = _records(dag.dag_id)
    assert record["subject"].startswith("Outline review — Two-Step Review, run ") and record["answered"]
    outputs = outcome.xcom("review")["outputs"]
    assert (outputs["outline_action"], outputs["sign_off_action"], outputs["signature"]) == (
        "approve",
        "sign",
        "signed, R.",
    )
    assert outcome.try_number("review") == 1
    assert emu.runs_started(ACCOUNT_TOKEN, app=TWO_FORMS_APP_ID) == 1
    _assert_second_form_waited_in_dify(text, "Final sign-off")
    assert f"{emu.base_url.removesuffix('/openapi/v1')}/app/{TWO_FORMS_APP_ID}/logs" in text


# -- the wait, as the task log tells it ----------------------------------------------------------------


async def test_the_wait_says_every_few_minutes_that_it_still_waits(dify_conns, capfd):
    """``HumanInputTrigger`` on an event loop against the emulator (real HTTP), its notice interval
    shortened from five minutes: while nobody answers it says so, naming the form, the run and the
    readable expiry; an answer given in Dify then ends the wait."""
    from docify_provider.hitl import DifyServiceForms
    from docify_provider.triggers.dify import DifyWorkflowTrigger
    from docify_provider.triggers.hitl import NOTICE_SECONDS, HumanInputTrigger

    emu = dify_conns
    paused = DifyWorkflowTrigger(inputs={"topic": "budget"}, dify_conn_id="dify_human", user="u1").run()
    try:
        event = await anext(paused)
    finally:
        await paused.aclose()
    assert event.payload["status"] == "paused"
    run_id = event.payload["workflow_run_id"]
    backend = DifyServiceForms("dify_human", "u1")
    info = {
        "workflow_run_id": run_id,
        "form_token": emu.form_token(run_id),
        "title": "Review",
        "expires_at": event.payload["form"]["expiration_time"],
        "backend": backend.classpath,
        "backend_kwargs": backend.spec(),
        "actions": {},
    }
    assert NOTICE_SECONDS == 300.0, "every five minutes in a deployment"
    trigger = HumanInputTrigger(hitl=info, poll_interval=0.05, notice_every=0.3)
    waiting = trigger.run()
    fired = asyncio.ensure_future(anext(waiting))

    printed: list[str] = []

    def notices() -> list[str]:
        printed.append(console_text(capfd))  # the trigger's log lines, as the task log shows them
        return re.findall(r"Still waiting for [^\n]*? so far\)", "".join(printed))

    for _ in range(200):
        if len(notices()) >= 2 or fired.done():
            break
        await asyncio.sleep(0.05)
    assert not fired.done(), "nobody answered: the trigger waits"
    emu.submit_form(emu.form_token(run_id), action="approve", inputs={"comment": "ok"})
    resumed = await asyncio.wait_for(fired, 10)
    await waiting.aclose()
    assert resumed.payload["status"] == "hitl_resumed"
    first, second = notices()[:2]
    assert re.fullmatch(
        rf"Still waiting for the form 'Review' of Dify run {run_id} to be answered in Dify \(expires "
        rf"{READABLE_TIME} \(in (1 d|23 h \d+ min)\); waited less than a minute so far\)",
        first,
    ), first
    assert first == second or second.startswith("Still waiting for the form 'Review'")
