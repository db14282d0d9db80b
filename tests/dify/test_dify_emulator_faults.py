"""The bundled Dify emulator's injected faults (``Fault``), observed over real sockets with httpx.

Apart from ``test_dify_emulator.py`` (the endpoints as Dify answers them) because each fault is a
behaviour of its own that the client tests lean on; the wire helpers both use are in
``tests/dify_emulator_http.py``.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from docify_provider.testing import DOCUMENT_APP_KEY, LONG_APP_KEY, TEXT_APP_KEY, DifyEmulator, Fault
from helpers import auth
from tests.dify_emulator_http import events, frames, local, raw_stream_request, read_until, run_body, stream_run, upload

pytestmark = pytest.mark.emulator(ping_interval=0.05, idle_close_seconds=2.0, event_interval=0.002)


# faults -------------------------------------------------------------------------------------------
def test_fault_status_429_without_retry_after(emu: DifyEmulator, client: httpx.Client) -> None:
    emu.inject(Fault("run", "status", status=429))
    r = client.post("workflows/run", headers=auth(TEXT_APP_KEY), json=run_body(mode="blocking"))
    assert r.status_code == 429 and "retry-after" not in r.headers
    assert r.json()["code"] == "too_many_requests" and r.json()["status"] == 429
    emu.inject(Fault("stream", "status", status=500, code="internal_server_error"))
    r, _ = stream_run(client)
    assert r.status_code == 500
    assert emu.runs_started() == 0


def test_fault_timeout_after_start(emu: DifyEmulator, client: httpx.Client) -> None:
    emu.inject(Fault("run", "timeout_after_start", status=524))
    r = client.post("workflows/run", headers=auth(TEXT_APP_KEY), json=run_body(mode="blocking"))
    assert r.status_code == 524 and "text/html" in r.headers["content-type"]
    (run,) = emu.runs
    emu.wait_run_finished(run.id, 5)
    assert client.get(f"workflows/run/{run.id}", headers=auth(TEXT_APP_KEY)).json()["status"] == "succeeded"
    assert client.get("workflows/logs", headers=auth(TEXT_APP_KEY)).json()["total"] == 1


@pytest.mark.parametrize("kind", ["end_without_complete", "drop_mid_stream"])
def test_fault_stream_closed_run_goes_on(emu: DifyEmulator, client: httpx.Client, kind: str) -> None:
    emu.inject(Fault("stream", kind, after_events=3))
    if kind == "drop_mid_stream":
        with pytest.raises(httpx.RemoteProtocolError):
            stream_run(client)
    else:
        _, raw = stream_run(client)
        assert [e["event"] for e in events(raw)] == ["workflow_started", "node_started", "node_finished"]
    (run,) = emu.runs
    assert emu.wait_run_finished(run.id, 5).status == "succeeded"


def test_fault_stall(emu: DifyEmulator, client: httpx.Client) -> None:
    emu.inject(Fault("stream", "stall", after_events=1, seconds=0.3))
    start = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError):
        stream_run(client)
    assert time.monotonic() - start >= 0.3


def test_fault_malformed_unknown_huge(emu: DifyEmulator, client: httpx.Client) -> None:
    emu.inject(Fault("stream", "malformed_event"))
    _, raw = stream_run(client)
    bad = [f for f in frames(raw) if f.startswith(b"data: ") and not f.endswith(b"}")]
    assert len(bad) == 1
    emu.inject(Fault("stream", "unknown_event"))
    _, raw = stream_run(client)
    assert "agent_log" in [e["event"] for e in events(raw)]
    emu.inject(Fault("stream", "huge_event", size=300_000))
    _, raw = stream_run(client)
    huge = [e for e in events(raw) if e["event"] == "text_chunk" and len(e["data"]["text"]) == 300_000]
    assert len(huge) == 1


def test_fault_slow_events(emu: DifyEmulator, client: httpx.Client) -> None:
    emu.inject(Fault("stream", "slow_events", interval=0.03))
    start = time.monotonic()
    _, raw = stream_run(client)
    assert time.monotonic() - start > 0.03 * 12
    assert events(raw)[-1]["event"] == "workflow_finished"


def test_fault_error_event_not_terminal(emu: DifyEmulator, client: httpx.Client) -> None:
    emu.inject(Fault("stream", "error_event", message="quota gone"))
    start = time.monotonic()
    _, raw = stream_run(client)
    evs = events(raw)
    error = evs[-1]
    assert error == {
        "event": "error",
        "workflow_run_id": evs[0]["workflow_run_id"],
        "code": "completion_request_error",
        "message": "quota gone",
        "status": 400,
    }
    assert time.monotonic() - start >= 2.0  # the stream only ended at the idle close
    assert emu.run(error["workflow_run_id"]).status == "failed"


def test_fault_failed_node_and_partial_success(emu: DifyEmulator, client: httpx.Client) -> None:
    emu.inject(Fault("stream", "failed_run", message="LLM exploded"))
    _, raw = stream_run(client)
    evs = events(raw)
    llm = next(e for e in evs if e["event"] == "node_finished" and e["data"]["node_id"] == "llm")
    assert llm["data"]["status"] == "failed" and llm["data"]["error"] == "LLM exploded"
    assert evs[-1]["data"]["status"] == "failed" and evs[-1]["data"]["error"] == "LLM exploded"
    emu.inject(Fault("run", "partial_success"))
    body = client.post("workflows/run", headers=auth(TEXT_APP_KEY), json=run_body(mode="blocking")).json()
    assert body["data"]["status"] == "partial-succeeded" and body["data"]["outputs"]["text"]


def test_fault_drop_before_response_run_started(emu: DifyEmulator, client: httpx.Client) -> None:
    emu.inject(Fault("run", "drop_before_response", run_started=True))
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("workflows/run", headers=auth(TEXT_APP_KEY), json=run_body(mode="blocking"))
    (run,) = emu.runs
    assert emu.wait_run_finished(run.id, 5).status == "succeeded"
    assert emu.runs_started(key=TEXT_APP_KEY) == 1


def test_fault_latency_and_events_faults(emu: DifyEmulator, client: httpx.Client) -> None:
    emu.inject(Fault("info", "latency", seconds=0.2))
    start = time.monotonic()
    assert client.get("info", headers=auth(TEXT_APP_KEY)).status_code == 200
    assert time.monotonic() - start >= 0.2
    sock = raw_stream_request(emu, run_body({"seconds": 0.5, "steps": 2}), key=LONG_APP_KEY)
    data = read_until(sock, b"node_started")
    run_id = json.loads(data.split(b"data: ", 1)[1].split(b"\n\n", 1)[0])["workflow_run_id"]
    sock.close()
    emu.inject(Fault("events", "end_without_complete", after_events=1))
    with client.stream("GET", f"workflow/{run_id}/events", params={"user": "u1"}, headers=auth(LONG_APP_KEY)) as r:
        raw = r.read()
    assert len(events(raw)) == 1
    assert emu.wait_run_finished(run_id, 5).status == "succeeded"


def document_run(client: httpx.Client) -> dict:
    file_id = upload(client).json()["id"]
    body = run_body({"document": local(file_id)}, "blocking")
    return client.post("workflows/run", headers=auth(DOCUMENT_APP_KEY), json=body).json()["data"]["outputs"]["report"]


def test_fault_attachment_kinds(emu: DifyEmulator, client: httpx.Client) -> None:
    emu.inject(Fault("run", "attachment_name", name="../../etc/passwd"))
    report = document_run(client)
    assert report["filename"] == "../../etc/passwd"
    assert "etc%2Fpasswd" in httpx.get(report["url"]).headers["content-disposition"]
    emu.inject(Fault("run", "lying_file_size", delta=100))
    report = document_run(client)
    assert report["size"] == len(httpx.get(report["url"]).content) + 100
    emu.inject(Fault("run", "attachment_size", size=3_000_000, declared=10))
    report = document_run(client)
    with httpx.stream("GET", report["url"]) as r:
        assert r.headers["content-length"] == "3000000" and report["size"] == 10
        assert sum(len(piece) for piece in r.iter_bytes()) == 3_000_000


def test_fault_redirect_and_star_endpoint(emu: DifyEmulator, client: httpx.Client) -> None:
    emu.inject(Fault("parameters", "redirect", location="http://127.0.0.1:9/elsewhere"))
    r = client.get("parameters", headers=auth(TEXT_APP_KEY))
    assert r.status_code == 302 and r.headers["location"] == "http://127.0.0.1:9/elsewhere"
    emu.inject(Fault("*", "status", status=503, times=2))
    assert client.get("workflows/logs", headers=auth(TEXT_APP_KEY)).json()["code"] == "service_unavailable"
    assert client.get("info", headers=auth(TEXT_APP_KEY)).status_code == 503
    assert client.get("info", headers=auth(TEXT_APP_KEY)).status_code == 200
    with pytest.raises(ValueError, match="does not apply"):
        Fault("logs", "ignore_stop")


def test_max_active_requests() -> None:
    with (
        DifyEmulator(max_active_requests=1, event_interval=0.002) as emu,
        httpx.Client(base_url=emu.base_url + "/") as c,
    ):
        sock = raw_stream_request(emu, run_body({"seconds": 0.5}), key=LONG_APP_KEY)
        read_until(sock, b"workflow_started")
        r = c.post("workflows/run", headers=auth(LONG_APP_KEY), json=run_body({"seconds": 0}, "blocking"))
        assert r.status_code == 429 and r.json()["code"] == "too_many_requests" and "retry-after" not in r.headers
        sock.close()
