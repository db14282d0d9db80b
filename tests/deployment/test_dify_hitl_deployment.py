"""A paused Dify run answered through Airflow's REST API, on a real deployment.

The deployment: API server, scheduler, dag processor and triggerer as separate processes
(LocalExecutor, SQLite; ``hitl_deployment``, ``tests/hitl_deployment.py``: one for the HITL tests
that follow one another, a fresh emulator and DAG run each), the Dify emulator over 127.0.0.1. ``tests/dags/dify_hitl.py`` runs the
human-input app as a deferred stream; the run pauses on its "Review" form (a ``comment`` input,
Approve / Reject) and the task raises an Airflow human-in-the-loop request. The test waits for the
request to show up through the REST API (the task's ``hitlDetails`` and the run's list endpoint,
what the Required Actions page reads), checks subject, body, options and params against the
form, answers it with ``PATCH .../hitlDetails`` and follows the run to its end. Checked: the
answer reached Dify exactly once (the emulator's form POSTs), the Dify run finished with it in
its outputs (the emulator's record and both tasks' XComs, read through the REST API), one run
was bought, and the form token and the key are in no log.

On Airflow 3.3 the PATCH resumes the deferred task directly (``handle_event_submit``), while the
``HumanInputTrigger`` may read the answer too; the test reports which path resumed the task and
that the answer was posted once either way. The moments (pause seen -> request shown -> answer
-> Dify run finished -> task success) are printed with ``pytest -s``.
"""

from __future__ import annotations

import pytest

from airflow_helpers import AIRFLOW_LINE
from docify_provider.testing.dify import HUMAN_INPUT_APP_KEY
from tests.deployment import wait_until
from tests.hitl_deployment import (
    HITL_ACCOUNT_DAG_ID,
    HITL_BLOCKING_DAG_ID,
    HITL_DAG_ID,
    HITL_RECORD_TASK_ID,
    HitlDeployment,
)

pytestmark = [
    pytest.mark.deployment,
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(AIRFLOW_LINE < (3, 1), reason="Airflow human-in-the-loop requests are 3.1+"),
]

COMMENT = "ship it, via REST"


