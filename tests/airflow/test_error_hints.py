"""Error hints name the connection actually used and this package's own tools (issue 19, item 5).

One rule, three backends: a missing key, a refused key and a wrong base URL are told for the
connection the task was given (``AIRFLOW_CONN_<ID>`` of that id, never a default one), with the
suffix each API lives under and the URL configured (never the key); the account API's token is
renewed with ``airflow-dify login --conn-id <id>``. Every message comes from a real answer of the
backend's emulator (or of a web page server on 127.0.0.1) read through the hook.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from docify_provider._core.errors import AuthenticationError, ConfigError, NotFoundError, ProtocolError
from docify_provider.testing.dify import TEXT_APP_KEY
from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN
from docify_provider.testing.keys import SUMMARY_KEY
from helpers import BACKENDS


@dataclass(frozen=True)
class Case:
    """A backend as these tests drive it: its hook, the key its emulator knows, a free read."""

    name: str
    conn_type: str
    key: str
    suffix: str
    api: str

    def hook(self, conn_id: str) -> Any:
        if self.name == "docify":
            from docify_provider.hooks.docify import DocifyHook

            return DocifyHook(docify_conn_id=conn_id)
        if self.name == "dify":
            from docify_provider.hooks.dify import DifyHook

            return DifyHook(dify_conn_id=conn_id)
        from docify_provider.hooks.dify_openapi import DifyOpenAPIHook

        return DifyOpenAPIHook(dify_openapi_conn_id=conn_id)

    def read(self, hook: Any) -> Any:
        """The first read a task makes (costs nothing)."""
        if self.name == "docify":
            return hook.client.get_scenario_info()
        if self.name == "dify":
            return hook.client.get_parameters()
        return hook.client.get_account()


CASES = {
    "docify": Case("docify", "docify", SUMMARY_KEY, "/docify", "Docify's API"),
    "dify": Case("dify", "dify", TEXT_APP_KEY, "/v1", "the Dify Service API"),
    "dify_openapi": Case("dify_openapi", "dify_openapi", ACCOUNT_TOKEN, "/openapi/v1", "the Dify account API"),
}


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> Iterator[tuple[Case, Any]]:
    """Each backend with its emulator running."""
    backend = BACKENDS[request.param]
    with backend.emulator(**backend.options) as emu:
        yield CASES[request.param], emu


def _connection(monkeypatch: pytest.MonkeyPatch, case: Case, conn_id: str, host: str, key: str | None) -> str:
    conn: dict[str, Any] = {"conn_type": case.conn_type, "host": host, "extra": {"max_retries": 0}}
    if key is not None:
        conn["password"] = key
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


def _origin(base_url: str) -> str:
    return base_url.split("/", 3)[0] + "//" + base_url.split("/", 3)[2]


def test_a_missing_key_names_the_connection_used(monkeypatch: pytest.MonkeyPatch, case: tuple[Case, Any]) -> None:
    backend, emu = case
    conn_id = _connection(monkeypatch, backend, f"team_{backend.name}", emu.base_url, None)
    with pytest.raises(ConfigError) as caught:
        _ = backend.hook(conn_id).config
    text = str(caught.value)
    variable = f"AIRFLOW_CONN_TEAM_{backend.name.upper()}"
    assert f"connection 'team_{backend.name}' (from {variable})" in text, text
    assert "_DEFAULT" not in text and "None" not in text, text
    if backend.name == "dify_openapi":
        # The connection comes from its variable: the login prints the variable's new value.
        assert f"log in with `airflow-dify login --conn-id team_dify_openapi --host {emu.base_url} --print-env`" in text
        assert f"then set {variable} to what it prints" in text
        assert "start_device_flow" not in text and "difyctl" not in text, text
    else:
        assert f"set the 'password' of {variable} to the API key" in text, text


def test_a_missing_key_in_the_metadata_database_says_where_to_set_it(case: tuple[Case, Any]) -> None:
    """A connection kept in the metadata database (not a variable): its password, or the login that writes it."""
    backend, emu = case
    config_class = backend.hook("unused").config_class
    with pytest.raises(ConfigError) as caught:
        config_class(api_key="", base_url=emu.base_url, conn_id="warehouse")
    text = str(caught.value)
    if backend.name == "dify_openapi":
        assert text == (
            "No Dify account token in connection 'warehouse': log in with `airflow-dify login --conn-id warehouse` "
            "(it stores the token in that connection)."
        )
    else:
        label = "Docify" if backend.name == "docify" else "Dify"
        assert text == (
            f"No {label} API key in connection 'warehouse': set its password to the API key (or define the "
            "connection as AIRFLOW_CONN_WAREHOUSE with a 'password')."
        )


def test_a_refused_key_points_at_the_connection_and_this_packages_login(
    monkeypatch: pytest.MonkeyPatch, case: tuple[Case, Any]
) -> None:
    backend, emu = case
    wrong = "dfoa_" + "x" * 43 if backend.name == "dify_openapi" else "app-NotAKeyTheEmulatorKnows000"
    conn_id = _connection(monkeypatch, backend, f"nightly_{backend.name}", emu.base_url, wrong)
    hook = backend.hook(conn_id)
    with pytest.raises(AuthenticationError) as caught:
        backend.read(hook)
    hook.close()
    text = str(caught.value)
    assert caught.value.status_code == 401 and wrong not in text
    variable = f"AIRFLOW_CONN_NIGHTLY_{backend.name.upper()}"
    if backend.name == "dify_openapi":
        assert (
            f"Log in again with `airflow-dify login --conn-id nightly_dify_openapi --host {emu.base_url} --print-env`, "
            f"then set {variable} to what it prints"
        ) in text, text
        assert "difyctl" not in text and "start_device_flow" not in text and "dify_openapi_default" not in text
    else:
        assert f"check the API key in connection 'nightly_{backend.name}' (from {variable}), its password" in text


def test_a_refused_account_token_of_a_stored_connection_says_login_conn_id(case: tuple[Case, Any]) -> None:
    """The account API over its emulator, the connection in the metadata database: ``login --conn-id``."""
    backend, emu = case
    if backend.name != "dify_openapi":
        pytest.skip("the account API's token only")
    from docify_provider.dify_openapi.client import DifyOpenAPIClient
    from docify_provider.dify_openapi.config import DifyOpenAPIClientConfig
    from docify_provider.dify_openapi.errors import DifyOpenAPIAuthenticationError

    expired = emu.issue_token(ttl=-1, device_label="lapsed")
    config = DifyOpenAPIClientConfig(api_key=expired, base_url=emu.base_url, conn_id="warehouse", max_retries=0)
    with DifyOpenAPIClient(config) as client, pytest.raises(DifyOpenAPIAuthenticationError) as caught:
        client.get_account()
    text = str(caught.value)
    assert "Dify says the account token expired" in text, text
    assert "(hint: Re-authenticate to continue" in text, "the server's own hint is kept beside ours"
    assert "Log in again with `airflow-dify login --conn-id warehouse` (it stores the token in that connection)" in text
    assert expired not in text and "difyctl" not in text


def test_a_base_url_without_the_suffix_says_which_suffix(
    monkeypatch: pytest.MonkeyPatch, case: tuple[Case, Any]
) -> None:
    backend, emu = case
    origin = _origin(emu.base_url)
    conn_id = _connection(monkeypatch, backend, f"lab_{backend.name}", origin, backend.key)
    hook = backend.hook(conn_id)
    with pytest.raises(NotFoundError) as caught:
        backend.read(hook)
    hook.close()
    text = str(caught.value)
    expected = (
        f"The base URL in connection 'lab_{backend.name}' (from AIRFLOW_CONN_LAB_{backend.name.upper()}) is {origin}, "
        f"but {backend.api} is under {backend.suffix}: e.g. {origin}{backend.suffix}"
    )
    assert expected in text, text
    assert backend.key not in text


def test_the_other_dify_apis_url_is_named(monkeypatch: pytest.MonkeyPatch, case: tuple[Case, Any]) -> None:
    """The account API's URL on a Service API connection, and the other way round: "the other API's path"."""
    backend, emu = case
    if backend.name == "docify":
        pytest.skip("Dify's two APIs only")
    origin = _origin(emu.base_url)
    other, named = (
        ("/openapi/v1", "the Dify account API") if backend.name == "dify" else ("/v1", "the Dify Service API")
    )
    conn_id = _connection(monkeypatch, backend, "crossed", origin + other, backend.key)
    hook = backend.hook(conn_id)
    with pytest.raises(NotFoundError) as caught:
        backend.read(hook)
    hook.close()
    assert f"is {origin}{other} ({named}'s path), but {backend.api} is under {backend.suffix}" in str(caught.value)


