"""DifyClient and AsyncDifyClient over real sockets against the bundled Dify emulator.

Nothing is mocked: faults are injected into the emulator (gateway timeouts, cut and stalled
streams, ignored stops) and the client must recover without ever sending a run twice.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from typing import Any

import pytest

from docify_provider.dify.client import AsyncDifyClient, DifyClient, shared_async_client
from docify_provider.dify.config import DifyClientConfig
from docify_provider.dify.errors import (
    DifyAuthenticationError,
    DifyConfigError,
    DifyError,
    DifyInputError,
    DifyOutcomeUnknownError,
    DifyRateLimitedError,
    DifyRunFailedError,
    DifyTransportError,
)
from docify_provider.testing.dify import (
    DOCUMENT_APP_KEY,
    HUMAN_INPUT_APP_KEY,
    LONG_APP_KEY,
    TEXT_APP_KEY,
    DifyEmulator,
)
from docify_provider.testing.faults import Fault

FAST: dict[str, Any] = {
    "backoff_initial": 0.01,
    "backoff_max": 0.05,
    "retry_after_cap": 0.2,
    "idle_timeout": 1.5,
    "connect_timeout": 2,
    "read_timeout": 10,
    "max_retries": 2,
    "poll_interval": 0.05,
    "recovery_timeout": 5,
}


def config(emu: DifyEmulator, key: str = TEXT_APP_KEY, **overrides: Any) -> DifyClientConfig:
    return DifyClientConfig(api_key=key, **{"base_url": emu.base_url, **FAST, **overrides})


@pytest.fixture
def client(dify_emulator: DifyEmulator):
    with DifyClient(config(dify_emulator)) as c:
        yield c


def run_posts(emu: DifyEmulator) -> int:
    return sum(1 for r in emu.requests if r.method == "POST" and r.path.split("?")[0].endswith("/run"))


# --- config ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["recovery_timeout", "poll_interval"])
@pytest.mark.parametrize("value", [0, -1, True, "5"])
def test_config_validates_recovery_settings(field: str, value: Any) -> None:
    with pytest.raises(DifyConfigError, match=field):
        DifyClientConfig(api_key="app-x", **{field: value})


def test_config_defaults() -> None:
    cfg = DifyClientConfig(api_key="app-x")
    assert (cfg.recovery_timeout, cfg.poll_interval, cfg.base_url) == (1800.0, 5.0, "https://api.dify.ai/v1")


# --- app -------------------------------------------------------------------------------------------


def test_info_and_parameters(client: DifyClient) -> None:
    info = client.get_app_info()
    assert info.name == "Text Writer" and info.mode == "workflow" and "emulator" in info.tags
    params = client.get_parameters()
    topic = params.variable("topic")
    assert topic is not None and topic.type == "text-input" and topic.required and topic.max_length == 200
    assert params.variable("tone").options == ["neutral", "formal", "casual"]  # type: ignore[union-attr]
    assert params.file_size_limit == 15 and params.workflow_file_upload_limit == 10


def test_bad_key_is_authentication_error_without_the_key(dify_emulator: DifyEmulator) -> None:
    key = "app-NotARealKey123456789"
    dify_emulator.inject(Fault("info", "status", status=401, message=f"Invalid API key {key}"))
    with DifyClient(config(dify_emulator, key=key)) as c, pytest.raises(DifyAuthenticationError) as info:
        c.get_app_info()
    assert key not in str(info.value) and key not in repr(info.value.__dict__)


# --- blocking runs ---------------------------------------------------------------------------------


def test_blocking_run(client: DifyClient, dify_emulator: DifyEmulator) -> None:
    sent: list[dict[str, Any]] = []
    run = client.run_workflow({"topic": "tea", "tone": "formal"}, user="alice", on_sent=sent.append)
    assert run.succeeded and run.status == "succeeded" and run.task_id
    assert run.outputs["text"].startswith("Formal notes on tea")
    assert run.total_tokens and run.usage["total_tokens"] == run.total_tokens
    assert run.created_at is not None and run.created_at.tzinfo is not None
    assert sent and sent[0]["user"] == "alice" and sent[0]["inputs"]["topic"] == "tea"
    assert dify_emulator.runs_started(user="alice") == 1


def test_blocking_run_gateway_timeout_is_recovered_not_resent(client: DifyClient, dify_emulator: DifyEmulator) -> None:
    dify_emulator.inject(Fault("run", "timeout_after_start", status=524))
    run = client.run_workflow({"topic": "lost answer"}, user="bob")
    assert run.succeeded and "lost answer" in run.outputs["text"]
    assert dify_emulator.runs_started(user="bob") == 1 and run_posts(dify_emulator) == 1


def test_recovery_ignores_other_users_and_other_inputs(client: DifyClient, dify_emulator: DifyEmulator) -> None:
    client.run_workflow({"topic": "lost answer"}, user="someone-else")
    client.run_workflow({"topic": "other topic"}, user="bob")
    dify_emulator.inject(Fault("run", "timeout_after_start", status=504))
    run = client.run_workflow({"topic": "lost answer"}, user="bob")
    assert dify_emulator.run(run.workflow_run_id).user == "bob"
    assert dify_emulator.run(run.workflow_run_id).inputs["topic"] == "lost answer"


def test_recovery_gives_up_as_outcome_unknown(dify_emulator: DifyEmulator) -> None:
    dify_emulator.inject(Fault("run", "drop_before_response"))
    with DifyClient(config(dify_emulator, recovery_timeout=0.3)) as c, pytest.raises(DifyOutcomeUnknownError) as info:
        c.run_workflow({"topic": "gone"}, user="carol")
    assert info.value.outcome_unknown and "recovery_timeout" in str(info.value)
    assert run_posts(dify_emulator) == 1


def test_recovery_with_two_matching_runs_is_unknown(client: DifyClient, dify_emulator: DifyEmulator) -> None:
    client.run_workflow({"topic": "twice"}, user="dave")
    dify_emulator.inject(Fault("run", "timeout_after_start", status=524))
    with pytest.raises(DifyOutcomeUnknownError, match="2 runs"):
        client.run_workflow({"topic": "twice"}, user="dave")
    assert run_posts(dify_emulator) == 2


def test_failed_run_raises_with_result(client: DifyClient, dify_emulator: DifyEmulator) -> None:
    dify_emulator.inject(Fault("run", "failed_run", message="model exploded"))
    with pytest.raises(DifyRunFailedError) as info:
        client.run_workflow({"topic": "x"}, user="erin")
    err = info.value
    assert err.error == "model exploded" and err.run_id and err.permanent is False
    assert isinstance(err.result, dict) and err.result["data"]["status"] == "failed"


def test_partial_success_returns_with_warning(
    client: DifyClient, dify_emulator: DifyEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    dify_emulator.inject(Fault("run", "partial_success"))
    with caplog.at_level(logging.WARNING, "docify_provider.dify.client"):
        run = client.run_workflow({"topic": "x"}, user="frank")
    assert run.status == "partial-succeeded" and run.succeeded
    assert "partially succeeded" in caplog.text


def test_rate_limited_run_is_not_retried(client: DifyClient, dify_emulator: DifyEmulator) -> None:
    dify_emulator.inject(Fault("run", "status", status=429, times=5))
    with pytest.raises(DifyRateLimitedError):
        client.run_workflow({"topic": "x"}, user="gina")
    assert run_posts(dify_emulator) == 1


def test_run_never_connected_is_transport_error() -> None:
    cfg = DifyClientConfig(api_key="app-x", base_url="http://127.0.0.1:9/v1", **{**FAST, "max_retries": 0})
    with DifyClient(cfg) as c, pytest.raises(DifyTransportError) as info:
        c.run_workflow({"topic": "x"})
    assert info.value.request_sent is False and not info.value.outcome_unknown


def test_server_validation_error_is_bad_request(client: DifyClient) -> None:
    with pytest.raises(DifyError, match="topic is required"):
        client.run_workflow({}, user="h")


def test_run_by_workflow_id(client: DifyClient, dify_emulator: DifyEmulator) -> None:
    run = client.run_workflow({"topic": "v"}, user="i", workflow_id=dify_emulator.app("text").workflow_id)
    assert run.succeeded and run.workflow_id == dify_emulator.app("text").workflow_id


# --- streaming -------------------------------------------------------------------------------------


def test_stream_events_and_usage(client: DifyClient, dify_emulator: DifyEmulator) -> None:
    events = list(client.stream_workflow({"topic": "sse"}, user="s1"))
    names = [e.event for e in events]
    assert names[0] == "workflow_started" and names[-1] == "workflow_finished" and "ping" not in names
    text = "".join(e.text or "" for e in events)
    run = events[-1].run
    assert run is not None and run.outputs["text"] == text and run.task_id == events[0].task_id
    node_tokens = sum(e.node.tokens or 0 for e in events if e.event == "node_finished" and e.node)
    assert run.usage["total_tokens"] == node_tokens == run.total_tokens
    assert run.usage["total_price"] and run.usage["currency"] == "USD"
    nodes = [e.node for e in events if e.event == "node_finished"]
    assert {n.node_type for n in nodes if n} == {"start", "llm", "end"}


@pytest.mark.parametrize(
    "fault",
    [
        Fault("stream", "drop_mid_stream", after_events=3),
        Fault("stream", "end_without_complete", after_events=2),
        Fault("stream", "stall", after_events=2, seconds=2.5),
    ],
    ids=lambda f: f.kind,
)
def test_stream_cut_reattaches(client: DifyClient, dify_emulator: DifyEmulator, fault: Fault) -> None:
    dify_emulator.inject(fault)
    events = list(client.stream_workflow({"topic": "cut"}, user="s2"))
    assert events[-1].event == "workflow_finished" and events[-1].run.succeeded  # type: ignore[union-attr]
    assert dify_emulator.runs_started(user="s2") == 1 and run_posts(dify_emulator) == 1
    assert dify_emulator.events_requests(user="s2") >= 1 or fault.kind == "stall"
    # node_finished seen twice (live and in the snapshot) is counted once
    usage = events[-1].run.usage  # type: ignore[union-attr]
    assert usage["total_tokens"] == dify_emulator.run(events[-1].workflow_run_id or "").total_tokens


def test_stream_cut_before_its_first_event_is_found_in_the_logs(
    client: DifyClient, dify_emulator: DifyEmulator
) -> None:
    """No run id was seen, but the run started: it is found by user, time and inputs, then re-attached."""
    dify_emulator.inject(Fault("stream", "end_without_complete", after_events=0))
    events = list(client.stream_workflow({"topic": "x"}, user="s3"))
    assert events[-1].event == "workflow_finished" and events[-1].data["status"] == "succeeded"
    assert events[-1].workflow_run_id in {r.id for r in dify_emulator.runs}
    assert run_posts(dify_emulator) == 1 and dify_emulator.runs_started() == 1


def test_stream_cut_before_any_run_fails_closed_after_the_search(
    client: DifyClient, dify_emulator: DifyEmulator
) -> None:
    """The server read the request and closed: no run appears in the logs, so the outcome stays unknown."""
    dify_emulator.inject(Fault("stream", "drop_before_response"))
    with pytest.raises(DifyOutcomeUnknownError, match="no run of user 's3b' with these inputs appeared") as info:
        list(client.stream_workflow({"topic": "x"}, user="s3b"))
    assert info.value.outcome_unknown and "not re-sent" in str(info.value)
    assert run_posts(dify_emulator) == 1 and dify_emulator.runs_started() == 0


def test_recovery_reads_that_fail_are_tried_again(client: DifyClient, dify_emulator: DifyEmulator) -> None:
    """A 500 from the logs while searching is not the end: reads are free, the next poll finds the run."""
    dify_emulator.inject(Fault("stream", "end_without_complete", after_events=0))
    dify_emulator.inject(Fault("logs", "status", status=500, times=2))
    events = list(client.stream_workflow({"topic": "x"}, user="s3c"))
    assert events[-1].event == "workflow_finished"
    assert dify_emulator.runs_started() == 1


def test_recovery_stops_at_a_read_that_cannot_heal(client: DifyClient, dify_emulator: DifyEmulator) -> None:
    dify_emulator.inject(Fault("run", "drop_before_response", run_started=True))
    dify_emulator.inject(Fault("logs", "status", status=404))
    with pytest.raises(DifyOutcomeUnknownError, match="reading the app's logs failed") as info:
        client.run_workflow({"topic": "x"}, user="s3d")
    assert "not re-sent" in str(info.value)
    assert run_posts(dify_emulator) == 1


def test_stream_error_event(client: DifyClient, dify_emulator: DifyEmulator) -> None:
    dify_emulator.inject(Fault("stream", "error_event", message="quota gone"))
    with pytest.raises(DifyRunFailedError) as info:
        list(client.stream_workflow({"topic": "x"}, user="s4"))
    assert info.value.code == "completion_request_error" and info.value.error == "quota gone"
    assert info.value.run_id


def test_stream_failed_run(client: DifyClient, dify_emulator: DifyEmulator) -> None:
    dify_emulator.inject(Fault("stream", "failed_run", message="bad node"))
    with pytest.raises(DifyRunFailedError, match="bad node") as info:
        list(client.stream_workflow({"topic": "x"}, user="s5"))
    assert info.value.result["data"]["status"] == "failed"  # type: ignore[index]


@pytest.mark.parametrize("kind", ["malformed_event", "unknown_event"])
def test_stream_odd_events(client: DifyClient, dify_emulator: DifyEmulator, kind: str) -> None:
    dify_emulator.inject(Fault("stream", kind))
    events = list(client.stream_workflow({"topic": "x"}, user="s6"))
    assert events[-1].event == "workflow_finished"
    if kind == "unknown_event":
        assert "agent_log" in [e.event for e in events]


def test_stream_pauses_then_attach_after_submit(dify_emulator: DifyEmulator) -> None:
    with DifyClient(config(dify_emulator, HUMAN_INPUT_APP_KEY)) as c:
        events = list(c.stream_workflow({"topic": "review me"}, user="h1"))
        last = events[-1]
        assert last.event == "workflow_paused" and last.is_terminal
        form = last.form
        assert form is not None and form.form_token and {a["id"] for a in form.actions} == {"approve", "reject"}
        run_id = last.workflow_run_id or ""
        assert c.get_workflow_run(run_id).paused
        # attach while paused: the snapshot says so, with the form (the run detail has none): a
        # re-attaching try can still ask for the answer
        paused = list(c.attach(run_id, user="h1"))[-1]
        assert paused.event == "workflow_paused" and paused.form is not None
        assert paused.form.form_token == form.form_token and paused.form.title == form.title
        dify_emulator.submit_form(form.form_token or "", action="approve")
        after = list(c.attach(run_id, user="h1", task_id=last.task_id))
        assert after[-1].event == "workflow_finished" and after[-1].run.outputs["decision"] == "approve"  # type: ignore[union-attr]


def test_blocking_run_returns_paused(dify_emulator: DifyEmulator) -> None:
    with DifyClient(config(dify_emulator, HUMAN_INPUT_APP_KEY)) as c:
        run = c.run_workflow({"topic": "t"}, user="h2")
    assert run.paused and run.is_terminal and not run.ended


# --- attach, detail, wait, stop, logs -----------------------------------------------------------------


def test_attach_finished_run_synthesizes_workflow_finished(client: DifyClient, dify_emulator: DifyEmulator) -> None:
    run = client.run_workflow({"topic": "done"}, user="a1")
    events = list(client.attach(run.workflow_run_id, user="a1", task_id=run.task_id))
    assert [e.event for e in events] == ["workflow_finished"]
    assert events[0].run.outputs == run.outputs and events[0].run.task_id == run.task_id  # type: ignore[union-attr]
    assert dify_emulator.events_requests() == 0


def test_attach_polls_when_events_endpoint_missing(dify_emulator: DifyEmulator) -> None:
    with DifyClient(config(dify_emulator, LONG_APP_KEY)) as c:
        first = next(iter(c.stream_workflow({"seconds": 0.5}, user="a2")))
        dify_emulator.inject(Fault("events", "status", status=404))
        events = list(c.attach(first.workflow_run_id or "", user="a2"))
    assert [e.event for e in events] == ["workflow_finished"] and events[0].run.succeeded  # type: ignore[union-attr]


def test_attach_failed_run_raises(client: DifyClient, dify_emulator: DifyEmulator) -> None:
    dify_emulator.inject(Fault("run", "failed_run"))
    with pytest.raises(DifyRunFailedError) as info:
        client.run_workflow({"topic": "x"}, user="a3")
    with pytest.raises(DifyRunFailedError):
        list(client.attach(info.value.run_id or "", user="a3"))


def test_wait_for_run_and_timeout(dify_emulator: DifyEmulator) -> None:
    with DifyClient(config(dify_emulator, LONG_APP_KEY)) as c:
        first = next(iter(c.stream_workflow({"seconds": 0.6}, user="w1")))
        run_id = first.workflow_run_id or ""
        with pytest.raises(DifyOutcomeUnknownError):
            c.wait_for_run(run_id, poll_interval=0.05, timeout=0.1)
        run = c.wait_for_run(run_id, poll_interval=0.05, timeout=5)
    assert run.succeeded


def test_stop_task(dify_emulator: DifyEmulator) -> None:
    with DifyClient(config(dify_emulator, LONG_APP_KEY)) as c:
        events = c.stream_workflow({"seconds": 5, "steps": 5}, user="st1")
        first = next(iter(events))
        run = c.stop_task(first.task_id or "", user="st1", workflow_run_id=first.workflow_run_id)
        assert run is not None and run.status == "stopped"
        assert c.stop_task(first.task_id or "", user="st1") is None


def test_ignored_stop_is_logged(dify_emulator: DifyEmulator, caplog: pytest.LogCaptureFixture) -> None:
    dify_emulator.inject(Fault("stop", "ignore_stop"))
    with DifyClient(config(dify_emulator, LONG_APP_KEY)) as c:
        first = next(iter(c.stream_workflow({"seconds": 3}, user="st2")))
        with caplog.at_level(logging.WARNING, "docify_provider.dify.client"):
            run = c.stop_task(first.task_id or "", user="st2", workflow_run_id=first.workflow_run_id)
        assert run is not None and run.status == "running" and "still running" in caplog.text
        c.stop_task(first.task_id or "", user="st2")
    assert dify_emulator.stop_requests() == 2


def test_logs_filters_and_pages(client: DifyClient, dify_emulator: DifyEmulator) -> None:
    for i in range(3):
        client.run_workflow({"topic": f"log {i}"}, user="l1")
    client.run_workflow({"topic": "other"}, user="l2")
    dify_emulator.inject(Fault("run", "failed_run"))
    with pytest.raises(DifyRunFailedError):
        client.run_workflow({"topic": "bad"}, user="l1")
    mine = list(client.iter_workflow_logs(user="l1"))
    assert len(mine) == 4 and {item.session_id for item in mine} == {"l1"}
    assert [item.status for item in client.iter_workflow_logs(user="l1", status="failed")] == ["failed"]
    assert len(list(client.iter_workflow_logs(keyword="log 1"))) == 1
    assert list(client.iter_workflow_logs(created_after=time.time() + 3600)) == []


def test_logs_all_pages(client: DifyClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import docify_provider.dify.client_base as module  # the page size is the shared base's

    monkeypatch.setattr(module, "LOGS_PAGE_SIZE", 2)
    for i in range(5):
        client.run_workflow({"topic": f"p{i}"}, user="pg")
    assert len({item.workflow_run_id for item in client.iter_workflow_logs(user="pg")}) == 5


# --- files -----------------------------------------------------------------------------------------


def test_upload_run_and_download_output(dify_emulator: DifyEmulator, tmp_path: Any) -> None:
    doc = tmp_path / "notes.txt"
    doc.write_bytes(b"hello dify")
    with DifyClient(config(dify_emulator, DOCUMENT_APP_KEY)) as c:
        uploaded = c.upload_file(doc, user="f1")
        assert uploaded.name == "notes.txt" and uploaded.size == 10 and uploaded.extension == "txt"
        run = c.run_workflow({"document": uploaded}, user="f1")
        assert run.succeeded and len(run.files) == 1
        out = run.files[0]
        assert out.file_name == "report.csv" and out.file_url and out.file_url.startswith("http://")
        sink = io.BytesIO()

        class Sink:
            def __enter__(self) -> io.BytesIO:
                return sink

            def __exit__(self, *exc: object) -> None:
                return None

        size = c.download(out.file_url, Sink, expected_size=out.file_size)
        assert size == out.file_size and b"notes.txt" in sink.getvalue()
    assert dify_emulator.upload_count(user="f1") == 1


def test_prepare_inputs_uploads_and_validates(dify_emulator: DifyEmulator, tmp_path: Any) -> None:
    doc = tmp_path / "a.pdf"
    doc.write_bytes(b"%PDF-1.4 tiny")
    with DifyClient(config(dify_emulator, DOCUMENT_APP_KEY)) as c:
        wire = c.prepare_inputs({"document": str(doc)}, user="f2")
        assert wire["document"]["transfer_method"] == "local_file" and wire["document"]["type"] == "document"
        assert dify_emulator.upload_count(user="f2") == 1
        run = c.run_workflow({"document": wire["document"]}, user="f2")
        assert run.succeeded
        with pytest.raises(DifyInputError) as info:
            c.prepare_inputs({"document": tmp_path / "missing.pdf", "nope": 1}, user="f2")
        assert len(info.value.problems) == 2


# --- async -----------------------------------------------------------------------------------------


async def test_async_info_run_and_recovery(dify_emulator: DifyEmulator) -> None:
    async with AsyncDifyClient(config(dify_emulator)) as c:
        assert (await c.get_app_info()).name == "Text Writer"
        assert (await c.get_parameters()).variable("topic") is not None
        run = await c.run_workflow({"topic": "async"}, user="as1")
        assert run.succeeded
        dify_emulator.inject(Fault("run", "timeout_after_start", status=524))
        recovered = await c.run_workflow({"topic": "async lost"}, user="as1")
        assert recovered.succeeded and "async lost" in recovered.outputs["text"]
    assert dify_emulator.runs_started(user="as1") == 2 and run_posts(dify_emulator) == 2


async def test_async_stream_reattach_attach_and_logs(dify_emulator: DifyEmulator) -> None:
    dify_emulator.inject(Fault("stream", "drop_mid_stream", after_events=2))
    async with AsyncDifyClient(config(dify_emulator)) as c:
        events = [e async for e in c.stream_workflow({"topic": "a"}, user="as2")]
        assert events[-1].event == "workflow_finished" and dify_emulator.runs_started(user="as2") == 1
        run_id = events[-1].workflow_run_id or ""
        again = [e async for e in c.attach(run_id, user="as2")]
        assert [e.event for e in again] == ["workflow_finished"]
        assert [item.workflow_run_id async for item in c.iter_workflow_logs(user="as2")] == [run_id]
        assert (await c.get_workflow_run(run_id)).succeeded


async def test_async_attach_to_a_paused_run_gives_its_form(dify_emulator: DifyEmulator) -> None:
    """What a trigger re-attaching to a paused run (a retry, the next try of a second form) needs."""
    async with AsyncDifyClient(config(dify_emulator, HUMAN_INPUT_APP_KEY)) as c:
        first = [e async for e in c.stream_workflow({"topic": "again"}, user="as5")][-1]
        assert first.event == "workflow_paused" and first.form is not None
        again = [e async for e in c.attach(first.workflow_run_id or "", user="as5")]
    assert again[-1].event == "workflow_paused" and again[-1].form is not None
    assert again[-1].form.form_token == first.form.form_token
    assert dify_emulator.events_requests(user="as5") == 1 and dify_emulator.runs_started(user="as5") == 1


async def test_async_stop_wait_upload(dify_emulator: DifyEmulator) -> None:
    async with AsyncDifyClient(config(dify_emulator, LONG_APP_KEY)) as c:
        stream = c.stream_workflow({"seconds": 5, "steps": 5}, user="as3")
        first = await stream.__anext__()
        await stream.aclose()  # type: ignore[attr-defined]
        run = await c.stop_task(first.task_id or "", user="as3", workflow_run_id=first.workflow_run_id)
        assert run is not None and run.status == "stopped"
        assert (await c.wait_for_run(first.workflow_run_id or "", timeout=2)).status == "stopped"
    async with AsyncDifyClient(config(dify_emulator, DOCUMENT_APP_KEY)) as d:
        uploaded = await d.upload_file(b"abc", file_name="x.txt", user="as3")
        wire = await d.prepare_inputs({"document": uploaded}, user="as3")
        assert (await d.run_workflow(wire, user="as3")).succeeded


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_attach_without_events_endpoint_says_it_polls(
    dify_emulator: DifyEmulator, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    """Both clients say in the log why they poll instead of streaming (the async one once did not)."""
    with DifyClient(config(dify_emulator, LONG_APP_KEY)) as c:
        first = next(iter(c.stream_workflow({"seconds": 0.5}, user="a4")))
    run_id = first.workflow_run_id or ""
    dify_emulator.inject(Fault("events", "status", status=404))
    with caplog.at_level(logging.INFO, logger="docify_provider.dify.client"):
        if mode == "sync":
            with DifyClient(config(dify_emulator, LONG_APP_KEY)) as c:
                events = list(c.attach(run_id, user="a4"))
        else:
            async with AsyncDifyClient(config(dify_emulator, LONG_APP_KEY)) as d:
                events = [e async for e in d.attach(run_id, user="a4")]
    assert [e.event for e in events] == ["workflow_finished"] and events[0].run.succeeded  # type: ignore[union-attr]
    assert f"Dify events endpoint unavailable for run {run_id} (404); polling" in caplog.messages


async def test_async_upload_is_logged_as_the_sync_client_logs_it(
    dify_emulator: DifyEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """The trigger's uploads leave the same line in the task log as the worker's (a drift once: none)."""
    with caplog.at_level(logging.INFO, logger="docify_provider.dify.client"):
        with DifyClient(config(dify_emulator, DOCUMENT_APP_KEY)) as c:
            sync = c.upload_file(b"abc", file_name="x.txt", user="up1")
        async with AsyncDifyClient(config(dify_emulator, DOCUMENT_APP_KEY)) as d:
            aio = await d.upload_file(b"abc", file_name="x.txt", user="up1")
    lines = [r.getMessage() for r in caplog.records if r.message.startswith("Uploaded")]
    assert lines == [f"Uploaded x.txt (3 bytes) to Dify as {sync.id}", f"Uploaded x.txt (3 bytes) to Dify as {aio.id}"]
    assert DOCUMENT_APP_KEY not in caplog.text


async def test_async_stream_error_event_and_incomplete(dify_emulator: DifyEmulator) -> None:
    async with AsyncDifyClient(config(dify_emulator)) as c:
        dify_emulator.inject(Fault("stream", "error_event"))
        with pytest.raises(DifyRunFailedError) as info:
            _ = [e async for e in c.stream_workflow({"topic": "x"}, user="as4")]
        assert info.value.code == "completion_request_error"
        dify_emulator.inject(Fault("stream", "end_without_complete", after_events=0))
        events = [e async for e in c.stream_workflow({"topic": "x"}, user="as4-found")]
        assert events[-1].event == "workflow_finished", "found in the logs and re-attached"
        dify_emulator.inject(Fault("stream", "drop_before_response"))
        with pytest.raises(DifyOutcomeUnknownError, match="appeared in the logs"):
            _ = [e async for e in c.stream_workflow({"topic": "y"}, user="as4b")]


async def test_shared_async_client(dify_emulator: DifyEmulator) -> None:
    cfg = config(dify_emulator)
    async with shared_async_client(cfg, scope="dify_default") as a, shared_async_client(cfg, scope="dify_default") as b:
        assert a.http is b.http
        assert (await a.get_app_info()).name == (await b.get_app_info()).name


def test_sync_client_is_thread_safe(client: DifyClient, dify_emulator: DifyEmulator) -> None:
    results: list[str] = []

    def work(i: int) -> None:
        results.append(client.run_workflow({"topic": f"t{i}"}, user=f"th{i}").status)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["succeeded"] * 4
