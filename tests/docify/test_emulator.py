"""The bundled Docify emulator, observed over real HTTP (httpx and raw sockets)."""

from __future__ import annotations

import hashlib
import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from docify_provider.testing import (
    BUNDLE_KEY,
    FORBIDDEN_KEY,
    INVOICE_KEY,
    SUMMARY_KEY,
    DocifyEmulator,
    Fault,
    fingerprint,
)
from docify_provider.testing.samples import SAMPLE_PNG as PNG
from helpers import auth

pytestmark = pytest.mark.emulator(ping_interval=0.05, event_interval=0.005)

SUMMARY_BODY = {"user": "u1", "inputs": {"text": {"text": "Hello world. More text."}, "language": {"text": "en"}}}


@pytest.fixture
def client(emu: DocifyEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url + "/", timeout=5) as c:
        yield c


def upload(client: httpx.Client, name: str = "acme_invoice.png", content: bytes = PNG, key: str = INVOICE_KEY) -> dict:
    r = client.post("v1/file/upload", headers=auth(key), files={"file": (name, content)}, data={"user": "u1"})
    assert r.status_code == 200, r.text
    return r.json()


def invoice_body(oid: str) -> dict:
    return {"user": "u1", "inputs": {"invoice_image": {"files": [{"uploadFileOid": oid, "fileType": "IMAGE"}]}}}


def read_sse(response: httpx.Response, events: list[tuple[str | None, str]]) -> int:
    """Append (event name, data) frames to ``events``; return the number of comment lines."""
    name: str | None = None
    data: list[str] = []
    comments = 0
    for line in response.iter_lines():
        if line.startswith(":"):
            comments += 1
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and (name or data):
            events.append((name, "\n".join(data)))
            name, data = None, []
    return comments


def stream(client: httpx.Client, key: str = SUMMARY_KEY, body: dict = SUMMARY_BODY) -> tuple[list, int]:
    events: list[tuple[str | None, str]] = []
    with client.stream("POST", "v1/scenario/run/streaming", headers=auth(key), json=body) as r:
        assert r.status_code == 200
        pings = read_sse(r, events)
    return events, pings


def test_auth_errors_and_unknown_path(emu: DocifyEmulator, client: httpx.Client) -> None:
    r = client.get("v1/scenario/info")
    assert (r.status_code, r.json()) == (401, {"code": 401, "message": "Unauthorized, API Key invalid"})
    assert client.get("v1/scenario/info", headers=auth("nope")).status_code == 401
    r = client.get("v1/scenario/info", headers=auth(FORBIDDEN_KEY))
    assert r.status_code == 403
    assert r.json()["code"] == 403
    assert client.get("v1/nothing", headers=auth(INVOICE_KEY)).status_code == 404
    assert httpx.get(f"http://{emu.netloc}/v1/scenario/info", headers=auth(INVOICE_KEY)).status_code == 404
    assert client.post("v1/scenario/info", headers=auth(INVOICE_KEY)).status_code == 405
    records = emu.requests
    assert [r.status for r in records] == [401, 401, 403, 404, 404, 405]
    assert records[0].has_auth is False
    assert records[2].key_fingerprint == fingerprint(FORBIDDEN_KEY)
    assert FORBIDDEN_KEY not in repr(records)
    assert INVOICE_KEY not in repr(records)


@pytest.mark.parametrize(
    ("key", "scenario_id", "code", "variables"),
    [
        (INVOICE_KEY, "1001", "OCR_INVOICE", ["invoice_image"]),
        (SUMMARY_KEY, "2001", "TEXT_SUMMARY", ["text", "title", "language"]),
        (BUNDLE_KEY, "3001", "DOC_BUNDLE", ["documents", "note"]),
    ],
)
def test_info_per_key(client: httpx.Client, key: str, scenario_id: str, code: str, variables: list[str]) -> None:
    info = client.get("v1/scenario/info", headers=auth(key)).json()
    assert (info["scenarioId"], info["scenarioCode"]) == (scenario_id, code)
    assert [p["variable"] for p in info["parameters"]] == variables


