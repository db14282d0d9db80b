"""A person answers a paused Dify run in Airflow's UI, with a real browser, on a real deployment.

The human-in-the-loop deployment the REST tests use too (``hitl_deployment``, ``tests/hitl_deployment.py``:
one for the tests that follow one another, a fresh emulator and DAG run each), with the login on:
SimpleAuthManager, the browser signing in as ``reviewer`` (role ``user``: may act on DAGs, not
administer), its password in the deployment's password file. Playwright drives Debian's
Chromium (``/usr/bin/chromium``, installed by ``scripts/services.sh``; no Playwright browser
download): it signs in on Airflow's login page, opens the task's Required Actions page
(``/dags/{dag}/runs/{run}/tasks/{task}/required_actions``, the route of Airflow 3.3's UI), checks
what a person reads (issue 19 item 7): the request listed under Required Actions with a subject
naming the node, the app and the run; the form's text with a pointer to the field where Dify's
``{{#$output.comment#}}`` placeholder stood; the deadline as a readable time; the field labelled
"Comment" and shown as a text area (Dify's paragraph); the actions as buttons. The reviewer types
a comment and clicks "Approve". Checked: the task succeeds with the comment in its outputs (XCom
through the REST API and the emulator's record), the request is recorded as answered by
``reviewer``, the answer reached Dify once and one run was bought. The second test answers the
two-form app's first form, whose ``priority`` is a Dify select: a drop-down of its options.

Screenshots (``out/screenshots/``): ``hitl-list.png`` (the Required Actions list),
``hitl-form-before.png`` / ``hitl-form-after.png`` (the form filled in, then answered),
``hitl-select-before.png`` / ``hitl-select-after.png`` (the form with the drop-down),
``hitl-expired.png`` / ``hitl-expired-log.png`` (a form left to expire: the request, greyed out, still
says until when it could be answered; the task log says it expired, when, and what to do next).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from airflow_helpers import AIRFLOW_LINE
from docify_provider.testing.dify import HUMAN_INPUT_APP_KEY, TWO_FORMS_APP_KEY
from helpers import CHROMIUM, CHROMIUM_ARGS, NEEDS_BROWSER
from tests.deployment import ROOT, wait_until
from tests.hitl_deployment import HITL_RECORD_TASK_ID, HITL_TWO_FORMS_DAG_ID, REVIEWER, HitlDeployment

SCREENSHOTS = ROOT / "out" / "screenshots"
COMMENT = "ship it, signed in the browser"
#: The deadline line of a request's body, as the page shows it (Markdown bold rendered).
DEADLINE = re.compile(r"Answer by \d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d UTC \((1 d|23 h \d+ min) left when")

pytestmark = [
    pytest.mark.deployment,
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(AIRFLOW_LINE < (3, 1), reason="Airflow human-in-the-loop requests are 3.1+"),
    *NEEDS_BROWSER,
]


def test_a_reviewer_answers_the_dify_form_in_airflows_ui(hitl_deployment: HitlDeployment) -> None:
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    password = hitl_deployment.password
    print()
    with hitl_deployment.run() as hitl, sync_playwright() as pw:
        emu, timeline, dep = hitl.emu, hitl.timeline, hitl.dep
        base = f"http://127.0.0.1:{dep.port}"
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            # Signing in first, while the run is on its way to the form.
            _sign_in(page, base, password)
            timeline.mark("signed in as reviewer")

            run = wait_until(
                "the Dify run to pause", lambda: emu.runs and emu.runs[0].status == "paused" and emu.runs[0], 150, 0.1
            )
            t_paused = timeline.mark(f"Dify run {run.id} paused on its form (emulator)")
            wait_until("the HITL request in the REST API", hitl.hitl_detail, 60, 0.1)
            t_shown = timeline.mark("request shown (REST)")
            wait_until("the human-input trigger to wait", hitl.waiting_for_answer, 60, 0.1)

            subject = f"Review — Review Gate, run {run.id[:8]}"
            # The list of requests tells this one apart: the node, the app and the run.
            page.goto(f"{base}/required_actions")
            expect(page.get_by_text(subject)).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "hitl-list.png"), full_page=True)

            page.goto(f"{base}/dags/{hitl.dag_id}/runs/{hitl.run_id}/tasks/{hitl.task_id}/required_actions")
            comment = page.locator("textarea#element_comment")  # Dify's paragraph: a text area
            expect(comment).to_be_visible()
            expect(page.get_by_text(subject)).to_be_visible()
            expect(page.locator("label", has_text=re.compile(r"^\s*Comment\b"))).to_be_visible()
            expect(page.get_by_text("Dify form field comment, several lines allowed.")).to_be_visible()
            # The placeholder is a pointer to the field, not a bold variable name inside the sentence.
            expect(
                page.locator("p", has_text="Please review the draft about budget: (see the field Comment below)")
            ).to_be_visible()
            expect(page.get_by_text("[comment]")).to_have_count(0)
            expect(page.locator("p", has_text=DEADLINE)).to_be_visible()
            approve = page.get_by_role("button", name="Approve")
            reject = page.get_by_role("button", name="Reject")
            expect(approve).to_be_visible()
            expect(reject).to_be_visible()
            t_page = timeline.mark("Required Actions page shows the form (subject, text, Comment, Approve, Reject)")
            comment.fill(COMMENT)
            page.screenshot(path=str(SCREENSHOTS / "hitl-form-before.png"), full_page=True)
            approve.click()
            t_answer = timeline.mark("clicked Approve")
            wait_until("the request to be answered", lambda: (hitl.hitl_detail() or {}).get("response_received"), 30)
            wait_until("the Dify run to finish", lambda: run.ended, 60, 0.1)
            t_finished = timeline.mark(f"Dify run {run.status}")
            ti = wait_until("the review task to end", lambda: hitl.ended(), 90, 0.2)
            t_success = timeline.mark(f"review {ti['state']} (try {ti['try_number']})")
            page.reload()
            expect(page.get_by_text("Response received at")).to_be_visible()
            expect(page.locator("#element_comment")).to_have_value(COMMENT)
            expect(page.locator("#element_comment")).to_be_disabled()
            page.screenshot(path=str(SCREENSHOTS / "hitl-form-after.png"), full_page=True)
        finally:
            browser.close()
        recorded = wait_until("the record task to end", lambda: hitl.ended(HITL_RECORD_TASK_ID), 90, 0.5)
        detail = hitl.hitl_detail() or {}
        review_xcom = hitl.xcom()
        record_xcom = hitl.xcom(HITL_RECORD_TASK_ID)
        task_log = hitl.task_log()
        retried_by_race = hitl.externally_changed_tries()
        logs = dep.read_logs()
        token = emu.form_token(run.id)
    timeline.print_sequence()
    print(
        f"dify hitl in the browser: pause seen -> request shown {t_shown - t_paused:.1f}s, page shows the form "
        f"{t_page - t_paused:.1f}s after the pause, click -> Dify run finished {t_finished - t_answer:.1f}s, "
        f"Dify run finished -> task success {t_success - t_finished:.1f}s; form POSTs accepted {hitl.form_posts()}, refused as already answered {hitl.refused_form_posts()}; "
        f"review try {ti['try_number']} (tries failed by the known 3.3 race: {retried_by_race}); "
        f"screenshots in {SCREENSHOTS}"
    )

    assert detail["response_received"] is True and detail["chosen_options"] == ["Approve"]
    assert detail["params_input"].get("comment") == COMMENT
    assert (detail.get("responded_by_user") or {}).get("name") == "reviewer", detail
    assert hitl.form_posts() == 1, "the answer is posted to Dify exactly once"
    assert run.status == "succeeded" and run.outputs["comment"] == COMMENT
    assert ti["state"] == "success", task_log[-5000:]
    # A retry only for the known Airflow race (see HitlRun.externally_changed_tries), never for ours.
    assert ti["try_number"] - 1 == retried_by_race, (ti["try_number"], retried_by_race, task_log[-5000:])
    assert recorded["state"] == "success"
    assert review_xcom["outputs"]["decision"] == "approve" and review_xcom["outputs"]["comment"] == COMMENT
    assert record_xcom["comment"] == COMMENT and f"Comment: {COMMENT}" in record_xcom["text"]
    assert emu.runs_started(key=HUMAN_INPUT_APP_KEY) == 1, "one run bought"
    assert "answered by reviewer" in task_log, task_log[-3000:]
    assert token not in logs and HUMAN_INPUT_APP_KEY not in logs and password not in logs


def _sign_in(page: Any, base: str, password: str) -> None:
    """Sign in as ``reviewer``; from now on an ``expect`` waits as long as the page's own waits (30 s):
    a page's first render (the UI's translations, then its data from the API server) took over
    Playwright's default 5 s on a 2-core machine running two deployments and other tests."""
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    page.goto(f"{base}/")
    page.wait_for_url("**/auth/login**")
    page.locator("input[name=username]").fill(REVIEWER)
    page.locator("input[name=password]").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)


