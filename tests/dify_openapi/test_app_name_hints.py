"""A mistyped app name on the account API says which app was meant (issue 19, item 5).

Over the account API's emulator: the name is looked up in the workspace's apps (``GET /apps``),
and a name none of them has gets the close names (difflib) in a message of its own, never the
"Invalid Dify inputs" heading (a wrong name is not an input error) nor "similar names: none".
"""

from __future__ import annotations

import pytest

from docify_provider.dify_openapi.client import DifyOpenAPIClient
from docify_provider.dify_openapi.config import DifyOpenAPIClientConfig
from docify_provider.dify_openapi.errors import DifyOpenAPIAppLookupError, DifyOpenAPIInputError
from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN, DOCUMENT_APP_ID, DifyOpenAPIEmulator


def _client(emu: DifyOpenAPIEmulator) -> DifyOpenAPIClient:
    return DifyOpenAPIClient(DifyOpenAPIClientConfig(api_key=ACCOUNT_TOKEN, base_url=emu.base_url, max_retries=0))


def test_a_typo_in_an_app_name_gets_did_you_mean(emu: DifyOpenAPIEmulator) -> None:
    with _client(emu) as client, pytest.raises(DifyOpenAPIAppLookupError) as caught:
        client.prepare_run("Documnet Summary", {"topic": "tea"})
    text = str(caught.value)
    assert text == "app: no app named 'Documnet Summary' in this workspace; did you mean 'Document Summary'?"
    assert [c["id"] for c in caught.value.candidates] == [DOCUMENT_APP_ID]
    assert isinstance(caught.value, DifyOpenAPIInputError), "still an input error for except clauses"
    assert emu.runs_started() == 0


def test_another_case_is_suggested_too(emu: DifyOpenAPIEmulator) -> None:
    with _client(emu) as client, pytest.raises(DifyOpenAPIAppLookupError) as caught:
        client.resolve_app("long job")
    assert "did you mean 'Long Job'?" in str(caught.value)


def test_a_name_like_none_lists_the_workspaces_apps(emu: DifyOpenAPIEmulator) -> None:
    with _client(emu) as client, pytest.raises(DifyOpenAPIAppLookupError) as caught:
        client.resolve_app("Nope")
    text = str(caught.value)
    assert text.startswith("app: no app named 'Nope' in this workspace; its apps: 'Text Writer', 'Document Summary'")
    assert "similar names: none" not in text and "Invalid Dify inputs" not in text
    assert "problem(s)" not in text


def test_select_apps_suggests_per_name_under_one_heading(emu: DifyOpenAPIEmulator) -> None:
    from docify_provider.dify_openapi import discovery

    with _client(emu) as client:
        rows = client.list_apps()
    with pytest.raises(DifyOpenAPIAppLookupError) as caught:
        discovery.select_apps(rows, apps=["Long Job", "Text Writr", "Long jbo"])
    text = str(caught.value)
    assert text.startswith("2 Dify app names do not resolve:\n"), text
    assert (
        "  - apps: no app named 'Text Writr' (nor with that id) in this workspace; did you mean 'Text Writer'?" in text
    )
    assert "  - apps: no app named 'Long jbo' (nor with that id) in this workspace; did you mean 'Long Job'?" in text
    assert "Invalid Dify inputs" not in text
