"""A hostile or broken Docify server: endless streams, multi-GB attachments, lying sizes, huge events, odd names.

For each: memory stays bounded (measured in a child process, ``hostile_child.py``), nothing is
written outside the destination, and the error a user reads says what happened. Everything goes
over a real socket to the emulator on 127.0.0.1; the hostile behaviour is the emulator's.

Covered elsewhere, not repeated here:

* hostile names ``../``, absolute paths, backslashes, NUL, "...", ``:``/``?``, 400 characters and
  full-width slashes through ``DocifyHook.download_file``: ``test_hook.py::
  test_hostile_attachment_names_stay_in_the_folder``; ``../../etc/passwd`` and duplicate names
  through the run operator: ``test_operators.py::
  test_same_named_and_hostile_attachment_names_stay_distinct_and_inside``;
* ``fileSize`` off by a factor or a few bytes leaves no file: ``test_hook.py::
  test_size_mismatch_leaves_no_file`` (local) and ``test_object_storage_size_mismatch_leaves_no_file``;
* ``max_event_chars`` refusing a 1 MB / 300 kB event: ``test_client_sync.py::
  test_event_over_max_event_chars_is_refused``, ``test_client_async.py::
  test_huge_event_and_the_event_size_cap``; ``max_bytes`` on the client: ``test_download_max_bytes``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from docify_provider.docify import (
    AsyncDocifyClient,
    DocifyOutcomeUnknownError,
    DocifyRunTimeoutError,
    DocifyUnsafeDownloadError,
    ResultFile,
    RunResult,
)
from docify_provider.hooks.docify import DocifyHook
from docify_provider.testing import INVOICE_KEY, SUMMARY_KEY, DocifyEmulator, Fault, RequestRecord
from docify_provider.testing.samples import SAMPLE_PNG as PNG
from docify_provider.triggers.docify import DocifyStreamTrigger, error_from_event

pytestmark = pytest.mark.timeout(240)

CHILD = Path(__file__).resolve().parents[1] / "hostile_child.py"
SUMMARY_INPUTS = {"text": "Hostile servers exist. Clients must survive them.", "language": "en"}
WIRE = {"text": {"text": SUMMARY_INPUTS["text"]}, "language": {"text": "en"}}
MB = 1024 * 1024
GB = 1024 * MB
#: Peak memory a hostile response may add to the process handling it.
MEMORY_BUDGET_KB = 30 * 1024
#: How far past the declared size a download may read before it stops (one read chunk).
CHUNK = 64 * 1024
ENDLESS_SECONDS = 3

Conn = Callable[..., str]
MakeHook = Callable[[str], DocifyHook]
RequestsTo = Callable[..., list[RequestRecord]]


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def _run_invoice(hook: DocifyHook, invoice_png: Path) -> RunResult:
    return hook.run_scenario({"invoice_image": invoice_png})


def _as_dict(file: ResultFile) -> dict[str, Any]:
    return {"file_url": file.file_url, "file_name": file.file_name, "file_size": file.file_size}


def _child(mode: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``hostile_child.py`` (it inherits the test's ``AIRFLOW_CONN_*``) and return its report."""
    out = subprocess.run(
        [sys.executable, str(CHILD), mode, json.dumps(spec)], capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["rss_before_kb"], f"the child failed before its measured step: {report}"
    return report


def _growth_kb(report: dict[str, Any]) -> int:
    return int(report["peak_kb"]) - int(report["rss_before_kb"])


# --- an endless stream ---------------------------------------------------------------------------


def test_endless_stream_stops_at_max_stream_seconds(
    emulator: DocifyEmulator, docify_conn: Conn, make_hook: MakeHook, requests_to: RequestsTo
) -> None:
    # TEXT events as fast as the emulator can send them, never a COMPLETE: idle_timeout never fires.
    emulator.inject(Fault("stream", "endless", interval=0.0002, seconds=120))
    hook = make_hook(docify_conn(SUMMARY_KEY, max_stream_seconds=ENDLESS_SECONDS))
    events = []
    with pytest.raises(DocifyRunTimeoutError) as caught:
        for event in hook.stream_scenario(SUMMARY_INPUTS):
            events.append(event)
    error = caught.value
    message = str(error)
    assert f"exceeded max_stream_seconds ({ENDLESS_SECONDS}s)" in message
    assert "not re-sent automatically" in message
    assert isinstance(error, DocifyOutcomeUnknownError)  # may have been billed: never retried
    assert len(events) > 1000 and {e.type for e in events[3:]} == {"TEXT"}
    # The message names the session and the count, and lists only the last few events.
    assert f"Session {events[0].session_id}; {len(events)} event(s) seen" in message
    assert len(message) < 1000 and message.count("TEXT") <= 10
    assert emulator.runs_started(SUMMARY_KEY) == 1
    assert len(requests_to(emulator, "stream", 1)) == 1


async def test_endless_stream_in_the_deferred_trigger(
    emulator: DocifyEmulator, docify_conn: Conn, requests_to: RequestsTo
) -> None:
    emulator.inject(Fault("stream", "endless", interval=0.0002, seconds=120))
    conn_id = docify_conn(SUMMARY_KEY, max_stream_seconds=ENDLESS_SECONDS)
    trigger = DocifyStreamTrigger(inputs=WIRE, docify_conn_id=conn_id, user="hostile")
    payloads = [event.payload async for event in trigger.run()]

    [payload] = payloads  # exactly one trigger event
    assert payload["status"] == "error" and payload["error_type"] == "DocifyRunTimeoutError"
    assert f"exceeded max_stream_seconds ({ENDLESS_SECONDS}s)" in payload["message"]
    assert payload["session_id"] and len(payload["message"]) < 1000
    # The event is stored in the metadata DB: thousands of events seen, only the last ones kept.
    assert payload["detail"]["events_seen_count"] > 1000
    assert len(payload["detail"]["events_seen"]) <= 50 and len(json.dumps(payload)) < 10_000
    # What the operator raises when it resumes on a worker.
    raised = error_from_event(payload)
    assert isinstance(raised, DocifyRunTimeoutError) and isinstance(raised, DocifyOutcomeUnknownError)
    assert "max_stream_seconds" in str(raised) and raised.session_id == payload["session_id"]
    assert emulator.runs_started(SUMMARY_KEY) == 1
    assert len(requests_to(emulator, "stream", 1)) == 1


# --- multi-GB attachments -------------------------------------------------------------------------


def test_multi_gb_attachment_streams_to_disk_in_bounded_memory(
    emulator: DocifyEmulator, docify_conn: Conn, make_hook: MakeHook, invoice_png: Path, tmp_path: Path
) -> None:
    # Zeros generated while served, declared honestly. 1 GB keeps the test near ten seconds on a
    # shared 2-core machine; the memory held does not depend on the size (3 GB measured the same).
    size = 1 * GB
    emulator.inject(Fault("run", "attachment_size", size=size))
    conn_id = docify_conn(INVOICE_KEY)
    [attachment] = _run_invoice(make_hook(conn_id), invoice_png).files
    assert attachment.file_size == size
    out = tmp_path / "out"
    report = _child(
        "download",
        {
            "conn_id": conn_id,
            # Warm-up: the same URL, no declared size, cut at 1 MB by max_bytes.
            "warmup": {"file": attachment.file_url, "to": str(tmp_path / "warm") + "/", "max_bytes": MB},
            "file": _as_dict(attachment),
            "to": str(out) + "/",
        },
    )
    stored = Path(report["result"])
    try:
        assert stored == out / "acme_invoice_extracted.csv"
        assert stored.stat().st_size == size
        assert _growth_kb(report) < MEMORY_BUDGET_KB, report
        assert _files_under(tmp_path) == {invoice_png, stored}  # the warm-up's partial file is gone too
    finally:
        stored.unlink(missing_ok=True)


def test_declared_size_over_max_bytes_is_refused_before_any_byte(
    emulator: DocifyEmulator,
    docify_conn: Conn,
    make_hook: MakeHook,
    invoice_png: Path,
    tmp_path: Path,
    requests_to: RequestsTo,
) -> None:
    emulator.inject(Fault("run", "attachment_size", size=3 * GB))
    hook = make_hook(docify_conn(INVOICE_KEY))
    [attachment] = _run_invoice(hook, invoice_png).files
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DocifyUnsafeDownloadError) as caught:
        hook.download_file(attachment, out, max_bytes=10 * MB)
    message = str(caught.value)
    assert "'acme_invoice_extracted.csv'" in message
    assert f"declares {3 * GB} bytes" in message and f"download limit of {10 * MB} bytes" in message
    assert requests_to(emulator, "download") == []  # refused before the request, not after 10 MB
    assert _files_under(tmp_path) == {invoice_png}


