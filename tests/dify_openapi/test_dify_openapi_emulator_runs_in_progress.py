"""The bundled Dify OpenAPI emulator on a run that has started: stop, re-attach to its events, and its
human-input forms (one, two in sequence, expiry and the UI's answer), over real sockets with httpx.

Apart from ``test_dify_openapi_emulator.py`` (the endpoints up to a run's start) to keep each file
readable; the wire helpers both use are in ``tests/dify_openapi_emulator_http.py``.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from httpx_sse import connect_sse

from docify_provider.testing.dify_openapi import (
    ACCOUNT_TOKEN,
    CHAT_APP_ID,
    DISABLED_APP_ID,
    HUMAN_INPUT_APP_ID,
    LONG_APP_ID,
    OTHER_ACCOUNT_TOKEN,
    TEXT_APP_ID,
    TWO_FORMS_APP_ID,
    DifyOpenAPIEmulator,
)
from tests.dify_openapi_emulator_http import (
    GENERATIONS,
    OPTIONS,
    client,
    error_body,
    form_path,
    make,
    names,
    run_path,
    sse,
    start_long,
    stop_path,
)

pytestmark = pytest.mark.emulator(**OPTIONS, each=("paths", GENERATIONS))


# stop and re-attach ------------------------------------------------------------------------------
def test_stop(emu: DifyOpenAPIEmulator) -> None:
    with client(emu) as c, client(emu, OTHER_ACCOUNT_TOKEN) as other:
        started = start_long(emu, c)
        assert other.post(stop_path(emu, LONG_APP_ID, started["task_id"])).json() == {"result": "success"}
        assert emu.wait_run_finished(started["workflow_run_id"]).status == "stopped"
        assert c.post(stop_path(emu, LONG_APP_ID, "unknown-task")).json() == {"result": "success"}
        error_body(c.post(stop_path(emu, DISABLED_APP_ID, started["task_id"])), 403, "forbidden")
    assert emu.stop_requests() == 2 and emu.stop_requests(OTHER_ACCOUNT_TOKEN, app=LONG_APP_ID) == 1


def test_reattach_live_only_snapshot_finished_and_ownership(emu: DifyOpenAPIEmulator) -> None:
    with client(emu) as c, client(emu, OTHER_ACCOUNT_TOKEN) as other:
        started = start_long(emu, c, seconds=1.0, steps=10)
        run_id = started["workflow_run_id"]
        events_url = f"apps/{LONG_APP_ID}/tasks/{run_id}/events"
        error_body(other.get(events_url), 404, "not_found")
        items, live = sse(c, "GET", events_url)
        assert items[0].event == "ping" and names(live)[-1] == "workflow_finished"
        assert "workflow_started" not in names(live)  # no replay
        _, finished = sse(c, "GET", events_url)
        assert names(finished) == ["workflow_finished"] and finished[0]["data"]["status"] == "succeeded"
        second = start_long(emu, c, seconds=1.5, steps=3)
        _, snapshot = sse(
            c,
            "GET",
            f"apps/{LONG_APP_ID}/tasks/{second['workflow_run_id']}/events",
            params={"include_state_snapshot": "true"},
        )
        assert names(snapshot)[0] == "workflow_started" and names(snapshot)[-1] == "workflow_finished"
        error_body(
            c.get(f"apps/{CHAT_APP_ID}/tasks/{run_id}/events"),
            422,
            "invalid_param",
            "mode_not_supported_for_event_reconnect",
        )
        error_body(c.get(f"apps/{TEXT_APP_ID}/tasks/{run_id}/events"), 404, "not_found")
    assert emu.events_requests(ACCOUNT_TOKEN, app=LONG_APP_ID) == 3


# human input forms -------------------------------------------------------------------------------
def pause(emu: DifyOpenAPIEmulator, c: httpx.Client, app_id: str = HUMAN_INPUT_APP_ID) -> tuple[list[dict], str]:
    _, events = sse(c, "POST", run_path(emu, app_id), json={"inputs": {"topic": "jam"}})
    assert names(events)[-2:] == ["human_input_required", "workflow_paused"]
    return events, events[-2]["data"]["form_token"]


def test_form_roundtrip(emu: DifyOpenAPIEmulator) -> None:
    with client(emu) as c:
        events, token = pause(emu, c)
        required = events[-2]
        hints = required["hints"]
        assert [h["input"]["action"] for h in hints] == ["approve", "reject"]
        assert hints[0]["input"]["form_token"] == token and hints[0]["input"]["app_id"] == HUMAN_INPUT_APP_ID
        assert hints[0]["op"] == ("run.form.submit" if emu.paths == "legacy" else "submit.run.form")
        assert events[-1]["data"]["reasons"][0]["form_token"] == token
        definition = c.get(form_path(emu, HUMAN_INPUT_APP_ID, token)).json()
        assert set(definition) == {
            "form_content",
            "inputs",
            "resolved_default_values",
            "user_actions",
            "expiration_time",
        }
        assert definition["user_actions"][0] == {"id": "approve", "title": "Approve", "button_style": "primary"}
        run_id = events[0]["workflow_run_id"]
        with connect_sse(
            c, "GET", f"apps/{HUMAN_INPUT_APP_ID}/tasks/{run_id}/events", params={"continue_on_pause": "true"}
        ) as source:
            submit = c.post(
                form_path(emu, HUMAN_INPUT_APP_ID, token, submit=True),
                json={"action": "approve", "inputs": {"comment": "ok"}},
            )
            assert submit.status_code == 200 and submit.json() == {}
            resumed = [json.loads(i.data) for i in source.iter_sse() if i.event == "message"]
        assert resumed[0]["event"] == "workflow_started" and resumed[0]["data"]["reason"] == "resumption"
        assert "human_input_form_filled" in names(resumed) and resumed[-1]["data"]["outputs"]["comment"] == "ok"
        error_body(c.get(form_path(emu, HUMAN_INPUT_APP_ID, token)), 412, "human_input_form_submitted")
        error_body(c.get(form_path(emu, HUMAN_INPUT_APP_ID, "nope")), 404, "form_not_found")
        bad = error_body(
            c.post(form_path(emu, HUMAN_INPUT_APP_ID, token, submit=True), json={"inputs": {}}), 422, "invalid_param"
        )
        assert bad["details"][0]["loc"] == ["action"]


def test_two_forms_in_sequence_with_defaults(emu: DifyOpenAPIEmulator) -> None:
    with client(emu) as c:
        events, first = pause(emu, c, TWO_FORMS_APP_ID)
        run_id = events[0]["workflow_run_id"]
        definition = c.get(form_path(emu, TWO_FORMS_APP_ID, first)).json()
        assert definition["resolved_default_values"] == {"comment": "Looks fine", "priority": "normal"}
        assert definition["expiration_time"] > time.time()
        url = f"apps/{TWO_FORMS_APP_ID}/tasks/{run_id}/events"
        with connect_sse(c, "GET", url) as source:
            c.post(
                form_path(emu, TWO_FORMS_APP_ID, first, submit=True),
                json={"action": "approve", "inputs": {"priority": "high"}},
            )
            middle = [json.loads(i.data) for i in source.iter_sse() if i.event == "message"]
        assert names(middle)[-2:] == ["human_input_required", "workflow_paused"]  # closes at the pause
        second = middle[-2]["data"]["form_token"]
        assert second != first and middle[-2]["data"]["node_id"] == "sign_off"
        assert c.get(form_path(emu, TWO_FORMS_APP_ID, second)).json()["user_actions"][0]["id"] == "sign"
        with connect_sse(c, "GET", url) as source:
            c.post(form_path(emu, TWO_FORMS_APP_ID, second, submit=True), json={"action": "sign", "inputs": {}})
            last = [json.loads(i.data) for i in source.iter_sse() if i.event == "message"]
        outputs = last[-1]["data"]["outputs"]
        assert outputs == {
            "outline_action": "approve",
            "comment": "Looks fine",
            "priority": "high",
            "sign_off_action": "sign",
            "signature": "emulator",
        }


def test_form_expiry_and_ui_answer() -> None:
    with make(form_expiry_seconds=0.5) as emu, client(emu) as c:
        _, token = pause(emu, c)
        time.sleep(0.6)
        error_body(c.get(form_path(emu, HUMAN_INPUT_APP_ID, token)), 412, "human_input_form_expired")
    with make() as emu, client(emu) as c:
        events, token = pause(emu, c)
        emu.answer_in_ui(token, "reject")
        assert emu.wait_run_finished(events[0]["workflow_run_id"]).outputs["decision"] == "reject"
        error_body(c.get(form_path(emu, HUMAN_INPUT_APP_ID, token)), 412, "human_input_form_submitted")
        submit = c.post(
            form_path(emu, HUMAN_INPUT_APP_ID, token, submit=True), json={"action": "approve", "inputs": {}}
        )
        error_body(submit, 412, "human_input_form_submitted")