def test_a_form_left_to_expire_says_when_and_what_happens_next(hitl_deployment: HitlDeployment) -> None:
    """Nobody answers; the form expires 40 s after the pause. Before, the request says until when it
    can be answered; after, the task has failed and its log says the form expired (a readable time),
    that Airflow keeps the request greyed out, and how to go on. Nothing is posted to Dify."""
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    password = hitl_deployment.password
    print()
    with hitl_deployment.run(emulator={"form_expiry_seconds": 40.0}) as hitl, sync_playwright() as pw:
        emu, timeline, dep = hitl.emu, hitl.timeline, hitl.dep
        base = f"http://127.0.0.1:{dep.port}"
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            _sign_in(page, base, password)
            run = wait_until(
                "the Dify run to pause", lambda: emu.runs and emu.runs[0].status == "paused" and emu.runs[0], 150, 0.1
            )
            wait_until("the HITL request in the REST API", hitl.hitl_detail, 30, 0.1)
            timeline.mark(f"Dify run {run.id} paused; the request is shown; nobody answers")
            task_page = f"{base}/dags/{hitl.dag_id}/runs/{hitl.run_id}/tasks/{hitl.task_id}"
            page.goto(f"{task_page}/required_actions")
            deadline = re.compile(
                r"Answer by \d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d UTC \((less than a minute|\d+ min) left"
            )
            expect(page.locator("p", has_text=deadline)).to_be_visible()
            ti = wait_until("the review task to fail", lambda: hitl.ended(), 240, 0.5)
            timeline.mark(f"review {ti['state']} (try {ti['try_number']})")
            page.reload()
            expect(page.locator("p", has_text=deadline)).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "hitl-expired.png"), full_page=True)
            page.goto(task_page)  # the Logs tab
            expect(page.get_by_text(re.compile(r"the form 'Review' expired at")).first).to_be_visible(timeout=60_000)
            page.screenshot(path=str(SCREENSHOTS / "hitl-expired-log.png"), full_page=True)
        finally:
            browser.close()
        task_log = hitl.task_log()
        detail = hitl.hitl_detail() or {}
    timeline.print_sequence()

    assert ti["state"] == "failed", task_log[-5000:]
    assert re.search(
        rf"Dify run {run.id} paused for human input: the form 'Review' expired at \d{{1,2}} [A-Z][a-z]{{2}} \d{{4}}, "
        r"\d\d:\d\d UTC without an answer",
        task_log,
    ), task_log[-5000:]
    assert "Airflow keeps showing its request, greyed out" in task_log and "To go on, start a new run" in task_log
    assert detail.get("response_received") is False
    assert hitl.form_posts() == 0 and run.status == "paused"


