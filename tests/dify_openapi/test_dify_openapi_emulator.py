"""The bundled Dify user-scoped OpenAPI emulator, observed over real sockets with httpx and httpx-sse.

A run that has started (stop, re-attach, human-input forms) is in
``test_dify_openapi_emulator_runs_in_progress.py``; the wire helpers both files use are in
``tests/dify_openapi_emulator_http.py``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import jsonschema
import pytest
from httpx_sse import ServerSentEvent, connect_sse

from docify_provider.testing import Fault
from docify_provider.testing.dify_openapi import (
    ACCOUNT_EMAIL,
    ACCOUNT_ID,
    ACCOUNT_TOKEN,
    ADVANCED_CHAT_APP_ID,
    CHAT_APP_ID,
    COMPLETION_APP_ID,
    DISABLED_APP_ID,
    DOCUMENT_APP_ID,
    FOREIGN_APP_ID,
    FOREIGN_WORKSPACE_ID,
    HUMAN_INPUT_APP_ID,
    LONG_APP_ID,
    OTHER_ACCOUNT_TOKEN,
    SECOND_WORKSPACE_APP_ID,
    SECOND_WORKSPACE_ID,
    TEXT_APP_ID,
    TWO_FORMS_APP_ID,
    WORKSPACE_ID,
    DifyOpenAPIEmulator,
)
from helpers import auth
from tests.dify_openapi_emulator_http import (
    GENERATIONS,
    OPTIONS,
    TEXT,
    client,
    describe_path,
    error_body,
    form_path,
    make,
    names,
    run,
    run_path,
    sse,
    start_long,
    stop_path,
)

pytestmark = pytest.mark.emulator(**OPTIONS, each=("paths", GENERATIONS))


@pytest.fixture(params=GENERATIONS)
def documented(request: pytest.FixtureRequest) -> Iterator[DifyOpenAPIEmulator]:
    """Either path generation, answering as Dify's documents say (``server_profile="documented"``)."""
    with make(request.param, server_profile="documented") as emulator:
        yield emulator


@pytest.fixture
def current() -> Iterator[DifyOpenAPIEmulator]:
    with make("current") as emulator:
        yield emulator


@pytest.fixture
def legacy() -> Iterator[DifyOpenAPIEmulator]:
    with make("legacy") as emulator:
        yield emulator


# probes and generations ----------------------------------------------------------------------
def test_probes_and_versions(emu: DifyOpenAPIEmulator) -> None:
    with client(emu, None) as c:
        assert c.get("_health").json() == {"ok": True}
        version = c.get("_version").json()
        assert version == {"version": "1.18.0" if emu.paths == "current" else "1.14.0", "edition": "SELF_HOSTED"}
        catalog = c.get("_catalog")
        paths = {op["path"] for op in catalog.json()["operations"]}
        assert ("/apps/{app_id}/workflow:run" in paths) is (emu.paths == "current")
        assert ("X-Dify-Catalog" in catalog.headers) is (emu.paths == "current")
        if emu.paths == "current":
            assert catalog.headers["X-Dify-Catalog"] == hashlib.sha256(catalog.content).hexdigest()


def test_other_generation_paths_404_with_error_body(emu: DifyOpenAPIEmulator) -> None:
    other = make("legacy" if emu.paths == "current" else "current")
    with client(emu) as c:
        probes = [
            ("GET", describe_path(other, TEXT_APP_ID)),
            ("POST", run_path(other, TEXT_APP_ID)),
            ("POST", stop_path(other, TEXT_APP_ID, "t1")),
            ("GET", form_path(other, HUMAN_INPUT_APP_ID, "tok")),
        ]
        for method, path in probes:
            error_body(c.request(method, path, json={"inputs": {}}), 404, "not_found")
        assert c.get(describe_path(emu, TEXT_APP_ID)).status_code == 200
        error_body(c.get("nowhere"), 404, "not_found")
        error_body(c.delete("apps"), 405, "method_not_allowed")


