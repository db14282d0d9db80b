"""``LostRunSearch``: a run an earlier try may have sent, never named, looked up in the app's logs.

The rows are checked by the provider, not trusted to the server's filters (a server that follows
Dify's documents may ignore ``created_by_end_user_session_id`` and ``created_at__after``, which
the documents do not list); the search over the emulator's logs endpoint finds one run, and fails
closed saying what it looked for when there is none by ``recovery_timeout``. Real sockets.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from docify_provider.dify.client import DifyClient
from docify_provider.dify.config import DifyClientConfig
from docify_provider.dify.errors import DifyOutcomeUnknownError
from docify_provider.dify.models import WorkflowLog
from docify_provider.dify.stream import CLOCK_SLACK_SECONDS, LostRunSearch
from docify_provider.testing.dify import TEXT_APP_KEY, DifyEmulator

TODO = "Check the run in Dify; set allow_resubmit=True to pay for a new run."


def _config(emu: DifyEmulator | None = None, **more: Any) -> DifyClientConfig:
    base = {"base_url": emu.base_url} if emu else {}
    return DifyClientConfig(api_key=TEXT_APP_KEY, poll_interval=0.05, recovery_timeout=5, **{**base, **more})


def _row(run_id: str, created: float, session: str | None, account: bool = False) -> WorkflowLog:
    end_user = None if account else {"id": "eu", "type": "service_api", "is_anonymous": False, "session_id": session}
    return WorkflowLog.from_api(
        {
            "id": f"log-{run_id}",
            "workflow_run": {"id": run_id, "created_at": int(created)},
            "created_by_end_user": end_user,
        }
    )


def test_every_row_is_checked_for_the_user_and_the_time() -> None:
    sent_at = time.time()
    search = LostRunSearch("u1", sent_at, _config(), who="try 1", todo=TODO)
    rows = [
        _row("ours", sent_at + 1, "u1"),
        _row("another-user", sent_at + 1, "u2"),
        _row("an-account", sent_at + 1, None, account=True),
        _row("no-session", sent_at + 1, None),
        _row("before-the-request", sent_at - CLOCK_SLACK_SECONDS - 60, "u1"),
        _row("within-the-clock-slack", sent_at - CLOCK_SLACK_SECONDS + 1, "u1"),
    ]
    assert search.unchecked(rows) == ["ours", "within-the-clock-slack"]


def test_a_run_is_found_and_none_fails_closed_saying_what_was_looked_for(dify_emulator: DifyEmulator) -> None:
    with DifyClient(_config(dify_emulator)) as client:
        sent_at = time.time()
        run = client.run_workflow({"topic": "logs", "tone": "formal"}, user="lost-1")
        client.run_workflow({"topic": "logs", "tone": "formal"}, user="someone-else")
        assert client.find_run(LostRunSearch("lost-1", sent_at, client.config, who="try 1", todo=TODO)) == (
            run.workflow_run_id
        )
        started = time.monotonic()
        search = LostRunSearch(
            "nobody", sent_at, dataclasses.replace(client.config, recovery_timeout=0.3), who="try 2", todo=TODO
        )
        with pytest.raises(DifyOutcomeUnknownError) as info:
            client.find_run(search)
    assert time.monotonic() - started < 3, "the search ends at sent_at + recovery_timeout"
    message = str(info.value)
    assert "try 2 may have sent the run request, and its run id never arrived" in message
    assert "Looked for it in the app's logs (end user 'nobody', created at or after" in message
    assert "no such run appeared within recovery_timeout (0.3s after the request)" in message
    assert message.endswith(TODO) and "so it is not re-sent" in message
    assert dify_emulator.runs_started() == 2, "the search sends nothing"
