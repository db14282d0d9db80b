"""``DocifyHook`` from an Airflow connection defined as ``AIRFLOW_CONN_<ID>`` JSON, against the emulator."""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
from airflow.providers.common.compat.sdk import ObjectStoragePath

from docify_provider.docify import (
    DEFAULT_BASE_URL,
    DocifyAuthenticationError,
    DocifyConfigError,
    DocifyInputError,
    DocifyRunFailedError,
    DocifyUnsafeDownloadError,
    RunResult,
    UploadedFile,
)
from docify_provider.docify.config import reveal
from docify_provider.hooks.docify import DocifyHook
from docify_provider.testing import BUNDLE_KEY, INVOICE_KEY, SUMMARY_KEY, DocifyEmulator, Fault
from docify_provider.testing.samples import SAMPLE_PNG as PNG
from helpers import PDF, SUMMARY_INPUTS, sha

SECRET = "sk-live-hook-never-log-me"

Conn = Callable[..., str]


# --- connection -> client configuration ------------------------------------------------------


@pytest.mark.airflow_line("the connection read through common-compat's BaseHook")
def test_extras_are_mapped(docify_conn: Conn, make_hook, tmp_path: Path) -> None:
    conn_id = docify_conn(
        SECRET,
        host="http://docify.internal/docify",
        connect_timeout="3.5",
        read_timeout=60,
        idle_timeout="5",
        verify_ssl="false",
        proxy="http://proxy.internal:3128",
        trusted_hosts="files.docify.jp, CDN.docify.jp ,",
        allow_insecure_http="true",
        max_retries="7",
        default_user="etl-bot",
    )
    config = make_hook(conn_id).config
    assert (
        reveal(config.api_key) == SECRET
        and repr(config.api_key) == "'***'"
        and config.base_url == "http://docify.internal/docify"
    )
    assert (config.connect_timeout, config.read_timeout, config.idle_timeout) == (3.5, 60.0, 5.0)
    assert config.verify is False and config.proxies == "http://proxy.internal:3128"
    assert config.trusted_hosts == ("files.docify.jp", "cdn.docify.jp")
    assert config.allow_insecure_http is True and config.max_retries == 7 and config.default_user == "etl-bot"


def test_defaults_and_ca_bundle(docify_conn: Conn, make_hook, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    config = make_hook(docify_conn(SECRET, conn_id="docify_defaults", host="", ca_bundle=str(bundle))).config
    assert config.base_url == DEFAULT_BASE_URL
    assert config.verify == str(bundle)
    assert (config.connect_timeout, config.read_timeout, config.idle_timeout, config.max_retries) == (2, 600, 1, 2)
    assert config.default_user == "airflow-provider-docify" and config.allow_insecure_http is False


def test_host_without_scheme(monkeypatch: pytest.MonkeyPatch, make_hook) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_DOCIFY_PARTS",
        '{"conn_type": "docify", "host": "docify.example.com", "port": 8443, "schema": "docify", "password": "k"}',
    )
    assert make_hook("docify_parts").config.base_url == "https://docify.example.com:8443/docify"


def test_plain_http_to_a_remote_host_needs_opt_in(docify_conn: Conn, make_hook) -> None:
    hook = make_hook(docify_conn(SECRET, host="http://docify.internal/docify"))
    with pytest.raises(DocifyConfigError, match="Refusing plain http://") as caught:
        hook.config
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [({"max_retries": "many"}, "extra 'max_retries' must be a number"), ({"idle_timeout": "-1"}, "idle_timeout")],
)
def test_bad_extras(docify_conn: Conn, make_hook, extra: dict, needle: str) -> None:
    hook = make_hook(docify_conn(SECRET, **extra))
    with pytest.raises(DocifyConfigError, match=needle):
        hook.config


# --- test_connection ---------------------------------------------------------------------------


