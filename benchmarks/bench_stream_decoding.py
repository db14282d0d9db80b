"""Events per second decoded from a loopback SSE stream: the provider's path vs plain line reading.

A minimal HTTP server (its own child process) answers every POST with the same pre-built
``text/event-stream`` body: START, PREPARE_START, PREPARE_END, TEXT events of ~100-200 bytes of
JSON each (the shape the emulator and Docify send), and a COMPLETE event with a run result;
100,000 events in all. The body is built once, before any client connects, so the server only
copies bytes. Each reader then runs in a fresh child process, several times, and reads the whole
stream from the same server:

* ``DocifyClient.stream``: the provider's path, events -> ``StreamEvent`` objects through
  ``BoundedEventText`` (size and idle bounds) + ``httpx-sse`` + ``StreamTracker`` (verdict);
* ``httpx-sse`` alone: ``EventSource(response).iter_sse()`` -> ``ServerSentEvent`` (no JSON);
* ``httpx iter_lines``: ``response.iter_lines()``, the lines only (no events, no JSON);
* ``requests iter_lines``: ``requests.post(stream=True).iter_lines(chunk_size=64 KiB)``.

Two framings of the same events are served: one HTTP chunk per event (what a server flushing
each event sends, the default) and 64 KiB chunks (``--framing bulk``; decoding cost alone).
The figure is events / wall time from sending the request to the last event read; the median
of ``--repeat`` runs is printed, with the provider's speed as a fraction of plain line reading.

With ``--backend dify`` (or ``--backend docify,dify``, one after the other in the same run) the
body is Dify's framing: ``data:``-only frames with the event name inside the JSON
(``workflow_started``, ``text_chunk`` events with ``task_id`` / ``workflow_run_id`` / ``data.text``,
an ``event: ping`` frame every 50 events, ``workflow_finished`` at the end), read by
``DifyClient.stream_workflow`` (``POST /v1/workflows/run``) vs httpx-sse alone (pings skipped)
vs httpx iter_lines (and requests iter_lines).

    .venv/bin/python benchmarks/bench_stream_decoding.py [--events 100000] [--repeat 3] [--framing both]
        [--backend docify|dify|docify,dify]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import socketserver
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(__file__))
from _common import free_port, machine_info, machine_line

KEY = "app-bench-stream-key"
BULK_CHUNK = 64 * 1024
#: TEXT contents: the model's output, streamed a few words at a time.
TEXTS = (
    "Recognizing invoice content...",
    "Invoice number",
    " INV-2026-0042,",
    " issued 2026-02-26 by Example Trading Co., Ltd.",
    " Line 3: 12 x Widget A",
    " @ 1,250 JPY = 15,000 JPY;",
    " tax 10%: 1,500 JPY.",
    " Total",
)
WARM_UP_EVENTS = 2_000


# -- the stream ------------------------------------------------------------------------------------


def build_events(count: int) -> list[bytes]:
    """``count`` SSE frames (``event:`` + ``data:`` lines): START, 2 PREPARE, TEXT..., COMPLETE."""
    session = str(uuid.uuid4())
    now = 1_772_000_000_000

    def frame(kind: str, **fields: object) -> bytes:
        # Compact JSON without null fields, the way a JVM server (Jackson, NON_NULL) writes it.
        body = {
            "type": kind,
            "sessionId": session,
            **fields,
            "chunkId": str(uuid.uuid4()),
            "timestamp": now + len(frames),
        }
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        return f"event: {kind.lower()}\ndata: {data}\n\n".encode()

    frames: list[bytes] = []
    frames.append(frame("START"))
    frames.append(frame("PREPARE_START", content="Preparing to execute task..."))
    frames.append(frame("PREPARE_END", content="Preparation complete"))
    while len(frames) < count - 1:
        frames.append(frame("TEXT", content=TEXTS[len(frames) % len(TEXTS)]))
    result = {
        "runId": "run-123456",
        "scenarioId": "1001",
        "isSuccess": True,
        "result": "Invoice Number: INV-2026-0042\nTotal: 16,500 JPY",
        "jsonResult": json.dumps({"invoice_number": "INV-2026-0042", "total": 16500, "currency": "JPY"}),
        "createAt": now,
        "finishedAt": now + 5000,
        "elapsedTime": 5000,
        "errorMessage": None,
        "costPoints": 10.5,
        "files": [{"fileName": "invoice_extracted.csv", "fileUrl": "http://127.0.0.1/x.csv", "fileSize": 2048}],
    }
    frames.append(frame("COMPLETE", response=result))
    return frames


#: A Dify server's keep-alive: one ``event: ping`` frame every this many events (~10 s on a live run).
DIFY_PING_EVERY = 50


def build_dify_events(count: int) -> list[bytes]:
    """``count`` Dify ``data:`` frames (workflow_started, text_chunk..., workflow_finished), with an
    ``event: ping`` frame (not counted) every :data:`DIFY_PING_EVERY` events, as Dify frames them:
    compact JSON, raw UTF-8, ``\\n`` line endings."""
    run_id, task_id, workflow_id = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    now = 1_772_000_000
    frames: list[bytes] = []
    sent = 0

    def frame(event: str, data: dict[str, object]) -> None:
        nonlocal sent
        if sent and sent % DIFY_PING_EVERY == 0:
            frames.append(b"event: ping\n\n")
        body = {"event": event, "task_id": task_id, "workflow_run_id": run_id, "data": data}
        frames.append(f"data: {json.dumps(body, ensure_ascii=False, separators=(',', ':'))}\n\n".encode())
        sent += 1

    frame(
        "workflow_started",
        {"id": run_id, "workflow_id": workflow_id, "inputs": {"topic": "benchmark"}, "created_at": now},
    )
    while sent < count - 1:
        frame("text_chunk", {"text": TEXTS[sent % len(TEXTS)], "from_variable_selector": ["llm", "text"]})
    finished = {
        "id": run_id,
        "workflow_id": workflow_id,
        "status": "succeeded",
        "outputs": {"text": "Invoice Number: INV-2026-0042\nTotal: 16,500 JPY"},
        "error": None,
        "elapsed_time": 5.0,
        "total_tokens": 1234,
        "total_steps": 3,
        "created_by": {"id": str(uuid.uuid4()), "user": "bench"},
        "created_at": now,
        "finished_at": now + 5,
        "exceptions_count": 0,
        "files": [],
    }
    frame("workflow_finished", finished)
    return frames


def chunked(frames: list[bytes], framing: str) -> bytes:
    """The HTTP/1.1 chunked body: one chunk per frame, or 64 KiB chunks."""
    pieces = frames
    if framing == "bulk":
        raw = b"".join(frames)
        pieces = [raw[i : i + BULK_CHUNK] for i in range(0, len(raw), BULK_CHUNK)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def serve(port: int, count: int, backend: str) -> None:
    """Serve the pre-built streams of ``backend``'s framing on 127.0.0.1:``port`` until killed.

    The query string picks the body: ``framing=bulk`` (else one chunk per event) and
    ``warmup`` (a short stream of the same events, to warm a reader up).
    """
    frames = BACKENDS[backend].build(count)
    warm = BACKENDS[backend].build(WARM_UP_EVENTS)
    bodies = {(f, False): chunked(frames, f) for f in ("event", "bulk")}
    bodies.update({(f, True): chunked(warm, f) for f in ("event", "bulk")})
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
        b"Cache-Control: no-store\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            request_line = self.rfile.readline(65537).decode("latin-1")
            length = 0
            for _ in range(100):  # headers, bounded
                line = self.rfile.readline(65537)
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            self.rfile.read(length)
            target = request_line.split(" ")[1] if " " in request_line else ""
            key = ("bulk" if "framing=bulk" in target else "event", "warmup=" in target)
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.wfile.write(head + bodies[key])

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    with Server(("127.0.0.1", port), Handler) as server:
        print("ready", flush=True)
        server.serve_forever()


# -- the readers (each in its own child process) ---------------------------------------------------


Query = dict[str, str]


def _provider(backend: str, base_url: str, query: Query) -> Iterator[object]:
    from docify_provider.docify import ClientConfig, DocifyClient

    client = DocifyClient(ClientConfig(api_key=KEY, base_url=base_url, max_retries=0, idle_timeout=60))
    # The query string (which body to serve) is set on the client; DocifyClient posts to its own path.
    client.http.params = query
    try:
        yield from client.stream({"text": "benchmark"}, user="bench")
    finally:
        client.close()


def _dify_provider(backend: str, base_url: str, query: Query) -> Iterator[object]:
    from docify_provider.dify.client import DifyClient
    from docify_provider.dify.config import DifyClientConfig

    client = DifyClient(DifyClientConfig(api_key=KEY, base_url=base_url, max_retries=0, idle_timeout=60))
    client.http.params = query  # as for Docify: the client posts to its own path, /v1/workflows/run
    try:
        yield from client.stream_workflow({"topic": "benchmark"}, user="bench")
    finally:
        client.close()


@dataclass(frozen=True)
class Backend:
    """One backend's framing, where its run request goes, and the provider's reader of it."""

    label: str
    base_path: str  # the client's base URL after the origin
    run_path: str  # what the client POSTs to, after the base URL
    body: dict[str, object]
    build: Callable[[int], list[bytes]]
    provider: Callable[[str, str, Query], Iterator[object]]
    provider_label: str
    pings: bool  # frames without data that httpx-sse yields and a client skips


BACKENDS = {
    "docify": Backend(
        "Docify",
        "/docify",
        "/v1/scenario/run/streaming",
        {"user": "bench", "inputs": {"text": {"text": "benchmark"}}},
        build_events,
        _provider,
        "DocifyClient.stream -> StreamEvent",
        False,
    ),
    "dify": Backend(
        "Dify",
        "/v1",
        "/workflows/run",
        {"user": "bench", "inputs": {"topic": "benchmark"}, "response_mode": "streaming"},
        build_dify_events,
        _dify_provider,
        "DifyClient.stream_workflow -> WorkflowEvent",
        True,
    ),
}


def _post(backend: str) -> dict[str, object]:
    """The run request's JSON body and headers, for the plain readers."""
    return {
        "json": BACKENDS[backend].body,
        "headers": {"Authorization": f"Bearer {KEY}", "Accept": "text/event-stream"},
    }