# auth --------------------------------------------------------------------------------------------
def test_bearer_required_unknown_revoked_expired_as_documented() -> None:
    with make("current", server_profile="documented") as current, client(current, None) as c:
        error_body(c.get("account"), 401, "unauthorized", "bearer required")
        error_body(c.get("account", headers={"Authorization": "Basic abc"}), 401, "unauthorized")
        error_body(c.get("account", headers=auth("app-NotAnAccountToken")), 401, "unauthorized", "invalid_bearer")
        error_body(c.get("account", headers=auth("dfoa_" + "x" * 43)), 401, "unauthorized")
        token = current.issue_token(device_label="laptop")
        assert c.get("account", headers=auth(token)).status_code == 200
        assert c.delete("account/sessions/self", headers=auth(token)).json() == {"status": "revoked"}
        error_body(c.get("account", headers=auth(token)), 401, "unauthorized")
        first, rotated = current.issue_token(device_label="desk"), current.issue_token(device_label="desk")
        error_body(c.get("account", headers=auth(first)), 401, "unauthorized")  # a re-login revokes the old row
        assert c.get("account", headers=auth(rotated)).status_code == 200
        short = current.issue_token(ttl=0.3, device_label="short")
        assert c.get("account", headers=auth(short)).status_code == 200
        time.sleep(0.4)
        error_body(c.get("account", headers=auth(short)), 401, "unauthorized")


def test_rate_limit_is_raw_429_per_token() -> None:
    with make(rate_limit_per_token=3, rate_limit_window=1.0) as emu, client(emu) as c:
        assert [c.get("account").status_code for _ in range(3)] == [200, 200, 200]
        limited = c.get("account")
        assert limited.status_code == 429
        body = limited.json()
        assert set(body) == {"error", "retry_after_ms"} and body["error"] == "rate_limited"
        assert 0 < body["retry_after_ms"] <= 1000 and limited.headers["Retry-After"] == "1"
        assert c.get("account", headers=auth(OTHER_ACCOUNT_TOKEN)).status_code == 200
        time.sleep(body["retry_after_ms"] / 1000 + 0.05)
        assert c.get("account").status_code == 200


# account, sessions, workspaces ------------------------------------------------------------------
def test_account_and_sessions(emu: DifyOpenAPIEmulator) -> None:
    with client(emu) as c:
        account = c.get("account").json()
        assert account["subject_type"] == "account" and account["subject_email"] == ACCOUNT_EMAIL
        assert account["account"]["id"] == ACCOUNT_ID and account["default_workspace_id"] == WORKSPACE_ID
        assert {w["id"] for w in account["workspaces"]} == {WORKSPACE_ID, SECOND_WORKSPACE_ID}
        extra = [emu.issue_token(device_label=f"d{i}") for i in range(3)]
        page = c.get("account/sessions", params={"limit": 2}).json()
        assert page["total"] == 4 and page["has_more"] and len(page["data"]) == 2 and page["limit"] == 2
        row = page["data"][0]
        assert {"id", "client_id", "device_label", "prefix", "expires_at"} <= set(row)
        assert all(not r["prefix"].endswith(extra[0][9:]) for r in page["data"])  # a prefix, not the token
        target = next(s for s in c.get("account/sessions").json()["data"] if s["device_label"] == "d1")
        assert c.delete(f"account/sessions/{target['id']}").json() == {"status": "revoked"}
        error_body(c.get("account", headers=auth(extra[1])), 401, "unauthorized")
        assert c.get("account", headers=auth(extra[0])).status_code == 200
        error_body(c.delete("account/sessions/nope"), 404, "not_found")


