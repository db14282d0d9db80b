"""The asyncio ``AsyncDocifyClient`` (used by triggers) against the emulator over loopback.

Same behaviour as the blocking client: the same values, typed errors, retry rules and run counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from docify_provider.docify import (
    AsyncDocifyClient,
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
    DocifyTransportError,
    DocifyUnsafeDownloadError,
    RunResult,
    StreamEvent,
)
from docify_provider.testing import BUNDLE_KEY, INVOICE_KEY, SUMMARY_KEY, DocifyEmulator, Fault
from docify_provider.testing.samples import SAMPLE_PNG as PNG
from helpers import PDF, SUMMARY_EVENTS, SUMMARY_INPUTS, SUMMARY_RESULT, sha

SECRET = "sk-live-async-never-log-me"

MakeClient = Callable[..., AsyncDocifyClient]


async def collect(client: AsyncDocifyClient, inputs: dict, seen: list[str] | None = None) -> list[StreamEvent]:
    events = []
    async for event in client.stream(inputs):
        events.append(event)
        if seen is not None:
            seen.append(event.type)
    return events


async def run_invoice(client: AsyncDocifyClient, content: bytes = PNG) -> RunResult:
    uploaded = await client.upload_file(content, file_name="acme_invoice.png")
    return await client.run({"invoice_image": uploaded})


def sink_into(buf: io.BytesIO) -> Callable[[], contextlib.AbstractContextManager[io.BytesIO]]:
    return lambda: contextlib.nullcontext(buf)


async def test_info(make_async_client: MakeClient) -> None:
    async with make_async_client(BUNDLE_KEY) as client:
        info = await client.get_scenario_info()
    assert info.scenario_code == "DOC_BUNDLE"
    assert [(p.variable, p.type, p.required) for p in info.parameters] == [
        ("documents", "FILELIST", True),
        ("note", "TEXT", False),
    ]


async def test_many_concurrent_calls_on_one_client(emulator: DocifyEmulator, make_async_client: MakeClient) -> None:
    async with make_async_client(SUMMARY_KEY) as client:
        infos = await asyncio.gather(*(client.get_scenario_info() for _ in range(10)))
        streams = await asyncio.gather(*(collect(client, SUMMARY_INPUTS) for _ in range(5)))
    assert {i.scenario_code for i in infos} == {"TEXT_SUMMARY"}
    assert all([e.type for e in events] == SUMMARY_EVENTS for events in streams)
    assert len({events[0].session_id for events in streams}) == 5
    assert emulator.runs_started(SUMMARY_KEY) == 5


async def test_upload_sources(emulator: DocifyEmulator, make_async_client: MakeClient, tmp_path: Path) -> None:
    path = tmp_path / "scan.png"
    path.write_bytes(PNG)
    async with make_async_client(INVOICE_KEY, default_user="trigger") as client:
        by_str = await client.upload_file(str(path))
        by_path = await client.upload_file(path, user="bob")
        by_bytes = await client.upload_file(PDF, file_name="report.pdf")
        buffer = io.BytesIO(PDF)
        buffer.seek(0, io.SEEK_END)
        by_fileobj = await client.upload_file(buffer, file_name="end.pdf")
    assert [u.file_type for u in (by_str, by_path, by_bytes, by_fileobj)] == ["IMAGE", "IMAGE", "DOCUMENT", "DOCUMENT"]
    assert [(r.file_name, r.user, r.sha256) for r in emulator.uploads] == [
        ("scan.png", "trigger", sha(PNG)),
        ("scan.png", "bob", sha(PNG)),
        ("report.pdf", "trigger", sha(PDF)),
        ("end.pdf", "trigger", sha(PDF)),
    ]


async def test_upload_over_the_limit_sends_nothing(
    emulator: DocifyEmulator, make_async_client: MakeClient, tmp_path: Path
) -> None:
    path = tmp_path / "big.jpeg"
    with open(path, "wb") as fh:
        fh.truncate(10 * 1024 * 1024 + 1)
    async with make_async_client(INVOICE_KEY) as client:
        with pytest.raises(DocifyFileError, match=r"big\.jpeg.*10 MB limit for images"):
            await client.upload_file(path)
    assert emulator.uploads == [] and emulator.requests == []


async def test_run_success_and_failure(emulator: DocifyEmulator, make_async_client: MakeClient) -> None:
    async with make_async_client(INVOICE_KEY) as client:
        result = await run_invoice(client)
        assert result.json_result["invoice_number"] == "INV-" + sha(PNG)[:8].upper()
        assert result.files[0].file_name == "acme_invoice_extracted.csv"
        emulator.inject(Fault("run", "failed_run", message="Blurry scan"))
        with pytest.raises(DocifyRunFailedError, match="Blurry scan") as caught:
            await run_invoice(client)
    assert caught.value.result["isSuccess"] is False  # type: ignore[index]
    assert emulator.runs_started(INVOICE_KEY) == 2


async def test_invalid_inputs_are_checked_before_sending(
    emulator: DocifyEmulator, make_async_client: MakeClient
) -> None:
    async with make_async_client(SUMMARY_KEY) as client:
        info = await client.get_scenario_info()
        with pytest.raises(DocifyInputError, match="not one of the allowed values"):
            await client.run({"text": "hi", "language": "de"}, scenario=info)
        with pytest.raises(DocifyInputError, match="required value is missing"):
            client.stream({"text": "hi"}, scenario=info)
    assert emulator.runs_started() == 0 and [r.endpoint for r in emulator.requests] == ["info"]


async def test_stream_events_and_result(emulator: DocifyEmulator, make_async_client: MakeClient) -> None:
    async with make_async_client(SUMMARY_KEY) as client:
        events = await collect(client, SUMMARY_INPUTS)
    assert [e.type for e in events] == SUMMARY_EVENTS
    assert events[-1].response is not None and events[-1].response.json_result == SUMMARY_RESULT
    assert emulator.runs_completed(SUMMARY_KEY) == 1


async def test_stream_error_event(emulator: DocifyEmulator, make_async_client: MakeClient) -> None:
    emulator.inject(Fault("stream", "error_event", message="File format not supported"))
    seen: list[str] = []
    async with make_async_client(SUMMARY_KEY) as client:
        with pytest.raises(DocifyRunFailedError) as caught:
            await collect(client, SUMMARY_INPUTS, seen)
    assert seen == ["START", "PREPARE_START", "PREPARE_END"]
    assert caught.value.error == "File format not supported"
    assert caught.value.session_id and caught.value.session_id in str(caught.value)


async def test_stream_end_without_complete(emulator: DocifyEmulator, make_async_client: MakeClient) -> None:
    emulator.inject(Fault("stream", "end_without_complete", after_events=3))
    async with make_async_client(SUMMARY_KEY) as client:
        with pytest.raises(DocifyStreamIncompleteError) as caught:
            await collect(client, SUMMARY_INPUTS)
    assert isinstance(caught.value, DocifyOutcomeUnknownError)
    assert caught.value.events_seen == ["START", "PREPARE_START", "PREPARE_END"]
    assert emulator.runs_started(SUMMARY_KEY) == 1


async def test_stream_dropped_is_never_resent(
    emulator: DocifyEmulator, make_async_client: MakeClient, requests_to
) -> None:
    emulator.inject(Fault("stream", "drop_mid_stream", after_events=3))
    async with make_async_client(SUMMARY_KEY, max_retries=5) as client:
        with pytest.raises(DocifyOutcomeUnknownError) as caught:
            await collect(client, SUMMARY_INPUTS)
    assert caught.value.session_id and caught.value.session_id in str(caught.value)
    assert caught.value.events_seen == ["START", "PREPARE_START", "PREPARE_END"]
    assert emulator.runs_started(SUMMARY_KEY) == 1
    assert len(requests_to(emulator, "stream", 1)) == 1


async def test_malformed_and_unknown_events(emulator: DocifyEmulator, make_async_client: MakeClient) -> None:
    emulator.inject(Fault("stream", "malformed_event"))
    emulator.inject(Fault("stream", "unknown_event"))
    async with make_async_client(SUMMARY_KEY) as client:
        first = await collect(client, SUMMARY_INPUTS)
        second = await collect(client, SUMMARY_INPUTS)
    assert [e.type for e in first] == SUMMARY_EVENTS
    assert [e.type for e in second] == [*SUMMARY_EVENTS[:-1], "HEARTBEAT_V2", "COMPLETE"]
    assert first[-1].response is not None and first[-1].response.json_result == SUMMARY_RESULT


@pytest.mark.parametrize("options", [{"line_ending": "\r\n"}, {"sse_event_lines": False}], ids=["crlf", "data-only"])
async def test_stream_framing_variants(options: dict[str, object]) -> None:
    with DocifyEmulator(ping_interval=0.01, event_interval=0.02, **options) as emu:  # type: ignore[arg-type]
        async with AsyncDocifyClient(ClientConfig(api_key=SUMMARY_KEY, base_url=emu.base_url)) as client:
            events = await collect(client, SUMMARY_INPUTS)
    assert [e.type for e in events] == SUMMARY_EVENTS


async def test_huge_event_and_the_event_size_cap(emulator: DocifyEmulator, make_async_client: MakeClient) -> None:
    emulator.inject(Fault("stream", "huge_event", size=3 * 1024 * 1024))
    emulator.inject(Fault("stream", "huge_event", size=300_000))
    # The test is about size: a loaded machine may take over the fixture's 1 s idle clock to move 3 MB.
    async with make_async_client(SUMMARY_KEY, idle_timeout=15) as client:
        events = await collect(client, SUMMARY_INPUTS)
    assert max(len(e.content or "") for e in events) == 3 * 1024 * 1024
    async with make_async_client(SUMMARY_KEY, max_event_chars=100_000) as client:
        with pytest.raises(DocifyProtocolError, match="exceeded 100000 characters"):
            await collect(client, SUMMARY_INPUTS)


async def test_stall_times_out(emulator: DocifyEmulator, make_async_client: MakeClient, requests_to) -> None:
    emulator.inject(Fault("stream", "stall", after_events=1, seconds=60))
    async with make_async_client(SUMMARY_KEY, idle_timeout=0.5) as client:
        with pytest.raises(DocifyRunTimeoutError) as caught:
            await asyncio.wait_for(collect(client, SUMMARY_INPUTS), timeout=30)
    assert isinstance(caught.value, DocifyOutcomeUnknownError) and caught.value.events_seen == ["START"]
    assert emulator.runs_started(SUMMARY_KEY) == 1 and len(requests_to(emulator, "stream", 1)) == 1


async def test_pings_only_time_out(emulator: DocifyEmulator, make_async_client: MakeClient) -> None:
    emulator.inject(Fault("stream", "slow_events", interval=30))
    async with make_async_client(SUMMARY_KEY, idle_timeout=0.5) as client:
        with pytest.raises(DocifyRunTimeoutError, match="only keep-alives arrived"):
            await asyncio.wait_for(collect(client, SUMMARY_INPUTS), timeout=30)
    assert emulator.runs_started(SUMMARY_KEY) == 1


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "status", "status": 429, "retry_after": 0.05},
        {"kind": "status", "status": 502},
        {"kind": "status", "status": 503},
        {"kind": "status", "status": 504},
        {"kind": "drop_before_response"},
    ],
    ids=["429", "502", "503", "504", "dropped"],
)
async def test_info_and_upload_are_retried(
    emulator: DocifyEmulator, make_async_client: MakeClient, requests_to, fault: dict
) -> None:
    emulator.inject(Fault("info", times=2, **fault))
    emulator.inject(Fault("upload", times=2, **fault))
    async with make_async_client(INVOICE_KEY) as client:
        assert (await client.get_scenario_info()).scenario_code == "OCR_INVOICE"
        uploaded = await client.upload_file(io.BytesIO(PNG), file_name="scan.png")
    assert len(requests_to(emulator, "info", 3)) == 3 and len(requests_to(emulator, "upload", 3)) == 3
    [record] = emulator.uploads
    assert record.sha256 == sha(PNG) and record.upload_file_oid == uploaded.upload_file_oid


async def test_retry_after_capped(emulator: DocifyEmulator, make_async_client: MakeClient) -> None:
    emulator.inject(Fault("info", "status", status=429, retry_after=3600))
    async with make_async_client(SUMMARY_KEY, retry_after_cap=0.05) as client:
        info = await asyncio.wait_for(client.get_scenario_info(), timeout=30)
    assert info.scenario_code == "TEXT_SUMMARY"


@pytest.mark.parametrize("endpoint", ["run", "stream"])
@pytest.mark.parametrize(
    ("fault", "error", "started"),
    [
        ({"kind": "status", "status": 429}, DocifyRateLimitedError, 0),
        ({"kind": "status", "status": 503}, DocifyServerError, 0),
        ({"kind": "status", "status": 504}, DocifyServerError, 0),
        ({"kind": "drop_before_response", "run_started": True}, DocifyOutcomeUnknownError, 1),
    ],
    ids=["429", "503", "504", "dropped-after-start"],
)
async def test_runs_are_never_resent(
    emulator: DocifyEmulator,
    make_async_client: MakeClient,
    requests_to,
    endpoint: str,
    fault: dict,
    error: type[Exception],
    started: int,
) -> None:
    emulator.inject(Fault(endpoint, times=None, **fault))
    async with make_async_client(SUMMARY_KEY, max_retries=5) as client:
        with pytest.raises(error):
            if endpoint == "run":
                await client.run(SUMMARY_INPUTS)
            else:
                await collect(client, SUMMARY_INPUTS)
    assert len(requests_to(emulator, endpoint, 1)) == 1
    assert emulator.runs_started(SUMMARY_KEY) == started


@pytest.mark.parametrize("endpoint", ["run", "stream"])
async def test_refused_connection_is_retried(closed_port: int, caplog: pytest.LogCaptureFixture, endpoint: str) -> None:
    config = ClientConfig(
        api_key=SUMMARY_KEY,
        base_url=f"http://127.0.0.1:{closed_port}/docify",
        max_retries=3,
        backoff_initial=0.01,
        backoff_max=0.02,
    )
    with caplog.at_level(logging.WARNING, logger="docify_provider.docify.retries"):
        async with AsyncDocifyClient(config) as client:
            with pytest.raises(DocifyTransportError) as caught:
                if endpoint == "run":
                    await client.run(SUMMARY_INPUTS)
                else:
                    await collect(client, SUMMARY_INPUTS)
    assert caught.value.request_sent is False and not isinstance(caught.value, DocifyOutcomeUnknownError)
    assert len([r for r in caplog.records if r.name == "docify_provider.docify.retries"]) == 3


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, DocifyBadRequestError),
        (401, DocifyAuthenticationError),
        (403, DocifyAuthenticationError),
        (404, DocifyNotFoundError),
    ],
)
@pytest.mark.parametrize("endpoint", ["info", "upload", "stream"])
async def test_client_errors_fail_at_once(
    emulator: DocifyEmulator,
    make_async_client: MakeClient,
    requests_to,
    endpoint: str,
    status: int,
    error: type[DocifyHTTPError],
) -> None:
    emulator.inject(Fault(endpoint, "status", status=status, times=None, message="emulated refusal"))
    async with make_async_client(SUMMARY_KEY, max_retries=5) as client:
        with pytest.raises(error, match="emulated refusal") as caught:
            if endpoint == "info":
                await client.get_scenario_info()
            elif endpoint == "upload":
                await client.upload_file(PDF, file_name="a.pdf")
            else:
                await collect(client, SUMMARY_INPUTS)
    assert caught.value.status_code == status
    assert len(requests_to(emulator, endpoint, 1)) == 1


async def test_bad_key_is_not_in_the_error(make_async_client: MakeClient) -> None:
    async with make_async_client(SECRET) as client:
        with pytest.raises(DocifyAuthenticationError) as caught:
            await client.get_scenario_info()
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value.__dict__)


async def test_download(emulator: DocifyEmulator, make_async_client: MakeClient, downloads_of) -> None:
    async with make_async_client(INVOICE_KEY) as client:
        result = await run_invoice(client)
        [attachment] = result.files
        buf = io.BytesIO()
        size = await client.download(attachment.file_url, sink_into(buf), expected_size=attachment.file_size)
    assert size == attachment.file_size == len(buf.getvalue())
    assert f"invoice_number,{result.json_result['invoice_number']}".encode() in buf.getvalue()
    assert [d.has_auth for d in downloads_of(emulator, 1)] == [True]


async def test_download_lying_size(emulator: DocifyEmulator, make_async_client: MakeClient) -> None:
    emulator.inject(Fault("run", "lying_file_size", factor=3))
    async with make_async_client(INVOICE_KEY) as client:
        [attachment] = (await run_invoice(client)).files
        with pytest.raises(DocifyUnsafeDownloadError, match="but Docify declared"):
            await client.download(attachment.file_url, sink_into(io.BytesIO()), expected_size=attachment.file_size)


async def test_download_key_stays_on_trusted_hosts(
    emulator: DocifyEmulator, make_async_client: MakeClient, requests_to
) -> None:
    async with make_async_client(INVOICE_KEY) as client:
        [attachment] = (await run_invoice(client)).files
        elsewhere = attachment.file_url.replace("127.0.0.1", "localhost")
        emulator.inject(Fault("download", "redirect", location=elsewhere))
        buf = io.BytesIO()
        await client.download(attachment.file_url, sink_into(buf))
        assert buf.getvalue().startswith(b"field,value\n")
    async with make_async_client(INVOICE_KEY, trusted_hosts=("localhost",)) as trusting:
        await trusting.download(elsewhere, sink_into(io.BytesIO()))
    hops = requests_to(emulator, "download", 3)
    assert [(r.host, r.has_auth) for r in hops] == [
        (f"127.0.0.1:{emulator.port}", True),
        (f"localhost:{emulator.port}", False),
        (f"localhost:{emulator.port}", True),
    ]


async def test_upload_is_logged_as_the_sync_client_logs_it(
    make_client: Callable[..., DocifyClient], make_async_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The trigger's uploads leave the same line in the task log as the worker's (a drift once: none)."""
    with caplog.at_level(logging.INFO, logger="docify_provider.docify.client"):
        sync = make_client(INVOICE_KEY).upload_file(PNG, file_name="scan.png")
        async with make_async_client(INVOICE_KEY) as client:
            aio = await client.upload_file(PNG, file_name="scan.png")
    lines = [r.getMessage() for r in caplog.records if r.name == "docify_provider.docify.client"]
    assert lines == [
        f"Uploaded scan.png ({len(PNG):,} bytes) to Docify as {sync.upload_file_oid}",
        f"Uploaded scan.png ({len(PNG):,} bytes) to Docify as {aio.upload_file_oid}",
    ]
    assert INVOICE_KEY not in caplog.text


async def test_run_streaming_returns_the_complete_result(
    emulator: DocifyEmulator, make_async_client: MakeClient
) -> None:
    """The async twin of ``DocifyClient.run_streaming`` (both clients now come from one source)."""
    seen: list[str] = []
    async with make_async_client(SUMMARY_KEY) as client:
        result = await client.run_streaming(SUMMARY_INPUTS, on_event=lambda e: seen.append(e.type))
    assert result.json_result == SUMMARY_RESULT and seen == SUMMARY_EVENTS
    assert emulator.runs_started(SUMMARY_KEY) == 1