# hitl_line: also on Airflow 3.1 (scripts/test.sh runs it there alone, after the in-process tests).
@pytest.mark.hitl_line
def test_a_paused_dify_run_is_answered_through_the_rest_api(hitl_deployment: HitlDeployment) -> None:
    print()
    with hitl_deployment.run() as hitl:
        emu, timeline = hitl.emu, hitl.timeline
        run = wait_until(
            "the Dify run to pause", lambda: emu.runs and emu.runs[0].status == "paused" and emu.runs[0], 150, 0.1
        )
        t_paused = timeline.mark(f"Dify run {run.id} paused on its form (emulator)")
        # 3.1 takes seconds of CPU per task start: on a busy 2-core machine the request can take over a minute.
        detail = wait_until("the HITL request in the REST API", hitl.hitl_detail, 120, 0.1)
        t_shown = timeline.mark("request shown: GET .../review/-1/hitlDetails answers")
        listed = wait_until("the request in the run's list endpoint", hitl.pending_requests, 30, 0.2)
        # A person answers seconds later; an answer within ~0.3 s of the deferral races the
        # scheduler on 3.3 (apache/airflow#67287: the resumed try is killed as "changed externally").
        ti_before = wait_until("the human-input trigger to run", hitl.waiting_for_answer, 60, 0.1)
        timeline.mark("deferred on the HumanInputTrigger, the deferral handled by the scheduler")
        form_posts_before = hitl.form_posts()

        answered = hitl.answer("Approve", {"comment": COMMENT})
        t_answer = timeline.mark("answered: PATCH .../hitlDetails (Approve, comment)")
        wait_until("the Dify run to finish", lambda: run.ended, 60, 0.1)
        t_finished = timeline.mark(f"Dify run {run.status}")
        ti = wait_until("the review task to end", lambda: hitl.ended(), 90, 0.2)
        t_success = timeline.mark(f"review {ti['state']} (try {ti['try_number']})")
        recorded = wait_until("the record task to end", lambda: hitl.ended(HITL_RECORD_TASK_ID), 90, 0.5)
        timeline.mark(f"record {recorded['state']}")
        review_xcom = hitl.xcom()
        record_xcom = hitl.xcom(HITL_RECORD_TASK_ID)
        after = wait_until("the request in the REST API after the answer", hitl.hitl_detail, 10)
        logs = hitl.dep.read_logs()
        task_log = hitl.task_log()
        retried_by_race = hitl.externally_changed_tries()
        token = emu.form_token(run.id)
    timeline.print_sequence()
    # On 3.3 the PATCH resumes the task itself; the trigger may read the answer too before it is
    # cancelled, and a second resume then finds the form answered (412) and posts nothing.
    trigger_fired = "answered in Airflow by" in task_log
    print(
        f"dify hitl via REST: pause seen -> request shown {t_shown - t_paused:.1f}s, shown -> answer "
        f"{t_answer - t_shown:.1f}s, answer -> Dify run finished {t_finished - t_answer:.1f}s, "
        f"Dify run finished -> task success {t_success - t_finished:.1f}s; form POSTs accepted {hitl.form_posts()}, refused as already answered {hitl.refused_form_posts()}; "
        f"HumanInputTrigger also read the answer: {trigger_fired}; review try {ti['try_number']} "
        f"(tries failed by the known 3.3 race: {retried_by_race})"
    )

    # The request, as Airflow shows it: the form's title, text, actions and input.
    assert ti_before.get("state") == "deferred", ti_before
    assert detail["subject"] == f"Review — Review Gate, run {run.id[:8]}"
    assert "Please review the draft about budget: (see the field *Comment* below)" in detail["body"]
    assert "**Answer by " in detail["body"]
    assert detail["options"] == ["Approve", "Reject"]
    assert detail["multiple"] is False
    assert set(detail["params"]) == {"comment"}
    assert detail["params"]["comment"]["schema"]["format"] == "multiline"
    assert detail["response_received"] is False
    assert [d["task_instance"]["task_id"] for d in listed] == [hitl.task_id]
    assert form_posts_before == 0, "nothing is posted to Dify before someone answers"
    assert answered["chosen_options"] == ["Approve"]
    assert after["response_received"] is True and after["chosen_options"] == ["Approve"]
    assert after["params_input"] == {"comment": COMMENT}

    # The answer reached Dify once and the run went on with it.
    assert hitl.form_posts() == 1, "the answer is posted to Dify exactly once"
    assert hitl.refused_form_posts() == task_log.count("was answered in Dify first")
    assert run.status == "succeeded"
    assert run.answers["review"]["action"] == "approve" and run.answers["review"]["comment"] == COMMENT
    assert run.outputs["decision"] == "approve" and run.outputs["comment"] == COMMENT
    assert ti["state"] == "success", task_log[-5000:]
    # A retry only for the known Airflow race (see HitlRun.externally_changed_tries), never for ours.
    assert ti["try_number"] - 1 == retried_by_race, (ti["try_number"], retried_by_race, task_log[-5000:])
    assert recorded["state"] == "success"
    assert review_xcom["workflow_run_id"] == run.id and review_xcom["status"] == "succeeded"
    assert review_xcom["outputs"]["decision"] == "approve" and review_xcom["outputs"]["comment"] == COMMENT
    assert record_xcom["decision"] == "approve" and record_xcom["comment"] == COMMENT
    assert f"Comment: {COMMENT}" in record_xcom["text"]
    assert emu.runs_started(key=HUMAN_INPUT_APP_KEY) == 1, "one run bought"
    assert task_log.count("Posted the Airflow answer to Dify run") == 1, task_log[-5000:]
    assert token not in logs and HUMAN_INPUT_APP_KEY not in logs