def test_upload_run_download_round_trip(emu: DocifyEmulator, client: httpx.Client) -> None:
    up = upload(client)
    assert (up["fileName"], up["fileSize"], up["fileType"]) == ("acme_invoice.png", len(PNG), "IMAGE")
    digest = hashlib.sha256(PNG).hexdigest()
    [record] = emu.uploads
    assert (record.sha256, record.size, record.user, record.head) == (digest, len(PNG), "u1", PNG)

    r = client.post("v1/scenario/run", headers=auth(INVOICE_KEY), json=invoice_body(up["uploadFileOid"]))
    assert r.status_code == 200
    body = r.json()
    result = json.loads(body["jsonResult"])
    assert result["invoice_number"] == "INV-" + digest[:8].upper()
    assert result["amount"] == int(digest[:6], 16) % 100000 / 100
    assert (result["vendor"], result["source_file"]) == ("Acme Invoice", "acme_invoice.png")
    assert body["isSuccess"] is True
    assert body["costPoints"] == 10.5
    assert body["scenarioId"] == "1001"
    assert body["finishedAt"] - body["createAt"] == body["elapsedTime"] >= 0
    [file] = body["files"]
    assert file["fileName"] == "acme_invoice_extracted.csv"
    assert urlsplit(file["fileUrl"]).path.startswith("/docify/download/")
    download = httpx.get(file["fileUrl"])
    assert download.status_code == 200
    assert len(download.content) == file["fileSize"]
    assert b"invoice_number," + result["invoice_number"].encode() in download.content
    assert (emu.runs_started(INVOICE_KEY), emu.runs_completed(), emu.runs_started(SUMMARY_KEY)) == (1, 1, 0)
    assert [d.file_name for d in emu.downloads] == ["acme_invoice_extracted.csv"]
    # uploads are visible only to the key that made them
    r = client.post(
        "v1/scenario/run",
        headers=auth(BUNDLE_KEY),
        json={"inputs": {"documents": {"files": [{"uploadFileOid": up["uploadFileOid"]}]}}},
    )
    assert r.status_code == 400
    assert "uploadFileOid" in r.json()["message"]


def test_upload_rejections(emu: DocifyEmulator, client: httpx.Client) -> None:
    post = client.post
    h = auth(INVOICE_KEY)
    cases = [
        (post("v1/file/upload", headers=h, files={"file": ("a.png", PNG)}), "user"),
        (post("v1/file/upload", headers=h, files={"other": ("a.png", PNG)}, data={"user": "u"}), "file"),
        (post("v1/file/upload", headers=h, files={"file": ("a.exe", PNG)}, data={"user": "u"}), "extension"),
        (
            post(
                "v1/file/upload",
                headers=h,
                files={"file": ("big.png", b"\0" * (10 * 1024 * 1024 + 1))},
                data={"user": "u"},
            ),
            "too large",
        ),
        (post("v1/file/upload", headers=h, data={"user": "u"}), "multipart"),
    ]
    for response, word in cases:
        assert response.status_code == 400, response.text
        assert word in response.json()["message"]
    assert post("v1/file/upload", headers=auth("bad"), files={"file": ("a.png", PNG)}).status_code == 401
    assert emu.uploads == []
    # a document may be larger than the image limit
    assert upload(client, "big.pdf", b"%PDF" + b"\0" * (11 * 1024 * 1024))["fileType"] == "DOCUMENT"


@pytest.mark.parametrize(
    ("key", "body", "word"),
    [
        (SUMMARY_KEY, {"inputs": []}, "inputs"),
        (SUMMARY_KEY, {"inputs": {"text": {"text": "x"}, "language": {"text": "en"}, "zzz": {}}}, "zzz"),
        (SUMMARY_KEY, {"inputs": {"text": {"text": "x"}}}, "language"),
        (SUMMARY_KEY, {"inputs": {"text": {"text": "x" * 5001}, "language": {"text": "en"}}}, "maxLength"),
        (SUMMARY_KEY, {"inputs": {"text": {"text": "x"}, "language": {"text": "de"}}}, "options"),
        (INVOICE_KEY, {"inputs": {"invoice_image": {"files": []}}}, "exactly one"),
        (INVOICE_KEY, {"inputs": {"invoice_image": {"files": [{"uploadFileOid": "missing"}]}}}, "uploadFileOid"),
        (BUNDLE_KEY, {"inputs": {"documents": {"files": []}}}, "at least one"),
        (BUNDLE_KEY, {"inputs": {"documents": {"files": [{"fileType": "DOCUMENT"}]}}}, "url"),
    ],
)
def test_run_validation(emu: DocifyEmulator, client: httpx.Client, key: str, body: dict, word: str) -> None:
    r = client.post("v1/scenario/run", headers=auth(key), json=body)
    assert r.status_code == 400, r.text
    assert word in r.json()["message"]
    assert emu.runs_started() == 0


