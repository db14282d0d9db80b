"""The three quick starts (``example_dags/quickstart_*.py``), run as ``docs/getting-started/`` tells a
new user to: the connection is the page's own ``export AIRFLOW_CONN_...`` line (its host moved to
the test's emulator port), the DAG runs through real Airflow (``dag.test()``) against the emulator
over a real socket, and the checks are what the user would look at: the downstream task got the
result, the log says what was billed without a "None", and the emulator billed exactly one run.

The account API's quick start runs a second time the way its page starts: ``airflow-dify login``
(a real subprocess, approved in the emulator's console) writes the connection into the metadata
DB, and the DAG runs on that connection with no environment variable.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from test_example_dags import _logged, load_dag

from airflow_helpers import run_dag
from docify_provider.testing import INVOICE_KEY
from docify_provider.testing.samples import make_sample_invoices

PAGES = Path(__file__).resolve().parents[2] / "docs" / "getting-started"
#: The page's emulator command: ``python -m docify_provider.testing --mode <mode> --port <port>``.
EMULATOR_COMMAND = re.compile(r"python -m docify_provider\.testing --mode (\S+) --port (\d+)")
#: The page's connection line for the emulator (the first one; a later one shows the real service).
CONN_LINE = re.compile(r"^export (AIRFLOW_CONN_\w+)='(\{.*\})'$", re.M)


def page_connection(page: str, base_url: str) -> tuple[str, str]:
    """(variable, JSON) of the page's ``export AIRFLOW_CONN_...`` line, its host on ``base_url``.

    Only the port may differ (the test's emulator listens on a free one): the path, which carries
    the base-URL suffix each backend expects, must be the emulator's.
    """
    match = CONN_LINE.search((PAGES / page).read_text())
    assert match, f"{page} has no export AIRFLOW_CONN_...='{{...}}' line"
    conn = json.loads(match.group(2))
    given, actual = urlsplit(conn["host"]), urlsplit(base_url)
    assert (given.scheme, given.hostname, given.path) == (actual.scheme, actual.hostname, actual.path)
    conn["host"] = base_url
    return match.group(1), json.dumps(conn)


#: (page, DAG file, emulator mode, port the page starts it on); the ports are the modes' defaults.
PAGES_AND_DAGS = [
    ("docify.md", "quickstart_docify", "docify", 8765),
    ("dify-workflow.md", "quickstart_dify_workflow", "dify", 8766),
    ("dify-account.md", "quickstart_dify_account", "dify-openapi", 8767),
]


def served_names(mode: str) -> list[str]:
    """What the page's tables must list: every key or token, scenario or app, and input variable
    the emulator of ``mode`` serves (a new one added to the emulator shows up here)."""
    if mode == "docify":
        from docify_provider.testing.keys import DEFAULT_KEYS
        from docify_provider.testing.scenarios import builtin_scenarios

        scenarios = builtin_scenarios().values()
        return (
            [k for k, _, _ in DEFAULT_KEYS]
            + [s.code for s in scenarios]
            + [p["variable"] for s in scenarios for p in s.parameters]
        )
    if mode == "dify":
        from docify_provider.testing.dify.apps import DEFAULT_APP_KEYS, builtin_apps

        apps = builtin_apps().values()
        return (
            [k for k, _, _ in DEFAULT_APP_KEYS]
            + [a.name for a in apps]
            + [v["variable"] for a in apps for v in a.variables]
        )
    from docify_provider.testing.dify_openapi import ACCOUNT_EMAIL, ACCOUNT_TOKEN, OTHER_ACCOUNT_TOKEN, WORKSPACE_ID
    from docify_provider.testing.dify_openapi.directory import builtin_openapi_apps

    apps = [a for a in builtin_openapi_apps().values() if a.workspace_id == WORKSPACE_ID]
    return (
        [ACCOUNT_TOKEN, OTHER_ACCOUNT_TOKEN, ACCOUNT_EMAIL]
        + [a.name for a in apps]
        + [v["variable"] for a in apps for v in a.variables]
    )


@pytest.mark.parametrize(("page", "dag_file", "mode", "port"), PAGES_AND_DAGS)
def test_each_page_includes_its_dag_and_lists_what_its_emulator_serves(
    page: str, dag_file: str, mode: str, port: int
) -> None:
    text = (PAGES / page).read_text()
    assert f'--8<-- "example_dags/{dag_file}.py"' in text, "the DAG is included from its file, not copied"
    assert f"cp example_dags/{dag_file}.py " in text and f"airflow dags test {dag_file}" in text
    assert set(EMULATOR_COMMAND.findall(text)) == {(mode, str(port))}
    match = CONN_LINE.search(text)
    assert match and urlsplit(json.loads(match.group(2))["host"]).port == port, "the connection is on that port"
    missing = [name for name in served_names(mode) if name not in text]
    assert not missing, f"{page} does not list {missing}"
    assert "airflow db migrate" in text and "export AIRFLOW_HOME=" in text


def _told(caplog: Any) -> str:
    logged = _logged(caplog)
    assert "None" not in logged, f"a missing value was logged as None:\n{logged}"
    return logged


def test_docify_quickstart_books_the_invoice_it_read(docify_conns, tmp_path, monkeypatch, caplog) -> None:
    (invoice,) = make_sample_invoices(tmp_path / "docify", 1)
    out = tmp_path / "docify" / "out"
    # Only environment variables, as the page sets them; the params' defaults are read when the DAG
    # file is parsed (load_dag), so no run conf is given.
    monkeypatch.setenv("DOCIFY_INVOICE", str(invoice))
    monkeypatch.setenv("DOCIFY_OUTPUT_DIR", str(out))
    monkeypatch.setenv(*page_connection("docify.md", docify_conns.base_url))
    caplog.set_level("INFO")

    outcome = run_dag(load_dag("quickstart_docify"))

    assert outcome.dag_state == "success", outcome.states()
    row = outcome.xcom("book_invoice")
    run = outcome.xcom("read_invoice")
    assert row["invoice_number"] == run["json_result"]["invoice_number"] and row["invoice_number"].startswith("INV-")
    assert (row["vendor"], row["currency"], row["cost_points"]) == ("Acme Invoice 001", "JPY", 10.5)
    assert row["docify_run_id"] == run["run_id"]
    (produced,) = row["files"]
    csv = Path(produced)
    assert csv.is_relative_to(out) and csv.name == "acme_invoice_001_extracted.csv"
    assert row["invoice_number"] in csv.read_text()
    told = _told(caplog)
    assert f"Docify run {run['run_id']} read: {{" in told and '"vendor": "Acme Invoice 001"' in told
    assert "Billed: 10.5 cost points" in told and f"Produced file: {csv}" in told
    assert docify_conns.runs_started(INVOICE_KEY) == 1
    assert docify_conns.runs_started() == 1, "one run billed in all"


def test_dify_workflow_quickstart_publishes_the_workflow_output(dify_conns, monkeypatch, caplog) -> None:
    from docify_provider.testing.dify import TEXT_APP_KEY

    monkeypatch.setenv(*page_connection("dify-workflow.md", dify_conns.base_url))
    caplog.set_level("INFO")

    outcome = run_dag(load_dag("quickstart_dify_workflow"), {"topic": "café logistics", "tone": "formal"})

    assert outcome.dag_state == "success", outcome.states()
    text = outcome.xcom("publish")
    assert text.startswith("Formal notes on café logistics: ")
    run = outcome.xcom("write_text")
    assert run["status"] == "succeeded" and run["outputs"]["text"] == text
    told = _told(caplog)
    assert f"Dify run {run['workflow_run_id']} succeeded: {text}" in told
    tokens, price = run["total_tokens"], run["usage"]["price"]
    assert tokens > 0 and price > 0, "a streamed run reports its tokens and their price"
    assert f"Billed: {tokens} tokens, {price} USD" in told
    assert dify_conns.runs_started(key=TEXT_APP_KEY) == 1
    assert dify_conns.runs_started() == 1, "one run billed in all"


def _check_account_run(outcome: Any, caplog: Any, emu: Any, token: str) -> None:
    from docify_provider.testing.dify_openapi import TEXT_APP_ID

    assert outcome.dag_state == "success", outcome.states()
    text = outcome.xcom("publish")
    assert text.startswith("Neutral notes on the night shift: ")
    run = outcome.xcom("run_app")
    assert (run["app_id"], run["mode"], run["status"]) == (TEXT_APP_ID, "workflow", "succeeded")
    told = _told(caplog)
    assert f"Dify workflow app {TEXT_APP_ID} succeeded: {text}" in told
    assert f"Billed: {run['total_tokens']} tokens, {run['usage']['price']} USD" in told
    assert emu.runs_started(token, app=TEXT_APP_ID) == 1
    assert emu.runs_started() == 1, "one run billed in all"


def test_dify_account_quickstart_runs_the_app_named_in_its_params(
    airflow_env, dify_openapi_emulator, monkeypatch, caplog
) -> None:
    from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN

    monkeypatch.setenv(*page_connection("dify-account.md", dify_openapi_emulator.base_url))
    caplog.set_level("INFO")

    outcome = run_dag(load_dag("quickstart_dify_account"), {"app": "Text Writer", "topic": "the night shift"})

    _check_account_run(outcome, caplog, dify_openapi_emulator, ACCOUNT_TOKEN)


# -- the account quick start after `airflow-dify login`, as its page starts -----------------------

LOGIN_CODE = re.compile(r"open (\S+) and enter the code: ([A-Z0-9]{4}-[A-Z0-9]{4})")


def _stored_token(conn_id: str) -> str | None:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        conn = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
        return None if conn is None else conn.password


@pytest.fixture
def login_connection(airflow_env: Path) -> Iterator[str]:
    """The id of the connection ``airflow-dify login`` writes by default, deleted from the session's
    metadata DB afterwards (other tests expect it absent)."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    conn_id = "dify_openapi_default"
    assert _stored_token(conn_id) is None, "left over by another test"
    yield conn_id
    with create_session() as session:
        session.execute(delete(Connection).where(Connection.conn_id == conn_id))


@pytest.mark.timeout(300)
def test_dify_account_quickstart_on_the_connection_the_login_wrote(
    login_connection, dify_openapi_emulator, monkeypatch, caplog
) -> None:
    emu = dify_openapi_emulator
    script = Path(sys.executable).parent / "airflow-dify"
    monkeypatch.delenv("AIRFLOW_CONN_" + login_connection.upper(), raising=False)
    # The page's command, with --no-browser (nobody is at this screen); the test approves the code.
    login = subprocess.Popen(
        [str(script), "login", "--host", emu.base_url, "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    told: list[str] = []
    shown = threading.Event()

    def read_instructions() -> None:
        assert login.stderr is not None
        for line in login.stderr:
            told.append(line)
            match = LOGIN_CODE.search(line)
            if match and not shown.is_set():
                shown.set()
                emu.approve(match.group(2))

    reader = threading.Thread(target=read_instructions, daemon=True)
    reader.start()
    try:
        login.wait(timeout=240)  # stdout holds one line: no pipe fills up meanwhile
    finally:
        login.kill()
    reader.join(timeout=10)
    assert login.stdout is not None
    out = login.stdout.read()
    assert login.returncode == 0, "".join(told)
    assert f"open http://{emu.netloc}/device and enter the code: " in "".join(told)
    assert f"Created connection '{login_connection}' ({emu.base_url})" in out

    token = _stored_token(login_connection)
    assert token and token.startswith("dfoa_")
    caplog.set_level("INFO")
    outcome = run_dag(load_dag("quickstart_dify_account"), {"app": "Text Writer", "topic": "the night shift"})

    _check_account_run(outcome, caplog, emu, token)
