"""The Dify emulator's two server profiles on the Workflow Service API, seen over real sockets.

``server_profile="current"`` (the default) answers as the newest Dify server source does
(``shared/reference/dify-server-behaviour.md`` Part C); ``"documented"`` as Dify's documents
say. Each test shows one difference in both profiles, so a profile that stopped differing fails.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from docify_provider.testing import HUMAN_INPUT_APP_KEY, LONG_APP_KEY, TEXT_APP_KEY, DifyEmulator, Fault
from helpers import TEXT_INPUTS, auth

PROFILES = ("current", "documented")
pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.emulator(
        ping_interval=0.05, idle_close_seconds=1.5, event_interval=0.002, each=("server_profile", PROFILES)
    ),
]


def body(inputs: dict | None = None, mode: str = "streaming", user: str = "u1") -> dict:
    return {"inputs": TEXT_INPUTS if inputs is None else inputs, "user": user, "response_mode": mode}


def frames(raw: bytes) -> list[bytes]:
    return [f for f in raw.split(b"\n\n") if f]


def events(raw: bytes) -> list[dict]:
    return [json.loads(f[len(b"data: ") :]) for f in frames(raw) if f.startswith(b"data: ")]


def emulator(profile: str, **options: float) -> DifyEmulator:
    return DifyEmulator(
        ping_interval=options.pop("ping_interval", 0.05),
        idle_close_seconds=options.pop("idle_close_seconds", 1.5),
        event_interval=0.002,
        server_profile=profile,
        **options,
    )


@pytest.fixture
def client(emu: DifyEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url + "/", timeout=10) as c:
        yield c


def test_profile_is_checked() -> None:
    assert DifyEmulator().current and not DifyEmulator(server_profile="documented").current
    with pytest.raises(ValueError, match="server_profile"):
        DifyEmulator(server_profile="newest")


# C1 ---------------------------------------------------------------------------------------------
def test_streaming_input_rejected_in_the_worker(emu: DifyEmulator, client: httpx.Client) -> None:
    """current: 200, a ping, one error frame without code or ids, pings only until the idle close."""
    started = time.monotonic()
    with client.stream("POST", "workflows/run", headers=auth(TEXT_APP_KEY), json=body({"tone": "formal"})) as r:
        status, raw = r.status_code, r.read()
    elapsed = time.monotonic() - started
    assert emu.runs_started() == 0
    if not emu.current:
        assert status == 400 and json.loads(raw)["code"] == "invalid_param"
        assert json.loads(raw)["message"] == "topic is required in input form"
        return
    assert status == 200
    parts = frames(raw)
    assert parts[0] == b"event: ping"
    assert parts[1] == b'data: {"event": "error", "message": "topic is required in input form", "status": 500}'
    assert set(parts[2:]) == {b"event: ping"}, "only pings follow the error frame"
    assert elapsed >= 1.4, "error is not terminal for the server: the body ends at the idle close"


def test_blocking_and_file_errors_stay_synchronous(emu: DifyEmulator, client: httpx.Client) -> None:
    r = client.post("workflows/run", headers=auth(TEXT_APP_KEY), json=body({"tone": "formal"}, "blocking"))
    assert r.status_code == 400 and r.json()["code"] == "invalid_param"
    doc = {"transfer_method": "local_file", "upload_file_id": "not-a-uuid", "type": "document"}
    from docify_provider.testing import DOCUMENT_APP_KEY

    r = client.post("workflows/run", headers=auth(DOCUMENT_APP_KEY), json=body({"document": doc}))
    assert r.status_code == 400 and r.json()["message"] == "Invalid upload file id format"


def test_rejected_input_fault(emu: DifyEmulator, client: httpx.Client) -> None:
    emu.inject(Fault("stream", "rejected_input", message="tone must be polite"))
    with client.stream("POST", "workflows/run", headers=auth(TEXT_APP_KEY), json=body()) as r:
        status, raw = r.status_code, r.read()
    if emu.current:
        assert status == 200 and events(raw) == [{"event": "error", "message": "tone must be polite", "status": 500}]
    else:
        assert status == 400 and json.loads(raw)["message"] == "tone must be polite"
    assert emu.runs_started() == 0


# C2 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("provider_not_initialize", 400),
        ("provider_quota_exceeded", 400),
        ("model_currently_not_support", 400),
        ("completion_request_error", 400),
        ("rate_limit_error", 429),
    ],
)
@pytest.mark.parametrize("profile", PROFILES)
def test_blocking_pipeline_error(profile: str, code: str, status: int) -> None:
    with emulator(profile) as emu, httpx.Client(base_url=emu.base_url + "/", timeout=10) as c:
        emu.inject(Fault("run", "error_event", code=code, message="Model said no"))
        r = c.post("workflows/run", headers=auth(TEXT_APP_KEY), json=body(mode="blocking"))
        if emu.current:
            assert (r.status_code, r.json()) == (status, {"code": code, "message": "Model said no", "status": status})
        else:
            assert r.status_code == 200 and r.json()["data"]["status"] == "failed"
        assert emu.runs_started() == 1 and emu.runs[0].status == "failed"


def test_failing_node_is_still_a_failed_200(emu: DifyEmulator, client: httpx.Client) -> None:
    emu.inject(Fault("run", "failed_run", message="LLM node failed"))
    r = client.post("workflows/run", headers=auth(TEXT_APP_KEY), json=body(mode="blocking"))
    assert r.status_code == 200 and r.json()["data"]["status"] == "failed"


# C3 ---------------------------------------------------------------------------------------------
def test_reattach_continue_on_pause_holds_open_after_finished(emu: DifyEmulator, client: httpx.Client) -> None:
    received: list[tuple[bytes, float]] = []
    long_run = body({"seconds": 0.6, "steps": 2})
    with client.stream("POST", "workflows/run", headers=auth(LONG_APP_KEY), json=long_run) as first:
        lines = first.iter_lines()
        run2 = next(json.loads(line[6:]) for line in lines if line.startswith("data: "))["workflow_run_id"]

    def reattach() -> None:
        params = {"user": "u1", "continue_on_pause": "true"}
        with client.stream("GET", f"workflow/{run2}/events", params=params, headers=auth(LONG_APP_KEY)) as ev:
            raw = ev.read()
        received.append((raw, time.monotonic()))

    reader = threading.Thread(target=reattach)
    reader.start()
    emu.wait_run_finished(run2)
    finished_at = time.monotonic()
    reader.join(5)
    raw, closed_at = received[0]
    assert events(raw)[-1]["event"] == "workflow_finished"
    if emu.current:
        assert closed_at - finished_at >= 1.0, "the body stays open after workflow_finished until idle close"
    else:
        assert closed_at - finished_at < 1.0, "documented: the body ends at workflow_finished"
    # a finished run: one workflow_finished frame; current: its task_id is the run id
    r = client.get(f"workflow/{run2}/events", params={"user": "u1"}, headers=auth(LONG_APP_KEY))
    (frame,) = events(r.content)
    assert frame["event"] == "workflow_finished"
    assert frame["task_id"] == (run2 if emu.current else emu.run(run2).task_id)


# C4 / C6 human input -----------------------------------------------------------------------------
def test_pause_reason_key_and_resume_order(emu: DifyEmulator, client: httpx.Client) -> None:
    key = "TYPE" if emu.current else "type"
    other = "type" if emu.current else "TYPE"
    r = client.post("workflows/run", headers=auth(HUMAN_INPUT_APP_KEY), json=body({"topic": "x"}, "blocking"))
    blocking = r.json()["data"]["reasons"][0]
    assert blocking[key] == "human_input_required" and other not in blocking
    run_id = r.json()["workflow_run_id"]
    params = {"user": "u1", "include_state_snapshot": "true", "continue_on_pause": "true"}
    received: list[bytes] = []

    def reattach() -> None:
        with client.stream("GET", f"workflow/{run_id}/events", params=params, headers=auth(HUMAN_INPUT_APP_KEY)) as ev:
            received.append(ev.read())

    reader = threading.Thread(target=reattach)
    reader.start()
    time.sleep(0.2)
    emu.submit_form(emu.form_token(run_id), "reject", {"comment": "no"})
    reader.join(5)
    evs = events(received[0])
    paused = next(e for e in evs if e["event"] == "workflow_paused")
    assert paused["data"]["reasons"][0][key] == "human_input_required"  # the snapshot's pause
    names = [e["event"] for e in evs[evs.index(paused) + 1 :]]
    assert names[0] == "workflow_started"
    expected = ["node_started", "human_input_form_filled"] if emu.current else ["human_input_form_filled"]
    assert names[1 : 1 + len(expected)] == expected


def test_stop_of_a_paused_run(emu: DifyEmulator, client: httpx.Client) -> None:
    r = client.post("workflows/run", headers=auth(HUMAN_INPUT_APP_KEY), json=body({"topic": "x"}, "blocking"))
    answer = r.json()
    stop = client.post(
        f"workflows/tasks/{answer['task_id']}/stop", headers=auth(HUMAN_INPUT_APP_KEY), json={"user": "u1"}
    )
    assert stop.json() == {"result": "success"}
    time.sleep(0.1)
    assert emu.run(answer["workflow_run_id"]).status == ("paused" if emu.current else "stopped")


# C6 other ---------------------------------------------------------------------------------------
def test_run_detail_inputs(emu: DifyEmulator, client: httpx.Client) -> None:
    run_id = client.post("workflows/run", headers=auth(TEXT_APP_KEY), json=body(mode="blocking")).json()[
        "workflow_run_id"
    ]
    inputs = client.get(f"workflows/run/{run_id}", headers=auth(TEXT_APP_KEY)).json()["inputs"]
    if emu.current:
        assert isinstance(inputs, str) and json.loads(inputs) == TEXT_INPUTS
    else:
        assert inputs == TEXT_INPUTS


def test_meta_and_site(emu: DifyEmulator, client: httpx.Client) -> None:
    meta = client.get("meta", headers=auth(TEXT_APP_KEY))
    site = client.get("site", headers=auth(TEXT_APP_KEY))
    if emu.current:
        assert meta.json() == {"tool_icons": {}}
        assert site.status_code == 200 and site.json()["title"] == "Text Writer"
    else:
        assert (meta.status_code, site.status_code) == (404, 404)


def test_logs_created_by_account(emu: DifyEmulator, client: httpx.Client) -> None:
    client.post("workflows/run", headers=auth(TEXT_APP_KEY), json=body(mode="blocking"))
    params = {"created_by_account": "someone@example.com"}
    r = client.get("workflows/logs", params=params, headers=auth(TEXT_APP_KEY))
    assert r.status_code == 200
    # Service API runs are end users' runs: no account made them (the documented API ignores the filter)
    assert r.json()["total"] == (0 if emu.current else 1)


def test_upload_too_many_files_counts_field_names(emu: DifyEmulator, client: httpx.Client) -> None:
    from docify_provider.testing import DOCUMENT_APP_KEY

    two_parts = [("file", ("a.txt", b"1")), ("file", ("b.txt", b"2"))]
    r = client.post("files/upload", headers=auth(DOCUMENT_APP_KEY), files=two_parts, data={"user": "u1"})
    if emu.current:
        assert r.status_code == 201 and r.json()["name"] == "a.txt", "one field name: the first part is taken"
    else:
        assert r.status_code == 400 and r.json()["code"] == "too_many_files"
    two_fields = [("file", ("a.txt", b"1")), ("more", ("b.txt", b"2"))]
    r = client.post("files/upload", headers=auth(DOCUMENT_APP_KEY), files=two_fields, data={"user": "u1"})
    if emu.current:
        assert r.status_code == 400 and r.json()["code"] == "too_many_files"
    else:
        assert r.status_code == 201


@pytest.mark.parametrize("profile", PROFILES)
def test_cli_server_profile(profile: str) -> None:
    import subprocess
    import sys

    command = [sys.executable, "-m", "docify_provider.testing", "--mode", "dify", "--port", "0"]
    proc = subprocess.Popen([*command, "--server-profile", profile], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("Dify emulator") and ("documented" in first) == (profile == "documented")
        base = first.split(": ", 1)[1].strip()
        meta = httpx.get(base + "/meta", headers=auth(TEXT_APP_KEY), timeout=10)
        assert meta.status_code == (200 if profile == "current" else 404)
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
