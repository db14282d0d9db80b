"""The blocking ``DocifyClient`` against the emulator over a real loopback socket.

Every test checks what a user would notice: returned values, the typed error and its message, and
the emulator's own counters (requests seen, runs started = billed) to prove what was (not) sent.
"""

from __future__ import annotations

import contextlib
import io
import logging
import pickle
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from docify_provider.docify import (
    ClientConfig,
    DocifyAuthenticationError,
    DocifyBadRequestError,
    DocifyClient,
    DocifyFileError,
    DocifyHTTPError,
    DocifyInputError,
    DocifyNotFoundError,
    DocifyOutcomeUnknownError,
    DocifyProtocolError,
    DocifyRateLimitedError,
    DocifyRunFailedError,
    DocifyRunTimeoutError,
    DocifyServerError,
    DocifyStreamIncompleteError,
    DocifyTimeoutError,
    DocifyTransportError,
    DocifyUnsafeDownloadError,
    FileType,
    RunResult,
)
from docify_provider.testing import BUNDLE_KEY, FORBIDDEN_KEY, INVOICE_KEY, SUMMARY_KEY, DocifyEmulator, Fault
from docify_provider.testing.samples import SAMPLE_PNG as PNG
from helpers import PDF, SUMMARY_EVENTS, SUMMARY_INPUTS, SUMMARY_RESULT, sha

SECRET = "sk-live-0123456789-never-log-me"

MakeClient = Callable[..., DocifyClient]


def run_invoice(client: DocifyClient, content: bytes = PNG, name: str = "acme_invoice.png") -> RunResult:
    uploaded = client.upload_file(content, file_name=name)
    return client.run({"invoice_image": uploaded})


def sink_into(buf: io.BytesIO) -> Callable[[], contextlib.AbstractContextManager[io.BytesIO]]:
    return lambda: contextlib.nullcontext(buf)


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


# --- retries --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "status", "status": 429, "retry_after": 0.05},
        {"kind": "status", "status": 429, "retry_after": "Wed, 21 Oct 2015 07:28:00 GMT"},
        {"kind": "status", "status": 429},
        {"kind": "status", "status": 502},
        {"kind": "status", "status": 503},
        {"kind": "status", "status": 504},
        {"kind": "drop_before_response"},
    ],
    ids=["429-seconds", "429-http-date", "429-no-header", "502", "503", "504", "dropped"],
)
def test_info_is_retried(emulator: DocifyEmulator, make_client: MakeClient, requests_to, fault: dict) -> None:
    emulator.inject(Fault("info", times=2, **fault))
    info = make_client(SUMMARY_KEY).get_scenario_info()
    assert info.scenario_code == "TEXT_SUMMARY"
    assert len(requests_to(emulator, "info", 3)) == 3


def test_retry_after_is_capped(emulator: DocifyEmulator, make_client: MakeClient, requests_to) -> None:
    emulator.inject(Fault("info", "status", status=429, retry_after=3600))
    started = time.monotonic()
    assert make_client(SUMMARY_KEY, retry_after_cap=0.1).get_scenario_info().scenario_code == "TEXT_SUMMARY"
    assert time.monotonic() - started < 30  # not the hour the server asked for
    assert len(requests_to(emulator, "info", 2)) == 2


def test_retries_give_up_with_the_typed_error(emulator: DocifyEmulator, make_client: MakeClient, requests_to) -> None:
    emulator.inject(Fault("info", "status", status=429, retry_after=0.01, times=None, message="slow down"))
    with pytest.raises(DocifyRateLimitedError) as caught:
        make_client(SUMMARY_KEY, max_retries=2).get_scenario_info()
    assert caught.value.retry_after == 0.01 and "slow down" in str(caught.value)
    assert len(requests_to(emulator, "info", 3)) == 3


def test_upload_is_retried_and_resends_the_whole_file(
    emulator: DocifyEmulator, make_client: MakeClient, requests_to
) -> None:
    emulator.inject(Fault("upload", "status", status=503))
    emulator.inject(Fault("upload", "drop_before_response"))
    buffer = io.BytesIO(PDF)
    uploaded = make_client(INVOICE_KEY).upload_file(buffer, file_name="report.pdf")
    assert uploaded.file_size == len(PDF)
    [record] = emulator.uploads  # the two failed attempts left nothing behind
    assert record.sha256 == sha(PDF) and record.upload_file_oid == uploaded.upload_file_oid
    assert len(requests_to(emulator, "upload", 3)) == 3