def test_url_inputs_and_keep_alive(emu: DocifyEmulator) -> None:
    conn = http.client.HTTPConnection(emu.host, emu.port, timeout=5)
    body = json.dumps(
        {"inputs": {"documents": {"files": [{"url": "https://x.test/a%20b.pdf"}, {"url": "s3://b/c.docx"}]}}}
    )
    headers = {**auth(BUNDLE_KEY), "Content-Type": "application/json"}
    conn.request("POST", "/docify/v1/scenario/run", body=body, headers=headers)
    first = conn.getresponse()
    result = json.loads(json.loads(first.read())["jsonResult"])
    sock = conn.sock
    conn.request("GET", "/docify/v1/scenario/info", headers=auth(BUNDLE_KEY))
    assert conn.getresponse().status == 200
    assert conn.sock is sock
    assert result == {"documents": ["a b.pdf", "c.docx"], "count": 2}
    conn.close()


def test_stream_frames_are_chunked_with_pings(emu: DocifyEmulator, client: httpx.Client) -> None:
    emu.scenarios["TEXT_SUMMARY"].latency = 0.3
    with client.stream("POST", "v1/scenario/run/streaming", headers=auth(SUMMARY_KEY), json=SUMMARY_BODY) as r:
        assert r.headers["transfer-encoding"] == "chunked"
        assert r.headers["content-type"].startswith("text/event-stream")
        events: list[tuple[str | None, str]] = []
        pings = read_sse(r, events)
    assert [name for name, _ in events] == ["start", "prepare_start", "prepare_end", "text", "text", "complete"]
    assert pings >= 3
    payloads = [json.loads(data) for _, data in events]
    assert {p["sessionId"] for p in payloads} == {payloads[0]["sessionId"]}
    assert set(payloads[0]) == {"type", "sessionId", "content", "response", "error", "chunkId", "timestamp"}
    final = payloads[-1]["response"]
    assert final["isSuccess"]
    assert json.loads(final["jsonResult"])["summary"] == "Hello world."
    assert emu.runs_completed(SUMMARY_KEY) == 1