@pytest.mark.airflow_line("test_connection as the line's UI and CLI call it")
def test_test_connection_names_the_scenario_and_costs_nothing(
    emulator: DocifyEmulator, docify_conn: Conn, make_hook
) -> None:
    ok, message = make_hook(docify_conn(SUMMARY_KEY)).test_connection()
    assert ok is True
    assert "'Text Summary' (TEXT_SUMMARY)" in message and "language (SELECT)" in message
    assert emulator.runs_started() == 0 and emulator.uploads == []
    assert {r.endpoint for r in emulator.requests} == {"info"}


def test_test_connection_with_a_bad_key(emulator: DocifyEmulator, docify_conn: Conn, make_hook) -> None:
    ok, message = make_hook(docify_conn(SECRET)).test_connection()
    assert ok is False and "check the API key" in message and "HTTP 401" in message
    assert SECRET not in message and emulator.runs_started() == 0


def test_test_connection_with_a_ca_bundle(docify_conn: Conn, make_hook) -> None:
    import certifi

    hook = make_hook(docify_conn(SUMMARY_KEY, ca_bundle=certifi.where()))
    assert hook.config.verify == certifi.where()
    assert hook.test_connection()[0] is True


@pytest.mark.parametrize(
    ("conn", "needle"),
    [
        ({"key": None}, "No Docify API key"),
        ({"key": SUMMARY_KEY, "ca_bundle": "/nonexistent/ca.pem"}, "Cannot load the CA bundle"),
        ({"key": SUMMARY_KEY, "max_retries": 0, "host": "http://127.0.0.1:9/docify"}, "before the request was sent"),
    ],
    ids=["no-key", "bad-ca-bundle", "nobody-listening"],
)
def test_test_connection_reports_unusable_connections(docify_conn: Conn, make_hook, conn: dict, needle: str) -> None:
    ok, message = make_hook(docify_conn(**conn)).test_connection()
    assert ok is False and needle in message


# --- inputs: validated, then uploaded ----------------------------------------------------------


def test_prepare_inputs_uploads_after_validation(
    emulator: DocifyEmulator, docify_conn: Conn, make_hook, invoice_png: Path
) -> None:
    hook = make_hook(docify_conn(INVOICE_KEY))
    wire = hook.prepare_inputs({"invoice_image": str(invoice_png)}, user="alice")
    [record] = emulator.uploads
    assert (record.file_name, record.user, record.sha256) == ("acme_invoice.png", "alice", sha(PNG))
    assert wire == {"invoice_image": {"files": [{"uploadFileOid": record.upload_file_oid, "fileType": "IMAGE"}]}}
    assert emulator.runs_started() == 0


@pytest.mark.parametrize(
    ("inputs", "needle"),
    [
        ({"invoice_image": "{png}", "invoice_number": "x"}, "no such parameter"),
        ({"invoice_image": ["{png}", "{png}"]}, "exactly one file, got 2"),
        ({}, "required file is missing"),
        ({"invoice_image": "{missing}"}, "no such file"),
    ],
    ids=["unknown-name", "two-files-for-FILE", "missing", "no-such-file"],
)
def test_invalid_inputs_upload_nothing(
    emulator: DocifyEmulator, docify_conn: Conn, make_hook, invoice_png: Path, inputs: dict, needle: str
) -> None:
    def fill(value: object) -> object:
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, str):
            return value.format(png=invoice_png, missing=invoice_png.parent / "missing.png")
        return value

    hook = make_hook(docify_conn(INVOICE_KEY))
    with pytest.raises(DocifyInputError, match=needle):
        hook.run_scenario({k: fill(v) for k, v in inputs.items()})
    assert emulator.uploads == [] and emulator.runs_started() == 0
    assert {r.endpoint for r in emulator.requests} <= {"info"}


def test_one_bad_file_in_a_list_uploads_none(
    emulator: DocifyEmulator, docify_conn: Conn, make_hook, tmp_path: Path
) -> None:
    good = tmp_path / "a.pdf"
    good.write_bytes(PDF)
    empty = tmp_path / "b.pdf"
    empty.write_bytes(b"")
    hook = make_hook(docify_conn(BUNDLE_KEY))
    with pytest.raises(DocifyInputError) as caught:
        hook.run_scenario({"documents": [good, empty, tmp_path / "c.exe"]})
    assert len(caught.value.problems) == 2 and "empty" in str(caught.value) and "c.exe" in str(caught.value)
    assert emulator.uploads == [] and emulator.runs_started() == 0