def test_workspaces(emu: DifyOpenAPIEmulator) -> None:
    with client(emu) as c:
        listing = c.get("workspaces").json()
        items = listing["workspaces"] if emu.paths == "legacy" else listing["data"]
        if emu.paths == "current":
            assert listing["total"] == 2 and listing["has_more"] is False
        assert {(w["id"], w["current"]) for w in items} == {(WORKSPACE_ID, True), (SECOND_WORKSPACE_ID, False)}
        detail = c.get(f"workspaces/{SECOND_WORKSPACE_ID}").json()
        assert detail["role"] == "normal" and detail["status"] == "normal" and "created_at" in detail
        error_body(c.get(f"workspaces/{FOREIGN_WORKSPACE_ID}"), 404, "not_found")
        error_body(c.get("permitted-external-apps"), 403, "forbidden", "unsupported_token_type")
        switch = c.post(f"workspaces/{SECOND_WORKSPACE_ID}:switch")
        if emu.paths == "legacy":
            error_body(switch, 404, "not_found")
        else:
            assert switch.json()["current"] is True
            assert c.get("account").json()["default_workspace_id"] == SECOND_WORKSPACE_ID
            error_body(c.post(f"workspaces/{FOREIGN_WORKSPACE_ID}:switch"), 404, "not_found")


# apps --------------------------------------------------------------------------------------------
def test_app_list_filters_and_pages_as_documented(documented: DifyOpenAPIEmulator) -> None:
    emu = documented
    with client(emu) as c:
        body = error_body(c.get("apps"), 422, "invalid_param", "Request validation failed")
        assert body["details"][0]["loc"] == ["workspace_id"]
        error_body(c.get("apps", params={"workspace_id": "nope"}), 422, "invalid_param")
        error_body(c.get("apps", params={"workspace_id": FOREIGN_WORKSPACE_ID}), 404, "not_found")
        everything = c.get("apps", params={"workspace_id": WORKSPACE_ID}).json()
        assert everything["total"] == 9 and everything["page"] == 1
        assert {"id", "name", "mode", "tags", "updated_at", "workspace_id", "workspace_name"} <= set(
            everything["data"][0]
        )
        nightly = c.get("apps", params={"workspace_id": WORKSPACE_ID, "tag": "nightly"}).json()
        assert [a["name"] for a in nightly["data"]] == [
            "Text Writer",
            "Document Summary",
            "Long Job",
            "Chat Assistant",
            "Completion Writer",
        ]
        chats = c.get("apps", params={"workspace_id": WORKSPACE_ID, "mode": "chat"}).json()["data"]
        assert [a["id"] for a in chats] == [CHAT_APP_ID]
        error_body(c.get("apps", params={"workspace_id": WORKSPACE_ID, "mode": "robot"}), 422, "invalid_param")
        by_id = c.get("apps", params={"workspace_id": WORKSPACE_ID, "name": LONG_APP_ID}).json()["data"]
        assert [a["name"] for a in by_id] == ["Long Job"]
        by_name = c.get("apps", params={"workspace_id": WORKSPACE_ID, "name": "review"}).json()["data"]
        assert {a["id"] for a in by_name} == {HUMAN_INPUT_APP_ID, TWO_FORMS_APP_ID}
        page2 = c.get("apps", params={"workspace_id": WORKSPACE_ID, "limit": 4, "page": 3}).json()
        assert len(page2["data"]) == 1 and page2["has_more"] is False
        page1 = c.get("apps", params={"workspace_id": WORKSPACE_ID, "limit": 4}).json()
        assert page1["has_more"] is True
        over = c.get("apps", params={"workspace_id": WORKSPACE_ID, "limit": 150})
        assert over.status_code == (200 if emu.paths == "legacy" else 422)
        error_body(c.get("apps", params={"workspace_id": WORKSPACE_ID, "limit": 0}), 422, "invalid_param")
        second = c.get("apps", params={"workspace_id": SECOND_WORKSPACE_ID}).json()["data"]
        assert [a["id"] for a in second] == [SECOND_WORKSPACE_APP_ID]


