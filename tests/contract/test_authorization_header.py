"""Where the credential's ``Authorization`` header may go, on every backend.

A plain ``http://`` base URL on a non-loopback address is refused (nothing is sent) unless
``allow_insecure_http`` (every backend: the rule is ``_core``'s), and, on Docify, an attachment served
by another host gets no key unless the connection trusts it, and redirects of API calls are not
followed. Apart from ``test_secrets.py`` (a search of everything real DAG runs wrote) because these
tests check what is sent where, not what is written; the two share ``tests/credential_scan.py``.
"""

from __future__ import annotations

import io
import logging
import socket
import traceback
from pathlib import Path
from typing import Any

import pytest

from airflow_helpers import conn_json, new_dag, run_dag
from docify_provider.docify import AsyncDocifyClient, ClientConfig, DocifyClient
from docify_provider.docify.errors import DocifyConfigError, DocifyServerError
from docify_provider.operators.docify import DocifyRunScenarioOperator, DocifyStreamScenarioOperator
from docify_provider.testing import DocifyEmulator, Fault
from docify_provider.testing.samples import SAMPLE_PNG as PNG
from tests.credential_scan import CAPTURED, capture_failure, exception_texts, new_secret

pytestmark = pytest.mark.timeout(180)


def test_attachments_on_another_host_get_the_key_only_when_trusted(docify_conns, monkeypatch, tmp_path):
    emu = docify_conns
    key = new_secret("attachments")
    emu.add_key(key, "OCR_INVOICE")
    emu.public_host = f"localhost:{emu.port}"  # attachments served from a host other than the API's
    monkeypatch.setenv("AIRFLOW_CONN_DOCIFY_SECRET_PLAIN", conn_json(emu.base_url, key))
    monkeypatch.setenv("AIRFLOW_CONN_DOCIFY_SECRET_TRUSTING", conn_json(emu.base_url, key, trusted_hosts="localhost"))
    image = tmp_path / "acme_invoice.png"
    image.write_bytes(PNG)
    with new_dag("attachment_hosts") as dag:
        untrusted = DocifyRunScenarioOperator(
            task_id="untrusted",
            docify_conn_id="docify_secret_plain",
            inputs={"invoice_image": str(image)},
            attachments_to=str(tmp_path / "out"),
        )
        trusted = DocifyStreamScenarioOperator(
            task_id="trusted",
            docify_conn_id="docify_secret_trusting",
            inputs={"invoice_image": str(image)},
            attachments_to=str(tmp_path / "out"),
            deferrable=True,
        )
        untrusted >> trusted
    out = run_dag(dag)

    assert out.dag_state == "success"
    for task in ("untrusted", "trusted"):
        (file,) = out.xcom(task)["files"]
        assert file["file_url"].startswith(f"http://localhost:{emu.port}/")
        assert Path(file["path"]).stat().st_size == file["file_size"]
    downloads = emu.downloads
    assert [(d.host, d.has_auth) for d in downloads] == [(f"localhost:{emu.port}", False), (emu.public_host, True)]


@pytest.mark.parametrize("endpoint", ["info", "run"])
async def test_api_redirects_are_not_followed(emulator: DocifyEmulator, endpoint: str) -> None:
    # A redirect of an API call to another host would carry the key there (and re-POST a run).
    key = new_secret("redirect")
    emulator.add_key(key, "TEXT_SUMMARY")
    elsewhere = f"http://localhost:{emulator.port}{emulator.prefix}/v1/scenario/info"
    emulator.inject(Fault(endpoint, "redirect", location=elsewhere, times=2))
    config = ClientConfig(api_key=key, base_url=emulator.base_url, max_retries=2, backoff_initial=0.01)
    inputs = {"text": "Redirects are not followed."}
    with DocifyClient(config) as client, pytest.raises(DocifyServerError, match="HTTP 302") as sync_error:
        client.get_scenario_info() if endpoint == "info" else client.run(inputs)
    async with AsyncDocifyClient(config) as aclient:
        with pytest.raises(DocifyServerError, match="HTTP 302") as async_error:
            await (aclient.get_scenario_info() if endpoint == "info" else aclient.run(inputs))
    records = [r for r in emulator.requests if r.endpoint == endpoint]
    assert [(r.host, r.status) for r in records] == [(emulator.netloc, 302)] * 2
    assert not [r for r in emulator.requests if r.host and r.host.startswith("localhost")]
    for err in (sync_error.value, async_error.value):
        assert key not in "".join(traceback.format_exception(err))