def test_a_dify_select_is_a_drop_down_of_its_options(hitl_deployment: HitlDeployment) -> None:
    """The two-form app's "Outline review": ``comment`` (a paragraph, default "Looks fine") and
    ``priority`` (a select of low / normal / high, default "normal"). The reviewer sees both fields
    labelled, the paragraph as a text area and the select as a drop-down preselected with its default,
    picks "high" and approves; the later sign-off form is answered in Dify (one request per task)."""
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    password = hitl_deployment.password
    print()
    with hitl_deployment.run(HITL_TWO_FORMS_DAG_ID) as hitl, sync_playwright() as pw:
        emu, timeline, dep = hitl.emu, hitl.timeline, hitl.dep
        base = f"http://127.0.0.1:{dep.port}"
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            _sign_in(page, base, password)

            run = wait_until(
                "the Dify run to pause", lambda: emu.runs and emu.runs[0].status == "paused" and emu.runs[0], 150, 0.1
            )
            wait_until("the HITL request in the REST API", hitl.hitl_detail, 120, 0.1)
            wait_until("the human-input trigger to wait", hitl.waiting_for_answer, 60, 0.1)
            timeline.mark(f"Dify run {run.id} paused on 'Outline review'; the request is shown")

            page.goto(f"{base}/dags/{hitl.dag_id}/runs/{hitl.run_id}/tasks/{hitl.task_id}/required_actions")
            expect(page.get_by_text(f"Outline review — Review and Sign-off, run {run.id[:8]}")).to_be_visible()
            expect(page.locator("textarea#element_comment")).to_have_value("Looks fine")
            expect(page.locator("label", has_text=re.compile(r"^\s*Priority\b"))).to_be_visible()
            expect(
                page.locator(
                    "p",
                    has_text="Comment: (see the field Comment below) Priority: (see the field Priority below)",
                )
            ).to_be_visible()
            trigger = page.get_by_role("combobox", name="Priority")  # Dify's select: a drop-down
            row = page.get_by_role("group").filter(has=trigger)
            expect(row).to_contain_text("normal")  # the form's default, preselected
            trigger.click()
            options = page.get_by_role("option")
            expect(options).to_have_text(["low", "normal", "high"])
            page.get_by_role("option", name="high").click()
            expect(row).to_contain_text("high")
            page.screenshot(path=str(SCREENSHOTS / "hitl-select-before.png"), full_page=True)
            page.get_by_role("button", name="Approve").click()
            timeline.mark("picked priority 'high', clicked Approve")
            wait_until(
                "the run to pause on the sign-off",
                lambda: run.status == "paused" and run.form is not None and run.form.node_id == "sign_off",
                120,
                0.2,
            )
            emu.submit_form(emu.form_token(run.id), "sign", {"signature": "signed, R."})
            timeline.mark("sign-off answered in Dify")
            ti = wait_until("the review task to end", lambda: hitl.ended(), 120, 0.5)
            timeline.mark(f"review {ti['state']} (try {ti['try_number']})")
            page.reload()
            expect(page.get_by_text("Response received at")).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "hitl-select-after.png"), full_page=True)
        finally:
            browser.close()
        detail = hitl.hitl_detail() or {}
        task_log = hitl.task_log()
        logs = dep.read_logs()
        token = emu.form_token(run.id)
    timeline.print_sequence()

    assert detail["chosen_options"] == ["Approve"] and detail["params_input"]["priority"] == "high", detail
    assert ti["state"] == "success", task_log[-5000:]
    assert run.status == "succeeded"
    assert run.answers["outline_review"]["priority"] == "high"
    assert run.answers["outline_review"]["comment"] == "Looks fine"
    assert hitl.form_posts() == 1, "the Airflow answer is posted to Dify once (the sign-off was given in Dify)"
    assert emu.runs_started(key=TWO_FORMS_APP_KEY) == 1, "one run bought"
    assert token not in logs and TWO_FORMS_APP_KEY not in logs and password not in logs
