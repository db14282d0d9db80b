"""``DifyHook`` and the ``dify`` connection type."""

from __future__ import annotations

import pytest

from docify_provider.get_provider_info import get_provider_info
from docify_provider.hooks.dify import DifyHook
from docify_provider.testing.dify import TEXT_APP_KEY


def test_connection_test_reads_info_and_costs_nothing(dify_conns):
    hook = DifyHook(dify_conn_id="dify_text")
    ok, message = hook.test_connection()
    assert ok and "Text Writer" in message
    assert dify_conns.runs_started() == 0
    assert TEXT_APP_KEY not in message and TEXT_APP_KEY not in repr(hook.config)


@pytest.mark.airflow_line("the connection read through common-compat's BaseHook")
def test_config_from_the_connection(dify_conns):
    config = DifyHook(dify_conn_id="dify_text").config
    assert config.base_url == dify_conns.base_url and config.idle_timeout == 5 and config.max_retries == 2


def test_provider_info_declares_the_dify_connection():
    types = {c["connection-type"]: c for c in get_provider_info()["connection-types"]}
    assert types["dify"]["hook-class-name"] == "docify_provider.hooks.dify.DifyHook"
    assert types["dify"]["conn-fields"]["read_timeout"]["description"].startswith("Seconds")
    assert DifyHook.get_ui_field_behaviour()["placeholders"]["host"] == "https://api.dify.ai/v1"