def test_run_scenario_with_every_kind_of_file_input(
    emulator: DocifyEmulator, docify_conn: Conn, make_hook, tmp_path: Path
) -> None:
    for name in ("local.pdf", "as_url.pdf", "as_object.pdf"):
        (tmp_path / name).write_bytes(PDF)
    hook = make_hook(docify_conn(BUNDLE_KEY))
    uploaded = hook.upload_file(PDF, file_name="uploaded.pdf")
    assert isinstance(uploaded, UploadedFile)
    result = hook.run_scenario(
        {
            "documents": [
                tmp_path / "local.pdf",
                f"file://{tmp_path / 'as_url.pdf'}",
                ObjectStoragePath(f"file://{tmp_path / 'as_object.pdf'}"),
                "https://files.example.com/remote.pdf",
                uploaded,
                uploaded.as_dict(),
            ],
            "note": "quarterly",
        }
    )
    assert isinstance(result, RunResult) and result.json_result == {
        "documents": ["local.pdf", "as_url.pdf", "as_object.pdf", "remote.pdf", "uploaded.pdf", "uploaded.pdf"],
        "count": 6,
    }
    assert result.result == "Bundled 6 documents (quarterly)"
    assert len(emulator.uploads) == 4 and {u.sha256 for u in emulator.uploads} == {sha(PDF)}
    assert emulator.runs_started(BUNDLE_KEY) == 1


def test_run_scenario_failed_run(emulator: DocifyEmulator, docify_conn: Conn, make_hook) -> None:
    emulator.inject(Fault("run", "failed_run", message="Scenario crashed"))
    with pytest.raises(DocifyRunFailedError, match="Scenario crashed"):
        make_hook(docify_conn(SUMMARY_KEY)).run_scenario(SUMMARY_INPUTS)
    assert emulator.runs_started(SUMMARY_KEY) == 1


def test_scenario_info_is_read_once_per_hook(
    emulator: DocifyEmulator, docify_conn: Conn, make_hook, requests_to
) -> None:
    hook = make_hook(docify_conn(SUMMARY_KEY))
    first = hook.run_scenario(SUMMARY_INPUTS)
    second = hook.run_scenario({**SUMMARY_INPUTS, "title": "Again"})
    assert first.json_result["title"] is None and second.json_result["title"] == "Again"
    assert len(requests_to(emulator, "info", 1)) == 1 and emulator.runs_started(SUMMARY_KEY) == 2


def test_stream_scenario(emulator: DocifyEmulator, docify_conn: Conn, make_hook, invoice_png: Path) -> None:
    events = list(make_hook(docify_conn(INVOICE_KEY)).stream_scenario({"invoice_image": invoice_png}))
    assert [e.type for e in events][:3] == ["START", "PREPARE_START", "PREPARE_END"]
    assert events[-1].type == "COMPLETE" and events[-1].response is not None
    assert events[-1].response.json_result["source_file"] == "acme_invoice.png"
    assert len(emulator.uploads) == 1 and emulator.runs_started(INVOICE_KEY) == 1


# --- attachments out ------------------------------------------------------------------------


def _run_invoice(hook: DocifyHook, invoice_png: Path) -> RunResult:
    return hook.run_scenario({"invoice_image": invoice_png})


def test_download_to_a_folder(docify_conn: Conn, make_hook, invoice_png: Path, tmp_path: Path) -> None:
    hook = make_hook(docify_conn(INVOICE_KEY))
    result = _run_invoice(hook, invoice_png)
    [attachment] = result.files
    folder = tmp_path / "out"
    folder.mkdir()
    stored = hook.download_file(attachment, folder)
    assert stored == str(folder / "acme_invoice_extracted.csv")
    content = Path(stored).read_bytes()
    assert len(content) == attachment.file_size
    assert f"invoice_number,{result.json_result['invoice_number']}".encode() in content
    # As the run operator's XCom (a dict) into a folder that does not exist yet, and to a file path.
    as_dict = {"file_url": attachment.file_url, "file_name": attachment.file_name, "file_size": attachment.file_size}
    assert Path(hook.download_file(as_dict, f"{tmp_path}/new/")).read_bytes() == content
    assert Path(hook.download_file(attachment.file_url, tmp_path / "named.csv")).read_bytes() == content
    assert sorted(os.listdir(folder)) == ["acme_invoice_extracted.csv"]