def test_describe_as_documented(documented: DifyOpenAPIEmulator) -> None:
    emu = documented
    with client(emu) as c:
        full = c.get(describe_path(emu, DOCUMENT_APP_ID)).json()
        assert {"info", "parameters", "input_schema"} <= set(full)
        assert full["info"]["mode"] == "workflow" and full["info"]["service_api_enabled"] is True
        assert [t["name"] for t in full["info"]["tags"]] == ["emulator", "nightly"]
        form = full["parameters"]["user_input_form"]
        assert form[0]["file"]["variable"] == "document" and "system_parameters" in full["parameters"]
        schema = full["input_schema"]
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        inputs = schema["properties"]["inputs"]
        assert inputs["additionalProperties"] is False and inputs["required"] == ["document"]
        assert inputs["properties"]["document"]["type"] == "object"
        assert (
            inputs["properties"]["attachments"]["type"] == "array"
            and inputs["properties"]["attachments"]["maxItems"] == 3
        )
        assert "query" not in schema["properties"]
        validator = jsonschema.Draft202012Validator(schema)
        validator.validate({"inputs": {"document": {"transfer_method": "local_file", "upload_file_id": "x"}}})
        assert not validator.is_valid({"inputs": {"document": {"transfer_method": "x"}, "other": 1}})
        repeated = c.get(describe_path(emu, CHAT_APP_ID), params=[("fields", "info"), ("fields", "parameters")]).json()
        assert set(repeated) - {"hints"} == {"info", "parameters"}
        chat = c.get(describe_path(emu, CHAT_APP_ID), params={"fields": "info,input_schema"}).json()
        assert set(chat) - {"hints"} == {"info", "input_schema"}
        assert chat["input_schema"]["properties"]["query"] == {"type": "string", "minLength": 1}
        assert "query" in chat["input_schema"]["required"]
        advanced = c.get(describe_path(emu, ADVANCED_CHAT_APP_ID), params={"fields": "info"}).json()
        assert advanced["info"]["is_agent"] is True  # Dify's oddity
        text = c.get(describe_path(emu, TEXT_APP_ID), params={"fields": "input_schema"}).json()["input_schema"]
        assert text["properties"]["inputs"]["properties"]["tone"]["enum"] == ["neutral", "formal", "casual"]
        assert text["properties"]["inputs"]["properties"]["topic"]["maxLength"] == 200
        bad = error_body(
            c.get(describe_path(emu, TEXT_APP_ID), params={"fields": "info,secrets"}), 422, "invalid_param"
        )
        assert bad["details"][0]["loc"] == ["fields", 1]
        disabled = c.get(describe_path(emu, DISABLED_APP_ID), params={"fields": "info"}).json()
        assert disabled["info"]["service_api_enabled"] is False
        error_body(c.get(describe_path(emu, FOREIGN_APP_ID)), 404, "not_found")
        error_body(
            c.get(describe_path(emu, TEXT_APP_ID), params={"workspace_id": SECOND_WORKSPACE_ID}), 404, "not_found"
        )


# runs --------------------------------------------------------------------------------------------
def test_workflow_run_sse_framing_and_counters(emu: DifyOpenAPIEmulator) -> None:
    with client(emu) as c:
        with c.stream("POST", run_path(emu, TEXT_APP_ID), json={"inputs": TEXT}) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            raw = response.read()
        frames = raw.split(b"\n\n")
        assert frames[0] == b"event: ping" and frames[-1] == b""
        assert all(f.startswith(b"data: {") for f in frames[1:-1] if f != b"event: ping")
        assert b"event: message" not in raw and b"id:" not in raw
        _, events = run(emu, c)
        started, finished = events[0], events[-1]
        assert started["event"] == "workflow_started" and started["task_id"] and started["workflow_run_id"]
        assert started["data"]["reason"] == "initial"
        assert finished["event"] == "workflow_finished" and finished["data"]["status"] == "succeeded"
        text = "".join(e["data"]["text"] for e in events if e["event"] == "text_chunk")
        assert finished["data"]["outputs"]["text"] == text and text.startswith("Formal notes on tea")
        llm = next(e for e in events if e["event"] == "node_finished" and e["data"]["node_type"] == "llm")
        assert llm["data"]["execution_metadata"]["total_tokens"] > 0
        run(emu, c, app_id=LONG_APP_ID, inputs={"seconds": 0})
        with client(emu, OTHER_ACCOUNT_TOKEN) as other:
            run(emu, other)
    assert emu.runs_started() == 4
    assert emu.runs_started(ACCOUNT_TOKEN) == 3 and emu.runs_started(OTHER_ACCOUNT_TOKEN) == 1
    assert emu.runs_started(app=TEXT_APP_ID) == 3 and emu.runs_started(ACCOUNT_TOKEN, app=LONG_APP_ID) == 1


