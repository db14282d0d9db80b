"""The emulator in a user's own tests, as ``docs/emulator.md`` shows it (it includes the marked parts).

Each test uses only what a user has: the pytest plugin's fixtures (``docify_emulator``,
``dify_emulator``, ``dify_openapi_emulator``), a connection as ``AIRFLOW_CONN_<ID>``, a fault and the
emulator's counters.
"""

from __future__ import annotations

import json

import pytest

# --8<-- [start:docify-imports]
from docify_provider.docify.errors import DocifyOutcomeUnknownError
from docify_provider.hooks.docify import DocifyHook
from docify_provider.testing import SUMMARY_KEY, Fault

# --8<-- [end:docify-imports]
# --8<-- [start:dify-imports]
from docify_provider.hooks.dify import DifyHook
from docify_provider.testing.dify import TEXT_APP_KEY

# --8<-- [end:dify-imports]
# --8<-- [start:dify-openapi-imports]
from docify_provider.hooks.dify_openapi import DifyOpenAPIHook
from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN

# --8<-- [end:dify-openapi-imports]

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _scratch_airflow(airflow_env):
    """The suite's scratch AIRFLOW_HOME (a user's own test session has its Airflow configured)."""
    return airflow_env


# --8<-- [start:docify]
def test_a_lost_answer_is_never_paid_twice(docify_emulator, monkeypatch):
    # The connection the code under test reads, pointed at the emulator.
    conn = {"conn_type": "docify", "host": docify_emulator.base_url, "password": SUMMARY_KEY}
    monkeypatch.setenv("AIRFLOW_CONN_DOCIFY_SUMMARY", json.dumps(conn))
    # The server starts (and bills) the run, then drops the connection before it answers.
    docify_emulator.inject(Fault("run", "drop_before_response", run_started=True))

    hook = DocifyHook(docify_conn_id="docify_summary")
    with pytest.raises(DocifyOutcomeUnknownError):
        hook.run_scenario({"text": "Airflow runs Docify.", "language": "en"})
    hook.close()

    assert docify_emulator.runs_started(SUMMARY_KEY) == 1  # billed once, never sent again
    # --8<-- [end:docify]


# --8<-- [start:dify]
def test_a_cut_stream_re_attaches_to_the_same_run(dify_emulator, monkeypatch):
    conn = {"conn_type": "dify", "host": dify_emulator.base_url, "password": TEXT_APP_KEY}
    monkeypatch.setenv("AIRFLOW_CONN_DIFY_TEXT", json.dumps(conn))
    # The stream is cut after two events while the run goes on in Dify.
    dify_emulator.inject(Fault("stream", "drop_mid_stream", after_events=2))

    hook = DifyHook(dify_conn_id="dify_text")
    events = list(hook.stream_workflow({"topic": "Airflow"}, user="my-test"))
    hook.close()

    assert events[-1].event == "workflow_finished"  # followed to its end by the run id
    assert dify_emulator.runs_started(key=TEXT_APP_KEY) == 1
    # --8<-- [end:dify]


# --8<-- [start:dify-openapi]
def test_an_app_is_found_by_its_name(dify_openapi_emulator, monkeypatch):
    conn = {"conn_type": "dify_openapi", "host": dify_openapi_emulator.base_url, "password": ACCOUNT_TOKEN}
    monkeypatch.setenv("AIRFLOW_CONN_DIFY_OPENAPI_DEFAULT", json.dumps(conn))

    hook = DifyOpenAPIHook()
    apps = hook.select_apps(["Text Writer", "Chat Assistant"])
    hook.close()

    assert {app.name: app.mode for app in apps} == {"Text Writer": "workflow", "Chat Assistant": "chat"}
    assert dify_openapi_emulator.runs_started(ACCOUNT_TOKEN) == 0  # reads are free
    # --8<-- [end:dify-openapi]