RUN_FAULTS = [
    ({"kind": "status", "status": 429, "retry_after": 0.01}, DocifyRateLimitedError, 0),
    ({"kind": "status", "status": 502}, DocifyServerError, 0),
    ({"kind": "status", "status": 503}, DocifyServerError, 0),
    ({"kind": "status", "status": 504}, DocifyServerError, 0),
    ({"kind": "drop_before_response"}, DocifyOutcomeUnknownError, 0),
    ({"kind": "drop_before_response", "run_started": True}, DocifyOutcomeUnknownError, 1),
]
RUN_FAULT_IDS = ["429", "502", "503", "504", "dropped", "dropped-after-start"]


@pytest.mark.parametrize("endpoint", ["run", "stream"])
@pytest.mark.parametrize(("fault", "error", "started"), RUN_FAULTS, ids=RUN_FAULT_IDS)
def test_runs_are_never_resent(
    emulator: DocifyEmulator,
    make_client: MakeClient,
    requests_to,
    endpoint: str,
    fault: dict,
    error: type[Exception],
    started: int,
) -> None:
    emulator.inject(Fault(endpoint, times=None, **fault))
    client = make_client(SUMMARY_KEY, max_retries=5)
    with pytest.raises(error) as caught:
        if endpoint == "run":
            client.run(SUMMARY_INPUTS)
        else:
            list(client.stream(SUMMARY_INPUTS))
    if error is DocifyOutcomeUnknownError:
        assert "not re-sent" in str(caught.value) and "billed" in str(caught.value)
    assert len(requests_to(emulator, endpoint, 1)) == 1
    assert emulator.runs_started(SUMMARY_KEY) == started


@pytest.mark.parametrize("endpoint", ["run", "stream"])
def test_run_read_timeout_is_outcome_unknown(
    emulator: DocifyEmulator, make_client: MakeClient, requests_to, endpoint: str
) -> None:
    emulator.inject(Fault(endpoint, "latency", seconds=0.8))
    client = make_client(SUMMARY_KEY, read_timeout=0.2, idle_timeout=0.2, max_retries=5)
    with pytest.raises(DocifyRunTimeoutError) as caught:
        if endpoint == "run":
            client.run(SUMMARY_INPUTS)
        else:
            list(client.stream(SUMMARY_INPUTS))
    assert isinstance(caught.value, DocifyOutcomeUnknownError) and caught.value.request_sent
    assert "not re-sent" in str(caught.value)
    # The server went on and started (billed) the run after the client gave up: exactly once.
    assert len(requests_to(emulator, endpoint, 1)) == 1
    assert emulator.runs_started(SUMMARY_KEY) == 1


@pytest.mark.parametrize("endpoint", ["info", "run", "stream"])
def test_refused_connection_is_retried_even_for_runs(
    closed_port: int, caplog: pytest.LogCaptureFixture, endpoint: str
) -> None:
    config = ClientConfig(
        api_key=SUMMARY_KEY,
        base_url=f"http://127.0.0.1:{closed_port}/docify",
        max_retries=2,
        backoff_initial=0.01,
        backoff_max=0.02,
    )
    with caplog.at_level(logging.WARNING, logger="docify_provider.docify.retries"), DocifyClient(config) as client:
        with pytest.raises(DocifyTransportError) as caught:
            if endpoint == "info":
                client.get_scenario_info()
            elif endpoint == "run":
                client.run(SUMMARY_INPUTS)
            else:
                list(client.stream(SUMMARY_INPUTS))
    err = caught.value
    assert err.request_sent is False and not isinstance(err, DocifyOutcomeUnknownError)
    assert "before the request was sent" in str(err)
    retries = [r for r in caplog.records if r.name == "docify_provider.docify.retries"]
    assert len(retries) == 2  # two retries after the first refusal, then the error