def test_pings_while_silent_and_idle_close() -> None:
    with make(ping_interval=0.1, idle_close_seconds=0.6) as emu, client(emu) as c:
        items, events = sse(c, "POST", run_path(emu, LONG_APP_ID), json={"inputs": {"seconds": 2, "steps": 1}})
        pings = [i for i in items if i.event == "ping"]
        assert len(pings) >= 4 and items[0].event == "ping"
        assert "workflow_finished" not in names(events)  # the body just ended (idle close)
        assert emu.wait_run_finished(events[0]["workflow_run_id"]).status == "succeeded"


def test_run_payload_checks_as_documented(documented: DifyOpenAPIEmulator) -> None:
    emu = documented
    legacy = emu.paths == "legacy"
    with client(emu) as c:
        bad = error_body(c.post(run_path(emu, TEXT_APP_ID), json={"inputs": TEXT, "user": "u1"}), 422, "invalid_param")
        assert bad["details"] == [{"type": "extra_forbidden", "loc": ["user"], "msg": "Extra inputs are not permitted"}]
        missing = error_body(c.post(run_path(emu, TEXT_APP_ID), json={}), 422, "invalid_param")
        assert missing["details"][0]["loc"] == ["inputs"]
        query_on_workflow = c.post(run_path(emu, TEXT_APP_ID), json={"inputs": TEXT, "query": "hi"})
        if legacy:
            error_body(query_on_workflow, 422, "invalid_param", "query_not_supported_for_workflow")
        else:
            assert error_body(query_on_workflow, 422, "invalid_param")["details"][0]["loc"] == ["query"]
        no_query = c.post(run_path(emu, CHAT_APP_ID, "chat"), json={"inputs": {}})
        if legacy:
            error_body(no_query, 422, "invalid_param", "query_required_for_chat")
        else:
            assert error_body(no_query, 422, "invalid_param")["details"][0]["loc"] == ["query"]
        error_body(
            c.post(run_path(emu, TEXT_APP_ID), json={"inputs": {"tone": "formal"}}),
            400,
            "bad_request",
            "invalid run input",
        )
        error_body(
            c.post(run_path(emu, DISABLED_APP_ID), json={"inputs": TEXT}), 403, "forbidden", "service_api_disabled"
        )
        error_body(c.post(run_path(emu, FOREIGN_APP_ID), json={"inputs": TEXT}), 404, "not_found")
        wrong_ws = {"inputs": TEXT, "workspace_id": SECOND_WORKSPACE_ID}
        error_body(c.post(run_path(emu, TEXT_APP_ID), json=wrong_ws), 404, "not_found")
        error_body(
            c.post(run_path(emu, TEXT_APP_ID), content=b"{nope", headers={"Content-Type": "application/json"}),
            422,
            "invalid_param",
        )
    assert emu.runs_started() == 0


def test_current_mode_routes(current: DifyOpenAPIEmulator) -> None:
    with client(current) as c:
        for app_id, route in ((TEXT_APP_ID, "chat"), (CHAT_APP_ID, "workflow"), (COMPLETION_APP_ID, "advanced-chat")):
            error_body(
                c.post(f"apps/{app_id}/{route}:run", json={"inputs": TEXT}), 422, "invalid_param", "app_mode_mismatch"
            )
        _, events = sse(c, "POST", f"apps/{TEXT_APP_ID}:run", json={"inputs": TEXT})  # the deprecated route
        assert events[-1]["event"] == "workflow_finished"
        error_body(c.post(f"apps/{TEXT_APP_ID}/agent:run", json={"inputs": TEXT}), 404, "not_found")