def _httpx_response(backend: str, base_url: str, query: Query) -> Iterator[object]:
    import httpx

    url = base_url + BACKENDS[backend].run_path
    with httpx.Client(timeout=60) as http, http.stream("POST", url, params=query, **_post(backend)) as response:  # type: ignore[arg-type]
        response.raise_for_status()
        yield response


def _httpx_sse(backend: str, base_url: str, query: Query) -> Iterator[object]:
    from httpx_sse import EventSource

    for response in _httpx_response(backend, base_url, query):
        events = EventSource(response).iter_sse()  # type: ignore[arg-type]
        yield from (e for e in events if e.event != "ping") if BACKENDS[backend].pings else events


def _httpx_lines(backend: str, base_url: str, query: Query) -> Iterator[object]:
    for response in _httpx_response(backend, base_url, query):
        yield from (line for line in response.iter_lines() if line.startswith("data:"))  # type: ignore[attr-defined]


def _requests_lines(backend: str, base_url: str, query: Query) -> Iterator[object]:
    import requests

    url = base_url + BACKENDS[backend].run_path
    with requests.post(url, params=query, stream=True, timeout=60, **_post(backend)) as response:  # type: ignore[arg-type]
        response.raise_for_status()
        yield from (line for line in response.iter_lines(chunk_size=64 * 1024) if line.startswith(b"data:"))