def _non_loopback_address() -> str | None:
    """This machine's address on its default route (no packet is sent), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only selects the outgoing interface
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_plain_http_to_a_non_loopback_host_is_refused_unless_allowed(docify_conns, monkeypatch, caplog, capture_raised):
    address = _non_loopback_address()
    if address is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    key = new_secret("insecure")
    with DocifyEmulator(host=address, ping_interval=0.1, event_interval=0.002) as remote:
        remote.add_key(key, "TEXT_SUMMARY")
        assert remote.base_url.startswith(f"http://{address}:")
        monkeypatch.setenv("AIRFLOW_CONN_DOCIFY_SECRET_HTTP", conn_json(remote.base_url, key))
        monkeypatch.setenv(
            "AIRFLOW_CONN_DOCIFY_SECRET_HTTP_ALLOWED", conn_json(remote.base_url, key, allow_insecure_http=True)
        )
        inputs = {"text": "Keys travel encrypted or not at all.", "language": "en"}
        with new_dag("insecure_http") as dag:
            DocifyStreamScenarioOperator(
                task_id="refused",
                docify_conn_id="docify_secret_http",
                inputs=inputs,
                on_failure_callback=capture_failure,
            )
            DocifyStreamScenarioOperator(
                task_id="allowed", docify_conn_id="docify_secret_http_allowed", inputs=inputs, deferrable=True
            )
        CAPTURED.clear()
        with caplog.at_level(logging.INFO):
            out = run_dag(dag)

        assert out.state("refused") == "failed"
        [(_, exc)] = CAPTURED
        # Failed at once (a retry cannot fix a connection): the ConfigError is the AirflowFailException's cause.
        assert isinstance(exc.__cause__, DocifyConfigError) and "Refusing plain http://" in str(exc)
        assert key not in exception_texts(exc)
        # The refusal happens before any connection: the allowed task's requests are the only ones.
        assert out.state("allowed") == "success"
        assert remote.runs_started(key) == 1
        assert {r.endpoint for r in remote.requests} == {"info", "stream"}
        assert all(r.host == remote.netloc for r in remote.requests)


def _config(backend: str, **config: Any) -> Any:
    if backend == "dify":
        from docify_provider.dify.config import DifyClientConfig

        return DifyClientConfig(**config)
    if backend == "dify_openapi":
        from docify_provider.dify_openapi.config import DifyOpenAPIClientConfig

        return DifyOpenAPIClientConfig(**config)
    return ClientConfig(**config)


def _client(backend: str, **config: Any) -> Any:
    from docify_provider.dify.client import DifyClient
    from docify_provider.dify_openapi.client import DifyOpenAPIClient

    client_class = {"dify": DifyClient, "dify_openapi": DifyOpenAPIClient}.get(backend, DocifyClient)
    return client_class(_config(backend, **config))


def test_plain_http_config_is_refused_before_any_request(contract: Any) -> None:
    # Without a network: the client refuses to be built, so no socket is ever opened.
    for base_url in ("http://docify.example.com/docify", "http://10.1.2.3:8080/v1"):
        with pytest.raises(contract.error_class(), match="Refusing plain http://") as caught:
            _client(contract.name, api_key=new_secret("config"), base_url=base_url)
        assert "-SECRET-" not in str(caught.value)
    for base_url in ("http://127.0.0.1:1/docify", "http://localhost:1/v1", "http://[::1]:1/v1"):
        _client(contract.name, api_key="k", base_url=base_url).close()
    buf = io.StringIO()
    print(_config(contract.name, api_key=new_secret("repr"), base_url="https://console.docify.jp/docify"), file=buf)
    assert "-SECRET-" not in buf.getvalue()