HOSTILE = [
    "../../escape.csv",
    "/etc/cron.d/evil.csv",
    "..\\..\\win.csv",
    "a\x00b.csv",
    "...",
    "con:tent?.csv",
    "x" * 400 + ".csv",
    "\uff46\uff55\uff4c\uff4c\uff0f\uff57\uff49\uff44\uff54\uff48.csv",  # full-width "full/width"
]


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_attachment_names_stay_in_the_folder(
    emulator: DocifyEmulator, docify_conn: Conn, make_hook, invoice_png: Path, tmp_path: Path, name: str
) -> None:
    emulator.inject(Fault("run", "attachment_name", name=name))
    hook = make_hook(docify_conn(INVOICE_KEY))
    [attachment] = _run_invoice(hook, invoice_png).files
    assert attachment.file_name == name
    folder = tmp_path / "deep" / "out"
    folder.mkdir(parents=True)
    stored = Path(hook.download_file(attachment, folder))
    assert stored.parent == folder and stored.is_file() and stored.stat().st_size == attachment.file_size
    assert len(stored.name.encode()) <= 200 and "\x00" not in stored.name
    everything = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert everything == {invoice_png, stored}


def test_size_mismatch_leaves_no_file(
    emulator: DocifyEmulator, docify_conn: Conn, make_hook, invoice_png: Path, tmp_path: Path
) -> None:
    emulator.inject(Fault("run", "lying_file_size", factor=2))
    emulator.inject(Fault("run", "lying_file_size", delta=-3))
    hook = make_hook(docify_conn(INVOICE_KEY))
    folder = tmp_path / "out"
    folder.mkdir()
    for _ in range(2):
        [attachment] = _run_invoice(hook, invoice_png).files
        with pytest.raises(DocifyUnsafeDownloadError):
            hook.download_file(attachment, folder)
    assert os.listdir(folder) == []


def test_download_to_object_storage(
    emulator: DocifyEmulator, docify_conn: Conn, make_hook, invoice_png: Path, tmp_path: Path
) -> None:
    hook = make_hook(docify_conn(INVOICE_KEY))
    [attachment] = _run_invoice(hook, invoice_png).files
    (tmp_path / "bucket" / "results").mkdir(parents=True)
    to_folder = hook.download_file(attachment, ObjectStoragePath(f"file://{tmp_path}/bucket/results"))
    assert isinstance(to_folder, ObjectStoragePath)
    assert to_folder.name == "acme_invoice_extracted.csv" and to_folder.stat().st_size == attachment.file_size
    assert (tmp_path / "bucket" / "results" / "acme_invoice_extracted.csv").read_bytes().startswith(b"field,value\n")
    to_file = hook.download_file(attachment, ObjectStoragePath(f"file://{tmp_path}/bucket/new/named.csv"))
    assert to_file.read_bytes() == to_folder.read_bytes()
    as_url = hook.download_file(attachment, f"file://{tmp_path}/bucket/by_url/")
    assert Path(as_url) == tmp_path / "bucket" / "by_url" / "acme_invoice_extracted.csv"
    assert Path(as_url).stat().st_size == attachment.file_size


