"""The blocking ``DocifyClient`` when a request fails, and its downloads, against the emulator over a real
loopback socket: what is retried and what is never re-sent (a run costs money), the errors that fail at
once (and never show the key), and attachments (size checks, where the key may go, redirects).

Apart from ``test_client_sync.py`` (scenario info, upload, a blocking and a streamed run that succeed
or fail as Dify answers) to keep each file readable. Every test checks what a user would notice: the
returned values, the typed error and its message, and the emulator's counters (runs started = billed).
"""

from __future__ import annotations

import contextlib
import io
import logging
import pickle
import time
import traceback
from collections.abc import Callable

import pytest

from docify_provider.docify import (
    ClientConfig,
    DocifyAuthenticationError,
    DocifyBadRequestError,
    DocifyClient,
    DocifyHTTPError,
    DocifyNotFoundError,
    DocifyOutcomeUnknownError,
    DocifyRateLimitedError,
    DocifyRunTimeoutError,
    DocifyServerError,
    DocifyTransportError,
    DocifyUnsafeDownloadError,
    RunResult,
)
from docify_provider.testing import FORBIDDEN_KEY, INVOICE_KEY, SUMMARY_KEY, DocifyEmulator, Fault
from docify_provider.testing.samples import SAMPLE_PNG as PNG
from helpers import PDF, SUMMARY_INPUTS, SUMMARY_RESULT, sha

SECRET = "sk-live-0123456789-never-log-me"

MakeClient = Callable[..., DocifyClient]


def run_invoice(client: DocifyClient, content: bytes = PNG, name: str = "acme_invoice.png") -> RunResult:
    uploaded = client.upload_file(content, file_name=name)
    return client.run({"invoice_image": uploaded})


def sink_into(buf: io.BytesIO) -> Callable[[], contextlib.AbstractContextManager[io.BytesIO]]:
    return lambda: contextlib.nullcontext(buf)


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
