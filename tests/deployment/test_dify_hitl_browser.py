"""A person answers a paused Dify run in Airflow's UI, with a real browser, on a real deployment.

The deployment of ``tests/deployment/test_dify_hitl_deployment.py`` (``dify_hitl_deployment``), with the
login on: SimpleAuthManager with one user, ``reviewer`` (role ``user``: may act on DAGs, not
administer), its password in a password file of the test's own. Playwright drives Debian's
Chromium (``/usr/bin/chromium``, installed by ``scripts/services.sh``; no Playwright browser
download): it signs in on Airflow's login page, opens the task's Required Actions page
(``/dags/{dag}/runs/{run}/tasks/{task}/required_actions``, the route of Airflow 3.3's UI), checks
the form shows the Dify form's title, text and actions, types a comment into the form's
``comment`` param and clicks "Approve". Checked: the task succeeds with the comment in its
outputs (XCom through the REST API and the emulator's record), the request is recorded as
answered by ``reviewer``, the answer reached Dify once and one run was bought. Screenshots of
the form before and after the answer go to ``out/screenshots/hitl-form-{before,after}.png``.
"""

from __future__ import annotations

import importlib.util
import secrets
import shutil
from pathlib import Path

import pytest

from airflow_helpers import AIRFLOW_LINE
from docify_provider.testing.dify import HUMAN_INPUT_APP_KEY
from tests.deployment import HITL_RECORD_TASK_ID, ROOT, dify_hitl_deployment, wait_until

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
#: What the browser is started with: headless, no sandbox (root in a container), nothing fetched.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "out" / "screenshots"
COMMENT = "ship it, signed in the browser"

pytestmark = [
    pytest.mark.deployment,
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(AIRFLOW_LINE < (3, 1), reason="Airflow human-in-the-loop requests are 3.1+"),
    pytest.mark.skipif(
        CHROMIUM is None, reason="no Chromium at /usr/bin/chromium or on PATH (scripts/services.sh installs it)"
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None, reason="the playwright package is not installed"
    ),
]


def test_a_reviewer_answers_the_dify_form_in_airflows_ui(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    print()
    with (
        dify_hitl_deployment(tmp_path, users={"reviewer": ("user", password)}) as hitl,
        sync_playwright() as pw,
    ):
        emu, timeline, dep = hitl.emu, hitl.timeline, hitl.dep
        base = f"http://127.0.0.1:{dep.port}"
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            # Signing in first, while the run is on its way to the form.
            page.goto(f"{base}/")
            page.wait_for_url("**/auth/login**")
            page.locator("input[name=username]").fill("reviewer")
            page.locator("input[name=password]").fill(password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(lambda url: "/auth/login" not in url)
            timeline.mark("signed in as reviewer")

            run = wait_until(
                "the Dify run to pause", lambda: emu.runs and emu.runs[0].status == "paused" and emu.runs[0], 150, 0.1
            )
            t_paused = timeline.mark(f"Dify run {run.id} paused on its form (emulator)")
            wait_until("the HITL request in the REST API", hitl.hitl_detail, 60, 0.1)
            t_shown = timeline.mark("request shown (REST)")
            wait_until("the human-input trigger to wait", hitl.waiting_for_answer, 60, 0.1)

            page.goto(f"{base}/dags/{hitl.dag_id}/runs/{hitl.run_id}/tasks/{hitl.task_id}/required_actions")
            comment = page.locator("#element_comment")
            expect(comment).to_be_visible()
            expect(page.get_by_text("Please review the draft about budget")).to_be_visible()
            approve = page.get_by_role("button", name="Approve")
            reject = page.get_by_role("button", name="Reject")
            expect(approve).to_be_visible()
            expect(reject).to_be_visible()
            t_page = timeline.mark("Required Actions page shows the form (comment, Approve, Reject)")
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