def test_stream_raw_wire_format_options() -> None:
    with DocifyEmulator(sse_event_lines=False, line_ending="\r\n", ping_interval=None) as emulator:
        body = json.dumps(SUMMARY_BODY).encode()
        with socket.create_connection((emulator.host, emulator.port), timeout=5) as sock:
            sock.sendall(
                b"POST /docify/v1/scenario/run/streaming HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Authorization: Bearer " + SUMMARY_KEY.encode() + b"\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            raw = b""
            while data := sock.recv(65536):
                raw += data
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    size_line, _, rest = payload.partition(b"\r\n")
    assert rest.startswith(b'data: {"type": "START"')
    assert int(size_line, 16) == rest.index(b"\r\n\r\n") + 4
    assert b"event:" not in payload
    assert b": ping" not in payload
    assert payload.endswith(b"\r\n0\r\n\r\n")


def test_status_fault_with_retry_after_then_recovers(emu: DocifyEmulator, client: httpx.Client) -> None:
    emu.inject(Fault("run", "status", status=429, retry_after=3, times=2))
    responses = [client.post("v1/scenario/run", headers=auth(SUMMARY_KEY), json=SUMMARY_BODY) for _ in range(3)]
    assert [r.status_code for r in responses] == [429, 429, 200]
    assert responses[0].headers["retry-after"] == "3"
    assert responses[0].json()["code"] == 429
    assert emu.runs_started() == 1
    emu.inject(Fault("*", "status", status=503, key=BUNDLE_KEY, times=None))
    assert client.get("v1/scenario/info", headers=auth(SUMMARY_KEY)).status_code == 200
    assert client.get("v1/scenario/info", headers=auth(BUNDLE_KEY)).status_code == 503
    assert client.get("v1/scenario/info", headers=auth(BUNDLE_KEY)).status_code == 503


def test_latency_and_drop_before_response(emu: DocifyEmulator, client: httpx.Client) -> None:
    emu.inject(Fault("info", "latency", seconds=0.3))
    start = time.monotonic()
    assert client.get("v1/scenario/info", headers=auth(SUMMARY_KEY)).status_code == 200
    assert time.monotonic() - start >= 0.3
    emu.inject(Fault("run", "drop_before_response", run_started=True))
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("v1/scenario/run", headers=auth(SUMMARY_KEY), json=SUMMARY_BODY)
    assert (emu.runs_started(SUMMARY_KEY), emu.runs_completed(SUMMARY_KEY)) == (1, 0)
    assert emu.requests[-1].status is None


def test_drop_mid_stream_raises_mid_iteration(emu: DocifyEmulator, client: httpx.Client) -> None:
    emu.inject(Fault("stream", "drop_mid_stream", after_events=3))
    events: list[tuple[str | None, str]] = []
    with (
        client.stream("POST", "v1/scenario/run/streaming", headers=auth(SUMMARY_KEY), json=SUMMARY_BODY) as r,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        read_sse(r, events)
    assert [name for name, _ in events] == ["start", "prepare_start", "prepare_end"]
    assert (emu.runs_started(), emu.runs_completed()) == (1, 0)


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault("stream", "end_without_complete", after_events=4), ["start", "prepare_start", "prepare_end", "text"]),
        (Fault("stream", "error_event", message="boom"), ["start", "prepare_start", "prepare_end", "error"]),
        (
            Fault("*", "unknown_event"),
            ["start", "prepare_start", "prepare_end", "text", "text", "heartbeat_v2", "complete"],
        ),
        (
            Fault("stream", "malformed_event"),
            ["start", "prepare_start", "prepare_end", "text", "text", "text", "complete"],
        ),
    ],
)
def test_stream_shape_faults(emu: DocifyEmulator, client: httpx.Client, fault: Fault, expected: list[str]) -> None:
    emu.inject(fault)
    events, _ = stream(client)
    assert [name for name, _ in events] == expected
    if fault.kind == "error_event":
        assert json.loads(events[-1][1])["error"] == "boom"
    if fault.kind == "malformed_event":
        with pytest.raises(json.JSONDecodeError):
            json.loads(events[4][1])
    assert emu.runs_started() == 1
    assert emu.runs_completed() == (1 if expected[-1] == "complete" else 0)


def test_failed_run_still_costs_points(emu: DocifyEmulator, client: httpx.Client) -> None:
    emu.inject(Fault("run", "failed_run", message="model exploded"))
    body = client.post("v1/scenario/run", headers=auth(SUMMARY_KEY), json=SUMMARY_BODY).json()
    assert (body["isSuccess"], body["errorMessage"], body["costPoints"], body["files"]) == (
        False,
        "model exploded",
        2,
        [],
    )


def test_slow_events_keep_pinging_and_stall_goes_silent(emu: DocifyEmulator, client: httpx.Client) -> None:
    emu.inject(Fault("stream", "slow_events", interval=0.2))
    events, pings = stream(client)
    assert events[-1][0] == "complete"
    assert pings >= 8
    emu.inject(Fault("stream", "stall", after_events=2, seconds=3))
    received: list[tuple[str | None, str]] = []
    timeout = httpx.Timeout(5, read=0.4)
    with (
        client.stream(
            "POST", "v1/scenario/run/streaming", headers=auth(SUMMARY_KEY), json=SUMMARY_BODY, timeout=timeout
        ) as r,
        pytest.raises(httpx.ReadTimeout),
    ):
        read_sse(r, received)
    assert [name for name, _ in received] == ["start", "prepare_start"]


def test_huge_event_spans_many_chunks(emu: DocifyEmulator, client: httpx.Client) -> None:
    emu.inject(Fault("stream", "huge_event", size=1_000_000))
    with client.stream("POST", "v1/scenario/run/streaming", headers=auth(SUMMARY_KEY), json=SUMMARY_BODY) as r:
        pieces = list(r.iter_raw())
    text = b"".join(pieces).decode()
    huge = [json.loads(line[5:]) for line in text.split("\n") if line.startswith("data:") and len(line) > 10**6]
    assert len(huge) == 1
    assert huge[0]["content"] == "A" * 1_000_000
    assert len(pieces) > 10