def test_chat_advanced_chat_and_completion(emu: DifyOpenAPIEmulator) -> None:
    with client(emu) as c:
        _, chat = sse(c, "POST", run_path(emu, CHAT_APP_ID, "chat"), json={"inputs": {}, "query": "Quoi de neuf ?"})
        assert names(chat)[-1] == "message_end" and "workflow_started" not in names(chat)
        answer = "".join(e["answer"] for e in chat if e["event"] == "message")
        assert "Quoi de neuf ?" in answer
        conversation = chat[0]["conversation_id"]
        assert all(e["conversation_id"] == conversation for e in chat)
        assert chat[-1]["metadata"]["usage"]["total_tokens"] > 0
        assert chat[-1]["hints"][0]["summary"] == "Reply in this conversation"
        body = {"inputs": {}, "query": "encore", "conversation_id": conversation}
        _, again = sse(c, "POST", run_path(emu, CHAT_APP_ID, "chat"), json=body)
        assert again[0]["conversation_id"] == conversation and again[0]["message_id"] != chat[0]["message_id"]
        unknown = {"inputs": {}, "query": "x", "conversation_id": "00000000-0000-4000-8000-000000000000"}
        error_body(c.post(run_path(emu, CHAT_APP_ID, "chat"), json=unknown), 404, "not_found")
        _, adv = sse(
            c, "POST", run_path(emu, ADVANCED_CHAT_APP_ID, "advanced-chat"), json={"inputs": {}, "query": "hi"}
        )
        assert names(adv)[0] == "workflow_started" and names(adv)[-2:] == ["workflow_finished", "message_end"]
        assert adv[-2]["data"]["outputs"]["answer"] == "".join(e["answer"] for e in adv if e["event"] == "message")
        _, completion = sse(
            c, "POST", run_path(emu, COMPLETION_APP_ID, "completion"), json={"inputs": {"topic": "jam"}}
        )
        assert names(completion)[-1] == "message_end" and "jam" in "".join(e.get("answer", "") for e in completion)


def test_multipart_run_uploads_file_parts(emu: DifyOpenAPIEmulator) -> None:
    with client(emu) as c:
        files = [
            ("files[document]", ("report.pdf", b"%PDF-1.4 hello", "application/pdf")),
            ("files[attachments]", ("a.png", b"\x89PNG....", "image/png")),
            ("files[attachments]", ("b.txt", b"notes", "text/plain")),
        ]
        data = {"inputs": json.dumps({})}
        _, events = sse(c, "POST", run_path(emu, DOCUMENT_APP_ID), data=data, files=files)
        assert events[-1]["data"]["status"] == "succeeded", events[-1]
        assert "1 attachment" not in events[-1]["data"]["outputs"]["summary"]
        assert "2 attachment(s)" in events[-1]["data"]["outputs"]["summary"]
        assert "report.pdf: 14 bytes" in json.dumps(events)
    assert [u.file_name for u in emu.uploads] == ["report.pdf", "a.png", "b.txt"]


def test_stream_fault_drops_connection_while_run_goes_on(emu: DifyOpenAPIEmulator) -> None:
    emu.inject(Fault("stream", "drop_mid_stream", after_events=2))
    with client(emu) as c:
        received: list[dict] = []
        with (
            pytest.raises(httpx.HTTPError),
            connect_sse(c, "POST", run_path(emu, TEXT_APP_ID), json={"inputs": TEXT}) as source,
        ):
            for item in source.iter_sse():
                if item.event == "message":
                    received.append(json.loads(item.data))
        assert len(received) == 2
        assert emu.wait_run_finished(received[0]["workflow_run_id"]).status == "succeeded"
        emu.inject(Fault("apps", "status", status=503))
        error_body(
            c.get("apps", params={"workspace_id": WORKSPACE_ID}), 503, "service_unavailable", "Internal Server Error"
        )


