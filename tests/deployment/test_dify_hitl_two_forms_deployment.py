"""Two human-input forms of one Dify run on a real deployment: the first answered in Airflow, the
second in Dify.

Airflow keeps one human-in-the-loop record per task: a try's ``hitl_detail`` row follows the task
instance to its next try, and a second request for the same task instance keeps the first one's
subject and options (``docify_provider.hitl``). So the provider asks Airflow for the run's first
form only ("Outline review": comment, priority; Approve / Reject). When the resumed run pauses on
the second ("Final sign-off": signature; Sign off / Reject) the task logs, as a warning, that this
form is answered in Dify and where, and waits deferred until Dify resumes the run. The test
answers the first through the REST API (``PATCH .../hitlDetails``) and the second as Dify's UI
does (the emulator's form submission). Checked: one Airflow request (the first form's, answered),
the warning naming the second form, the run bought once, the first answer posted to Dify once,
the task succeeding in its first try (or the next, after the 3.3 race), and both answers in the
run's outputs.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_helpers import AIRFLOW_LINE
from docify_provider.testing.dify import TWO_FORMS_APP_KEY
from tests.deployment import wait_until
from tests.hitl_deployment import HITL_RECORD_TASK_ID, HITL_TWO_FORMS_DAG_ID, HitlDeployment, HitlRun

pytestmark = [
    pytest.mark.deployment,
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(AIRFLOW_LINE < (3, 1), reason="Airflow human-in-the-loop requests are 3.1+"),
]

SECOND_FORM_WARNING = "paused on the form 'Final sign-off', which is NOT asked in Airflow"


def request_for(hitl: HitlRun, subject: str) -> dict[str, Any] | None:
    """The request once it asks for the form titled ``subject`` (the subject's first part; the app and
    the run follow) and its trigger waits for the answer."""
    detail = hitl.hitl_detail()
    if not detail or not detail["subject"].startswith(f"{subject} — ") or detail["response_received"]:
        return None
    return detail if hitl.waiting_for_answer() else None


def test_first_form_in_airflow_second_in_dify(hitl_deployment: HitlDeployment) -> None:
    """On the shared HITL deployment (``tests/hitl_deployment.py``): a fresh emulator, one run."""
    print()
    with hitl_deployment.run(HITL_TWO_FORMS_DAG_ID) as hitl:
        emu, timeline = hitl.emu, hitl.timeline
        first = wait_until("the outline review request", lambda: request_for(hitl, "Outline review"), 180, 0.2)
        timeline.mark(f"request (Outline review) shown, try {hitl.task_instance()['try_number']}")
        hitl.answer("Approve", {"comment": "fine", "priority": "high"})
        timeline.mark("request answered in Airflow (Approve)")
        [run] = emu.runs
        wait_until(
            "the run to pause on the sign-off",
            lambda: run.status == "paused" and run.form is not None and run.form.node_id == "sign_off",
            120,
            0.2,
        )
        timeline.mark("Dify run paused on 'Final sign-off'")
        wait_until(
            "the task to say the sign-off is answered in Dify", lambda: SECOND_FORM_WARNING in hitl.task_log(), 90, 0.5
        )
        timeline.mark("task log: the sign-off is answered in Dify")
        emu.submit_form(emu.form_token(run.id), "sign", {"signature": "signed, R."})
        timeline.mark("sign-off answered in Dify")
        ti = wait_until("the review task to end", lambda: hitl.ended(), 120, 0.5)
        timeline.mark(f"review {ti['state']} (try {ti['try_number']})")
        recorded = wait_until("the record task to end", lambda: hitl.ended(HITL_RECORD_TASK_ID), 90, 0.5)
        record_xcom = hitl.xcom(HITL_RECORD_TASK_ID)
        detail = hitl.hitl_detail()
        task_log = hitl.task_log()
        retried_by_race = hitl.externally_changed_tries()
        logs = hitl.dep.read_logs()
    timeline.print_sequence()
    print(
        f"dify two forms: form 1 in Airflow, form 2 in Dify, success in try {ti['try_number']}; "
        f"form POSTs from Airflow accepted {hitl.form_posts()}, refused {hitl.refused_form_posts()}; "
        f"tries failed by the known 3.3 race: {retried_by_race}"
    )

    assert (first["options"], set(first["params"])) == (["Approve", "Reject"], {"comment", "priority"})
    assert "Outline for budget" in first["body"]
    assert detail is not None and detail["subject"] == f"Outline review — Review and Sign-off, run {run.id[:8]}"
    assert detail["response_received"], detail
    assert detail["chosen_options"] == ["Approve"], detail
    assert SECOND_FORM_WARNING in task_log and "Answer it in Dify's console" in task_log, task_log[-5000:]
    assert ti["state"] == "success" and recorded["state"] == "success", task_log[-5000:]
    assert ti["try_number"] == 1 + retried_by_race, (ti["try_number"], retried_by_race)
    assert hitl.form_posts() == 1, "the Airflow answer is posted to Dify once (the sign-off was given in Dify)"
    assert emu.runs_started(key=TWO_FORMS_APP_KEY) == 1, "one run bought"
    assert run.status == "succeeded"
    assert (record_xcom["outline_action"], record_xcom["comment"], record_xcom["priority"]) == (
        "approve",
        "fine",
        "high",
    )
    assert (record_xcom["sign_off_action"], record_xcom["signature"]) == ("sign", "signed, R.")
    assert TWO_FORMS_APP_KEY not in logs and emu.form_token(run.id) not in logs
