"""The account OpenAPI as the current Dify server behaves (server-behaviour reference, Part C),
and as its documents say (``server_profile="documented"``): the emulator's wire over real sockets,
then what ``DifyOpenAPIClient`` / ``DifyOpenAPIHook`` make of it.

Each behaviour is checked on the wire first (so that the client tests below cannot pass against
an emulator that does not show it), then through the client, with the emulator's counters proving
what was sent and billed.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from docify_provider.dify_openapi import discovery
from docify_provider.dify_openapi.client import AsyncDifyOpenAPIClient, DifyOpenAPIClient
from docify_provider.dify_openapi.config import DifyOpenAPIClientConfig
from docify_provider.dify_openapi.errors import (
    DifyOpenAPIAppLookupError,
    DifyOpenAPIAuthenticationError,
    DifyOpenAPIBadRequestError,
    DifyOpenAPIInputError,
    DifyOpenAPIRunFailedError,
    DifyOpenAPITagFilterError,
)
from docify_provider.dify_openapi.models import AppSummary
from docify_provider.testing.dify_openapi import (
    ACCOUNT_ID,
    ACCOUNT_TOKEN,
    COMPLETION_APP_ID,
    DOCUMENT_APP_ID,
    HUMAN_INPUT_APP_ID,
    LONG_APP_ID,
    TEXT_APP_ID,
    WORKSPACE_ID,
    DifyOpenAPIEmulator,
)
from docify_provider.testing.faults import Fault

FAST: dict[str, Any] = {
    "backoff_initial": 0.01,
    "backoff_max": 0.05,
    "idle_timeout": 5.0,
    "connect_timeout": 2,
    "read_timeout": 10,
    "max_retries": 2,
    "poll_interval": 0.05,
}
#: Far longer than any test waits: a client that read to the server's idle close would time out.
HELD_OPEN = 40.0
NIGHTLY = ["Text Writer", "Document Summary", "Long Job", "Chat Assistant", "Completion Writer"]


OPTIONS: dict[str, Any] = {"ping_interval": 0.1, "idle_close_seconds": HELD_OPEN, "event_interval": 0.002}
pytestmark = [pytest.mark.timeout(60), pytest.mark.emulator(**OPTIONS)]


def make(profile: str = "current", **options: Any) -> DifyOpenAPIEmulator:
    return DifyOpenAPIEmulator(server_profile=profile, **{**OPTIONS, **options})


@pytest.fixture
def documented() -> Iterator[DifyOpenAPIEmulator]:
    with make("documented") as emulator:
        yield emulator


def config(emu: DifyOpenAPIEmulator, token: str = ACCOUNT_TOKEN, **overrides: Any) -> DifyOpenAPIClientConfig:
    return DifyOpenAPIClientConfig(api_key=token, **{"base_url": emu.base_url, **FAST, **overrides})


@pytest.fixture
def client(emu: DifyOpenAPIEmulator) -> Iterator[DifyOpenAPIClient]:
    with DifyOpenAPIClient(config(emu)) as c:
        yield c


def http(emu: DifyOpenAPIEmulator, token: str = ACCOUNT_TOKEN) -> httpx.Client:
    return httpx.Client(base_url=emu.base_url + "/", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_default_profile_is_current() -> None:
    with DifyOpenAPIEmulator() as emulator:
        assert emulator.current and emulator.server_profile == "current"


# --- C5: app discovery ------------------------------------------------------------------------------


def test_wire_current_apps_ignore_tag_and_rows_carry_no_tags(emu: DifyOpenAPIEmulator) -> None:
    with http(emu) as c:
        everything = c.get("apps", params={"workspace_id": WORKSPACE_ID}).json()
        tagged = c.get("apps", params={"workspace_id": WORKSPACE_ID, "tag": "nightly"}).json()
        assert tagged["total"] == everything["total"] == 9, "the tag filter is ignored: every app comes back"
        assert set(tagged["data"][0]) == {
            "id",
            "name",
            "description",
            "mode",
            "updated_at",
            "workspace_id",
            "workspace_name",
        }
        bad = c.get("apps", params={"workspace_id": WORKSPACE_ID, "mode": "workflows"})
        assert bad.status_code == 422 and bad.json()["code"] == "invalid_param"  # a closed enum
        info = c.get(f"apps/{TEXT_APP_ID}", params={"fields": "info"}).json()["info"]
        assert "tags" not in info and "author" not in info and info["name"] == "Text Writer"


def test_wire_documented_apps_filter_by_tag_with_tags_and_author(documented: DifyOpenAPIEmulator) -> None:
    with http(documented) as c:
        tagged = c.get("apps", params={"workspace_id": WORKSPACE_ID, "tag": "nightly"}).json()["data"]
        assert [a["name"] for a in tagged] == NIGHTLY
        assert all({"name": "nightly"} in a["tags"] for a in tagged)
        info = c.get(f"apps/{TEXT_APP_ID}", params={"fields": "info"}).json()["info"]
        assert info["author"] and [t["name"] for t in info["tags"]] == ["emulator", "nightly"]


def test_list_apps_by_tag_on_a_current_server_raises_and_names_the_replacement(
    emu: DifyOpenAPIEmulator, requests_to
) -> None:
    from docify_provider.hooks.dify_openapi import DifyOpenAPIHook

    hook = DifyOpenAPIHook()
    hook.config = config(emu)
    with pytest.raises(DifyOpenAPITagFilterError) as caught:
        hook.list_apps(tag="nightly")
    text = str(caught.value)
    assert "tag='nightly'" in text and "no longer filters apps by tag" in text
    assert "select_apps(apps=[" in text and "name_pattern" in text, "says what to use instead"
    assert ACCOUNT_TOKEN not in text
    assert emu.runs_started() == 0 and len(requests_to(emu, "apps", 1)) == 1


def test_list_apps_by_tag_on_a_documented_server_checks_every_row(documented: DifyOpenAPIEmulator) -> None:
    with DifyOpenAPIClient(config(documented)) as c:
        tagged = c.list_apps(tag="nightly")
        assert [a.name for a in tagged] == NIGHTLY
        assert all(a.tags is not None and "nightly" in a.tags for a in tagged)
        assert c.list_apps(tag="no-such-tag") == []
    # a documented row without the tag is left out even if a server let it through
    rows = [
        AppSummary.from_api(r) for r in ({"id": "a", "name": "A", "tags": [{"name": "x"}]}, {"id": "b", "tags": []})
    ]
    assert discovery.checked_rows(rows, tag="x") == rows[:1]


def test_every_filter_is_checked_on_the_rows_that_came_back(caplog: pytest.LogCaptureFixture) -> None:
    """A server that ignored ``mode``, ``workspace_id`` or ``name`` would answer with rows that do not
    match: those rows are left out (and logged), never returned to run."""
    raw = [
        {"id": "a1", "name": "Nightly Report", "mode": "workflow", "workspace_id": "w1"},
        {"id": "a2", "name": "Chat Bot", "mode": "chat", "workspace_id": "w1"},
        {"id": "a3", "name": "Nightly Other", "mode": "workflow", "workspace_id": "w2"},
        {"id": "a4", "name": "No mode", "workspace_id": "w1"},
    ]
    rows = [AppSummary.from_api(r) for r in raw]
    assert [r.id for r in discovery.checked_rows(rows, mode="workflow")] == ["a1", "a3"]
    assert [r.id for r in discovery.checked_rows(rows, workspace_id="w1")] == ["a1", "a2", "a4"]
    assert [r.id for r in discovery.checked_rows(rows, name="nightly")] == ["a1", "a3"]
    assert [r.id for r in discovery.checked_rows(rows, mode="workflow", workspace_id="w1", name="report")] == ["a1"]
    assert "do not show the mode 'workflow'" in caplog.text


def test_list_apps_filters_checked_against_the_emulator(client: DifyOpenAPIClient, emu: DifyOpenAPIEmulator) -> None:
    assert {a.mode for a in client.list_apps(mode="workflow")} == {"workflow"}
    assert {a.name for a in client.list_apps(name="writer")} == {"Text Writer", "Completion Writer", "Disabled Writer"}
    assert all(a.workspace_id == WORKSPACE_ID for a in client.list_apps())
    assert [a.id for a in client.list_apps(name=LONG_APP_ID)] == [LONG_APP_ID]


def test_unknown_mode_named_before_anything_is_sent(client: DifyOpenAPIClient, emu: DifyOpenAPIEmulator) -> None:
    with pytest.raises(DifyOpenAPIInputError) as caught:
        client.list_apps(mode="workflows")
    assert "mode: 'workflows' is not a Dify app mode" in str(caught.value) and "advanced-chat" in str(caught.value)
    assert emu.requests == [], "nothing sent, not even the account read"


def test_select_apps_by_exact_names_ids_and_pattern(emu: DifyOpenAPIEmulator) -> None:
    from docify_provider.hooks.dify_openapi import DifyOpenAPIHook

    hook = DifyOpenAPIHook()
    hook.config = config(emu)
    picked = hook.select_apps(["Long Job", TEXT_APP_ID, "Chat Assistant"])
    assert [a.name for a in picked] == ["Text Writer", "Long Job", "Chat Assistant"]  # listing order
    assert [a.name for a in hook.select_apps(name_pattern="* Writer")] == [
        "Text Writer",
        "Completion Writer",
        "Disabled Writer",
    ]
    both = hook.select_apps(["Long Job"], name_pattern="Text *")
    assert [a.name for a in both] == ["Text Writer", "Long Job"]
    assert hook.select_apps(name_pattern="text *") == [], "the pattern is case-sensitive"
    assert [a.id for a in hook.select_apps(["Completion Writer"], mode="completion")] == [COMPLETION_APP_ID]
    with pytest.raises(DifyOpenAPIAppLookupError) as caught:
        hook.select_apps(["Long Job", "Text writer", "Nope"])
    text = str(caught.value)
    assert "no app named 'Text writer'" in text and "did you mean 'Text Writer'?" in text and "'Nope'" in text
    with pytest.raises(DifyOpenAPIInputError, match="apps / name_pattern"):
        hook.select_apps()
    with pytest.raises(DifyOpenAPIInputError, match="a list of app names"):
        hook.select_apps("Long Job")
    assert emu.runs_started() == 0


def test_select_apps_refuses_an_ambiguous_name(emu: DifyOpenAPIEmulator) -> None:
    import dataclasses

    twin_id = "a0000000-0000-4000-8000-0000000000ff"
    text = emu.openapi_apps[TEXT_APP_ID]
    emu.openapi_apps[twin_id] = dataclasses.replace(text, app_id=twin_id, code=twin_id)
    with DifyOpenAPIClient(config(emu)) as c:
        with pytest.raises(DifyOpenAPIAppLookupError, match=r"'Text Writer' names 2 apps.*give the app id"):
            discovery.select_apps(c.list_apps(), apps=["Text Writer"])
        assert [a.id for a in discovery.select_apps(c.list_apps(), apps=[twin_id])] == [twin_id]


# --- describe without tags/author ---------------------------------------------------------------------


def test_describe_works_without_tags_or_author(client: DifyOpenAPIClient) -> None:
    description = client.describe_app(TEXT_APP_ID)
    assert description.name == "Text Writer" and description.mode == "workflow" and description.input_schema
    assert "tags" not in description.raw["info"] and "author" not in description.raw["info"]


# --- C1: the worker's error frame -------------------------------------------------------------------


def test_wire_worker_rejects_inputs_after_the_200_and_keeps_the_body_open(emu: DifyOpenAPIEmulator) -> None:
    with http(emu) as c:
        with connect_sse(c, "POST", f"apps/{TEXT_APP_ID}/workflow:run", json={"inputs": {"tone": "formal"}}) as source:
            assert source.response.status_code == 200
            items = source.iter_sse()
            assert next(items).event == "ping"
            error = json.loads(next(items).data)
            assert error == {"event": "error", "message": "topic is required in input form", "status": 500}
            assert next(items).event == "ping", "the body stays open after the error frame"
    # file mappings are still built before the 200: a synchronous 400 with the real message (C6)
    with http(emu) as c:
        bad = c.post(
            f"apps/{DOCUMENT_APP_ID}/workflow:run",
            json={"inputs": {"document": {"transfer_method": "carrier_pigeon"}}},
        )
        assert bad.status_code == 400
        assert (
            bad.json()["code"] == "bad_request" and bad.json()["message"] == "Invalid transfer method: carrier_pigeon"
        )


def test_worker_error_frame_ends_the_run_at_once(
    emu: DifyOpenAPIEmulator, client: DifyOpenAPIClient, requests_to, worker_error_streams
) -> None:
    started = time.monotonic()
    with pytest.raises(DifyOpenAPIRunFailedError) as caught:
        list(client.run_app(TEXT_APP_ID, {"tone": "formal"}, validate=False))
    assert time.monotonic() - started < 10, "ended at the error frame, not at the server's idle close"
    text = str(caught.value)
    assert "topic is required in input form" in text and "rejected the run before it started" in text
    assert "not re-sent" in text and "input_schema" in text and ACCOUNT_TOKEN not in text
    assert caught.value.run_id is None and caught.value.code is None
    assert emu.runs_started(ACCOUNT_TOKEN) == 0 and len(requests_to(emu, "stream", 1)) == 1, "one run POST, no run"
    assert emu.events_requests(ACCOUNT_TOKEN) == 0, "nothing re-attached or re-sent"
    assert worker_error_streams(emu) == ["client closed"], "the client closed the connection, not the idle close"


def test_worker_error_on_valid_inputs_async(emu: DifyOpenAPIEmulator, requests_to, worker_error_streams) -> None:
    emu.inject(Fault("stream", "rejected_input", message="Model quota exhausted"))

    async def run() -> None:
        async with AsyncDifyOpenAPIClient(config(emu)) as c:
            async for _event in c.run_app(TEXT_APP_ID, {"topic": "tea"}):
                pass

    with pytest.raises(DifyOpenAPIRunFailedError, match="Model quota exhausted"):
        asyncio.run(asyncio.wait_for(run(), 15))
    assert emu.runs_started(ACCOUNT_TOKEN) == 0 and len(requests_to(emu, "stream", 1)) == 1
    assert worker_error_streams(emu) == ["client closed"], "the client closed the connection, not the idle close"


def test_run_input_value_error_is_a_400_with_the_real_message(
    emu: DifyOpenAPIEmulator, client: DifyOpenAPIClient
) -> None:
    with pytest.raises(DifyOpenAPIBadRequestError, match="Invalid transfer method: carrier_pigeon") as caught:
        list(client.run_app(DOCUMENT_APP_ID, {"document": {"transfer_method": "carrier_pigeon"}}, validate=False))
    assert caught.value.status_code == 400 and caught.value.code == "bad_request"
    assert emu.runs_started() == 0


def test_documented_input_errors_are_a_400_with_the_detail_hidden(documented: DifyOpenAPIEmulator) -> None:
    with (
        DifyOpenAPIClient(config(documented)) as c,
        pytest.raises(DifyOpenAPIBadRequestError, match="invalid run input"),
    ):
        list(c.run_app(TEXT_APP_ID, {"tone": "formal"}, validate=False))
    assert documented.runs_started() == 0


# --- C3: re-attach --------------------------------------------------------------------------------


def test_wire_finished_run_frame_carries_the_run_id_as_task_id(
    emu: DifyOpenAPIEmulator, client: DifyOpenAPIClient
) -> None:
    events = list(client.run_app(TEXT_APP_ID, {"topic": "tea"}))
    run_id, task_id = events[-1].workflow_run_id, events[0].task_id
    assert run_id and task_id and task_id != run_id
    with http(emu) as c, connect_sse(c, "GET", f"apps/{TEXT_APP_ID}/tasks/{run_id}/events") as source:
        frames = [json.loads(i.data) for i in source.iter_sse() if i.event == "message"]
    assert [f["event"] for f in frames] == ["workflow_finished"] and frames[0]["task_id"] == run_id


def test_reattach_to_a_finished_run_never_takes_the_run_id_for_a_task(
    emu: DifyOpenAPIEmulator, client: DifyOpenAPIClient
) -> None:
    events = list(client.run_app(TEXT_APP_ID, {"topic": "tea"}))
    run_id = str(events[-1].workflow_run_id)
    (finished,) = list(client.task_events(TEXT_APP_ID, run_id))
    assert finished.event == "workflow_finished" and finished.task_id is None
    assert finished.result is not None and finished.result.task_id != run_id
    followed = list(client.follow_run(TEXT_APP_ID, run_id))
    assert followed[-1].result is not None and followed[-1].result.task_id != run_id
    assert emu.stop_requests() == 0 and emu.runs_started() == 1


def test_continue_on_pause_reattach_ends_at_workflow_finished(
    emu: DifyOpenAPIEmulator, client: DifyOpenAPIClient
) -> None:
    paused = list(client.run_app(HUMAN_INPUT_APP_ID, {"topic": "launch"}))[-1]
    run_id = str(paused.workflow_run_id)
    token = str(paused.forms[0].form_token)
    seen: list[str] = []
    failure: list[BaseException] = []

    def follow() -> None:
        try:
            for event in client.task_events(HUMAN_INPUT_APP_ID, run_id, continue_on_pause=True):
                seen.append(event.event)
        except BaseException as exc:  # reported below
            failure.append(exc)

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    deadline = time.monotonic() + 5
    while emu.events_requests(ACCOUNT_TOKEN) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # subscribed: the resumed run's events go to this stream
    started = time.monotonic()
    emu.answer_in_ui(token, "approve", {"comment": "fine"})
    reader.join(10)
    assert not reader.is_alive(), "the client must end at workflow_finished; the server holds the body open"
    assert time.monotonic() - started < 10 and not failure, failure
    assert seen[0] == "workflow_started" and seen[-1] == "workflow_finished"
    assert emu.runs_started() == 1


@pytest.mark.parametrize("profile", ["current", "documented"])
def test_cli_server_profile(profile: str) -> None:
    """``--server-profile`` applies to ``--mode dify-openapi`` too (app rows: tags only as documented)."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "docify_provider.testing", "--mode", "dify-openapi", "--port", "0"]
    proc = subprocess.Popen([*command, "--server-profile", profile], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("Dify OpenAPI emulator (current paths")
        assert ("documented server" in first) == (profile == "documented"), first
        base = first.split(": ", 1)[1].strip()
        headers = {"Authorization": f"Bearer {ACCOUNT_TOKEN}"}
        rows = httpx.get(base + "/apps", params={"workspace_id": WORKSPACE_ID}, headers=headers, timeout=10)
        assert rows.status_code == 200
        assert ("tags" in rows.json()["data"][0]) == (profile == "documented")
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


# --- C6: run-level rules (the run engine the Service API shares) -----------------------------------


def _paused_run(emu: DifyOpenAPIEmulator) -> tuple[str, str, str]:
    """A paused human-input run started over the OpenAPI: (run id, task id, form token)."""
    with DifyOpenAPIClient(config(emu)) as c:
        paused = list(c.run_app(HUMAN_INPUT_APP_ID, {"topic": "launch"}))[-1]
    assert paused.event == "workflow_paused"
    return str(paused.workflow_run_id), str(paused.task_id), str(paused.forms[0].form_token)


@pytest.mark.parametrize("profile", ["current", "documented"])
def test_wire_stop_of_a_paused_account_run(profile: str) -> None:
    """C6 on the account API too: a paused run has no live engine, so a current server's stop
    answers success and the run stays ``paused``; the documents' stop ends it ``stopped``."""
    with make(profile) as emu:
        run_id, task_id, _ = _paused_run(emu)
        with http(emu) as c:
            r = c.post(f"apps/{HUMAN_INPUT_APP_ID}/tasks/{task_id}:stop")
        assert r.status_code == 200 and r.json() == {"result": "success"}
        assert emu.stop_requests(ACCOUNT_TOKEN, app=HUMAN_INPUT_APP_ID) == 1
        if profile == "current":
            time.sleep(0.2)
            assert emu.run(run_id).status == "paused"
        else:
            assert emu.wait_run_finished(run_id, timeout=5).status == "stopped"


@pytest.mark.parametrize("profile", ["current", "documented"])
def test_wire_resumed_node_is_re_announced_on_the_reattach_stream(profile: str) -> None:
    """C6 on the account API's re-attach stream: a current server sends ``node_started`` of the
    resumed node before ``human_input_form_filled``; the documents send the filled form first."""
    with make(profile) as emu:
        run_id, _, token = _paused_run(emu)
        frames: list[dict[str, Any]] = []
        params = {"include_state_snapshot": "true", "continue_on_pause": "true"}

        def reattach() -> None:
            with (
                http(emu) as c,
                connect_sse(c, "GET", f"apps/{HUMAN_INPUT_APP_ID}/tasks/{run_id}/events", params=params) as source,
            ):
                for item in source.iter_sse():
                    if item.event == "message":
                        frames.append(json.loads(item.data))
                        if frames[-1]["event"] == "workflow_finished":
                            return

        reader = threading.Thread(target=reattach, daemon=True)
        reader.start()
        deadline = time.monotonic() + 5
        while emu.events_requests(ACCOUNT_TOKEN) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # subscribed: the resumed run's events go to this stream
        emu.answer_in_ui(token, "approve", {"comment": "fine"})
        reader.join(10)
        names = [f["event"] for f in frames]
        resumed = names[names.index("workflow_paused") + 1 :]
        assert resumed[0] == "workflow_started", names
        expected = ["node_started", "human_input_form_filled"] if profile == "current" else ["human_input_form_filled"]
        assert resumed[1 : 1 + len(expected)] == expected, names


# --- C4: pause reasons keyed TYPE -------------------------------------------------------------------


def test_pause_reasons_keyed_type_or_upper_case_type(emu: DifyOpenAPIEmulator, documented: DifyOpenAPIEmulator) -> None:
    for server, key in ((emu, "TYPE"), (documented, "type")):
        with (
            http(server) as c,
            connect_sse(
                c, "POST", f"apps/{HUMAN_INPUT_APP_ID}/workflow:run", json={"inputs": {"topic": "x"}}
            ) as source,
        ):
            frames = [json.loads(i.data) for i in source.iter_sse() if i.event == "message"]
        (reason,) = frames[-1]["data"]["reasons"]
        assert reason[key] == "human_input_required" and ({"type", "TYPE"} - {key}).isdisjoint(reason)
        with DifyOpenAPIClient(config(server)) as c:
            paused = list(c.run_app(HUMAN_INPUT_APP_ID, {"topic": "launch"}))[-1]
            (form,) = paused.forms
            assert form.form_token and form.kind == "human_input_required"
            c.submit_form(HUMAN_INPUT_APP_ID, str(form.form_token), "approve", {"comment": "ok"})
            rest = list(c.task_events(HUMAN_INPUT_APP_ID, str(paused.workflow_run_id), include_state_snapshot=True))
            assert rest[-1].event == "workflow_finished" and rest[-1].result is not None
            assert rest[-1].result.status == "succeeded"


# --- C6: 401s ---------------------------------------------------------------------------------------


def test_expired_token_names_the_hint_and_airflow_dify_login(emu: DifyOpenAPIEmulator) -> None:
    expired = emu.issue_token(ACCOUNT_ID, ttl=-1, device_label="lapsed")
    with http(emu, expired) as c:
        body = c.get("account").json()
    assert body["code"] == "token_expired" and body["hint"].startswith("Re-authenticate")
    expired = emu.issue_token(ACCOUNT_ID, ttl=-1, device_label="lapsed again")
    with DifyOpenAPIClient(config(emu, expired)) as c, pytest.raises(DifyOpenAPIAuthenticationError) as caught:
        list(c.run_app(TEXT_APP_ID, {"topic": "tea"}))
    text = str(caught.value)
    assert caught.value.code == "token_expired" and caught.value.status_code == 401
    assert "expired" in text and "hint: Re-authenticate to continue" in text
    assert "airflow-dify login" in text and "difyctl" not in text and expired not in text
    assert emu.runs_started() == 0


def test_unknown_token_is_unauthorized_and_points_to_airflow_dify_login(emu: DifyOpenAPIEmulator) -> None:
    unknown = "dfoa_" + "u" * 43
    with http(emu, unknown) as c:
        body = c.get("account").json()
    assert body == {"code": "unauthorized", "message": "Invalid or unknown bearer token.", "status": 401}
    with DifyOpenAPIClient(config(emu, unknown)) as c, pytest.raises(DifyOpenAPIAuthenticationError) as caught:
        c.get_account()
    text = str(caught.value)
    assert "Invalid or unknown bearer token." in text and "Log in again with `airflow-dify login`" in text
    assert "difyctl" not in text and unknown not in text


# --- sans-IO: what the client makes of either wire ------------------------------------------------


def test_events_read_the_same_from_either_server() -> None:
    """The shared models (``docify_provider.dify.models``, read by both clients) own both rules."""
    from docify_provider.dify.models import WorkflowEvent, reason_kind

    assert reason_kind({"TYPE": "human_input_required"}) == reason_kind({"type": "human_input_required"})
    for key in ("TYPE", "type"):
        reasons = [{key: "human_input_required", "form_token": "f"}, {key: "scheduled_pause"}]
        paused = WorkflowEvent.from_api(
            {"event": "workflow_paused", "task_id": "t", "workflow_run_id": "r", "data": {"reasons": reasons}}
        )
        assert [(f.kind, f.form_token) for f in paused.forms] == [("human_input_required", "f")]
    finished = {"event": "workflow_finished", "workflow_run_id": "r", "data": {"id": "r", "status": "succeeded"}}
    same = WorkflowEvent.from_api({**finished, "task_id": "r"})
    assert same.task_id is None and same.raw["task_id"] is None, "the run id is never kept as a task id"
    assert same.run is not None and same.run.task_id is None and same.run.raw["task_id"] is None
    own = WorkflowEvent.from_api({**finished, "task_id": "t"})
    assert own.task_id == "t" and own.raw["task_id"] == "t", "a real task id is kept"


def test_401_wording_names_this_package_login() -> None:
    from docify_provider._core.endpoints import Endpoint
    from docify_provider.dify_openapi.errors import error_for_status

    endpoint = Endpoint("account", "GET", "/account", repeatable=True)
    body = {"code": "token_expired", "message": "Token expired", "status": 401, "hint": "Re-authenticate to continue"}
    expired = error_for_status(401, json.dumps(body).encode(), httpx.Headers(), endpoint)
    assert isinstance(expired, DifyOpenAPIAuthenticationError) and expired.code == "token_expired"
    assert "expired" in str(expired) and "hint: Re-authenticate to continue" in str(expired)
    assert "airflow-dify login" in str(expired) and "difyctl" not in str(expired)