def test_download_to_remote_object_storage_never_touches_local_disk(
    emulator: DocifyEmulator,
    docify_conn: Conn,
    make_hook,
    invoice_png: Path,
    tmp_path: Path,
    monkeypatch,
    memory_object_storage,
) -> None:
    # On Airflow 3.0/3.1 every ObjectStoragePath is a pathlib.Path; memory:// must still go to object storage.
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    hook = make_hook(docify_conn(INVOICE_KEY))
    [attachment] = _run_invoice(hook, invoice_png).files
    by_url = hook.download_file(attachment, "memory://docify-test-bucket/by_url/")
    by_path = hook.download_file(attachment, ObjectStoragePath("memory://docify-test-bucket/by_path/named.csv"))
    for stored in (by_url, by_path):
        assert isinstance(stored, ObjectStoragePath)
        assert str(stored).startswith("memory://")
        assert stored.read_bytes().startswith(b"field,value\n")
    assert str(by_url).endswith("/by_url/acme_invoice_extracted.csv")
    assert list(cwd.iterdir()) == [], "nothing may be written to the worker's disk"


def test_object_storage_size_mismatch_leaves_no_file(
    emulator: DocifyEmulator, docify_conn: Conn, make_hook, invoice_png: Path, tmp_path: Path
) -> None:
    emulator.inject(Fault("run", "lying_file_size", delta=-3))
    hook = make_hook(docify_conn(INVOICE_KEY))
    [attachment] = _run_invoice(hook, invoice_png).files
    (tmp_path / "bucket").mkdir()
    with pytest.raises(DocifyUnsafeDownloadError):
        hook.download_file(attachment, ObjectStoragePath(f"file://{tmp_path}/bucket"))
    with pytest.raises(DocifyUnsafeDownloadError):
        hook.download_file(attachment, ObjectStoragePath(f"file://{tmp_path}/bucket/named.csv"))
    assert os.listdir(tmp_path / "bucket") == []


# --- async (triggers) -------------------------------------------------------------------------


async def test_async_client_of_the_hook(emulator: DocifyEmulator, docify_conn: Conn, make_hook) -> None:
    """``async_client()`` is the one async way in (no pass-through wrappers on the hook)."""
    hook = make_hook(docify_conn(SUMMARY_KEY))
    wire = {"text": {"text": SUMMARY_INPUTS["text"]}, "language": {"text": "en"}}
    async with hook.async_client() as client:
        info = await client.get_scenario_info()
        events = [event async for event in client.stream(wire, user="trigger")]
        result = await client.run(wire)
    assert info.scenario_code == "TEXT_SUMMARY"
    assert [e.type for e in events] == ["START", "PREPARE_START", "PREPARE_END", "TEXT", "TEXT", "COMPLETE"]
    assert events[-1].response is not None
    assert events[-1].response.json_result == result.json_result
    assert result.json_result["summary"] == "Docify reads invoices."
    assert emulator.runs_started(SUMMARY_KEY) == 2


async def test_async_hook_bad_key(emulator: DocifyEmulator, docify_conn: Conn, make_hook) -> None:
    with pytest.raises(DocifyAuthenticationError) as caught:
        async with make_hook(docify_conn(SECRET)).async_client() as client:
            await client.get_scenario_info()
    assert SECRET not in str(caught.value)


# --- the key never leaks -----------------------------------------------------------------------


def test_key_never_in_errors_or_logs(
    emulator: DocifyEmulator, docify_conn: Conn, make_hook, caplog: pytest.LogCaptureFixture, invoice_png: Path
) -> None:
    hook = make_hook(docify_conn(SECRET))
    emulator.inject(Fault("*", "status", status=429, retry_after=0, times=4))
    failures: list[BaseException] = []
    with caplog.at_level(logging.DEBUG):
        for call in (
            hook.get_scenario_info,
            lambda: hook.upload_file(invoice_png),
            lambda: hook.client.run(SUMMARY_INPUTS),
            lambda: list(hook.client.stream(SUMMARY_INPUTS)),
            hook.test_connection,
        ):
            try:
                outcome = call()
            except Exception as exc:
                failures.append(exc)
            else:
                assert outcome[0] is False and SECRET not in outcome[1]
    assert len(failures) == 4
    for exc in failures:
        assert SECRET not in "".join(traceback.format_exception(exc)) + repr(exc.__dict__)
    assert "retry" in caplog.text and SECRET not in caplog.text