class _StartEmulatorOnRetry(logging.Handler):
    """Starts an emulator on the refused port when the client logs its first retry."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port
        self.emulator: DocifyEmulator | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.emulator is None:
            self.emulator = DocifyEmulator(port=self.port).start()


@pytest.mark.parametrize("endpoint", ["run", "stream"])
def test_run_refused_then_served_runs_exactly_once(closed_port: int, endpoint: str) -> None:
    handler = _StartEmulatorOnRetry(closed_port)
    logger = logging.getLogger("docify_provider.docify.retries")
    logger.addHandler(handler)
    try:
        config = ClientConfig(
            api_key=SUMMARY_KEY, base_url=f"http://127.0.0.1:{closed_port}/docify", backoff_initial=0.05
        )
        with DocifyClient(config) as client:
            if endpoint == "run":
                result = client.run(SUMMARY_INPUTS)
            else:
                result = [e for e in client.stream(SUMMARY_INPUTS)][-1].response  # type: ignore[assignment]
        assert result is not None and result.json_result == SUMMARY_RESULT
        assert handler.emulator is not None and handler.emulator.runs_started(SUMMARY_KEY) == 1
    finally:
        logger.removeHandler(handler)
        if handler.emulator is not None:
            handler.emulator.stop()


STATUS_ERRORS = [
    (400, DocifyBadRequestError, "Docify rejected the request"),
    (401, DocifyAuthenticationError, "check the API key"),
    (403, DocifyAuthenticationError, "lacks permission"),
    (404, DocifyNotFoundError, "base URL"),
]


@pytest.mark.parametrize("endpoint", ["info", "upload", "run", "stream"])
@pytest.mark.parametrize(("status", "error", "hint"), STATUS_ERRORS, ids=["400", "401", "403", "404"])
def test_client_errors_fail_at_once(
    emulator: DocifyEmulator,
    make_client: MakeClient,
    requests_to,
    endpoint: str,
    status: int,
    error: type[DocifyHTTPError],
    hint: str,
) -> None:
    emulator.inject(Fault(endpoint, "status", status=status, times=None, message="emulated refusal"))
    client = make_client(SUMMARY_KEY, max_retries=5)
    with pytest.raises(error) as caught:
        if endpoint == "info":
            client.get_scenario_info()
        elif endpoint == "upload":
            client.upload_file(PDF, file_name="a.pdf")
        elif endpoint == "run":
            client.run(SUMMARY_INPUTS)
        else:
            list(client.stream(SUMMARY_INPUTS))
    err = caught.value
    assert err.status_code == status and err.server_message == "emulated refusal"
    assert hint in str(err) and "emulated refusal" in str(err) and f"HTTP {status}" in str(err)
    assert len(requests_to(emulator, endpoint, 1)) == 1
    assert emulator.runs_started() == 0 and emulator.uploads == []


def test_real_auth_failures(emulator: DocifyEmulator, make_client: MakeClient, requests_to) -> None:
    with pytest.raises(DocifyAuthenticationError, match="lacks permission") as forbidden:
        make_client(FORBIDDEN_KEY).get_scenario_info()
    assert forbidden.value.status_code == 403
    with pytest.raises(DocifyAuthenticationError, match="check the API key") as unknown:
        make_client(SECRET).run(SUMMARY_INPUTS)
    assert unknown.value.status_code == 401
    assert len(requests_to(emulator, "info", 1)) == 1 and len(requests_to(emulator, "run", 1)) == 1


def test_wrong_base_url_is_not_found(emulator: DocifyEmulator, make_client: MakeClient) -> None:
    wrong = emulator.base_url.replace("/docify", "/wrong")
    client = make_client(SUMMARY_KEY, base_url=wrong)
    with pytest.raises(DocifyNotFoundError) as caught:
        client.get_scenario_info()
    origin = wrong.rsplit("/", 1)[0]
    assert f"The base URL is {wrong}, but Docify's API is under /docify: e.g. {origin}/docify" in str(caught.value)


def test_the_key_never_appears_in_errors(
    emulator: DocifyEmulator, make_client: MakeClient, caplog: pytest.LogCaptureFixture, closed_port: int
) -> None:
    emulator.inject(Fault("info", "status", status=503, times=None))
    unreachable = ClientConfig(api_key=SECRET, base_url=f"http://127.0.0.1:{closed_port}", max_retries=0)
    errors: list[BaseException] = []
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(DocifyAuthenticationError) as refused:
            make_client(SECRET).run(SUMMARY_INPUTS)
        errors.append(refused.value)
        with pytest.raises(DocifyServerError) as retried:  # retried once, logged
            make_client(SECRET, max_retries=1).get_scenario_info()
        errors.append(retried.value)
        with pytest.raises(DocifyTransportError) as unreached, DocifyClient(unreachable) as client:
            client.get_scenario_info()
        errors.append(unreached.value)
    for err in errors:
        rendered = "".join(traceback.format_exception(err)) + repr(err) + repr(err.__dict__)
        assert SECRET not in rendered
        assert SECRET not in repr(pickle.loads(pickle.dumps(err)).__dict__)
    assert caplog.records and SECRET not in caplog.text


# --- downloads ------------------------------------------------------------------------------


def test_download_to_a_sink(emulator: DocifyEmulator, make_client: MakeClient, downloads_of) -> None:
    client = make_client(INVOICE_KEY)
    result = run_invoice(client)
    [attachment] = result.files
    buf = io.BytesIO()
    size = client.download(attachment.file_url, sink_into(buf), expected_size=attachment.file_size)
    content = buf.getvalue()
    assert size == len(content) == attachment.file_size
    assert content.startswith(b"field,value\n")
    assert f"invoice_number,{result.json_result['invoice_number']}".encode() in content
    [record] = downloads_of(emulator, 1)
    assert record.has_auth  # same host as the API: the key goes along


@pytest.mark.parametrize(
    ("lie", "needle"),
    [({"factor": 2}, "but Docify declared"), ({"delta": -5}, "larger than the"), ({"delta": 1}, "but Docify declared")],
)
def test_download_size_must_match_file_size(
    emulator: DocifyEmulator, make_client: MakeClient, lie: dict, needle: str
) -> None:
    emulator.inject(Fault("run", "lying_file_size", **lie))
    client = make_client(INVOICE_KEY)
    [attachment] = run_invoice(client).files
    with pytest.raises(DocifyUnsafeDownloadError, match=needle) as caught:
        client.download(attachment.file_url, sink_into(io.BytesIO()), expected_size=attachment.file_size)
    assert "acme_invoice_extracted.csv" in str(caught.value)


def test_download_max_bytes(make_client: MakeClient) -> None:
    client = make_client(INVOICE_KEY)
    [attachment] = run_invoice(client).files
    with pytest.raises(DocifyUnsafeDownloadError, match="download limit of 10 bytes"):
        client.download(attachment.file_url, sink_into(io.BytesIO()), max_bytes=10)


def test_download_key_only_to_the_api_host(emulator: DocifyEmulator, make_client: MakeClient, downloads_of) -> None:
    # Attachments served from another host ("localhost" vs the API's "127.0.0.1").
    emulator.public_host = f"localhost:{emulator.port}"
    client = make_client(INVOICE_KEY)
    [attachment] = run_invoice(client).files
    assert attachment.file_url.startswith(f"http://localhost:{emulator.port}/")
    assert client.download(attachment.file_url, sink_into(io.BytesIO())) == attachment.file_size
    trusting = make_client(INVOICE_KEY, trusted_hosts=("localhost",))
    assert trusting.download(attachment.file_url, sink_into(io.BytesIO())) == attachment.file_size
    first, second = downloads_of(emulator, 2)
    assert (first.host, first.has_auth) == (f"localhost:{emulator.port}", False)
    assert (second.host, second.has_auth) == (f"localhost:{emulator.port}", True)


def test_download_redirect_to_another_host_drops_the_key(
    emulator: DocifyEmulator, make_client: MakeClient, requests_to
) -> None:
    client = make_client(INVOICE_KEY)
    [attachment] = run_invoice(client).files
    elsewhere = attachment.file_url.replace("127.0.0.1", "localhost")
    emulator.inject(Fault("download", "redirect", location=elsewhere))
    buf = io.BytesIO()
    assert client.download(attachment.file_url, sink_into(buf), expected_size=attachment.file_size) > 0
    assert buf.getvalue().startswith(b"field,value\n")
    hops = requests_to(emulator, "download", 2)
    assert [(r.host, r.has_auth, r.status) for r in hops] == [
        (f"127.0.0.1:{emulator.port}", True, 302),
        (f"localhost:{emulator.port}", False, 200),
    ]


def test_download_requiring_auth_from_an_untrusted_host_fails() -> None:
    with DocifyEmulator(download_requires_auth=True) as emu:
        emu.public_host = f"localhost:{emu.port}"
        config = ClientConfig(api_key=INVOICE_KEY, base_url=emu.base_url)
        with DocifyClient(config) as client:
            [attachment] = run_invoice(client).files
            with pytest.raises(DocifyAuthenticationError):
                client.download(attachment.file_url, sink_into(io.BytesIO()))
        assert emu.downloads == []  # refused: nothing was served without the key


def test_plain_http_to_a_remote_host_is_refused() -> None:
    from docify_provider.docify import DocifyConfigError

    with pytest.raises(DocifyConfigError, match="Refusing plain http://"):
        DocifyClient(ClientConfig(api_key=SECRET, base_url="http://docify.example.com/docify"))
    config = ClientConfig(api_key=SECRET, base_url="http://docify.example.com/docify", allow_insecure_http=True)
    assert config.is_trusted_host("http://docify.example.com/docify/download/x")


def test_download_of_an_unknown_attachment(emulator: DocifyEmulator, make_client: MakeClient, requests_to) -> None:
    client = make_client(INVOICE_KEY)
    with pytest.raises(DocifyNotFoundError, match="Attachment not found") as caught:
        client.download(f"{emulator.base_url}/download/expired-token/a.csv", sink_into(io.BytesIO()))
    assert caught.value.status_code == 404
    assert len(requests_to(emulator, "download", 1)) == 1  # a 404 is not retried