async def test_async_client_refuses_a_declared_size_over_max_bytes_before_any_byte(
    emulator: DocifyEmulator, make_async_client: Callable[..., AsyncDocifyClient], requests_to: RequestsTo
) -> None:
    # The triggerer-side client applies the same guard as the worker-side one.
    emulator.inject(Fault("run", "attachment_size", size=3 * GB))
    async with make_async_client(INVOICE_KEY) as client:
        uploaded = await client.upload_file(PNG, file_name="acme_invoice.png")
        [attachment] = (await client.run({"invoice_image": {"files": [uploaded.to_input()]}})).files
        sink = io.BytesIO()
        with pytest.raises(DocifyUnsafeDownloadError, match=rf"declares {3 * GB} bytes .* limit of {MB} bytes"):
            await client.download(
                attachment.file_url,
                lambda: contextlib.nullcontext(sink),
                expected_size=attachment.file_size,
                max_bytes=MB,
            )
    assert sink.getvalue() == b"" and requests_to(emulator, "download") == []


def test_declared_size_over_free_disk_space_is_refused(
    emulator: DocifyEmulator,
    docify_conn: Conn,
    make_hook: MakeHook,
    invoice_png: Path,
    tmp_path: Path,
    requests_to: RequestsTo,
) -> None:
    # A petabyte declared: no disk has that free, so the download must not start and fill it.
    emulator.inject(Fault("run", "attachment_size", size=1000, declared=10**15))
    hook = make_hook(docify_conn(INVOICE_KEY))
    [attachment] = _run_invoice(hook, invoice_png).files
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DocifyUnsafeDownloadError) as caught:
        hook.download_file(attachment, out)
    message = str(caught.value)
    assert "'acme_invoice_extracted.csv' declares 1000000000000000 bytes" in message
    assert "bytes are free in" in message and str(out) in message
    assert requests_to(emulator, "download") == []
    assert _files_under(tmp_path) == {invoice_png}


