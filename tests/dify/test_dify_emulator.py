"""The bundled Dify emulator (Workflow Service API), observed over real sockets with httpx.

The injected faults are in ``test_dify_emulator_faults.py``; the wire helpers both files use are in
``tests/dify_emulator_http.py``, their ``client`` fixture in ``tests/dify/conftest.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import httpx
import pytest

from docify_provider.testing import (
    DISABLED_APP_KEY,
    DOCUMENT_APP_KEY,
    HUMAN_INPUT_APP_KEY,
    LONG_APP_KEY,
    TEXT_APP_KEY,
    DifyEmulator,
    Fault,
)
from docify_provider.testing.errors import RequestError
from helpers import TEXT_INPUTS, auth
from tests.dify_emulator_http import events, frames, local, raw_stream_request, read_until, run_body, stream_run, upload

pytestmark = pytest.mark.emulator(ping_interval=0.05, idle_close_seconds=2.0, event_interval=0.002)


# info, parameters, auth -------------------------------------------------------------------
def test_info_and_parameters(client: httpx.Client) -> None:
    info = client.get("info", headers=auth(TEXT_APP_KEY)).json()
    assert info["mode"] == "workflow"
    assert set(info) == {"name", "description", "tags", "mode", "author_name"}
    params = client.get("parameters", headers=auth(DOCUMENT_APP_KEY)).json()
    form = params["user_input_form"]
    assert [next(iter(item)) for item in form] == ["file", "file-list"]
    document = form[0]["file"]
    assert document["type"] == "file" and document["required"] is True
    assert document["allowed_file_extensions"] == [".pdf", ".txt", ".docx"]
    assert document["allowed_file_upload_methods"] == ["local_file", "remote_url"]
    assert form[1]["file-list"]["max_length"] == 3
    assert params["system_parameters"] == {
        "file_size_limit": 15,
        "image_file_size_limit": 10,
        "audio_file_size_limit": 50,
        "video_file_size_limit": 100,
        "workflow_file_upload_limit": 10,
    }
    assert params["file_upload"]["image"]["enabled"] is False
    text_form = client.get("parameters", headers=auth(TEXT_APP_KEY)).json()["user_input_form"]
    assert text_form[0]["text-input"]["max_length"] == 200
    assert text_form[1]["select"]["options"] == ["neutral", "formal", "casual"]


def test_auth_errors(client: httpx.Client) -> None:
    r = client.get("info")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert r.json() == {
        "code": "unauthorized",
        "message": "Authorization header must be provided and start with 'Bearer'",
        "status": 401,
    }
    r = client.get("info", headers=auth("app-unknown"))
    assert r.status_code == 401 and r.json()["message"] == "Access token is invalid"
    r = client.get("info", headers=auth(DISABLED_APP_KEY))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = client.get("nope", headers=auth(TEXT_APP_KEY))
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = client.delete("info", headers=auth(TEXT_APP_KEY))
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"


# blocking and streaming ---------------------------------------------------------------------
def test_blocking_run_default_mode(emu: DifyEmulator, client: httpx.Client) -> None:
    r = client.post("workflows/run", headers=auth(TEXT_APP_KEY), json=run_body(mode=None))
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"task_id", "workflow_run_id", "data"}
    data = body["data"]
    assert data["status"] == "succeeded" and data["error"] is None
    assert "café" in data["outputs"]["text"]
    assert data["total_steps"] == 3 and data["total_tokens"] > 0
    assert isinstance(data["created_at"], int) and isinstance(data["finished_at"], int)
    assert data["id"] == body["workflow_run_id"]
    assert emu.runs_started(key=TEXT_APP_KEY, user="u1") == 1
    assert emu.runs_completed() == 1


def test_stream_framing(emu: DifyEmulator, client: httpx.Client) -> None:
    r, raw = stream_run(client)
    assert r.headers["content-type"].startswith("text/event-stream")
    parts = frames(raw)
    assert parts[0] == b"event: ping"
    for part in parts:
        assert part == b"event: ping" or (part.startswith(b"data: {") and b"\n" not in part)
    assert "café".encode() in raw and b"\\u00e9" not in raw
    data_frames = [p for p in parts if p.startswith(b"data: ")]
    assert all(b'":' in p and b'": ' not in p and b", " not in p[:40] for p in data_frames)
    evs = events(raw)
    names = [e["event"] for e in evs]
    assert names[0] == "workflow_started" and names[-1] == "workflow_finished"
    assert names.count("text_chunk") >= 3 and "node_started" in names and "node_finished" in names
    assert all(set(e) == {"event", "task_id", "workflow_run_id", "data"} for e in evs)
    llm = next(e for e in evs if e["event"] == "node_finished" and e["data"]["node_type"] == "llm")
    assert set(llm["data"]["execution_metadata"]) == {"total_tokens", "total_price", "currency"}
    assert llm["data"]["execution_metadata"]["currency"] == "USD"
    finished = evs[-1]["data"]
    text = "".join(e["data"]["text"] for e in evs if e["event"] == "text_chunk")
    assert finished["outputs"] == {"text": text} and finished["status"] == "succeeded"
    assert evs[0]["data"]["reason"] == "initial"


def test_pings_while_idle_and_idle_close(client: httpx.Client) -> None:
    start = time.monotonic()
    with client.stream(
        "POST", "workflows/run", headers=auth(LONG_APP_KEY), json=run_body({"seconds": 3}, user="u1")
    ) as r:
        raw = r.read()
    elapsed = time.monotonic() - start
    parts = frames(raw)
    assert parts.count(b"event: ping") >= 10
    names = [e["event"] for e in events(raw)]
    assert "workflow_finished" not in names  # idle close (2 s) came before the 3 s node ended
    assert 1.8 < elapsed < 3.0


def test_ping_interval_none_sends_only_first(client: httpx.Client) -> None:
    with DifyEmulator(ping_interval=None, event_interval=0.002, idle_close_seconds=0.5) as emu:
        with httpx.Client(base_url=emu.base_url + "/") as c:
            with c.stream("POST", "workflows/run", headers=auth(LONG_APP_KEY), json=run_body({"seconds": 1})) as r:
                raw = r.read()
    assert frames(raw).count(b"event: ping") == 1


def test_run_goes_on_after_client_closes(emu: DifyEmulator) -> None:
    sock = raw_stream_request(emu, run_body({"seconds": 0.5}), key=LONG_APP_KEY)
    data = read_until(sock, b"node_started")
    run_id = json.loads(data.split(b"data: ", 1)[1].split(b"\n\n", 1)[0])["workflow_run_id"]
    sock.close()
    run = emu.wait_run_finished(run_id, timeout=5)
    assert run.status == "succeeded"
    assert emu.runs_completed(key=LONG_APP_KEY) == 1


# re-attach ------------------------------------------------------------------------------------
def test_events_endpoint_live_and_finished(emu: DifyEmulator, client: httpx.Client) -> None:
    sock = raw_stream_request(emu, run_body({"seconds": 0.6, "steps": 2}), key=LONG_APP_KEY)
    data = read_until(sock, b"node_started")
    run_id = json.loads(data.split(b"data: ", 1)[1].split(b"\n\n", 1)[0])["workflow_run_id"]
    sock.close()
    with client.stream("GET", f"workflow/{run_id}/events", params={"user": "u1"}, headers=auth(LONG_APP_KEY)) as r:
        assert r.headers["cache-control"] == "no-cache"
        raw = r.read()
    assert frames(raw)[0] == b"event: ping"
    names = [e["event"] for e in events(raw)]
    assert "workflow_started" not in names  # no replay
    assert names[-1] == "workflow_finished" and "text_chunk" in names
    # finished run: one json.dumps-style frame, then the end
    r = client.get(f"workflow/{run_id}/events", params={"user": "u1"}, headers=auth(LONG_APP_KEY))
    parts = frames(r.content)
    assert len(parts) == 1 and parts[0].startswith(b'data: {"event": "workflow_finished", ')
    assert json.loads(parts[0][6:])["data"]["status"] == "succeeded"
    # another user, or another app, cannot see it
    r = client.get(f"workflow/{run_id}/events", params={"user": "u2"}, headers=auth(LONG_APP_KEY))
    assert r.status_code == 404 and r.json()["message"] == "Workflow run not found."
    assert client.get(f"workflow/{run_id}/events", params={"user": "u1"}, headers=auth(TEXT_APP_KEY)).status_code == 404
    assert emu.events_requests(key=LONG_APP_KEY) == 3 and emu.events_requests(user="u2") == 1


def test_events_state_snapshot(emu: DifyEmulator, client: httpx.Client) -> None:
    body = client.post("workflows/run", headers=auth(HUMAN_INPUT_APP_KEY), json=run_body({"topic": "x"}, "blocking"))
    run_id = body.json()["workflow_run_id"]
    params = {"user": "u1", "include_state_snapshot": "true"}
    r = client.get(f"workflow/{run_id}/events", params=params, headers=auth(HUMAN_INPUT_APP_KEY))
    evs = events(r.content)
    assert frames(r.content)[0] == b"event: ping"
    assert [e["event"] for e in evs] == [
        "workflow_started", "node_started", "node_finished", "node_started", "human_input_required", "workflow_paused",
    ]  # fmt: skip
    assert evs[0]["data"]["reason"] == "initial" and evs[2]["data"]["outputs"] is None
    assert evs[2]["data"]["execution_metadata"] is None  # a replayed node carries no usage (A8)
    assert evs[-1]["data"]["reasons"][0]["form_token"] == emu.form_token(run_id)


# run detail, stop -------------------------------------------------------------------------------
def test_run_detail(emu: DifyEmulator, client: httpx.Client) -> None:
    body = client.post("workflows/run", headers=auth(TEXT_APP_KEY), json=run_body(mode="blocking")).json()
    detail = client.get(f"workflows/run/{body['workflow_run_id']}", headers=auth(TEXT_APP_KEY)).json()
    # the current server sends the raw JSON column (C6); see test_dify_current_server for the documented object
    assert detail["status"] == "succeeded" and json.loads(detail["inputs"]) == TEXT_INPUTS
    assert set(detail) == {
        "id", "workflow_id", "status", "inputs", "outputs", "error", "total_steps", "total_tokens",
        "created_at", "finished_at", "elapsed_time",
    }  # fmt: skip
    r = client.get("workflows/run/00000000-0000-0000-0000-000000000000", headers=auth(TEXT_APP_KEY))
    assert r.status_code == 404 and r.json() == {
        "code": "not_found",
        "message": "Workflow run not found.",
        "status": 404,
    }


def test_stop_and_ignored_stop(emu: DifyEmulator, client: httpx.Client) -> None:
    for ignored in (False, True):
        if ignored:
            emu.inject(Fault("stop", "ignore_stop"))
        sock = raw_stream_request(emu, run_body({"seconds": 0.8}), key=LONG_APP_KEY)
        data = read_until(sock, b"node_started")
        first = json.loads(data.split(b"data: ", 1)[1].split(b"\n\n", 1)[0])
        r = client.post(f"workflows/tasks/{first['task_id']}/stop", headers=auth(LONG_APP_KEY), json={"user": "x"})
        assert r.json() == {"result": "success"}
        rest = read_until(sock, b"workflow_finished")
        sock.close()
        run = emu.wait_run_finished(first["workflow_run_id"], 5)
        if ignored:
            assert run.status == "succeeded" and run.error is None
        else:
            assert run.status == "stopped" and run.error == "Stopped by user."
            assert b'"status":"stopped"' in rest
    assert emu.stop_requests(key=LONG_APP_KEY, user="x") == 2
    r = client.post("workflows/tasks/unknown/stop", headers=auth(LONG_APP_KEY), json={"user": "x"})
    assert r.json() == {"result": "success"}
    r = client.post("workflows/tasks/unknown/stop", headers=auth(LONG_APP_KEY), json={})
    assert r.status_code == 400 and r.json()["code"] == "invalid_param"


# uploads and documents -----------------------------------------------------------------------------
def test_upload_document_run_and_download(emu: DifyEmulator, client: httpx.Client) -> None:
    r = upload(client)
    assert r.status_code == 201
    file = r.json()
    assert file["name"] == "report.pdf" and file["size"] == 13 and file["extension"] == "pdf"
    assert file["mime_type"] == "application/pdf" and isinstance(file["created_at"], int)
    inputs = {
        "document": local(file["id"]),
        "attachments": [{"transfer_method": "remote_url", "url": "https://example.com/a.png", "type": "image"}],
    }
    body = client.post("workflows/run", headers=auth(DOCUMENT_APP_KEY), json=run_body(inputs, "blocking")).json()
    outputs = body["data"]["outputs"]
    assert "report.pdf" in outputs["summary"]
    report = outputs["report"]
    assert report["dify_model_identity"] == "__dify__file__" and report["transfer_method"] == "tool_file"
    assert report["filename"] == "report.csv" and report["mime_type"] == "text/csv" and report["remote_url"] is None
    url = urlsplit(report["url"])
    assert url.path == f"/files/tools/{report['related_id']}.csv" and "sign=" in url.query
    download = httpx.get(report["url"])
    assert download.status_code == 200
    assert int(download.headers["content-length"]) == report["size"] == len(download.content)
    assert download.content.startswith(b"variable,filename") and b"a.png" in download.content
    tampered = report["url"].replace("sign=", "sign=x")
    assert httpx.get(tampered).status_code == 403
    assert emu.upload_count(user="u1") == 1 and len(emu.downloads) == 1


def test_upload_errors() -> None:
    with (
        DifyEmulator(file_size_limit=0.001, image_file_size_limit=0.002) as emu,
        httpx.Client(base_url=emu.base_url + "/") as c,
    ):
        assert c.get("parameters", headers=auth(TEXT_APP_KEY)).json()["system_parameters"]["file_size_limit"] == 0.001
        r = upload(c, content=b"x" * 2000)
        assert r.status_code == 413 and r.json()["code"] == "file_too_large"
        assert upload(c, "a.png", b"x" * 2000).status_code == 201  # image limit 0.002 MB
        r = c.post("files/upload", headers=auth(TEXT_APP_KEY), data={"user": "u1"}, files={"other": ("a", b"1")})
        assert r.status_code == 400 and r.json()["code"] == "no_file_uploaded"
        # the current server counts distinct file field names (C6): a second field is too many
        files = [("file", ("a.txt", b"1")), ("extra", ("b.txt", b"2"))]
        r = c.post("files/upload", headers=auth(TEXT_APP_KEY), files=files)
        assert r.status_code == 400 and r.json()["code"] == "too_many_files"
        r = c.post("files/upload", headers=auth(TEXT_APP_KEY), files={"file": ("a.txt", b"1", "")})
        assert r.status_code == 415 and r.json()["code"] == "unsupported_file_type"


# validation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "body", "message"),
    [
        (TEXT_APP_KEY, {"inputs": TEXT_INPUTS}, "Arg user must be provided."),
        (TEXT_APP_KEY, {"inputs": {}, "user": "u"}, "topic is required in input form"),
        (TEXT_APP_KEY, {"inputs": {"topic": 3}, "user": "u"}, "topic in input form must be a string"),
        (TEXT_APP_KEY, {"inputs": {"topic": "x" * 201}, "user": "u"}, "must be less than 200 characters"),
        (TEXT_APP_KEY, {"inputs": {"topic": "t", "tone": "angry"}, "user": "u"}, "must be one of the following"),
        (LONG_APP_KEY, {"inputs": {"seconds": "soon"}, "user": "u"}, "seconds in input form must be a valid number"),
        (DOCUMENT_APP_KEY, {"inputs": {"document": "https://x/a.pdf"}, "user": "u"}, "must be a file"),
        (DOCUMENT_APP_KEY, {"inputs": {"document": local("not-a-uuid")}, "user": "u"}, "Invalid upload file id format"),
        (
            DOCUMENT_APP_KEY,
            {"inputs": {"document": local("00000000-0000-0000-0000-000000000000")}, "user": "u"},
            "Invalid upload file",
        ),
        (
            DOCUMENT_APP_KEY,
            {"inputs": {"document": {"transfer_method": "remote_url", "url": "https://x/a.png"}}, "user": "u"},
            "File validation failed for file: a.png",
        ),
        (
            DOCUMENT_APP_KEY,
            {"inputs": {"document": {"transfer_method": "remote_url", "url": "https://x/a.exe", "type": "custom"}},
             "user": "u"},
            "File validation failed for file: a.exe",
        ),
        (
            DOCUMENT_APP_KEY,
            {"inputs": {"document": {"transfer_method": "remote_url", "url": "https://x/a.pdf"},
                        "attachments": [{"transfer_method": "remote_url", "url": "https://x/b.pdf"}] * 4},
             "user": "u"},
            "must be less than 3 files",
        ),
        (TEXT_APP_KEY, {"inputs": TEXT_INPUTS, "user": "u", "response_mode": "fast"}, "response_mode"),
    ],
)  # fmt: skip
def test_validation_errors(emu: DifyEmulator, client: httpx.Client, key: str, body: dict, message: str) -> None:
    r = client.post("workflows/run", headers=auth(key), json=body)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_param" and message in r.json()["message"]
    assert emu.runs_started() == 0


def test_invalid_json_and_by_id_route(emu: DifyEmulator, client: httpx.Client) -> None:
    r = client.post("workflows/run", headers=auth(TEXT_APP_KEY), content=b"{nope")
    assert r.status_code == 400 and r.json()["code"] == "invalid_param"
    workflow_id = emu.app("text").workflow_id
    r = client.post(f"workflows/{workflow_id}/run", headers=auth(TEXT_APP_KEY), json=run_body(mode="blocking"))
    assert r.status_code == 200 and r.json()["data"]["workflow_id"] == workflow_id
    r = client.post("workflows/bad-id/run", headers=auth(TEXT_APP_KEY), json=run_body(mode="blocking"))
    assert r.status_code == 400 and r.json()["code"] == "bad_request"


# logs ---------------------------------------------------------------------------------------------
def test_logs_filters_and_pages(emu: DifyEmulator, client: httpx.Client) -> None:
    for i, user in enumerate(["alice", "bob", "alice"]):
        client.post(
            "workflows/run", headers=auth(TEXT_APP_KEY), json=run_body({"topic": f"topic{i}"}, "blocking", user)
        )
    emu.inject(Fault("run", "failed_run", message="model exploded"))
    client.post("workflows/run", headers=auth(TEXT_APP_KEY), json=run_body({"topic": "boom"}, "blocking", "bob"))
    page = client.get("workflows/logs", params={"limit": 2}, headers=auth(TEXT_APP_KEY)).json()
    assert page["total"] == 4 and page["has_more"] is True and len(page["data"]) == 2
    item = page["data"][0]
    assert item["workflow_run"]["status"] == "failed"  # newest first
    assert item["created_by_end_user"]["session_id"] == "bob" and item["created_from"] == "service-api"
    page2 = client.get("workflows/logs", params={"limit": 2, "page": 2}, headers=auth(TEXT_APP_KEY)).json()
    assert page2["has_more"] is False and len(page2["data"]) == 2

    def total(**params: str) -> int:
        return client.get("workflows/logs", params=params, headers=auth(TEXT_APP_KEY)).json()["total"]

    assert total(status="failed") == 1 and total(status="succeeded") == 3
    assert total(created_by_end_user_session_id="alice") == 2
    assert total(keyword="topic1") == 1
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    past = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    assert total(created_at__after=future) == 0 and total(created_at__before=future) == 4
    assert total(created_at__after=past) == 4
    assert client.get("workflows/logs", headers=auth(LONG_APP_KEY)).json()["total"] == 0
    r = client.get("workflows/logs", params={"status": "running"}, headers=auth(TEXT_APP_KEY))
    assert r.status_code == 400
    assert client.get("workflows/logs", params={"limit": 101}, headers=auth(TEXT_APP_KEY)).status_code == 400


# human input --------------------------------------------------------------------------------------------
def test_human_input_pause_submit_resume(emu: DifyEmulator, client: httpx.Client) -> None:
    _, raw = stream_run(client, HUMAN_INPUT_APP_KEY, inputs={"topic": "budget"})
    evs = events(raw)
    assert [e["event"] for e in evs][-2:] == ["human_input_required", "workflow_paused"]
    form = evs[-2]["data"]
    assert {a["id"] for a in form["actions"]} == {"approve", "reject"}
    assert set(form) >= {"form_id", "node_id", "node_title", "form_content", "inputs", "form_token", "expiration_time"}
    paused = evs[-1]["data"]
    assert paused["status"] == "paused" and paused["reasons"][0]["form_token"] == form["form_token"]
    run_id = evs[0]["workflow_run_id"]
    assert client.get(f"workflows/run/{run_id}", headers=auth(HUMAN_INPUT_APP_KEY)).json()["status"] == "paused"
    token = form["form_token"]
    definition = client.get(f"form/human_input/{token}", headers=auth(HUMAN_INPUT_APP_KEY)).json()
    assert definition["user_actions"] == form["actions"] and definition["expiration_time"] == form["expiration_time"]
    assert client.get(f"form/human_input/{token}", headers=auth(TEXT_APP_KEY)).status_code == 404

    received: list[bytes] = []

    def reattach() -> None:
        with client.stream(
            "GET", f"workflow/{run_id}/events", params={"user": "u1"}, headers=auth(HUMAN_INPUT_APP_KEY)
        ) as r:
            received.append(r.read())

    reader = threading.Thread(target=reattach)
    reader.start()
    time.sleep(0.2)
    r = client.post(
        f"form/human_input/{token}",
        headers=auth(HUMAN_INPUT_APP_KEY),
        json={"inputs": {"comment": "ok"}, "action": "approve", "user": "u1"},
    )
    assert r.status_code == 200 and r.json() == {}
    reader.join(5)
    resumed = events(received[0])
    assert resumed[0]["event"] == "workflow_started" and resumed[0]["data"]["reason"] == "resumption"
    assert resumed[0]["task_id"] == evs[0]["task_id"]
    assert "human_input_form_filled" in [e["event"] for e in resumed]
    assert resumed[-1]["event"] == "workflow_finished" and resumed[-1]["data"]["outputs"]["decision"] == "approve"
    again = client.post(
        f"form/human_input/{token}",
        headers=auth(HUMAN_INPUT_APP_KEY),
        json={"inputs": {}, "action": "approve", "user": "u1"},
    )
    assert again.status_code == 412 and again.json()["code"] == "human_input_form_submitted"


def test_human_input_blocking_python_submit_and_bad_action(emu: DifyEmulator, client: httpx.Client) -> None:
    body = client.post(
        "workflows/run", headers=auth(HUMAN_INPUT_APP_KEY), json=run_body({"topic": "x"}, "blocking")
    ).json()
    data = body["data"]
    assert data["status"] == "paused" and data["outputs"] == {} and data["finished_at"] is None
    assert data["paused_nodes"] == ["review"] and data["reasons"][0]["TYPE"] == "human_input_required"  # C4
    token = emu.form_token(body["workflow_run_id"])
    r = client.post(
        f"form/human_input/{token}", headers=auth(HUMAN_INPUT_APP_KEY), json={"action": "maybe", "user": "u"}
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_form_data"
    emu.submit_form(token, "reject", {"comment": "no"})
    run = emu.wait_run_finished(body["workflow_run_id"], 5)
    assert run.status == "succeeded" and run.outputs == {"decision": "reject", "comment": "no", "text": ""}
    with pytest.raises(RequestError) as info:
        emu.submit_form(token)
    assert info.value.status == 412


def test_human_input_form_expiry_and_stop_paused(client: httpx.Client) -> None:
    """Documented wire: a stop ends a paused run (the current server leaves it paused, C6)."""
    with (
        DifyEmulator(form_expiry_seconds=0.3, event_interval=0.002, server_profile="documented") as emu,
        httpx.Client(base_url=emu.base_url + "/") as c,
    ):
        body = c.post(
            "workflows/run", headers=auth(HUMAN_INPUT_APP_KEY), json=run_body({"topic": "x"}, "blocking")
        ).json()
        token = emu.form_token(body["workflow_run_id"])
        time.sleep(0.4)
        r = c.get(f"form/human_input/{token}", headers=auth(HUMAN_INPUT_APP_KEY))
        assert r.status_code == 412 and r.json()["code"] == "human_input_form_expired"
        r = c.post(f"workflows/tasks/{body['task_id']}/stop", headers=auth(HUMAN_INPUT_APP_KEY), json={"user": "u1"})
        assert r.json() == {"result": "success"}
        assert emu.wait_run_finished(body["workflow_run_id"], 2).status == "stopped"


# counters, records, fixture, CLI -------------------------------------------------------------------------
def test_counters_per_key_and_user(emu: DifyEmulator, client: httpx.Client) -> None:
    for user in ("a", "a", "b"):
        client.post("workflows/run", headers=auth(TEXT_APP_KEY), json=run_body(mode="blocking", user=user))
    client.post("workflows/run", headers=auth(LONG_APP_KEY), json=run_body({"seconds": 0}, "blocking", "a"))
    assert emu.runs_started() == 4 and emu.runs_started(key=TEXT_APP_KEY) == 3
    assert emu.runs_started(user="a") == 3 and emu.runs_started(key=TEXT_APP_KEY, user="b") == 1
    assert emu.runs_completed(key=LONG_APP_KEY, user="a") == 1
    endpoints = [r.endpoint for r in emu.requests]
    assert endpoints == ["run"] * 4 and all(r.status == 200 for r in emu.requests)
    emu.reset()
    assert emu.runs_started() == 0 and emu.runs == []


def test_concurrent_streams(emu: DifyEmulator) -> None:
    results: list[str] = []

    def one() -> None:
        with httpx.Client(base_url=emu.base_url + "/") as c:
            _, raw = stream_run(c)
            results.append(events(raw)[-1]["data"]["status"])

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == ["succeeded"] * 20
    assert emu.runs_started() == 20 == emu.runs_completed()


def test_fixture(dify_emulator: DifyEmulator) -> None:
    assert dify_emulator.base_url.endswith("/v1")
    assert httpx.get(dify_emulator.base_url + "/info", headers=auth(TEXT_APP_KEY)).status_code == 200


def test_cli_dify_mode() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "docify_provider.testing", "--mode", "dify", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("Dify emulator: http://127.0.0.1:") and first.strip().endswith("/v1")
        keys = [proc.stdout.readline() for _ in range(5)]
        assert any(TEXT_APP_KEY in line for line in keys)
        assert httpx.get(first.split(": ", 1)[1].strip() + "/info", headers=auth(TEXT_APP_KEY)).status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