def test_attachment_faults_and_hosts(client: httpx.Client, emu: DocifyEmulator) -> None:
    oid = upload(client)["uploadFileOid"]
    hostile = "../../etc/passwd\x00é" + "x" * 300
    emu.inject(Fault("run", "attachment_name", name=hostile))
    emu.inject(Fault("run", "lying_file_size", factor=2))
    [file] = client.post("v1/scenario/run", headers=auth(INVOICE_KEY), json=invoice_body(oid)).json()["files"]
    assert file["fileName"] == hostile
    assert urlsplit(file["fileUrl"]).path.count("/") == 4  # the name stays one path segment
    assert httpx.get(file["fileUrl"]).status_code == 200
    [file] = client.post("v1/scenario/run", headers=auth(INVOICE_KEY), json=invoice_body(oid)).json()["files"]
    assert file["fileSize"] == 2 * len(httpx.get(file["fileUrl"]).content)
    emu.inject(Fault("download", "redirect", location="http://elsewhere.invalid/x"))
    r = httpx.get(file["fileUrl"])
    assert (r.status_code, r.headers["location"]) == (302, "http://elsewhere.invalid/x")


def test_public_host_and_download_auth() -> None:
    with DocifyEmulator(download_requires_auth=True) as emulator:
        emulator.public_host = f"localhost:{emulator.port}"
        with httpx.Client(base_url=emulator.base_url + "/") as c:
            oid = upload(c)["uploadFileOid"]
            [file] = c.post("v1/scenario/run", headers=auth(INVOICE_KEY), json=invoice_body(oid)).json()["files"]
        assert urlsplit(file["fileUrl"]).netloc == f"localhost:{emulator.port}"
        assert httpx.get(file["fileUrl"]).status_code == 401
        assert httpx.get(file["fileUrl"], headers=auth(INVOICE_KEY)).status_code == 200
        assert [(r.host, r.has_auth) for r in emulator.requests[-2:]] == [
            (emulator.public_host, False),
            (emulator.public_host, True),
        ]


def test_fault_construction_is_validated() -> None:
    with pytest.raises(ValueError, match="kind"):
        Fault("run", "explode")
    with pytest.raises(ValueError, match="endpoint"):
        Fault("nowhere", "latency", seconds=1)
    with pytest.raises(ValueError, match="seconds"):
        Fault("run", "latency", secs=1)
    with pytest.raises(ValueError, match="does not apply"):
        Fault("upload", "drop_mid_stream", after_events=1)
    with pytest.raises(ValueError, match="requires"):
        Fault("stream", "stall", after_events=1)


def test_plugin_fixture(docify_emulator: DocifyEmulator) -> None:
    assert docify_emulator.base_url.endswith("/docify")
    r = httpx.get(docify_emulator.base_url + "/v1/scenario/info", headers=auth(SUMMARY_KEY))
    assert r.json()["scenarioCode"] == "TEXT_SUMMARY"


def test_cli_serves_until_sigterm() -> None:
    cmd = [sys.executable, "-m", "docify_provider.testing", "--port", "0", "--ping-interval", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().split()[-1]
        assert f"{INVOICE_KEY} -> OCR_INVOICE" in proc.stdout.readline()
        r = httpx.get(base_url + "/v1/scenario/info", headers=auth(INVOICE_KEY))
        assert r.json()["scenarioId"] == "1001"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def test_large_upload_is_streamed(emu: DocifyEmulator, client: httpx.Client, tmp_path: Path) -> None:
    path = tmp_path / "big.pdf"
    digest = hashlib.sha256()
    block = hashlib.sha512(b"seed").digest() * 16384  # 1 MiB
    with path.open("wb") as out:
        for i in range(50):
            piece = block[i:] + block[:i]
            out.write(piece)
            digest.update(piece)
    baseline = _rss_kib("VmRSS")
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], _rss_kib("VmRSS"))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM when the kernel allows it
        hwm_reset = True
    except OSError:
        hwm_reset = False
    try:
        with path.open("rb") as f:
            r = client.post(
                "v1/file/upload",
                headers=auth(INVOICE_KEY),
                files={"file": ("big.pdf", f)},
                data={"user": "u1"},
                timeout=60,
            )
    finally:
        done.set()
        sampler.join()
    assert r.status_code == 200
    assert r.json()["fileSize"] == 50 * 1024 * 1024
    assert emu.uploads[0].sha256 == digest.hexdigest()
    assert len(emu.uploads[0].head) == 64 * 1024
    growth_kib = max(peak[0], _rss_kib("VmHWM") if hwm_reset else 0) - baseline
    assert growth_kib < 10 * 1024, f"RSS grew by {growth_kib} KiB during a 50 MiB upload"
