"""``DifyOpenAPIHook`` and the ``dify-openapi`` connection type (``dify_openapi`` in 0.6.0 and earlier), against
the OpenAPI emulator."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_helpers import AIRFLOW_LINE, console_text, new_dag, run_dag
from docify_provider.dify_openapi.errors import DifyOpenAPIConfigError
from docify_provider.get_provider_info import get_provider_info
from docify_provider.hooks.dify_openapi import DifyOpenAPIHook
from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN, TEXT_APP_ID, WORKSPACE_ID, DifyOpenAPIEmulator

pytestmark = pytest.mark.emulator("dify_openapi")


def _set_conn(monkeypatch: pytest.MonkeyPatch, emu: DifyOpenAPIEmulator, conn_id: str, token: str, **extra: Any) -> str:
    extras = {"max_retries": 2, "idle_timeout": 5, "poll_interval": 0.05, **extra}
    body = {"conn_type": "dify_openapi", "host": emu.base_url, "password": token, "extra": extras}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(body))
    return conn_id


@pytest.mark.airflow_line("the connection read through common-compat's BaseHook")
def test_config_from_the_connection(monkeypatch: pytest.MonkeyPatch, emu: DifyOpenAPIEmulator) -> None:
    conn = _set_conn(
        monkeypatch,
        emu,
        "dify_acct",
        ACCOUNT_TOKEN,
        workspace_id=WORKSPACE_ID,
        token_expires_at="2030-01-01T00:00:00Z",
        console_url="http://console.test",
    )
    config = DifyOpenAPIHook(dify_openapi_conn_id=conn).config
    assert config.base_url == emu.base_url and config.workspace_id == WORKSPACE_ID
    assert config.token_expires_at.year == 2030 and config.console_url == "http://console.test"
    assert ACCOUNT_TOKEN not in repr(config)


def test_bad_token_expiry_extra_names_it(monkeypatch: pytest.MonkeyPatch, emu: DifyOpenAPIEmulator) -> None:
    conn = _set_conn(monkeypatch, emu, "dify_bad", ACCOUNT_TOKEN, token_expires_at="next tuesday")
    with pytest.raises(DifyOpenAPIConfigError, match="token_expires_at"):
        _ = DifyOpenAPIHook(dify_openapi_conn_id=conn).config


def test_connection_test_reads_the_account_and_says_when_the_token_lapses(
    monkeypatch: pytest.MonkeyPatch, emu: DifyOpenAPIEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    soon = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    conn = _set_conn(monkeypatch, emu, "dify_soon", ACCOUNT_TOKEN, token_expires_at=soon)
    caplog.set_level(logging.DEBUG)
    ok, message = DifyOpenAPIHook(dify_openapi_conn_id=conn).test_connection()
    assert ok and "emulator@example.com" in message and "log in again soon" in message
    assert emu.runs_started() == 0
    assert ACCOUNT_TOKEN not in message and ACCOUNT_TOKEN not in caplog.text
    lapsed = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    conn = _set_conn(monkeypatch, emu, "dify_lapsed", ACCOUNT_TOKEN, token_expires_at=lapsed)
    ok, message = DifyOpenAPIHook(dify_openapi_conn_id=conn).test_connection()
    assert not ok and "lapsed" in message


def test_connection_test_with_a_revoked_token(monkeypatch: pytest.MonkeyPatch, emu: DifyOpenAPIEmulator) -> None:
    token = emu.issue_token()
    emu.revoke_token(token)
    ok, message = DifyOpenAPIHook(dify_openapi_conn_id=_set_conn(monkeypatch, emu, "dify_rev", token)).test_connection()
    assert not ok and "log in again" in message.lower() and token not in message


def test_run_sync_and_async(monkeypatch: pytest.MonkeyPatch, emu: DifyOpenAPIEmulator) -> None:
    hook = DifyOpenAPIHook(dify_openapi_conn_id=_set_conn(monkeypatch, emu, "dify_run", ACCOUNT_TOKEN))
    events = list(hook.run_app("Text Writer", {"topic": "owls"}))
    assert events[-1].run is not None and "owls" in events[-1].run.outputs["text"]

    async def main() -> list[Any]:
        async with DifyOpenAPIHook(dify_openapi_conn_id="dify_run").async_client() as client:
            return [e async for e in client.run_app(TEXT_APP_ID, {"topic": "x"})]

    assert asyncio.run(main())[-1].event == "workflow_finished"
    assert emu.runs_started(ACCOUNT_TOKEN, app=TEXT_APP_ID) == 2


def test_provider_info_declares_the_account_connection() -> None:
    types = {c["connection-type"]: c for c in get_provider_info()["connection-types"]}
    entry = types["dify-openapi"]
    assert entry["hook-class-name"] == "docify_provider.hooks.dify_openapi.DifyOpenAPIHook"
    assert entry["hook-name"] == "Dify account"
    older = types["dify_openapi"]  # connections made by 0.6.0 and earlier: the same form
    assert older["hook-class-name"] == "docify_provider.hooks.dify_openapi.DifyOpenAPIUnderscoreHook"
    assert older["conn-fields"] == entry["conn-fields"] and older["ui-field-behaviour"] == entry["ui-field-behaviour"]
    assert {"workspace_id", "console_url", "token_expires_at", "read_timeout"} <= set(entry["conn-fields"])
    assert "default" not in entry["conn-fields"]["read_timeout"]["schema"]
    assert {"dify", "docify"} <= set(types)
    behaviour = DifyOpenAPIHook.get_ui_field_behaviour()
    assert behaviour["relabeling"]["password"] == "Account token"
    assert behaviour["placeholders"]["host"].endswith("/openapi/v1")


#: Airflow's warning for a connection type with '_' (``airflow.models.connection.Connection.get_uri``).
UNDERSCORE_WARNING = "Connection schemes (type: dify_openapi) shall not contain '_'"


@pytest.mark.airflow_line("a DB connection read through the line's Execution API, which builds its URI")
@pytest.mark.parametrize("conn_type", ["dify-openapi", "dify_openapi"])
def test_either_type_runs_an_app_and_the_new_one_draws_no_warning(
    conn_type: str, openapi_conn: Any, capfd: Any, caplog: Any
) -> None:
    """A connection in the metadata DB (as ``airflow-dify login`` and the UI write it): the Execution
    API builds its URI each time a task reads it, and Airflow warns about a type with '_'. The old
    type still runs; the new one runs without the warning."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    from docify_provider.operators.dify_openapi import DifyRunAppOperator

    conn_id = f"account_{conn_type.replace('-', '_hyphen_')}"
    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == conn_id).delete()
        session.add(
            Connection(conn_id=conn_id, conn_type=conn_type, host=openapi_conn.base_url, password=ACCOUNT_TOKEN)
        )
    with caplog.at_level(logging.WARNING), new_dag("account_conn_type") as dag:
        DifyRunAppOperator(task_id="run", app="Text Writer", inputs={"topic": "types"}, dify_openapi_conn_id=conn_id)
    out = run_dag(dag)
    text = console_text(capfd) + caplog.text
    assert out.state("run") == "success", text[-4000:]
    if conn_type == "dify-openapi":
        assert "shall not contain '_'" not in text
    elif AIRFLOW_LINE >= (3, 3):  # why the type changed: Airflow's own warning, for the old type only
        assert UNDERSCORE_WARNING in text