@pytest.mark.parametrize(
    "dag_id",
    [
        # The clear path on the Airflow side is one for every operator: run on 3.1 once (hitl_line); the
        # two deferred variants differ in the provider's backend path, which is the same on every line.
        pytest.param(HITL_BLOCKING_DAG_ID, id="blocking", marks=pytest.mark.hitl_line),
        # Once failed closed (outcome unknown) when Airflow's fast-resume race (apache/airflow#67287) failed
        # the try right after the stream trigger fired: the run id was only in the trigger's XCom marker,
        # which the next try's start purges. That try now finds the run in Dify's logs
        # (tests/airflow/test_dify_lost_marker.py drives that path every time).
        pytest.param(HITL_DAG_ID, id="stream-deferred"),
        pytest.param(
            HITL_ACCOUNT_DAG_ID,
            id="account-api-deferred",
            marks=pytest.mark.xfail(
                AIRFLOW_LINE < (3, 2),
                strict=False,
                reason=(
                    "intermittent on 3.1 (1 run in 4 on an idle machine, 2026-12-06): after the clear the next "
                    "try waits on the form, but the PATCH answer did not resume it within 90 s; not diagnosed "
                    "yet. It passes on 3.3 and in the other 3.1 runs"
                ),
            ),
        ),
    ],
)
def test_a_task_cleared_while_it_waits_finds_its_form_and_the_answer_reaches_dify_once(
    hitl_deployment: HitlDeployment, dag_id: str
) -> None:
    """Issue 17 item 6, as found with ``example_dify_human_review``, for every operator that can pause:
    the run pauses, the task asks Airflow and waits; a person clears it (REST, as the UI's Clear does).
    The next try re-attaches to the same run: the blocking ``DifyRunWorkflowOperator`` through the run
    detail, which names no form (it is looked up in Dify's paused-run state); the deferred
    ``DifyStreamWorkflowOperator`` and the account API's ``DifyRunAppOperator`` through the events
    route, whose state snapshot replays the pause with its form. Either way it must find the form
    again, wait on the one request try 1 raised, and post its answer (``PATCH .../hitlDetails``) to
    Dify once; the run is resumed, one run bought, the task succeeds."""
    print()
    with hitl_deployment.run(dag_id) as hitl:
        emu, timeline = hitl.emu, hitl.timeline
        run = wait_until(
            "the Dify run to pause", lambda: emu.runs and emu.runs[0].status == "paused" and emu.runs[0], 150, 0.1
        )
        timeline.mark(f"Dify run {run.id} paused on its form (emulator)")
        shown = wait_until("the HITL request in the REST API", hitl.hitl_detail, 120, 0.1)  # as above
        first = wait_until("try 1 to wait on the human-input trigger", hitl.waiting_for_answer, 90, 0.2)
        timeline.mark(f"try {first['try_number']} deferred on the HumanInputTrigger")
        hitl.clear()
        t_cleared = timeline.mark("cleared: POST /dags/{dag}/clearTaskInstances (review)")

        def next_try_waiting() -> dict | None:
            ti = hitl.waiting_for_answer()
            return ti if ti and ti["try_number"] > first["try_number"] else None

        second = wait_until("the next try to wait on the human-input trigger", next_try_waiting, 150, 0.2)
        t_waiting = timeline.mark(f"try {second['try_number']} deferred on the HumanInputTrigger again")
        still = hitl.hitl_detail()
        posts_before = hitl.form_posts()
        hitl.answer("Approve", {"comment": COMMENT})
        t_answer = timeline.mark("answered: PATCH .../hitlDetails (Approve, comment)")
        wait_until("the Dify run to finish", lambda: run.ended, 90, 0.1)
        ti = wait_until("the review task to end", lambda: hitl.ended(), 120, 0.2)
        t_end = timeline.mark(f"review {ti['state']} (try {ti['try_number']})")
        review_xcom = hitl.xcom()
        logs = hitl.dep.read_logs()
        task_log = hitl.task_log()
        retried_by_race = hitl.externally_changed_tries()
        token = emu.form_token(run.id)
    timeline.print_sequence()
    print(
        f"dify hitl clear while waiting ({dag_id}): clear -> next try waiting {t_waiting - t_cleared:.1f}s, answer -> task "
        f"{ti['state']} {t_end - t_answer:.1f}s; form POSTs accepted {hitl.form_posts()}, refused "
        f"{hitl.refused_form_posts()}; review try {ti['try_number']} (tries failed by the 3.3 race: {retried_by_race})"
    )
    subject = f"Review — Review Gate, run {run.id[:8]}"
    assert shown["subject"] == subject and still is not None and still["subject"] == subject
    assert still["response_received"] is False, "the one request (try 1's) still waits after the clear"
    assert posts_before == 0
    assert "found its form again" in task_log, task_log[-5000:]
    assert "form None" not in task_log and "reported None" not in task_log and "expires never" not in task_log
    assert hitl.form_posts() == 1, "the answer is posted to Dify exactly once"
    assert run.status == "succeeded" and run.answers["review"]["comment"] == COMMENT
    assert ti["state"] == "success", task_log[-5000:]
    # Try 1, the clear's try, and one more per try the known race failed (before or after the clear,
    # before or after the next try waited): never a try of ours.
    assert ti["try_number"] - 2 == retried_by_race, (ti["try_number"], second["try_number"], retried_by_race)
    assert review_xcom["workflow_run_id"] == run.id and review_xcom["outputs"]["comment"] == COMMENT
    assert hitl.runs_bought() == 1, "one run bought"
    assert token not in logs and hitl.key not in logs