class _WebPage(BaseHTTPRequestHandler):
    """A web front where the API should be: an HTML page for every path (``status`` per server)."""

    def _page(self) -> None:
        status = self.server.status  # type: ignore[attr-defined]
        body = b"<!DOCTYPE html><html><head><title>Dify</title></head><body>Sign in</body></html>"
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _page

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(params=[200, 404])
def web_page(request: pytest.FixtureRequest) -> Iterator[str]:
    """``http://127.0.0.1:<port>``: a server answering every path with an HTML page (status 200 or 404)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WebPage)
    server.status = request.param  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("name", list(CASES))
def test_an_html_page_instead_of_the_api_says_which_suffix(
    monkeypatch: pytest.MonkeyPatch, web_page: str, name: str
) -> None:
    backend = CASES[name]
    conn_id = _connection(monkeypatch, backend, f"web_{name}", web_page, backend.key)
    hook = backend.hook(conn_id)
    with pytest.raises((ProtocolError, NotFoundError)) as caught:
        backend.read(hook)
    hook.close()
    text = str(caught.value)
    assert "an HTML page ('Dify')" in text and "<html" not in text.lower(), text
    assert f"is {web_page}, but {backend.api} is under {backend.suffix}: e.g. {web_page}{backend.suffix}" in text
    assert backend.key not in text
