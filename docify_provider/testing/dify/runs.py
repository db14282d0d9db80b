"""A Dify workflow run: its state, its live event channel and the bodies the API shows of it.

A run is executed by a background thread (:mod:`docify_provider.testing.dify.engine`) and is
independent of any HTTP connection, as on Dify (Celery worker + Redis pub/sub): a stream is
only a *subscriber*. Subscribers get events published after they subscribed (no replay).
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from docify_provider.testing.dify.apps import DifyApp
from docify_provider.testing.dify.validation import DifyFile
from docify_provider.testing.faults import Fault

ENDED = frozenset({"succeeded", "failed", "stopped", "partial-succeeded"})
STOPPED_BY_USER = "Stopped by user."


def _default_text(form_input: dict[str, Any]) -> str:
    """A form input's constant default as Dify stringifies it ("" when there is none)."""
    default = form_input.get("default") or {}
    value = default.get("value") if default.get("type") == "constant" else None
    return "" if value is None else str(value)


@dataclass(eq=False)
class HumanForm:
    """A human-input form of a paused run, addressed by its ``form_token``."""

    run_id: str
    app_code: str
    node_id: str
    node_title: str
    form_content: str
    inputs: list[dict[str, Any]]
    actions: list[dict[str, str]]
    expiration_time: int
    form_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    form_token: str = field(default_factory=lambda: uuid.uuid4().hex)
    submitted: bool = False

    @property
    def expired(self) -> bool:
        return time.time() >= self.expiration_time

    def data(self) -> dict[str, Any]:
        """``human_input_required.data`` (also a ``reasons`` item, with ``type`` added)."""
        return {
            "form_id": self.form_id,
            "node_id": self.node_id,
            "node_title": self.node_title,
            "form_content": self.form_content,
            "inputs": [dict(i) for i in self.inputs],
            "actions": [dict(a) for a in self.actions],
            "display_in_ui": True,
            "form_token": self.form_token,
            "resolved_default_values": {i["output_variable_name"]: _default_text(i) for i in self.inputs},
            "expiration_time": self.expiration_time,
        }

    def definition(self) -> dict[str, Any]:
        """The ``GET /v1/form/human_input/{form_token}`` body."""
        data = self.data()
        return {
            "form_content": data["form_content"],
            "inputs": data["inputs"],
            "resolved_default_values": data["resolved_default_values"],
            "user_actions": data["actions"],
            "expiration_time": self.expiration_time,
        }


