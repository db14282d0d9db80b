"""Dify models: parsing what the server sends (and its older or odder shapes)."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest
from httpx_sse import ServerSentEvent

from docify_provider.dify.errors import DifyProtocolError, DifyRunFailedError, DifyStreamIncompleteError
from docify_provider.dify.matching import inputs_match
from docify_provider.dify.models import (
    PRICE_NOT_SEEN,
    AppParameters,
    InputVariable,
    OutputFile,
    UploadedFile,
    WorkflowEvent,
    WorkflowLog,
    WorkflowRun,
    epoch_to_datetime,
    file_type_for_extension,
    find_output_files,
)
from docify_provider.dify.stream import DifyEventTracker

BLOCKING = {
    "task_id": "t1",
    "workflow_run_id": "r1",
    "data": {
        "id": "r1",
        "workflow_id": "w1",
        "status": "succeeded",
        "outputs": {
            "text": "hi",
            "report": {
                "dify_model_identity": "__dify__file__",
                "id": "f1",
                "filename": "r.csv",
                "url": "/files/tools/f1.csv?sign=x",
                "size": 3,
                "mime_type": "text/csv",
                "extension": ".csv",
                "type": "document",
                "transfer_method": "tool_file",
            },
        },
        "error": None,
        "elapsed_time": 0.5,
        "total_tokens": 12,
        "total_steps": 3,
        "created_at": 1705407629,
        "finished_at": 1705407630,
    },
}


def test_blocking_run_and_relative_file_url() -> None:
    run = WorkflowRun.from_blocking(BLOCKING, base_url="https://dify.example.com/v1")
    assert (run.workflow_run_id, run.task_id, run.status, run.total_tokens) == ("r1", "t1", "succeeded", 12)
    assert run.created_at is not None and run.created_at.tzinfo is not None and run.created_at.year == 2024
    assert run.succeeded and run.ended and run.is_terminal and not run.failed
    assert run.usage == {"total_tokens": 12, "total_price": None, "currency": None}
    (out,) = run.files
    assert out.file_url == "https://dify.example.com/files/tools/f1.csv?sign=x" and out.file_size == 3
    assert run.as_dict()["files"][0]["id"] == "f1"


def test_detail_with_inputs_as_json_string() -> None:
    run = WorkflowRun.from_detail({"id": "r", "status": "running", "inputs": '{"a": 1}', "outputs": None}, "t")
    assert run.inputs == {"a": 1} and run.outputs == {} and not run.is_terminal and run.task_id == "t"


@pytest.mark.parametrize("body", [[], {"data": {}}, {"workflow_run_id": "r", "data": {"status": ""}}])
def test_bad_run_bodies(body: Any) -> None:
    with pytest.raises(DifyProtocolError):
        WorkflowRun.from_blocking(body)


def test_parameters_old_and_flat_structure() -> None:
    params = AppParameters.from_api(
        {
            "user_input_form": [
                {"text-input": {"variable": "q", "label": "Q", "required": True, "max_length": 10}},
                {
                    "type": "file",
                    "variable": "doc",
                    "allowed_file_types": ["document"],
                    "allowed_file_extensions": [".PDF"],
                },
                {"json_object": {"variable": "j", "json_schema": '{"type": "object"}'}},
            ],
            "system_parameters": {"file_size_limit": 15, "image_file_size_limit": 10, "workflow_file_upload_limit": 4},
        }
    )
    q, doc, j = params.user_input_form
    assert (q.type, q.required, q.max_length) == ("text-input", True, 10)
    assert doc.takes_files and doc.allowed_file_extensions == [".pdf"]
    assert j.json_schema == {"type": "object"}
    assert params.size_limit_mb("image") == 10 and params.size_limit_mb("document") == 15
    assert params.size_limit_mb("video") == 15 and params.variable("nope") is None


def test_variable_without_name_is_protocol_error() -> None:
    with pytest.raises(DifyProtocolError):
        InputVariable.from_api({"text-input": {"label": "x"}})


def test_uploaded_file_round_trip() -> None:
    up = UploadedFile.from_api({"id": "u1", "name": "a.png", "size": 4, "extension": "png", "created_at": 1})
    assert up.as_input() == {"transfer_method": "local_file", "upload_file_id": "u1", "type": "image"}
    assert up.as_input("document")["type"] == "document"
    assert UploadedFile.from_api(up.as_dict()) == UploadedFile.from_api(up.as_dict())
    assert UploadedFile.from_api(up.as_dict()).created_at == up.created_at


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.PDF", "document"),
        ("x.jpeg", "image"),
        ("s.mp3", "audio"),
        ("v.mov", "video"),
        ("z.bin", "custom"),
        ("", "custom"),
        ("csv", "document"),
    ],
)
def test_file_types(name: str, kind: str) -> None:
    assert file_type_for_extension(name) == kind


def test_output_files_nested_and_deduplicated() -> None:
    f = {"dify_model_identity": "__dify__file__", "id": "a", "filename": "x.csv", "url": "https://h/x"}
    assert [o.id for o in find_output_files({"a": [f, {"b": f}], "c": "text"})] == ["a"]
    assert OutputFile.is_file_object({"transfer_method": "remote_url", "remote_url": "u", "filename": "n"})


def test_events_views() -> None:
    node = WorkflowEvent.from_api(
        {
            "event": "node_finished",
            "task_id": "t",
            "workflow_run_id": "r",
            "data": {
                "id": "e1",
                "title": "LLM",
                "node_type": "llm",
                "status": "succeeded",
                "elapsed_time": 1.5,
                "execution_metadata": {"total_tokens": 7, "total_price": "0.001", "currency": "USD"},
            },
        }
    )
    assert node.node is not None and (node.node.tokens, node.node.price, node.node.currency) == (7, 0.001, "USD")
    assert node.text is None and node.run is None and not node.is_terminal
    text = WorkflowEvent.from_api({"event": "text_chunk", "data": {"text": "é"}})
    assert text.text == "é" and text.node is None
    paused = WorkflowEvent.from_api(
        {
            "event": "workflow_paused",
            "workflow_run_id": "r",
            "data": {
                "reasons": [
                    {"node_title": "Review", "form_token": "tok", "actions": [{"id": "ok"}], "expiration_time": 2}
                ]
            },
        }
    )
    assert paused.is_terminal and paused.form is not None and paused.form.form_token == "tok"
    assert paused.form.as_dict()["title"] == "Review"
    err = WorkflowEvent.from_api({"event": "error", "workflow_run_id": "r", "code": "c", "message": "m"})
    assert (err.error_code, err.error_message, err.data) == ("c", "m", {})
    with pytest.raises(DifyProtocolError):
        WorkflowEvent.from_api({"data": {}})


def test_log_item() -> None:
    item = WorkflowLog.from_api(
        {
            "id": "l",
            "workflow_run": {"id": "r", "status": "succeeded", "created_at": 5, "total_tokens": 3},
            "created_by_end_user": {"session_id": "alice"},
        }
    )
    assert (item.workflow_run_id, item.status, item.session_id, item.total_tokens) == ("r", "succeeded", "alice", 3)
    with pytest.raises(DifyProtocolError):
        WorkflowLog.from_api({"workflow_run": {}})


@pytest.mark.parametrize("value", [None, "", True, "garbage", float("inf")])
def test_bad_times_are_none(value: Any) -> None:
    assert epoch_to_datetime(value) is None


def test_iso_time() -> None:
    assert epoch_to_datetime("2024-01-01T00:00:00Z").year == 2024  # type: ignore[union-attr]


# --- the tracker ---------------------------------------------------------------------------------


def sse(payload: str, event: str = "message") -> ServerSentEvent:
    return ServerSentEvent(event=event, data=payload)


def finished(status: str = "succeeded") -> str:
    data = {"id": "r", "status": status, "outputs": {}, "total_tokens": 9}
    return json.dumps({"event": "workflow_finished", "task_id": "t", "workflow_run_id": "r", "data": data})


NODE = (
    '{"event":"node_finished","task_id":"t","workflow_run_id":"r","data":{"id":"n1",'
    '"execution_metadata":{"total_tokens":4,"total_price":0.5,"currency":"USD"}}}'
)


def test_tracker_usage_is_counted_once_per_node_execution() -> None:
    tracker = DifyEventTracker("stream")
    assert tracker.feed(sse("", "ping")) is None
    assert tracker.feed(sse(NODE)) is not None
    assert tracker.feed(sse(NODE)) is None  # replayed by a state snapshot
    assert tracker.feed(sse("{not json")) is None and tracker.malformed == 1
    event = tracker.feed(sse(finished()))
    assert event is not None and event.is_terminal and tracker.done
    assert event.run is not None and event.run.usage == {"total_tokens": 4, "total_price": 0.5, "currency": "USD"}
    assert (tracker.session_id, tracker.task_id) == ("r", "t") and tracker.finish() is event.run


def _node(event: str, node: str, **data: Any) -> str:
    return json.dumps({"event": event, "task_id": "t", "workflow_run_id": "r", "data": {"id": node, **data}})


#: A node as a state snapshot replays it (Dify's ``to_ignore_detail_dict``): no usage.
STRIPPED = {"inputs": None, "process_data": None, "outputs": None, "execution_metadata": None}


@pytest.mark.parametrize(
    "seen",
    [
        [_node("node_finished", "n0", **STRIPPED), NODE],  # a node replayed by a snapshot, one seen live
        [NODE, _node("node_started", "n2", inputs={})],  # a node seen starting, its end missed (a cut)
        [],  # an ended run's final frame alone (the answer to a re-attach after the end)
    ],
    ids=["replayed", "end-missed", "final-frame-alone"],
)
def test_tracker_gives_no_price_when_some_node_usage_went_unseen(seen: list[str]) -> None:
    """The nodes' sum would be a partial price: None instead, the reason, and the run's own tokens."""
    tracker = DifyEventTracker("events")
    for payload in seen:
        tracker.feed(sse(payload))
    final = json.loads(finished())
    final["data"]["total_steps"] = 3
    run = tracker.feed(sse(json.dumps(final))).run  # type: ignore[union-attr]
    assert run is not None and run.usage == {
        "total_tokens": 9, "total_price": None, "currency": None, "price_unknown": PRICE_NOT_SEEN,
    }  # fmt: skip


def test_tracker_keeps_the_price_when_a_live_node_reports_no_usage() -> None:
    """Dify sends ``execution_metadata: null`` live for a node that costs nothing (a start node): its
    inputs and outputs show it was not replayed, so the run's price stands."""
    tracker = DifyEventTracker("stream")
    tracker.feed(sse(_node("node_started", "n0", inputs={"topic": "x"})))
    tracker.feed(sse(_node("node_finished", "n0", inputs={"topic": "x"}, outputs={}, execution_metadata=None)))
    tracker.feed(sse(NODE))
    run = tracker.feed(sse(finished())).run  # type: ignore[union-attr]
    assert run is not None and run.usage == {"total_tokens": 4, "total_price": 0.5, "currency": "USD"}


