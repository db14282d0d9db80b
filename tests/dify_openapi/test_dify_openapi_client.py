"""DifyOpenAPIClient and AsyncDifyOpenAPIClient over real sockets against the bundled OpenAPI emulator.

Nothing is mocked: both path generations are served by the emulator, faults are injected there
(cut streams, rate limits, failed runs) and the emulator's counters prove that a run was never
sent twice.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from docify_provider._core.errors import OutcomeUnknownError
from docify_provider.dify_openapi.client import AsyncDifyOpenAPIClient, DifyOpenAPIClient
from docify_provider.dify_openapi.config import DifyOpenAPIClientConfig
from docify_provider.dify_openapi.errors import (
    DifyOpenAPIAppLookupError,
    DifyOpenAPIAuthenticationError,
    DifyOpenAPIError,
    DifyOpenAPIInputError,
    DifyOpenAPIRateLimitedError,
    DifyOpenAPIRunFailedError,
    DifyOpenAPITagFilterError,
)
from docify_provider.testing.dify_openapi import (
    ACCOUNT_TOKEN,
    CHAT_APP_ID,
    DOCUMENT_APP_ID,
    HUMAN_INPUT_APP_ID,
    LONG_APP_ID,
    SECOND_WORKSPACE_ID,
    TEXT_APP_ID,
    WORKSPACE_ID,
    DifyOpenAPIEmulator,
)
from docify_provider.testing.faults import Fault

pytestmark = pytest.mark.emulator(each=("paths", ("current", "legacy")))

FAST: dict[str, Any] = {
    "backoff_initial": 0.01,
    "backoff_max": 0.05,
    "retry_after_cap": 2.0,
    "idle_timeout": 3.0,
    "connect_timeout": 2,
    "read_timeout": 10,
    "max_retries": 2,
    "poll_interval": 0.05,
}


def make_config(emu: DifyOpenAPIEmulator, token: str = ACCOUNT_TOKEN, **overrides: Any) -> DifyOpenAPIClientConfig:
    return DifyOpenAPIClientConfig(api_key=token, **{"base_url": emu.base_url, **FAST, **overrides})


@pytest.fixture
def client(emu: DifyOpenAPIEmulator) -> Iterator[DifyOpenAPIClient]:
    with DifyOpenAPIClient(make_config(emu)) as c:
        yield c


def run_posts(emu: DifyOpenAPIEmulator) -> int:
    return sum(1 for r in emu.requests if r.method == "POST" and r.path.split("?")[0].endswith("run"))


# --- account, workspaces, apps --------------------------------------------------------------------


def test_account_workspaces_and_apps(client: DifyOpenAPIClient) -> None:
    account = client.get_account()
    assert account.email and account.default_workspace_id == WORKSPACE_ID
    assert {w.id for w in client.list_workspaces()} >= {WORKSPACE_ID, SECOND_WORKSPACE_ID}
    apps = client.list_apps()
    assert TEXT_APP_ID in {a.id for a in apps}
    assert {a.mode for a in client.list_apps(mode="chat")} == {"chat"}
    # a current server ignores the tag filter and its rows carry no tags: refused, nothing to run
    with pytest.raises(DifyOpenAPITagFilterError, match="no longer filters apps by tag"):
        client.list_apps(tag="nightly")


def test_generation_detected_with_reads_only_and_cached(emu: DifyOpenAPIEmulator, client: DifyOpenAPIClient) -> None:
    description = client.describe_app(TEXT_APP_ID)
    assert description.mode == "workflow" and description.input_schema
    assert description.parameters is not None and description.parameters.variable("topic") is not None
    assert client.generation == ("per-mode" if emu.paths == "current" else "legacy")
    before = len(emu.requests)
    client.describe_app(LONG_APP_ID)
    client.describe_app(LONG_APP_ID)
    assert len(emu.requests) == before + 1  # generation and description cached
    assert all(r.method == "GET" for r in emu.requests)  # never a run to find out


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_generation_found_by_a_describe_read_is_logged(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    """Both clients say which paths a server without a catalog header uses (the async one once did not)."""
    with DifyOpenAPIEmulator(paths="legacy") as emu:
        with caplog.at_level(logging.INFO, logger="docify_provider.dify_openapi.client"):
            if mode == "sync":
                with DifyOpenAPIClient(make_config(emu)) as c:
                    c.describe_app(TEXT_APP_ID)
            else:

                async def main() -> None:
                    async with AsyncDifyOpenAPIClient(make_config(emu)) as c:
                        await c.describe_app(TEXT_APP_ID)

                asyncio.run(main())
        assert f"Dify OpenAPI at {emu.base_url} uses the legacy paths" in caplog.messages
        assert ACCOUNT_TOKEN not in caplog.text


def test_resolve_app_by_name_and_clear_errors(client: DifyOpenAPIClient) -> None:
    app = client.resolve_app("Text Writer")
    assert (app.id, app.mode) == (TEXT_APP_ID, "workflow")
    with pytest.raises(DifyOpenAPIAppLookupError, match="no app named 'Text' in this workspace; did you mean") as info:
        client.resolve_app("Text")
    assert any(c["id"] == TEXT_APP_ID for c in info.value.candidates)


# --- runs -------------------------------------------------------------------------------------------


def test_run_workflow_app(emu: DifyOpenAPIEmulator, client: DifyOpenAPIClient) -> None:
    events = list(client.run_app("Text Writer", {"topic": "cats"}))
    final = events[-1]
    assert final.event == "workflow_finished" and final.run is not None and final.run.succeeded
    assert "cats" in final.run.outputs["text"]
    assert emu.runs_started(ACCOUNT_TOKEN, app=TEXT_APP_ID) == 1


def test_chat_app_needs_query_before_anything_is_sent(emu: DifyOpenAPIEmulator, client: DifyOpenAPIClient) -> None:
    with pytest.raises(DifyOpenAPIInputError, match="'query' is required"):
        list(client.run_app(CHAT_APP_ID, {}))
    assert run_posts(emu) == 0
    events = list(client.run_app(CHAT_APP_ID, {}, query="hello"))
    assert events[-1].event == "message_end"


def test_invalid_inputs_one_error_no_run(emu: DifyOpenAPIEmulator, client: DifyOpenAPIClient) -> None:
    with pytest.raises(DifyOpenAPIInputError) as info:
        list(client.run_app(TEXT_APP_ID, {"topic": 5, "tone": "angry", "bogus": 1}))
    text = "\n".join(info.value.problems)
    assert "'bogus' is not an input" in text and "'topic'" in text and "'tone'" in text
    assert run_posts(emu) == 0


def test_local_file_sent_as_multipart_part(emu: DifyOpenAPIEmulator, client: DifyOpenAPIClient, tmp_path) -> None:
    doc = tmp_path / "notes.txt"
    doc.write_text("quarterly numbers\n")
    if emu.paths == "legacy":
        with pytest.raises(DifyOpenAPIInputError, match="takes no file parts"):
            list(client.run_app(DOCUMENT_APP_ID, {"document": str(doc)}))
        assert run_posts(emu) == 0
        return
    events = list(client.run_app(DOCUMENT_APP_ID, {"document": str(doc)}))
    assert events[-1].run is not None and events[-1].run.succeeded
    assert emu.runs_started(ACCOUNT_TOKEN, app=DOCUMENT_APP_ID) == 1


def test_cut_stream_reattaches_one_run(emu: DifyOpenAPIEmulator, client: DifyOpenAPIClient) -> None:
    emu.inject(Fault("stream", "drop_mid_stream", after_events=2, times=1))
    events = list(client.run_app(LONG_APP_ID, {"seconds": 0.5, "steps": 4}))
    assert events[-1].event == "workflow_finished" and events[-1].run is not None
    assert emu.runs_started(ACCOUNT_TOKEN, app=LONG_APP_ID) == 1
    assert run_posts(emu) == 1
    assert emu.events_requests(ACCOUNT_TOKEN, app=LONG_APP_ID) >= 1
    node_ids = [e.data.get("id") for e in events if e.event == "node_finished"]
    assert len(node_ids) == len(set(node_ids))  # replayed nodes counted once


def test_cut_before_any_id_is_outcome_unknown(emu: DifyOpenAPIEmulator, client: DifyOpenAPIClient) -> None:
    emu.inject(Fault("stream", "drop_before_response", run_started=True, times=1))
    with pytest.raises(OutcomeUnknownError) as info:
        list(client.run_app(TEXT_APP_ID, {"topic": "cats"}))
    assert isinstance(info.value, DifyOpenAPIError)
    assert "no run-detail or log endpoint" in str(info.value)
    assert run_posts(emu) == 1  # never re-sent


def test_failed_run_raises(emu: DifyOpenAPIEmulator, client: DifyOpenAPIClient) -> None:
    emu.inject(Fault("stream", "failed_run", message="model exploded", times=1))
    with pytest.raises(DifyOpenAPIRunFailedError, match="model exploded"):
        list(client.run_app(TEXT_APP_ID, {"topic": "cats"}))
    assert run_posts(emu) == 1


def test_429_on_a_read_is_retried_never_on_a_run(emu: DifyOpenAPIEmulator, client: DifyOpenAPIClient) -> None:
    emu.inject(Fault("account", "status", status=429, retry_after=0.1, times=1))
    assert client.get_account().default_workspace_id == WORKSPACE_ID
    assert sum(1 for r in emu.requests if r.path.endswith("/account")) == 2
    client.describe_app(TEXT_APP_ID)
    emu.inject(Fault("stream", "status", status=429, retry_after=0.1, times=1))
    with pytest.raises(DifyOpenAPIRateLimitedError):
        list(client.run_app(TEXT_APP_ID, {"topic": "cats"}))
    assert run_posts(emu) == 1


def test_bearer_rate_limit_raw_body_retried_for_reads() -> None:
    with DifyOpenAPIEmulator(rate_limit_per_token=2, rate_limit_window=0.5) as emu:
        with DifyOpenAPIClient(make_config(emu, max_retries=3)) as c:
            for _ in range(4):
                c.get_account()
        assert sum(1 for r in emu.requests if r.path.endswith("/account")) > 4  # some were 429 and retried


def test_token_never_in_errors_or_logs(emu: DifyOpenAPIEmulator, caplog: pytest.LogCaptureFixture) -> None:
    token = emu.issue_token()
    emu.revoke_token(token)
    caplog.set_level(logging.DEBUG)
    with DifyOpenAPIClient(make_config(emu, token=token)) as c:
        with pytest.raises(DifyOpenAPIAuthenticationError) as info:
            c.get_account()
    assert "log in again" in str(info.value).lower()
    assert token not in str(info.value) and token not in repr(info.value.__dict__)
    assert token not in caplog.text


# --- pause, forms, stop -----------------------------------------------------------------------------


def test_pause_is_a_state_then_answer_the_form(emu: DifyOpenAPIEmulator, client: DifyOpenAPIClient) -> None:
    events = list(client.run_app(HUMAN_INPUT_APP_ID, {"topic": "launch"}))
    paused = events[-1]
    assert paused.event == "workflow_paused"
    forms = paused.forms
    assert forms and forms[0].form_token
    token = str(forms[0].form_token)
    form = client.get_form(HUMAN_INPUT_APP_ID, token)
    assert set(form.action_ids) >= {"approve", "reject"}
    with pytest.raises(DifyOpenAPIInputError, match="not an action"):
        client.submit_form(HUMAN_INPUT_APP_ID, token, "maybe", {})
    client.submit_form(HUMAN_INPUT_APP_ID, token, "approve", {"comment": "ok"})
    rest = list(client.task_events(HUMAN_INPUT_APP_ID, str(paused.workflow_run_id), include_state_snapshot=True))
    assert rest[-1].event == "workflow_finished"
    assert emu.runs_started(ACCOUNT_TOKEN, app=HUMAN_INPUT_APP_ID) == 1


def test_stop_then_look(emu: DifyOpenAPIEmulator, client: DifyOpenAPIClient) -> None:
    events = client.run_app(LONG_APP_ID, {"seconds": 30, "steps": 30})
    first = next(events)
    run_id, task_id = first.workflow_run_id, first.task_id
    assert run_id and task_id
    events.close()  # type: ignore[attr-defined]
    run = client.stop_task(LONG_APP_ID, task_id, workflow_run_id=run_id)
    assert run is not None and run.status == "stopped"


def test_stop_of_a_paused_run_returns_the_pause_it_saw(emu: DifyOpenAPIEmulator, client: DifyOpenAPIClient) -> None:
    """A current Dify leaves a paused run paused on stop (C6): ``stop_task`` reads the state
    snapshot once (it ends at the pause), returns the paused run and never waits for ``stopped``."""
    paused = list(client.run_app(HUMAN_INPUT_APP_ID, {"topic": "x"}))[-1]
    run_id, task_id = str(paused.workflow_run_id), str(paused.task_id)
    started = time.monotonic()
    run = client.stop_task(HUMAN_INPUT_APP_ID, task_id, workflow_run_id=run_id)
    assert time.monotonic() - started < 5
    assert run is not None and run.status == "paused" and run.workflow_run_id == run_id
    assert emu.run(run_id).status == "paused"

    async def astop() -> Any:
        async with AsyncDifyOpenAPIClient(make_config(emu)) as c:
            return await c.stop_task(HUMAN_INPUT_APP_ID, task_id, workflow_run_id=run_id)

    again = asyncio.run(astop())
    assert again is not None and again.status == "paused" and emu.run(run_id).status == "paused"


def test_the_action_generation_end_to_end() -> None:
    """The middle generation (``POST /apps/{id}:run``, ``/tasks/{tid}:stop``, ``...:submit``), pinned by
    ``api_generation="action"``: a current server still serves it, and every call goes to its paths."""
    with DifyOpenAPIEmulator(paths="current", ping_interval=0.2, event_interval=0.005) as emu:
        with DifyOpenAPIClient(make_config(emu, api_generation="action")) as client:
            assert client.generation == "action"
            assert [e.event for e in client.run_app(CHAT_APP_ID, {}, query="hello")][-1] == "message_end"
            paused = list(client.run_app(HUMAN_INPUT_APP_ID, {"topic": "launch"}))[-1]
            assert paused.event == "workflow_paused"
            token = str(paused.forms[0].form_token)
            client.submit_form(HUMAN_INPUT_APP_ID, token, "approve", {"comment": "ok"})
            events = client.run_app(LONG_APP_ID, {"seconds": 30, "steps": 30})
            first = next(events)
            events.close()  # type: ignore[attr-defined]
            run = client.stop_task(LONG_APP_ID, str(first.task_id), workflow_run_id=first.workflow_run_id)
            assert run is not None and run.status == "stopped"
        posts = [r.path.split("?")[0] for r in emu.requests if r.method == "POST"]
        assert posts.count(f"/openapi/v1/apps/{CHAT_APP_ID}:run") == 1
        assert f"/openapi/v1/apps/{HUMAN_INPUT_APP_ID}:run" in posts
        assert f"/openapi/v1/apps/{LONG_APP_ID}:run" in posts
        assert any(p.endswith(f"/human-input-forms/{token}:submit") for p in posts), posts
        assert any(p.endswith(f"/tasks/{first.task_id}:stop") for p in posts), posts
        assert not [p for p in posts if p.endswith(("/workflow:run", "/chat:run", "/run"))], posts
        assert emu.runs_started(ACCOUNT_TOKEN) == 3


# --- sessions and device flow -----------------------------------------------------------------------


def test_device_flow_then_sessions(emu: DifyOpenAPIEmulator) -> None:
    with DifyOpenAPIClient(make_config(emu, token="", login_only=True)) as anon:
        code = anon.start_device_flow(device_label="airflow-test")
        assert code.user_code and code.verification_uri
        threading.Timer(0.5, emu.approve, args=(code.user_code,)).start()
        token = anon.poll_device_token(code)
    assert token.token.reveal().startswith("dfoa_") and token.expires_at is not None
    assert token.account.get("email")
    with DifyOpenAPIClient(make_config(emu, token=token.token.reveal())) as c:
        sessions = c.list_sessions()
        assert any(s.device_label == "airflow-test" for s in sessions)
        c.revoke_session()
        with pytest.raises(DifyOpenAPIAuthenticationError):
            c.get_account()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_device_token_poll_waits_through_the_given_sleep(mode: str) -> None:
    """Both clients take the wait between polls from ``sleep`` (the CLI's says when Dify slows it
    down); the async one once had no such argument."""
    waits: list[float] = []
    with DifyOpenAPIEmulator(device_poll_interval=0.2) as emu:
        config = make_config(emu, token="", login_only=True)
        if mode == "sync":

            def sleep(seconds: float) -> None:
                waits.append(seconds)
                time.sleep(seconds)

            with DifyOpenAPIClient(config) as anon:
                code = anon.start_device_flow(device_label="airflow-sleep")
                threading.Timer(0.5, emu.approve, args=(code.user_code,)).start()
                token = anon.poll_device_token(code, sleep=sleep)
        else:

            async def asleep(seconds: float) -> None:
                waits.append(seconds)
                await asyncio.sleep(seconds)

            async def main() -> Any:
                async with AsyncDifyOpenAPIClient(config) as anon:
                    code = await anon.start_device_flow(device_label="airflow-sleep")
                    asyncio.get_running_loop().call_later(0.5, emu.approve, code.user_code)
                    return await anon.poll_device_token(code, sleep=asleep)

            token = asyncio.run(main())
    assert token.token.reveal().startswith("dfoa_")
    assert waits and all(w >= 0.2 for w in waits)


def test_run_and_event_reads_start_on_first_iteration(emu: DifyOpenAPIEmulator) -> None:
    """``run_app``, ``task_events`` and ``follow_run`` read (resolve, describe) only when iterated,
    in the sync client as in the async one, which cannot do otherwise (the sync one once read at
    call time, so its read errors escaped the caller's loop)."""
    with DifyOpenAPIClient(make_config(emu)) as c:
        before = len(emu.requests)
        events = c.run_app(TEXT_APP_ID, {"topic": "lazy"})
        tails = [c.task_events(TEXT_APP_ID, "run-1"), c.follow_run(TEXT_APP_ID, "run-1")]
        assert len(emu.requests) == before, "nothing read before iterating"
        run_id = list(events)[-1].workflow_run_id
    with DifyOpenAPIClient(make_config(emu)) as c:
        assert list(c.task_events(TEXT_APP_ID, str(run_id), include_state_snapshot=True))[-1].event == (
            "workflow_finished"
        )
        assert list(c.follow_run(TEXT_APP_ID, str(run_id)))[-1].event == "workflow_finished"
    for tail in tails:
        tail.close()  # type: ignore[attr-defined]
    assert emu.runs_started(ACCOUNT_TOKEN, app=TEXT_APP_ID) == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_stop_whose_outcome_cannot_be_read_returns_none_and_says_so(
    emu: DifyOpenAPIEmulator, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    """The stop was accepted; when the run's events cannot be read after it, both clients say so in
    the log and return None (not seen), never raise: the two once caught this in different places."""

    async def astop(task_id: str, run_id: str) -> Any:
        async with AsyncDifyOpenAPIClient(make_config(emu)) as c:
            return await c.stop_task(LONG_APP_ID, task_id, workflow_run_id=run_id)

    with DifyOpenAPIClient(make_config(emu)) as c:
        events = c.run_app(LONG_APP_ID, {"seconds": 30, "steps": 30})
        first = next(events)
        events.close()  # type: ignore[attr-defined]
        task_id, run_id = str(first.task_id), str(first.workflow_run_id)
        emu.inject(Fault("events", "status", status=500, times=None))
        with caplog.at_level(logging.WARNING, logger="docify_provider.dify_openapi.client"):
            if mode == "sync":
                run = c.stop_task(LONG_APP_ID, task_id, workflow_run_id=run_id)
            else:
                run = asyncio.run(astop(task_id, run_id))
    assert run is None
    assert any(f"stop of task {task_id}; run {run_id} not seen ending" in m for m in caplog.messages)
    assert ACCOUNT_TOKEN not in caplog.text and emu.runs_started(ACCOUNT_TOKEN) == 1


# --- async -------------------------------------------------------------------------------------------


def test_async_run_with_reattach(emu: DifyOpenAPIEmulator) -> None:
    emu.inject(Fault("stream", "drop_mid_stream", after_events=2, times=1))

    async def main() -> list[Any]:
        async with AsyncDifyOpenAPIClient(make_config(emu)) as c:
            account = await c.get_account()
            assert account.default_workspace_id == WORKSPACE_ID
            return [e async for e in c.run_app("Long Job", {"seconds": 0.5, "steps": 4})]

    events = asyncio.run(main())
    assert events[-1].event == "workflow_finished"
    assert emu.runs_started(ACCOUNT_TOKEN, app=LONG_APP_ID) == 1


def test_async_pause_forms_stop_and_device_flow(emu: DifyOpenAPIEmulator) -> None:
    async def main() -> None:
        async with AsyncDifyOpenAPIClient(make_config(emu)) as c:
            events = [e async for e in c.run_app(HUMAN_INPUT_APP_ID, {"topic": "launch"})]
            paused = events[-1]
            assert paused.event == "workflow_paused" and paused.forms
            token = str(paused.forms[0].form_token)
            assert "approve" in (await c.get_form(HUMAN_INPUT_APP_ID, token)).action_ids
            await c.submit_form(HUMAN_INPUT_APP_ID, token, "approve", {"comment": "ok"})
            rest = [
                e
                async for e in c.task_events(
                    HUMAN_INPUT_APP_ID, str(paused.workflow_run_id), include_state_snapshot=True
                )
            ]
            assert rest[-1].event == "workflow_finished"
            stream = c.run_app(LONG_APP_ID, {"seconds": 30, "steps": 30})
            first = await stream.__anext__()
            await stream.aclose()  # type: ignore[attr-defined]
            run = await c.stop_task(LONG_APP_ID, str(first.task_id), workflow_run_id=first.workflow_run_id)
            assert run is not None and run.status == "stopped"
        async with AsyncDifyOpenAPIClient(make_config(emu, token="", login_only=True)) as anon:
            code = await anon.start_device_flow(device_label="airflow-async")
            asyncio.get_running_loop().call_later(0.5, emu.approve, code.user_code)
            issued = await anon.poll_device_token(code)
            assert issued.token.reveal().startswith("dfoa_")

    asyncio.run(main())
    assert emu.runs_started(ACCOUNT_TOKEN, app=HUMAN_INPUT_APP_ID) == 1
    assert emu.runs_started(ACCOUNT_TOKEN, app=LONG_APP_ID) == 1


# --- task_events: a read (429/5xx retried); a cut or an early end is reported, never silent ------------


def _started_long(client: DifyOpenAPIClient) -> str:
    events = client.run_app(LONG_APP_ID, {"seconds": 0.6, "steps": 2})
    first = next(events)
    events.close()  # type: ignore[attr-defined]
    assert first.workflow_run_id
    return first.workflow_run_id


@pytest.mark.parametrize("kind", ["end_without_complete", "drop_mid_stream"])
def test_task_events_cut_or_ended_early_raises_stream_incomplete(
    emu: DifyOpenAPIEmulator, client: DifyOpenAPIClient, kind: str
) -> None:
    from docify_provider.dify_openapi.errors import DifyOpenAPIStreamIncompleteError

    run_id = _started_long(client)
    emu.inject(Fault("events", kind, after_events=2))
    with pytest.raises(DifyOpenAPIStreamIncompleteError) as caught:
        list(client.task_events(LONG_APP_ID, run_id, include_state_snapshot=True))
    assert run_id in str(caught.value) and "Nothing was re-sent" in str(caught.value)
    assert caught.value.outcome_unknown
    assert emu.runs_started(ACCOUNT_TOKEN) == 1


def test_async_task_events_reports_an_early_end_and_retries_a_502(emu: DifyOpenAPIEmulator) -> None:
    from docify_provider.dify_openapi.errors import DifyOpenAPIStreamIncompleteError

    async def main() -> tuple[BaseException | None, list[Any]]:
        async with AsyncDifyOpenAPIClient(make_config(emu)) as c:
            events = c.run_app(LONG_APP_ID, {"seconds": 1.0, "steps": 2})
            first = await anext(events)  # type: ignore[call-overload]
            await events.aclose()  # type: ignore[attr-defined]
            run_id = first.workflow_run_id
            error: BaseException | None = None
            emu.inject(Fault("events", "end_without_complete", after_events=2))
            try:
                async for _ in c.task_events(LONG_APP_ID, run_id, include_state_snapshot=True):
                    pass
            except DifyOpenAPIStreamIncompleteError as exc:
                error = exc
            emu.inject(Fault("events", "status", status=502))
            finished = [e async for e in c.task_events(LONG_APP_ID, run_id, include_state_snapshot=True)]
            return error, finished

    error, finished = asyncio.run(main())
    assert isinstance(error, DifyOpenAPIStreamIncompleteError), "an early end is not silent"
    assert finished[-1].event == "workflow_finished", "the 502 was retried"
    reads = [r.status for r in emu.requests if r.endpoint == "events"]
    assert reads == [200, 502, 200], "one early-ended read, one 502, its retry"
    assert emu.runs_started(ACCOUNT_TOKEN) == 1