READERS: dict[str, tuple[str, Callable[[str, str, Query], Iterator[object]]]] = {
    "provider": ("the provider's client", lambda b, u, q: BACKENDS[b].provider(b, u, q)),
    "httpx_sse": ("httpx-sse EventSource.iter_sse", _httpx_sse),
    "httpx_lines": ("httpx response.iter_lines", _httpx_lines),
    "requests_lines": ("requests iter_lines (64 KiB)", _requests_lines),
}


def reader_label(reader: str, backend: str) -> str:
    return BACKENDS[backend].provider_label if reader == "provider" else READERS[reader][0]


def child(reader: str, backend: str, base_url: str, framing: str, expected: int) -> None:
    """Read one stream with ``reader``; print events, seconds and events per second as JSON."""
    read = READERS[reader][1]
    # Warm-up on a short stream: imports, connection set-up, every code path once.
    for _ in read(backend, base_url, {"framing": framing, "warmup": "1"}):
        pass
    start = time.perf_counter()
    count = 0
    for _ in read(backend, base_url, {"framing": framing}):
        count += 1
    seconds = time.perf_counter() - start
    if count != expected:
        raise SystemExit(f"{reader}: read {count} events, expected {expected}")
    print(json.dumps({"reader": reader, "events": count, "seconds": seconds, "eps": count / seconds}))