@pytest.mark.parametrize("status", ["failed", "stopped"])
def test_tracker_failed_finish(status: str) -> None:
    with pytest.raises(DifyRunFailedError) as info:
        DifyEventTracker("stream").feed(sse(finished(status)))
    assert info.value.run_id == "r"
    assert pickle.loads(pickle.dumps(info.value)).result == info.value.result


def test_tracker_finish_without_terminal() -> None:
    tracker = DifyEventTracker("stream")
    with pytest.raises(DifyStreamIncompleteError):
        tracker.finish()
    tracker.feed(sse(NODE))
    assert tracker.finish() is None  # run id known: the client re-attaches


def test_error_code_survives_pickle() -> None:
    err = DifyRunFailedError("boom", code="invalid_param", error="x")
    assert pickle.loads(pickle.dumps(err)).code == "invalid_param"


def test_inputs_match_as_dify_stores_them() -> None:
    stored = {"n": 3.0, "s": "ab", "f": {"related_id": "u1"}, "fl": [{"remote_url": "https://x/a.png"}], "d": "dflt"}
    sent = {
        "n": 3,
        "s": "a\x00b",
        "f": {"transfer_method": "local_file", "upload_file_id": "u1"},
        "fl": [{"transfer_method": "remote_url", "url": "https://x/a.png"}],
        "d": None,
    }
    assert inputs_match(sent, stored)
    assert inputs_match(sent, json.dumps(stored))
    assert not inputs_match({**sent, "n": 4}, stored)
    assert not inputs_match({**sent, "f": {"transfer_method": "local_file", "upload_file_id": "u2"}}, stored)
    assert not inputs_match(sent, None)


def test_a_pause_names_its_human_input_form_whichever_way_its_reasons_are_typed():
    """Current Dify servers key a pause reason's type ``TYPE``, its documents ``type``; older ones send
    none. The human-input reason (with its token) is the form, whatever comes before it."""
    from docify_provider.dify.models import WorkflowEvent

    other = {"TYPE": "scheduled_pause", "form_token": "not-a-form"}
    for key in ("TYPE", "type"):
        reasons = [other, {key: "human_input_required", "form_token": "tok", "node_title": "Review"}]
        event = WorkflowEvent.from_api({"event": "workflow_paused", "data": {"reasons": reasons}})
        assert event.form is not None and (event.form.form_token, event.form.title) == ("tok", "Review")
    untyped = WorkflowEvent.from_api({"event": "workflow_paused", "data": {"reasons": [{"form_token": "t"}]}})
    assert untyped.form is not None and untyped.form.form_token == "t"
    only_other = WorkflowEvent.from_api({"event": "workflow_paused", "data": {"reasons": [other]}})
    assert only_other.form is None