# device flow -------------------------------------------------------------------------------------
def test_device_flow(emu: DifyOpenAPIEmulator) -> None:
    with client(emu, None) as c:
        assert c.post("oauth/device/code", json={"client_id": "evil", "device_label": "x"}).json() == {
            "error": "unsupported_client"
        }
        code = c.post("oauth/device/code", json={"client_id": "difyctl", "device_label": "ci"}).json()
        assert code["device_code"].startswith("dc_") and code["interval"] == 0.5 and code["expires_in"] == 900
        assert (
            len(code["user_code"]) == 9 and code["user_code"][4] == "-" and code["verification_uri"].endswith("/device")
        )
        poll = {"device_code": code["device_code"], "client_id": "difyctl"}
        first = c.post("oauth/device/token", json=poll)
        assert (first.status_code, first.json()) == (400, {"error": "authorization_pending"})
        assert c.post("oauth/device/token", json=poll).json() == {"error": "slow_down"}
        lookup = c.get("oauth/device/lookup", params={"user_code": code["user_code"]}).json()
        assert lookup == {"valid": True, "expires_in_remaining": 900, "client_id": "difyctl"}
        assert c.post("oauth/device/approve", json={"user_code": code["user_code"]}).json() == {"status": "approved"}
        again = c.post("oauth/device/approve", json={"user_code": code["user_code"]})
        assert (again.status_code, again.json()) == (409, {"error": "already_resolved"})
        time.sleep(0.55)
        granted = c.post("oauth/device/token", json=poll)
        assert granted.status_code == 200
        body = granted.json()
        assert body["token"].startswith("dfoa_") and len(body["token"]) == 5 + 43 and body["subject_type"] == "account"
        assert body["account"]["id"] == ACCOUNT_ID and body["default_workspace_id"] == WORKSPACE_ID and body["token_id"]
        assert {w["id"] for w in body["workspaces"]} == {WORKSPACE_ID, SECOND_WORKSPACE_ID} and body["expires_at"]
        time.sleep(0.55)
        assert c.post("oauth/device/token", json=poll).json() == {"error": "expired_token"}
        assert c.get("account", headers=auth(body["token"])).json()["account"]["id"] == ACCOUNT_ID
        sessions = c.get("account/sessions", headers=auth(body["token"])).json()["data"]
        assert any(s["id"] == body["token_id"] and s["device_label"] == "ci" for s in sessions)
        denied = c.post("oauth/device/code", json={"client_id": "difyctl", "device_label": "ci2"}).json()
        emu.deny(denied["user_code"])
        assert c.post(
            "oauth/device/token", json={"device_code": denied["device_code"], "client_id": "difyctl"}
        ).json() == {"error": "access_denied"}
        unknown = c.post("oauth/device/deny", json={"user_code": "ZZZZ-ZZZZ"})
        assert (unknown.status_code, unknown.json()) == (404, {"error": "expired_or_unknown"})
        assert c.post("oauth/device/token", json={"device_code": "dc_nope", "client_id": "difyctl"}).json() == {
            "error": "expired_token"
        }


def test_device_code_expiry_token_ttl_and_python_approve() -> None:
    with make(device_code_ttl=0.3, token_ttl=0.5) as emu, client(emu, None) as c:
        stale = c.post("oauth/device/code", json={"client_id": "difyctl", "device_label": "a"}).json()
        time.sleep(0.35)
        assert c.post(
            "oauth/device/token", json={"device_code": stale["device_code"], "client_id": "difyctl"}
        ).json() == {"error": "expired_token"}
        assert c.get("oauth/device/lookup", params={"user_code": stale["user_code"]}).json()["valid"] is False
        code = c.post("oauth/device/code", json={"client_id": "difyctl", "device_label": "b"}).json()
        emu.approve(code["user_code"])
        token = c.post("oauth/device/token", json={"device_code": code["device_code"], "client_id": "difyctl"}).json()[
            "token"
        ]
        assert c.get("account", headers=auth(token)).status_code == 200
        time.sleep(0.55)
        expired = error_body(c.get("account", headers=auth(token)), 401, "token_expired")
        assert expired["hint"].startswith("Re-authenticate")