@dataclass(eq=False)
class DifyRun:
    """One workflow run, shared by its executing thread, streams, and the API endpoints."""

    app: DifyApp
    key_fp: str
    user: str
    inputs: dict[str, Any]
    files: dict[str, list[DifyFile]]
    fault: Fault | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    task_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    end_user_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: float = field(default_factory=time.time)
    status: str = "running"
    outputs: dict[str, Any] | None = None
    error: str | None = None
    finished_at: float | None = None
    total_tokens: int = 0
    total_steps: int = 0
    exceptions_count: int = 0
    output_files: list[dict[str, Any]] = field(default_factory=list)
    form: HumanForm | None = None
    paused_nodes: list[str] = field(default_factory=list)
    #: ``node_started.data`` of the node the run is paused in (finished on resume).
    paused_node: dict[str, Any] | None = None
    #: Set to wake the executing thread: a stop request or the emulator shutting down.
    wake: threading.Event = field(default_factory=threading.Event)
    stop_requested: bool = False
    #: Chat-family runs: the query, the conversation and the message the answer is.
    query: str | None = None
    conversation_id: str | None = None
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: Shaped like the newest Dify server (``server_profile="current"``) where the run and engine
    #: decide (run detail ``inputs``, a paused run's stop, the resumed node): set when either API
    #: starts the run (``DifyRequestHandler._launch``; one server code path serves both). What the
    #: handlers write (worker rejections, ``TYPE`` reasons, re-attach) follows ``emu.current``.
    current: bool = False
    #: Answers of the forms submitted so far, by form node id (multi-form graphs).
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _subscribers: list[queue.SimpleQueue[dict[str, Any]]] = field(default_factory=list, repr=False)
    #: The node events published so far (what Dify persists; a state snapshot is rebuilt from it).
    _node_events: list[dict[str, Any]] = field(default_factory=list, repr=False)

    # channel ------------------------------------------------------------------------------
    def subscribe(self) -> queue.SimpleQueue[dict[str, Any]]:
        """A queue of the events published from now on."""
        channel: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        with self._cond:
            self._subscribers.append(channel)
        return channel

    def subscribe_unless_finished(self, snapshot: bool = False) -> queue.SimpleQueue[dict[str, Any]] | None:
        """Atomically: None when the run has finished, else a new subscription; with
        ``snapshot`` it starts with the run's state rebuilt as events (``include_state_snapshot``)."""
        with self._cond:
            if self.finished_at is not None:
                return None
            channel = self.subscribe()
            for event in self.snapshot() if snapshot else []:
                channel.put(event)
            return channel

    def snapshot(self) -> list[dict[str, Any]]:
        """A synthetic ``workflow_started``, the node events detail-stripped as Dify's
        ``to_ignore_detail_dict`` strips them (inputs null; a finished node's outputs, process data,
        error and ``execution_metadata`` null, so no tokens or price: A8) and, when paused,
        ``human_input_required`` and ``workflow_paused``."""
        events = [self.envelope("workflow_started", self.started_data("initial"))]
        for event in self._node_events:
            data = {**event["data"], "inputs": None}
            if event["event"] == "node_finished":
                data.update(outputs=None, process_data=None, error=None, execution_metadata=None, files=[])
            events.append({**event, "data": data})
        if self.status == "paused" and self.form is not None:
            events.append(self.envelope("human_input_required", self.form.data()))
            events.append(self.envelope("workflow_paused", self.paused_data()))
        return events

    def unsubscribe(self, channel: queue.SimpleQueue[dict[str, Any]]) -> None:
        with self._cond:
            if channel in self._subscribers:
                self._subscribers.remove(channel)

    def publish(self, event: dict[str, Any]) -> None:
        with self._cond:
            if event.get("event") in ("node_started", "node_finished"):
                self._node_events.append(event)
            for channel in self._subscribers:
                channel.put(event)

    def envelope(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"event": name, "task_id": self.task_id, "workflow_run_id": self.id, "data": data}

    # state --------------------------------------------------------------------------------
    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def update(self, **changes: Any) -> None:
        """Change fields under the run's lock and wake :meth:`wait_for` callers."""
        with self._cond:
            for name, value in changes.items():
                setattr(self, name, value)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[DifyRun], bool], timeout: float | None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def elapsed_time(self) -> float:
        return round((self.finished_at or time.time()) - self.created_at, 6)

    # bodies -------------------------------------------------------------------------------
    def started_data(self, reason: str) -> dict[str, Any]:
        """``workflow_started.data``; ``reason`` is "initial" or "resumption"."""
        return {
            "id": self.id,
            "workflow_id": self.app.workflow_id,
            "inputs": dict(self.inputs),
            "sequence_number": 1,
            "created_at": int(self.created_at),
            "reason": reason,
        }

    def finished_data(self) -> dict[str, Any]:
        """``workflow_finished.data``."""
        return {
            "id": self.id,
            "workflow_id": self.app.workflow_id,
            "status": self.status,
            "outputs": self.outputs,
            "error": self.error,
            "elapsed_time": self.elapsed_time(),
            "total_tokens": self.total_tokens,
            "total_steps": self.total_steps,
            "created_by": {"id": self.end_user_id, "user": self.user},
            "created_at": int(self.created_at),
            "finished_at": None if self.finished_at is None else int(self.finished_at),
            "exceptions_count": self.exceptions_count,
            "files": [dict(f) for f in self.output_files],
        }

    def paused_data(self) -> dict[str, Any]:
        """``workflow_paused.data``."""
        return {
            "workflow_run_id": self.id,
            "paused_nodes": list(self.paused_nodes),
            "outputs": {},
            "reasons": self.reasons(),
            "status": "paused",
            "created_at": int(self.created_at),
            "elapsed_time": self.elapsed_time(),
            "total_tokens": self.total_tokens,
            "total_steps": self.total_steps,
        }

    def reasons(self) -> list[dict[str, Any]]:
        if self.form is None or self.status != "paused":
            return []
        # The documents' key; a current server's handlers write it ``TYPE`` (Part C4, ``current.upper_case_reasons``).
        return [{**self.form.data(), "type": "human_input_required"}]

    def blocking_body(self) -> dict[str, Any]:
        """The blocking ``POST /v1/workflows/run`` answer (paused: ``paused_nodes``, ``reasons``)."""
        data = self.finished_data()
        body = {key: data[key] for key in ("id", "workflow_id", "status", "outputs", "error", "elapsed_time")}
        body.update({key: data[key] for key in ("total_tokens", "total_steps", "created_at", "finished_at")})
        if self.status == "paused":
            body.update(outputs={}, finished_at=None, paused_nodes=list(self.paused_nodes), reasons=self.reasons())
        return {"task_id": self.task_id, "workflow_run_id": self.id, "data": body}

    def detail_body(self) -> dict[str, Any]:
        """``GET /v1/workflows/run/{id}``."""
        data = self.finished_data()
        return {
            "id": self.id,
            "workflow_id": self.app.workflow_id,
            "status": self.status,
            # The newest server sends the raw JSON string column (Part C6); the documents an object.
            "inputs": json.dumps(self.inputs, ensure_ascii=False) if self.current else dict(self.inputs),
            "outputs": {} if self.outputs is None else self.outputs,
            "error": self.error,
            "total_steps": self.total_steps,
            "total_tokens": self.total_tokens,
            "created_at": data["created_at"],
            "finished_at": data["finished_at"],
            "elapsed_time": data["elapsed_time"],
        }

    def log_item(self) -> dict[str, Any]:
        """One ``GET /v1/workflows/logs`` item."""
        data = self.finished_data()
        run = {key: data[key] for key in ("status", "error", "elapsed_time", "total_tokens", "total_steps")}
        run.update(created_at=data["created_at"], finished_at=data["finished_at"])
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, self.id)),
            "workflow_run": {
                "id": self.id,
                "version": self.app.version,
                "triggered_from": "app-run",
                "exceptions_count": self.exceptions_count,
                **run,
            },
            "details": None,
            "created_from": "service-api",
            "created_by_role": "end_user",
            "created_by_account": None,
            "created_by_end_user": {
                "id": self.end_user_id,
                "type": "service_api",
                "is_anonymous": False,
                "session_id": self.user,
            },
            "created_at": data["created_at"],
        }