# --- fileSize that lies ---------------------------------------------------------------------------


def test_body_far_larger_than_declared_stops_at_the_declared_size(
    emulator: DocifyEmulator, docify_conn: Conn, make_hook: MakeHook, invoice_png: Path, tmp_path: Path
) -> None:
    # 20 GB served for a declared 1 MB: the download must stop just past 1 MB, not fill the disk.
    emulator.inject(Fault("run", "attachment_size", size=20 * GB, declared=MB))
    hook = make_hook(docify_conn(INVOICE_KEY))
    [attachment] = _run_invoice(hook, invoice_png).files
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DocifyUnsafeDownloadError) as caught:
        hook.download_file(attachment, out)
    message = str(caught.value)
    match = re.search(r"larger than the (\d+) bytes Docify declared \(fileSize\); stopped at (\d+)", message)
    assert match, message
    assert "'acme_invoice_extracted.csv'" in message
    declared, stopped = int(match[1]), int(match[2])
    assert declared == MB and MB < stopped <= MB + CHUNK
    assert _files_under(tmp_path) == {invoice_png}


@pytest.mark.parametrize(
    ("fault", "declared", "actual"),
    [
        ({"kind": "attachment_size", "size": 3 * MB, "declared": 5 * MB}, 5 * MB, 3 * MB),  # body shorter
        ({"kind": "attachment_size", "size": 5 * MB, "declared": 3 * MB}, 3 * MB, None),  # body longer
        ({"kind": "lying_file_size", "factor": 0.5}, None, None),  # small CSV, half declared
        ({"kind": "lying_file_size", "delta": 1000}, None, None),  # small CSV, 1000 bytes more declared
    ],
    ids=["3MB-declared-5MB", "5MB-declared-3MB", "csv-half", "csv-plus-1000"],
)
def test_lying_file_size_names_the_file_and_both_sizes(
    emulator: DocifyEmulator,
    docify_conn: Conn,
    make_hook: MakeHook,
    invoice_png: Path,
    tmp_path: Path,
    fault: dict[str, Any],
    declared: int | None,
    actual: int | None,
) -> None:
    params = dict(fault)
    emulator.inject(Fault("run", params.pop("kind"), **params))
    hook = make_hook(docify_conn(INVOICE_KEY))
    [attachment] = _run_invoice(hook, invoice_png).files
    declared = declared if declared is not None else attachment.file_size
    assert declared is not None
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DocifyUnsafeDownloadError) as caught:
        hook.download_file(attachment, out)
    message = str(caught.value)
    assert "'acme_invoice_extracted.csv'" in message
    numbers = [int(n) for n in re.findall(r"\d+", message)]
    assert declared in numbers
    longer = re.search(r"larger than the \d+ bytes Docify declared \(fileSize\); stopped at (\d+)", message)
    shorter = re.search(r"has (\d+) bytes but Docify declared (\d+) \(fileSize\)", message)
    if longer:  # the body ran past the declared size: cut off within one read chunk
        assert declared < int(longer[1]) <= declared + CHUNK
    else:  # the body ended short: both sizes named
        assert shorter, message
        assert int(shorter[2]) == declared and int(shorter[1]) < declared
        if actual is not None:
            assert int(shorter[1]) == actual
    assert os.listdir(out) == []
    assert _files_under(tmp_path) == {invoice_png}


