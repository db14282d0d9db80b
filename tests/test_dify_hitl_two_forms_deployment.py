"""Two human-input forms of one Dify run, answered in Airflow one try after the other, on a real deployment.

Airflow keeps one human-in-the-loop record per task-instance try (see ``docify_provider.hitl``):
the first form ("Outline review": comment, priority; Approve / Reject) is asked in try 1; when
the resumed run pauses on the second ("Final sign-off": signature; Sign off / Reject), try 1 ends
with ``HumanInputNextTry`` and try 2 re-attaches to the same run and asks for it. Re-attaching to
a paused run must bring its form back: Dify's run detail has none, the events endpoint's state
snapshot has (``DifyClient.attach``); without it try 2 saw "form None" and waited for an answer
in Dify that nobody was asked for. Both forms are answered through the REST API
(``PATCH .../hitlDetails``). Checked: two requests, one per try, each with its own form; two
answers posted to Dify, one run bought, the run's outputs hold both answers.

Marked xfail (not run): on Airflow 3.3.2 the second request keeps the first form's subject and
options (the try's HITL row follows the task instance to its new id), see the marker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_helpers import AIRFLOW_LINE
from docify_provider.testing.dify import TWO_FORMS_APP_KEY
from tests.deployment import HITL_RECORD_TASK_ID, HITL_TWO_FORMS_DAG_ID, HitlRun, dify_hitl_deployment, wait_until

pytestmark = [
    pytest.mark.deployment,
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(AIRFLOW_LINE < (3, 1), reason="Airflow human-in-the-loop requests are 3.1+"),
]


def request_for(hitl: HitlRun, subject: str) -> dict[str, Any] | None:
    """The current try's request once it asks for ``subject`` and its trigger waits for the answer."""
    detail = hitl.hitl_detail()
    if not detail or detail["subject"] != subject or detail["response_received"]:
        return None
    return detail if hitl.waiting_for_answer() else None


def settled(hitl: HitlRun, task_id: str | None = None) -> dict[str, Any] | None:
    ti = hitl.task_instance(task_id)
    return ti if ti.get("state") in ("success", "failed") else None


@pytest.mark.xfail(
    reason="Airflow 3.3.2 moves a try's hitl_detail row to the next try's task-instance id (prepare_db_for_next_try "
    "gives the TI a new id; the row follows it) and upsert_hitl_detail keeps an existing row's subject and options: "
    "try 2 asks Airflow for 'Final sign-off' (task log) but the request still shows 'Outline review' / Approve, "
    "Reject, so the sign-off cannot be answered in Airflow. Seen in this deployment (docs/notes/deploy.md).",
    strict=True,
    run=False,
)
def test_two_forms_are_asked_in_two_tries_and_answered_through_rest(tmp_path: Path) -> None:
    print()
    with dify_hitl_deployment(tmp_path, dag_id=HITL_TWO_FORMS_DAG_ID) as hitl:
        emu, timeline = hitl.emu, hitl.timeline
        first = wait_until("the outline review request", lambda: request_for(hitl, "Outline review"), 180, 0.2)
        first_try = hitl.task_instance()["try_number"]
        timeline.mark(f"request 1 (Outline review) shown, try {first_try}")
        hitl.answer("Approve", {"comment": "fine", "priority": "high"})
        timeline.mark("request 1 answered (Approve)")
        second = wait_until("the sign-off request", lambda: request_for(hitl, "Final sign-off"), 120, 0.2)
        second_try = hitl.task_instance()["try_number"]
        timeline.mark(f"request 2 (Final sign-off) shown, try {second_try}")
        hitl.answer("Sign off", {"signature": "signed, R."})
        timeline.mark("request 2 answered (Sign off)")
        ti = wait_until("the review task to end", lambda: settled(hitl), 120, 0.5)
        timeline.mark(f"review {ti['state']} (try {ti['try_number']})")
        recorded = wait_until("the record task to end", lambda: settled(hitl, HITL_RECORD_TASK_ID), 90, 0.5)
        record_xcom = hitl.xcom(HITL_RECORD_TASK_ID)
        task_log = hitl.task_log()
        retried_by_race = hitl.externally_changed_tries()
        logs = hitl.dep.read_logs()
        [run] = emu.runs
    timeline.print_sequence()
    print(
        f"dify two forms via REST: form 1 in try {first_try}, form 2 in try {second_try}, success in try "
        f"{ti['try_number']}; form POSTs accepted {hitl.form_posts()}, refused as already answered {hitl.refused_form_posts()}; tries failed by the known 3.3 race: {retried_by_race}"
    )

    assert (first["options"], set(first["params"])) == (["Approve", "Reject"], {"comment", "priority"})
    assert "Outline for budget" in first["body"]
    assert (second["options"], set(second["params"])) == (["Sign off", "Reject"], {"signature"})
    assert "Sign off budget as" in second["body"]
    assert second_try > first_try, "each form gets the record of a try of its own"
    assert "paused on another form ('Final sign-off')" in task_log, task_log[-5000:]
    assert ti["state"] == "success" and recorded["state"] == "success", task_log[-5000:]
    assert ti["try_number"] == 2 + retried_by_race, (ti["try_number"], retried_by_race)
    assert hitl.form_posts() == 2, "each answer is posted to Dify once"
    assert emu.runs_started(key=TWO_FORMS_APP_KEY) == 1, "the second try re-attached to the same run"
    assert run.status == "succeeded"
    assert (record_xcom["outline_action"], record_xcom["comment"], record_xcom["priority"]) == (
        "approve",
        "fine",
        "high",
    )
    assert (record_xcom["sign_off_action"], record_xcom["signature"]) == ("sign", "signed, R.")
    assert TWO_FORMS_APP_KEY not in logs and emu.form_token(run.id) not in logs