# -- driver ----------------------------------------------------------------------------------------


def run_child(reader: str, backend: str, base_url: str, framing: str, expected: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--child", reader, backend, base_url, framing, str(expected)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if out.returncode:
        raise SystemExit(f"child {reader} failed:\n{out.stderr[-3000:]}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["eps"])


def measure(backend: str, readers: list[str], framings: tuple[str, ...], events: int, repeat: int) -> Results:
    """Every reader's events/s on ``backend``'s stream, ``repeat`` child processes each, from one server."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), str(events), backend], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise SystemExit("the stream server did not start")
        base_url = f"http://127.0.0.1:{port}{BACKENDS[backend].base_path}"
        results: Results = {(f, r): [] for f in framings for r in readers}
        for framing in framings:
            for _ in range(repeat):  # interleaved, so that drift hits every reader alike
                for reader in readers:
                    results[(framing, reader)].append(run_child(reader, backend, base_url, framing, events))
    finally:
        server.terminate()
        server.wait(10)
    return results


def print_table(backend: str, results: Results, events: int, repeat: int) -> None:
    frames = BACKENDS[backend].build(events)
    texts = [f.split(b"data: ", 1)[1] for f in frames[: 4 * len(TEXTS)] if re.search(b'"(TEXT|text_chunk)"', f)]
    sizes = [len(t) - 2 for t in texts]  # the TEXT / text_chunk events' JSON
    pings = sum(1 for f in frames if b"data: " not in f)
    ping_note = f", {pings:,} pings" if pings else ""
    print(
        f"{BACKENDS[backend].label}: decoding a loopback SSE stream of {events:,} events{ping_note} "
        f"({len(b''.join(frames)) / 1e6:.1f} MB; text data {min(sizes)}-{max(sizes)} bytes of JSON), "
        f"median of {repeat} child processes each"
    )
    print(f"{'HTTP framing':<22}{'reader':<46}{'events/s':>12}{'vs httpx iter_lines':>21}")
    for framing in dict.fromkeys(f for f, _ in results):
        base = statistics.median(results[(framing, "httpx_lines")]) if (framing, "httpx_lines") in results else None
        label = "one chunk per event" if framing == "event" else "64 KiB chunks"
        for f, reader in results:
            if f != framing:
                continue
            eps = statistics.median(results[(framing, reader)])
            ratio = f"{eps / base:.2f}x" if base else "-"
            print(f"{label:<22}{reader_label(reader, backend):<46}{eps:>12,.0f}{ratio:>21}")
            label = ""


Results = dict[tuple[str, str], list[float]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="child processes per reader and framing")
    parser.add_argument("--framing", choices=("event", "bulk", "both"), default="both")
    parser.add_argument("--readers", default=",".join(READERS), help="comma-separated subset of " + ",".join(READERS))
    parser.add_argument("--backend", "--backends", default="docify", help="comma-separated: docify, dify")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line too")
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "EVENTS", "BACKEND"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--child", nargs=5, metavar=("READER", "BACKEND", "URL", "FRAMING", "N"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), int(args.serve[1]), args.serve[2])
        return
    if args.child:
        child(args.child[0], args.child[1], args.child[2], args.child[3], int(args.child[4]))
        return

    backends = [b for b in args.backend.split(",") if b]
    if any(b not in BACKENDS for b in backends):
        parser.error(f"--backend: choose from {', '.join(BACKENDS)}")
    print(machine_line())
    readers = [r for r in args.readers.split(",") if r]
    framings = ("event", "bulk") if args.framing == "both" else (args.framing,)
    results = {b: measure(b, readers, framings, args.events, args.repeat) for b in backends}
    for b in backends:
        print_table(b, results[b], args.events, args.repeat)
    print("goal: the provider's path at least 0.50x of httpx iter_lines")
    if args.json:
        medians = {f"{b}/{f}/{r}": statistics.median(v) for b in backends for (f, r), v in results[b].items()}
        print(json.dumps({"machine": machine_info(), "events": args.events, "events_per_second": medians}))


if __name__ == "__main__":
    main()