# --- an event larger than any sane limit ----------------------------------------------------------


@pytest.mark.parametrize("mode", ["stream", "trigger"])
def test_huge_event_is_refused_in_bounded_memory(emulator: DocifyEmulator, docify_conn: Conn, mode: str) -> None:
    # A 4 GB TEXT event (generated as it is sent) against a 1 MB max_event_chars set in the
    # connection extras; a warm-up stream on a second key of the same scenario runs first.
    emulator.add_key("hostile-warmup-key", "TEXT_SUMMARY")
    warm_conn = docify_conn("hostile-warmup-key", conn_id="docify_warm", max_event_chars=MB)
    conn_id = docify_conn(SUMMARY_KEY, max_event_chars=MB)
    emulator.inject(Fault("stream", "huge_event", size=4 * GB, key=SUMMARY_KEY))
    report = _child(mode, {"warm_conn": warm_conn, "conn_id": conn_id, "inputs": SUMMARY_INPUTS, "wire": WIRE})

    if mode == "stream":
        assert report.get("error_type") == "DocifyProtocolError", report
        message = report["message"]
    else:
        result = report["result"]
        assert result["events"] == 1 and result["status"] == "error", result
        assert result["error_type"] == "DocifyProtocolError"
        message = result["message"]
    assert f"A stream event exceeded {MB} characters" in message
    assert "raise max_event_chars in the connection extras" in message
    assert _growth_kb(report) < MEMORY_BUDGET_KB, report
    assert emulator.runs_started(SUMMARY_KEY) == 1


# --- attachment names -----------------------------------------------------------------------------

NAMES = {
    # name from the server -> the name it must be stored under
    "1000-ascii": ("n" * 996 + ".csv", "n" * 196 + ".csv"),
    "1000-multibyte": ("\u00e9" * 1000 + ".csv", "\u00e9" * 98 + ".csv"),
    "rtl-override": ("invoice\u202ecsv.exe", "invoice_csv.exe"),
    "combining": ("cafe\u0301.csv", "caf\u00e9.csv"),
    "combining-pile": ("a" + "\u0336" * 1000 + ".csv", None),
    "zero-width": ("\u200b\u200d\ufeff", "attachment"),
    "c1-control": ("a\u0085b.csv", "a_b.csv"),
    "windows-con": ("CON", "_CON"),
    "windows-nul-ext": ("nul.csv", "_nul.csv"),
    "windows-com1": ("COM1.txt", "_COM1.txt"),
    "windows-lpt9-space": ("LPT9 .log", "_LPT9 .log"),
    "only-dots": ("....", "attachment"),
    "dots-and-spaces": (". . .", "attachment"),
}


@pytest.mark.parametrize(("name", "expected"), list(NAMES.values()), ids=list(NAMES))
def test_odd_attachment_names_land_inside_with_a_safe_name(
    emulator: DocifyEmulator,
    docify_conn: Conn,
    make_hook: MakeHook,
    invoice_png: Path,
    tmp_path: Path,
    name: str,
    expected: str | None,
) -> None:
    emulator.inject(Fault("run", "attachment_name", name=name))
    hook = make_hook(docify_conn(INVOICE_KEY))
    [attachment] = _run_invoice(hook, invoice_png).files
    assert attachment.file_name == name
    folder = tmp_path / "out"
    folder.mkdir()
    stored = Path(hook.download_file(attachment, folder))
    assert stored.parent == folder and stored.stat().st_size == attachment.file_size
    assert _files_under(tmp_path) == {invoice_png, stored}
    assert len(stored.name.encode()) <= 200
    if expected is not None:
        assert stored.name == expected
    else:
        assert stored.name.startswith("a\u0336") and stored.name.endswith(".csv")