# fixture and CLI ---------------------------------------------------------------------------------
def test_fixture(dify_openapi_emulator: DifyOpenAPIEmulator) -> None:
    assert dify_openapi_emulator.base_url.endswith("/openapi/v1") and dify_openapi_emulator.paths == "current"
    response = httpx.get(dify_openapi_emulator.base_url + "/account", headers=auth(ACCOUNT_TOKEN))
    assert response.json()["account"]["email"] == ACCOUNT_EMAIL


@pytest.mark.parametrize("paths", GENERATIONS)
def test_cli_dify_openapi_mode(paths: str) -> None:
    command = [
        sys.executable,
        "-m",
        "docify_provider.testing",
        "--mode",
        "dify-openapi",
        "--port",
        "0",
        "--paths",
        paths,
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(f"Dify OpenAPI emulator ({paths} paths): http://127.0.0.1:")
        base = first.split(": ", 1)[1].strip()
        assert base.endswith("/openapi/v1")
        assert ACCOUNT_TOKEN in proc.stdout.readline()
        assert httpx.get(base + "/_version").json()["version"] == ("1.18.0" if paths == "current" else "1.14.0")
        assert httpx.get(base + "/account", headers=auth(ACCOUNT_TOKEN)).status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_enablement_version_gate_deprecation_and_concurrency() -> None:
    with make(openapi_enabled=False) as emu, client(emu) as c:
        error_body(c.get("_health"), 404, "not_found")
        error_body(c.get("account"), 404, "not_found")
    with make(max_active_requests=1) as emu, client(emu) as c:
        error_body(c.get("account", headers={"User-Agent": "difyctl/0.1.9"}), 426, "upgrade_required")
        assert c.get("account", headers={"User-Agent": "difyctl/0.2.0"}).status_code == 200
        assert c.get("account", headers={"User-Agent": "difyctl/0.2.0-alpha"}).status_code == 200
        assert c.get("_version", headers={"User-Agent": "difyctl/0.0.1"}).status_code == 200
        with c.stream("POST", f"apps/{TEXT_APP_ID}:run", json={"inputs": TEXT}) as response:
            assert response.headers["Deprecation"] == "true"
            response.read()
        started = start_long(emu, c)
        error_body(c.post(run_path(emu, LONG_APP_ID), json={"inputs": {}}), 429, "too_many_requests")
        c.post(stop_path(emu, LONG_APP_ID, started["task_id"]))
        emu.wait_run_finished(started["workflow_run_id"])
        _, events = run(emu, c, app_id=LONG_APP_ID, inputs={"seconds": 0})
        assert events[-1]["data"]["status"] == "succeeded"


def test_drop_before_response_after_the_run_started(emu: DifyOpenAPIEmulator) -> None:
    """The costly unknown: the connection dies with no response, yet the run was started."""
    emu.inject(Fault("stream", "drop_before_response", run_started=True))
    with client(emu) as c:
        with pytest.raises(httpx.HTTPError):
            c.post(run_path(emu, TEXT_APP_ID), json={"inputs": TEXT})
        assert emu.runs_started(ACCOUNT_TOKEN, app=TEXT_APP_ID) == 1
        assert emu.wait_run_finished(emu.runs[0].id).status == "succeeded"
        emu.inject(Fault("events", "drop_mid_stream", after_events=1))
        started = start_long(emu, c, seconds=1.0, steps=10)
        with (
            pytest.raises(httpx.HTTPError),
            connect_sse(c, "GET", f"apps/{LONG_APP_ID}/tasks/{started['workflow_run_id']}/events") as source,
        ):
            received: list[ServerSentEvent] = []
            received.extend(i for i in source.iter_sse() if i.event == "message")
        assert len(received) == 1  # one event, then the socket was cut
        assert emu.wait_run_finished(started["workflow_run_id"]).status == "succeeded"
