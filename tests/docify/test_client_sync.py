"""The blocking ``DocifyClient`` against the emulator over a real loopback socket: scenario info, uploads,
blocking and streamed runs.

Every test checks what a user would notice: returned values, the typed error and its message, and
the emulator's own counters (requests seen, runs started = billed) to prove what was (not) sent.
Retries, errors that fail at once and downloads are in ``test_client_sync_retries_downloads.py``.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from docify_provider.docify import (
    ClientConfig,
    DocifyBadRequestError,
    DocifyClient,
    DocifyFileError,
    DocifyInputError,
    DocifyOutcomeUnknownError,
    DocifyProtocolError,
    DocifyRunFailedError,
    DocifyRunTimeoutError,
    DocifyStreamIncompleteError,
    DocifyTimeoutError,
    FileType,
)
from docify_provider.testing import BUNDLE_KEY, INVOICE_KEY, SUMMARY_KEY, DocifyEmulator, Fault
from docify_provider.testing.samples import SAMPLE_PNG as PNG
from helpers import PDF, SUMMARY_EVENTS, SUMMARY_INPUTS, SUMMARY_RESULT, sha

MakeClient = Callable[..., DocifyClient]


# --- scenario info --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "code", "variables"),
    [
        (INVOICE_KEY, "OCR_INVOICE", ["invoice_image"]),
        (SUMMARY_KEY, "TEXT_SUMMARY", ["text", "title", "language"]),
        (BUNDLE_KEY, "DOC_BUNDLE", ["documents", "note"]),
    ],
)
def test_info_per_key(make_client: MakeClient, key: str, code: str, variables: list[str]) -> None:
    info = make_client(key).get_scenario_info()
    assert info.scenario_code == code
    assert [p.variable for p in info.parameters] == variables


def test_info_details_for_summary(make_client: MakeClient) -> None:
    info = make_client(SUMMARY_KEY).get_scenario_info()
    text, title, language = info.parameters
    assert (text.type, text.required, text.max_length) == ("TEXTAREA", True, 5000)
    assert (title.type, title.required, title.max_length) == ("TEXT", False, 100)
    assert (language.type, language.options, language.max_length) == ("SELECT", ("en", "ja", "fr"), None)


def test_client_sends_user_agent_and_the_key(emulator: DocifyEmulator, make_client: MakeClient, requests_to) -> None:
    make_client(SUMMARY_KEY).get_scenario_info()
    [record] = requests_to(emulator, "info", 1)
    assert record.has_auth and record.status == 200
    assert record.user_agent is not None and record.user_agent.startswith("airflow-provider-docify/")


# --- upload ---------------------------------------------------------------------------------


def test_upload_from_str_path_and_pathlib(emulator: DocifyEmulator, make_client: MakeClient, tmp_path: Path) -> None:
    path = tmp_path / "acme invoice.png"
    path.write_bytes(PNG)
    client = make_client(INVOICE_KEY)
    first = client.upload_file(str(path))
    second = client.upload_file(path)
    for uploaded in (first, second):
        assert (uploaded.file_name, uploaded.file_size, uploaded.file_type) == ("acme invoice.png", len(PNG), "IMAGE")
    assert first.upload_file_oid != second.upload_file_oid
    records = emulator.uploads
    assert [r.sha256 for r in records] == [sha(PNG), sha(PNG)]
    assert [r.content_type for r in records] == ["image/png", "image/png"]


def test_upload_from_bytes_and_file_objects(emulator: DocifyEmulator, make_client: MakeClient, tmp_path: Path) -> None:
    client = make_client(INVOICE_KEY)
    from_bytes = client.upload_file(PDF, file_name="report.pdf")
    assert (from_bytes.file_name, from_bytes.file_type, from_bytes.file_size) == ("report.pdf", "DOCUMENT", len(PDF))

    buffer = io.BytesIO(PNG)
    buffer.read(100)  # a position mid-file does not matter: the whole file is sent
    from_buffer = client.upload_file(buffer, file_name="scan.png")
    assert from_buffer.file_size == len(PNG)
    assert not buffer.closed  # the caller's object is left open

    path = tmp_path / "written.pdf"
    with open(path, "wb+") as fh:
        fh.write(PDF)  # just written: the position is at the end
        from_handle = client.upload_file(fh)
        assert not fh.closed
    assert (from_handle.file_name, from_handle.file_size) == ("written.pdf", len(PDF))
    assert [r.sha256 for r in emulator.uploads] == [sha(PDF), sha(PNG), sha(PDF)]


def test_upload_user_default_and_explicit(emulator: DocifyEmulator, make_client: MakeClient) -> None:
    make_client(INVOICE_KEY).upload_file(PNG, file_name="a.png")
    make_client(INVOICE_KEY).upload_file(PNG, file_name="b.png", user="alice")
    make_client(INVOICE_KEY, default_user="etl-bot").upload_file(PNG, file_name="c.png")
    assert [(r.file_name, r.user) for r in emulator.uploads] == [
        ("a.png", "airflow-provider-docify"),
        ("b.png", "alice"),
        ("c.png", "etl-bot"),
    ]


def test_upload_file_type_inference_and_override(
    emulator: DocifyEmulator, make_client: MakeClient, requests_to
) -> None:
    client = make_client(INVOICE_KEY)
    assert client.upload_file(PNG, file_name="photo.JPG").file_type == "IMAGE"
    assert client.upload_file(PDF, file_name="notes.md").file_type == "DOCUMENT"
    # A name that says nothing is refused locally with a hint, before any request is sent ...
    with pytest.raises(DocifyFileError, match="file_type="):
        client.upload_file(PDF, file_name="blob.weird")
    assert len(emulator.uploads) == 2
    # ... and an explicit type is taken as given (enum or string), checked against its own limit.
    big = b"\0" * (11 * 1024 * 1024)
    with pytest.raises(DocifyFileError, match="10 MB limit for images"):
        client.upload_file(big, file_name="big.pdf", file_type=FileType.IMAGE)
    with pytest.raises(DocifyFileError, match="file_type must be IMAGE or DOCUMENT"):
        client.upload_file(PDF, file_name="x.pdf", file_type="VIDEO")
    assert len(emulator.uploads) == 2 and len(requests_to(emulator, "upload", 2)) == 2


@pytest.mark.parametrize(
    ("name", "size", "needle"),
    [
        ("huge.png", 10 * 1024 * 1024 + 1, "10 MB limit for images"),
        ("huge.pdf", 50 * 1024 * 1024 + 1, "50 MB limit for documents"),
        ("empty.pdf", 0, "the file is empty"),
    ],
)
def test_upload_size_limits_checked_before_sending(
    emulator: DocifyEmulator, make_client: MakeClient, tmp_path: Path, name: str, size: int, needle: str
) -> None:
    path = tmp_path / name
    with open(path, "wb") as fh:
        fh.truncate(size)  # sparse: no need to write megabytes
    with pytest.raises(DocifyFileError) as caught:
        make_client(INVOICE_KEY).upload_file(path)
    assert name in str(caught.value) and needle in str(caught.value)
    assert emulator.uploads == [] and emulator.requests == []


def test_upload_missing_file(emulator: DocifyEmulator, make_client: MakeClient, tmp_path: Path) -> None:
    with pytest.raises(DocifyFileError, match="no such file"):
        make_client(INVOICE_KEY).upload_file(str(tmp_path / "nope.png"))
    assert emulator.requests == []


# --- blocking run ---------------------------------------------------------------------------


def test_run_invoice_end_to_end(emulator: DocifyEmulator, make_client: MakeClient) -> None:
    client = make_client(INVOICE_KEY)
    info = client.get_scenario_info()
    uploaded = client.upload_file(PNG, file_name="acme_invoice.png")
    result = client.run({"invoice_image": uploaded}, scenario=info, user="alice")
    assert result.is_success and result.run_id.startswith("run-")
    assert result.json_result["invoice_number"] == "INV-" + sha(PNG)[:8].upper()
    assert result.json_result["vendor"] == "Acme Invoice"
    assert result.result is not None and result.result.startswith("Invoice Number: INV-")
    assert result.cost_points == 10.5
    assert result.created_at is not None and result.created_at.tzinfo is not None
    [attachment] = result.files
    assert attachment.file_name == "acme_invoice_extracted.csv" and attachment.file_size
    assert emulator.runs_started(INVOICE_KEY) == 1


def test_run_text_inputs_and_additional_info(emulator: DocifyEmulator, make_client: MakeClient) -> None:
    client = make_client(SUMMARY_KEY)
    result = client.run(SUMMARY_INPUTS, additional_info={"source": "test"})
    assert result.json_result == SUMMARY_RESULT and result.result == "Docify reads invoices."
    assert emulator.runs_started(SUMMARY_KEY) == 1


def test_run_remote_url_file(make_client: MakeClient) -> None:
    result = make_client(BUNDLE_KEY).run(
        {"documents": [{"url": "https://files.example.com/a.pdf"}, {"url": "https://files.example.com/b.png"}]}
    )
    assert result.json_result == {"documents": ["a.pdf", "b.png"], "count": 2}


def test_failed_run_raises_with_the_result(emulator: DocifyEmulator, make_client: MakeClient) -> None:
    emulator.inject(Fault("run", "failed_run", message="Invoice unreadable"))
    with pytest.raises(DocifyRunFailedError) as caught:
        make_client(SUMMARY_KEY).run(SUMMARY_INPUTS)
    err = caught.value
    assert "Invoice unreadable" in str(err) and err.error == "Invoice unreadable"
    assert isinstance(err.result, dict) and err.result["isSuccess"] is False and err.result["costPoints"] == 2
    assert err.run_id and err.run_id == err.result["runId"]
    assert emulator.runs_started(SUMMARY_KEY) == 1


def test_invalid_inputs_never_reach_the_server(emulator: DocifyEmulator, make_client: MakeClient) -> None:
    client = make_client(SUMMARY_KEY)
    info = client.get_scenario_info()
    with pytest.raises(DocifyInputError) as caught:
        client.run({"text": "x" * 5001, "language": "de", "titel": "t"}, scenario=info)
    assert len(caught.value.problems) == 3 and "did you mean 'title'" in str(caught.value)
    with pytest.raises(DocifyInputError):
        client.stream({"language": "en"}, scenario=info)  # checked at call time, before iterating
    assert [r.endpoint for r in emulator.requests] == ["info"]
    assert emulator.runs_started() == 0


def test_server_side_rejection_is_a_bad_request(emulator: DocifyEmulator, make_client: MakeClient, requests_to) -> None:
    # Without ``scenario=`` the client does not validate; Docify's 400 comes back typed.
    with pytest.raises(DocifyBadRequestError) as caught:
        make_client(SUMMARY_KEY).run({"text": "hello", "language": "de"})
    assert "not one of the options" in str(caught.value) and caught.value.status_code == 400
    assert caught.value.server_message and "language" in caught.value.server_message
    assert len(requests_to(emulator, "run", 1)) == 1 and emulator.runs_started() == 0


# --- streaming ------------------------------------------------------------------------------


def test_stream_events_in_order(emulator: DocifyEmulator, make_client: MakeClient) -> None:
    events = list(make_client(SUMMARY_KEY).stream(SUMMARY_INPUTS))
    assert [e.type for e in events] == SUMMARY_EVENTS
    assert [e.content for e in events[3:5]] == ["Reading text...", "Summarizing..."]
    assert len({e.session_id for e in events}) == 1 and events[0].session_id
    assert all(e.timestamp is not None and e.timestamp.tzinfo is not None for e in events)
    complete = events[-1].response
    assert complete is not None and complete.json_result == SUMMARY_RESULT and complete.is_success
    assert emulator.runs_started(SUMMARY_KEY) == 1 and emulator.runs_completed(SUMMARY_KEY) == 1


def test_run_streaming_returns_the_complete_result(make_client: MakeClient) -> None:
    seen: list[str] = []
    result = make_client(INVOICE_KEY).run_streaming(
        {"invoice_image": make_client(INVOICE_KEY).upload_file(PNG, file_name="x.png")},
        on_event=lambda e: seen.append(e.type),
    )
    assert result.json_result["invoice_number"] == "INV-" + sha(PNG)[:8].upper()
    assert seen == ["START", "PREPARE_START", "PREPARE_END", "TEXT", "TEXT", "TEXT", "COMPLETE"]


def test_stream_is_sent_on_first_iteration_only(emulator: DocifyEmulator, make_client: MakeClient) -> None:
    stream = make_client(SUMMARY_KEY).stream(SUMMARY_INPUTS)
    assert emulator.runs_started() == 0
    assert next(iter(stream)).type == "START"
    assert emulator.runs_started() == 1


def test_stream_error_event(emulator: DocifyEmulator, make_client: MakeClient) -> None:
    emulator.inject(Fault("stream", "error_event", message="File format not supported"))
    seen: list[str] = []
    with pytest.raises(DocifyRunFailedError) as caught:
        for event in make_client(SUMMARY_KEY).stream(SUMMARY_INPUTS):
            seen.append(event.type)
    err = caught.value
    assert seen == ["START", "PREPARE_START", "PREPARE_END"]
    assert err.error == "File format not supported" and err.session_id
    assert "File format not supported" in str(err) and err.session_id in str(err)
    assert emulator.runs_started(SUMMARY_KEY) == 1


def test_stream_failed_complete(emulator: DocifyEmulator, make_client: MakeClient) -> None:
    emulator.inject(Fault("stream", "failed_run", message="quota of pages exceeded"))
    with pytest.raises(DocifyRunFailedError) as caught:
        list(make_client(SUMMARY_KEY).stream(SUMMARY_INPUTS))
    assert caught.value.result["errorMessage"] == "quota of pages exceeded"  # type: ignore[index]
    assert caught.value.session_id and "quota of pages exceeded" in str(caught.value)


def test_stream_end_without_complete(emulator: DocifyEmulator, make_client: MakeClient, requests_to) -> None:
    emulator.inject(Fault("stream", "end_without_complete", after_events=4))
    with pytest.raises(DocifyStreamIncompleteError) as caught:
        list(make_client(SUMMARY_KEY).stream(SUMMARY_INPUTS))
    err = caught.value
    assert isinstance(err, DocifyOutcomeUnknownError)
    assert err.events_seen == ["START", "PREPARE_START", "PREPARE_END", "TEXT"]
    assert err.session_id and err.session_id in str(err) and "may have finished and been billed" in str(err)
    assert emulator.runs_started(SUMMARY_KEY) == 1 and len(requests_to(emulator, "stream", 1)) == 1


def test_stream_dropped_mid_stream_is_never_resent(
    emulator: DocifyEmulator, make_client: MakeClient, requests_to
) -> None:
    emulator.inject(Fault("stream", "drop_mid_stream", after_events=2))
    seen: list[str] = []
    with pytest.raises(DocifyOutcomeUnknownError) as caught:
        for event in make_client(SUMMARY_KEY, max_retries=5).stream(SUMMARY_INPUTS):
            seen.append(event.type)
    assert seen == ["START", "PREPARE_START"]
    err = caught.value
    assert err.session_id and err.session_id in str(err) and err.events_seen == seen
    assert "not re-sent" in str(err)
    assert emulator.runs_started(SUMMARY_KEY) == 1
    assert len(requests_to(emulator, "stream", 1)) == 1


def test_malformed_event_is_skipped(emulator: DocifyEmulator, make_client: MakeClient, caplog) -> None:
    emulator.inject(Fault("stream", "malformed_event"))
    with caplog.at_level(logging.WARNING, logger="docify_provider"):
        events = list(make_client(SUMMARY_KEY).stream(SUMMARY_INPUTS))
    assert [e.type for e in events] == SUMMARY_EVENTS
    assert events[-1].response is not None and events[-1].response.json_result == SUMMARY_RESULT
    assert "malformed Docify stream event" in caplog.text


def test_unknown_event_is_kept(emulator: DocifyEmulator, make_client: MakeClient) -> None:
    emulator.inject(Fault("stream", "unknown_event"))
    events = list(make_client(SUMMARY_KEY).stream(SUMMARY_INPUTS))
    assert [e.type for e in events] == [*SUMMARY_EVENTS[:-1], "HEARTBEAT_V2", "COMPLETE"]
    assert events[-2].content == "unknown" and events[-1].response is not None


@pytest.mark.parametrize(
    "options",
    [
        {"line_ending": "\r\n"},
        {"line_ending": "\r"},
        {"sse_event_lines": False},
        {"sse_event_lines": False, "line_ending": "\r\n"},
    ],
    ids=["crlf", "cr", "data-only", "data-only-crlf"],
)
def test_stream_framing_variants(options: dict[str, object]) -> None:
    with DocifyEmulator(ping_interval=0.01, event_interval=0.02, **options) as emu:  # type: ignore[arg-type]
        config = ClientConfig(api_key=SUMMARY_KEY, base_url=emu.base_url, idle_timeout=2)
        with DocifyClient(config) as client:
            events = list(client.stream(SUMMARY_INPUTS))
    assert [e.type for e in events] == SUMMARY_EVENTS
    assert events[-1].response is not None and events[-1].response.json_result == SUMMARY_RESULT


def test_pings_between_slow_events_are_ignored(emulator: DocifyEmulator, make_client: MakeClient) -> None:
    # Events 0.3 s apart with pings every 0.1 s; the idle timeout (1 s) is never reached.
    emulator.inject(Fault("stream", "slow_events", interval=0.3))
    events = list(make_client(SUMMARY_KEY, idle_timeout=1).stream(SUMMARY_INPUTS))
    assert [e.type for e in events] == SUMMARY_EVENTS


def test_huge_event_is_received(emulator: DocifyEmulator, make_client: MakeClient) -> None:
    emulator.inject(Fault("stream", "huge_event", size=4 * 1024 * 1024))
    # The test is about size: a loaded machine may take over the fixture's 1 s idle clock to move 4 MB.
    events = list(make_client(SUMMARY_KEY, idle_timeout=15).stream(SUMMARY_INPUTS))
    huge = [e for e in events if e.content and len(e.content) > 1000]
    assert len(huge) == 1 and huge[0].content == "A" * (4 * 1024 * 1024)
    assert events[-1].type == "COMPLETE"


def test_event_over_max_event_chars_is_refused(emulator: DocifyEmulator, make_client: MakeClient) -> None:
    emulator.inject(Fault("stream", "huge_event", size=1024 * 1024))
    with pytest.raises(DocifyProtocolError, match="exceeded 100000 characters"):
        list(make_client(SUMMARY_KEY, max_event_chars=100_000).stream(SUMMARY_INPUTS))


def test_stalled_stream_times_out_and_is_not_resent(
    emulator: DocifyEmulator, make_client: MakeClient, requests_to
) -> None:
    emulator.inject(Fault("stream", "stall", after_events=2, seconds=60))
    started = time.monotonic()
    with pytest.raises(DocifyTimeoutError) as caught:
        list(make_client(SUMMARY_KEY, idle_timeout=0.5).stream(SUMMARY_INPUTS))
    assert time.monotonic() - started < 30  # the idle timeout fired, not the 60 s stall
    err = caught.value
    assert isinstance(err, DocifyRunTimeoutError) and isinstance(err, DocifyOutcomeUnknownError)
    assert err.session_id and err.session_id in str(err) and err.events_seen == ["START", "PREPARE_START"]
    assert emulator.runs_started(SUMMARY_KEY) == 1 and len(requests_to(emulator, "stream", 1)) == 1


def test_stream_with_only_pings_times_out(emulator: DocifyEmulator, make_client: MakeClient, requests_to) -> None:
    # Pings keep the socket busy, but no event arrives within idle_timeout: the stream is stuck.
    emulator.inject(Fault("stream", "slow_events", interval=30))
    with pytest.raises(DocifyRunTimeoutError) as caught:
        list(make_client(SUMMARY_KEY, idle_timeout=0.5).stream(SUMMARY_INPUTS))
    assert "only keep-alives arrived" in str(caught.value) and caught.value.events_seen == ["START"]
    assert isinstance(caught.value, DocifyOutcomeUnknownError)
    assert emulator.runs_started(SUMMARY_KEY) == 1 and len(requests_to(emulator, "stream", 1)) == 1
