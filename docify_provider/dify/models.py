"""Typed, immutable views of what the Dify Workflow Service API sends about runs: the run, its
stream events, its human-input forms, the app's run log, and the records a run is kept as.

Each model keeps the payload it was built from in ``raw`` (nothing the server returned is
dropped); times are aware UTC datetimes (Dify sends epoch seconds). Parsers are lenient about
fields Dify added or renamed across versions and strict only about what the client relies on.

The app's description (``apps``), file objects (``files``) and the lenient readers (``parsing``)
live in their own modules and are re-exported here, where callers import them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from docify_provider.dify.apps import AppInfo, AppParameters, InputVariable
from docify_provider.dify.errors import DifyProtocolError
from docify_provider.dify.files import OutputFile, UploadedFile, file_type_for_extension, find_output_files
from docify_provider.dify.parsing import as_list, epoch_to_datetime, json_object, opt_float, opt_int, opt_str
from docify_provider.dify.protocol import ENDED_STATUSES, FAILED_STATUSES

__all__ = [
    "AppInfo",
    "AppParameters",
    "FormRequest",
    "InputVariable",
    "NodeView",
    "OutputFile",
    "UploadedFile",
    "WorkflowEvent",
    "WorkflowLog",
    "WorkflowRun",
    "epoch_to_datetime",
    "file_type_for_extension",
    "find_output_files",
    "form_of_events",
    "form_of_pause",
    "human_input_reasons",
    "reason_kind",
    "run_from_record",
    "run_record",
]

#: Events that end a stream (Dify's default terminal set).
TERMINAL_EVENTS = frozenset({"workflow_finished", "workflow_paused"})
#: Event names documented for workflow apps; others are kept and logged at debug.
KNOWN_EVENTS = frozenset(
    {
        "ping",
        "error",
        "workflow_started",
        "workflow_finished",
        "workflow_paused",
        "node_started",
        "node_finished",
        "node_retry",
        "iteration_started",
        "iteration_next",
        "iteration_completed",
        "loop_started",
        "loop_next",
        "loop_completed",
        "parallel_branch_started",
        "parallel_branch_finished",
        "text_chunk",
        "text_replace",
        "tts_message",
        "tts_message_end",
        "agent_log",
        "human_input_required",
        "human_input_form_filled",
        "human_input_form_timeout",
    }
)


def _task_id(task_id: Any, run_id: Any) -> str | None:
    """A task id, or None when it is the run id.

    Re-attaching to a run that has already finished, the newest Dify sends one
    ``workflow_finished`` whose ``task_id`` is the run id (Part C3). Kept as the task id it
    would replace the real one, and a later stop would name a task that does not exist.
    """
    if task_id is None or (run_id is not None and str(task_id) == str(run_id)):
        return None
    return str(task_id)


def _without_run_id_task(raw: dict[str, Any], run_id: Any) -> dict[str, Any]:
    """``raw`` with its ``task_id`` cleared (None) when that is the run id (see :func:`_task_id`).

    ``raw`` travels on: into a ``WorkflowRun`` (an operator's XCom ``body``) and to code that
    reads the task id from the payload (the OpenAPI's chat runs record it for a stop). Cleared
    here, where the frame is read, no reader can take the run id for a task id.
    """
    if raw.get("task_id") is not None and _task_id(raw.get("task_id"), run_id) is None:
        return {**raw, "task_id": None}
    return raw


def reason_kind(reason: Mapping[str, Any]) -> str | None:
    """The kind of a ``workflow_paused`` reason: the documents key it ``type``, the newest
    Dify ``TYPE`` (Part C4), so both are read."""
    kind = reason.get("type", reason.get("TYPE"))
    return None if kind is None else str(kind)


def human_input_reasons(reasons: Any) -> list[dict[str, Any]]:
    """The reasons of a pause that are human-input forms (``type``/``TYPE`` human_input_required,
    or no kind at all, as older servers sent), in order."""
    return [r for r in as_list(reasons) if isinstance(r, dict) and reason_kind(r) in (None, "human_input_required")]


# --- runs ----------------------------------------------------------------------------------------


def empty_usage() -> dict[str, Any]:
    return {"total_tokens": 0, "total_price": None, "currency": None}


#: ``usage["price_unknown"]`` of a run some of whose nodes Dify reported without their usage: a
#: state snapshot replays finished nodes detail-stripped (``execution_metadata`` null), and an
#: ended run's events are its final frame alone, which carries tokens but no price.
PRICE_NOT_SEEN = (
    "Dify did not report it: some of the run's nodes finished while it was not followed live (a deferred "
    "run followed by its id, or a stream re-attached after a cut), and Dify replays those without their "
    "price; total_tokens is the run's own"
)


def unpriced(usage: Mapping[str, Any], why: str) -> dict[str, Any]:
    """``usage`` without a price (a sum over some of the nodes is not the run's price), ``why`` instead;
    the tokens are left for the run's own ``total_tokens`` to fill in (``WorkflowRun._build``)."""
    return {**usage, "total_tokens": 0, "total_price": None, "currency": None, "price_unknown": why}


def add_usage(usage: dict[str, Any], metadata: Any) -> None:
    """Add one ``node_finished.execution_metadata`` to ``usage`` (in place)."""
    if not isinstance(metadata, dict):
        return
    tokens = opt_int(metadata.get("total_tokens"))
    if tokens:
        usage["total_tokens"] = int(usage.get("total_tokens") or 0) + tokens
    price = metadata.get("total_price")
    if price not in (None, ""):
        try:
            total = Decimal(str(usage.get("total_price") or 0)) + Decimal(str(price))
        except InvalidOperation:
            return
        usage["total_price"] = float(total)
        if metadata.get("currency"):
            usage["currency"] = str(metadata["currency"])


@dataclass(frozen=True)
class WorkflowRun:
    """A workflow run as a blocking answer, the run detail or a ``workflow_finished`` event shows it."""

    workflow_run_id: str
    status: str
    task_id: str | None = None
    workflow_id: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    elapsed_time: float | None = None
    total_tokens: int | None = None
    total_steps: int | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    usage: dict[str, Any] = field(default_factory=empty_usage)
    files: list[OutputFile] = field(default_factory=list)
    inputs: Any = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_terminal(self) -> bool:
        """Ended (succeeded, failed, stopped, partial-succeeded) or paused for human input."""
        return self.status in ENDED_STATUSES or self.status == "paused"

    @property
    def ended(self) -> bool:
        return self.status in ENDED_STATUSES

    @property
    def succeeded(self) -> bool:
        """Succeeded or partial-succeeded (outputs set; a node failed with an error strategy)."""
        return self.status in ("succeeded", "partial-succeeded")

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    @property
    def paused(self) -> bool:
        return self.status == "paused"

    @classmethod
    def _build(
        cls,
        data: dict[str, Any],
        *,
        run_id: Any,
        task_id: Any,
        raw: dict[str, Any],
        usage: dict[str, Any] | None = None,
        base_url: str | None = None,
    ) -> WorkflowRun:
        if not run_id:
            raise DifyProtocolError("Workflow run without an id")
        status = data.get("status")
        if not isinstance(status, str) or not status:
            raise DifyProtocolError(f"Workflow run {run_id} without a status")
        outputs = data.get("outputs")
        if isinstance(outputs, str):
            try:
                outputs = json.loads(outputs)
            except ValueError:
                outputs = {"text": outputs}
        outputs = outputs if isinstance(outputs, dict) else {}
        tokens = opt_int(data.get("total_tokens"))
        if usage is None:
            usage = {**empty_usage(), "total_tokens": tokens or 0}
        elif tokens and not usage.get("total_tokens"):
            usage = {**usage, "total_tokens": tokens}
        files = find_output_files(outputs, base_url=base_url)
        if not files and data.get("files"):
            files = find_output_files(data.get("files"), base_url=base_url)
        raw = _without_run_id_task(raw, run_id)
        return cls(
            workflow_run_id=str(run_id),
            status=status,
            task_id=_task_id(task_id, run_id),
            workflow_id=opt_str(data.get("workflow_id")),
            outputs=outputs,
            error=opt_str(data.get("error")) or None,
            elapsed_time=opt_float(data.get("elapsed_time")),
            total_tokens=tokens,
            total_steps=opt_int(data.get("total_steps")),
            created_at=epoch_to_datetime(data.get("created_at")),
            finished_at=epoch_to_datetime(data.get("finished_at")),
            usage=usage,
            files=files,
            inputs=data.get("inputs"),
            raw=raw,
        )

    @classmethod
    def from_blocking(cls, body: Any, *, base_url: str | None = None) -> WorkflowRun:
        """The blocking ``POST /workflows/run`` answer: ``{task_id, workflow_run_id, data: {...}}``."""
        body = json_object(body, "the run answer")
        data = json_object(body.get("data"), "the run answer's data")
        run_id = body.get("workflow_run_id") or data.get("id")
        return cls._build(data, run_id=run_id, task_id=body.get("task_id"), raw=body, base_url=base_url)

    @classmethod
    def from_detail(cls, body: Any, task_id: str | None = None, *, base_url: str | None = None) -> WorkflowRun:
        """``GET /workflows/run/{id}`` (its ``inputs`` may be a JSON string on old servers)."""
        body = json_object(body, "the run detail")
        data = dict(body)
        if isinstance(data.get("inputs"), str):
            with contextlib.suppress(ValueError):
                data["inputs"] = json.loads(data["inputs"])
        return cls._build(data, run_id=body.get("id"), task_id=task_id, raw=body, base_url=base_url)

    @classmethod
    def from_event(cls, event: Any, *, usage: dict[str, Any] | None = None, base_url: str | None = None) -> WorkflowRun:
        """A ``workflow_finished`` (or ``workflow_paused``) event; ``usage`` summed from its node events."""
        raw = event.raw if isinstance(event, WorkflowEvent) else json_object(event, "a workflow event")
        data = json_object(raw.get("data"), "the workflow event's data")
        run_id = raw.get("workflow_run_id") or data.get("id") or data.get("workflow_run_id")
        return cls._build(data, run_id=run_id, task_id=raw.get("task_id"), raw=raw, usage=usage, base_url=base_url)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (an operator's XCom)."""
        return {
            "workflow_run_id": self.workflow_run_id,
            "task_id": self.task_id,
            "workflow_id": self.workflow_id,
            "status": self.status,
            "outputs": self.outputs,
            "error": self.error,
            "elapsed_time": self.elapsed_time,
            "total_tokens": self.total_tokens,
            "total_steps": self.total_steps,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "usage": dict(self.usage),
            "files": [f.raw for f in self.files],
        }


# --- stream events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeView:
    """What a ``node_started`` / ``node_finished`` event says about its node."""

    node_id: str | None
    title: str | None
    node_type: str | None
    status: str | None
    elapsed_time: float | None
    tokens: int | None
    price: float | None
    currency: str | None
    execution_id: str | None = None


def human_input_reason(reasons: Any) -> dict[str, Any] | None:
    """The pause reason naming a human-input form (with its ``form_token``), or None.

    Of :func:`human_input_reasons` (keyed ``type`` or ``TYPE``), those with a token; a reason typed
    ``human_input_required`` is preferred over an untyped one (older servers). A reason of another
    type is never a form.
    """
    tokened = [r for r in human_input_reasons(reasons) if r.get("form_token")]
    typed = [r for r in tokened if reason_kind(r) == "human_input_required"]
    chosen = typed or tokened
    return chosen[0] if chosen else None


@dataclass(frozen=True)
class FormRequest:
    """A human-input form (``human_input_required`` data or a ``workflow_paused`` reason)."""

    title: str | None
    form_token: str | None
    actions: list[dict[str, Any]]
    expiration_time: datetime | None
    form_content: str | None = None
    node_id: str | None = None
    #: The reason's kind (``type`` or ``TYPE``), None for a ``human_input_required`` event.
    kind: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> FormRequest:
        return cls(
            kind=reason_kind(data),
            title=opt_str(data.get("node_title") or data.get("title")),
            form_token=opt_str(data.get("form_token")),
            actions=[a for a in as_list(data.get("actions") or data.get("user_actions")) if isinstance(a, dict)],
            expiration_time=epoch_to_datetime(data.get("expiration_time")),
            form_content=opt_str(data.get("form_content")),
            node_id=opt_str(data.get("node_id")),
            raw=data,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "form_token": self.form_token,
            "actions": self.actions,
            "expiration_time": self.expiration_time.isoformat() if self.expiration_time else None,
            "form_content": self.form_content,
            "node_id": self.node_id,
        }


@dataclass(frozen=True)
class WorkflowEvent:
    """One event of a streamed run (the event name is inside the JSON ``data:`` frame).

    Read the same from either Dify API and either server: a ``task_id`` that is the run id is
    None, in ``raw`` too (:func:`_task_id`, Part C3); a pause reason's kind is read under ``type``
    or ``TYPE`` (:func:`reason_kind`, Part C4).
    """

    event: str
    task_id: str | None
    workflow_run_id: str | None
    data: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)
    #: The run of a ``workflow_finished`` as the client's tracker built it (with usage and task id).
    result: WorkflowRun | None = field(default=None, repr=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        return self.event in TERMINAL_EVENTS

    @property
    def is_known(self) -> bool:
        return self.event in KNOWN_EVENTS

    @classmethod
    def from_api(cls, payload: Any) -> WorkflowEvent:
        payload = json_object(payload, "a stream event")
        name = payload.get("event")
        if not isinstance(name, str) or not name:
            raise DifyProtocolError("Stream event without an event name")
        data = payload.get("data")
        run_id = payload.get("workflow_run_id")
        return cls(
            event=name,
            task_id=_task_id(payload.get("task_id"), run_id),
            workflow_run_id=opt_str(run_id),
            data=data if isinstance(data, dict) else {},
            raw=_without_run_id_task(payload, run_id),
        )

    @property
    def node(self) -> NodeView | None:
        if not self.event.startswith("node_"):
            return None
        d = self.data
        meta: dict[str, Any] = d["execution_metadata"] if isinstance(d.get("execution_metadata"), dict) else {}
        return NodeView(
            node_id=opt_str(d.get("node_id")),
            title=opt_str(d.get("title")),
            node_type=opt_str(d.get("node_type")),
            status=opt_str(d.get("status")) or ("running" if self.event == "node_started" else None),
            elapsed_time=opt_float(d.get("elapsed_time")),
            tokens=opt_int(meta.get("total_tokens")),
            price=opt_float(meta.get("total_price")),
            currency=opt_str(meta.get("currency")),
            execution_id=opt_str(d.get("id")),
        )

    @property
    def text(self) -> str | None:
        if self.event != "text_chunk":
            return None
        text = self.data.get("text")
        return text if isinstance(text, str) else None

    @property
    def run(self) -> WorkflowRun | None:
        if self.event != "workflow_finished":
            return None
        return self.result or WorkflowRun.from_event(self)

    @property
    def form(self) -> FormRequest | None:
        """The form of a ``human_input_required`` event, or the first of a ``workflow_paused``'s reasons."""
        if self.event == "human_input_required":
            return FormRequest.from_api(self.data)
        if self.event == "workflow_paused":
            reason = human_input_reason(self.data.get("reasons"))
            return FormRequest.from_api(reason) if reason is not None else None
        return None

    @property
    def forms(self) -> list[FormRequest]:
        """Every form a ``workflow_paused`` waits on (its ``reasons``), or a ``human_input_required``'s one."""
        if self.event == "workflow_paused":
            return [FormRequest.from_api(r) for r in human_input_reasons(self.data.get("reasons"))]
        form = self.form
        return [form] if form is not None else []

    @property
    def error_code(self) -> str | None:
        return opt_str(self.raw.get("code")) if self.event == "error" else None

    @property
    def error_message(self) -> str | None:
        return opt_str(self.raw.get("message")) if self.event == "error" else None


# --- logs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkflowLog:
    """One ``GET /workflows/logs`` item (the app's run history, newest first)."""

    id: str
    workflow_run_id: str
    status: str | None
    created_at: datetime | None
    session_id: str | None
    elapsed_time: float | None = None
    total_tokens: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, item: Any) -> WorkflowLog:
        item = json_object(item, "a workflow log item")
        run: Mapping[str, Any] = item["workflow_run"] if isinstance(item.get("workflow_run"), Mapping) else {}
        user: Mapping[str, Any] = (
            item["created_by_end_user"] if isinstance(item.get("created_by_end_user"), Mapping) else {}
        )
        run_id = run.get("id")
        if not run_id:
            raise DifyProtocolError("Workflow log item without a run id")
        return cls(
            id=str(item.get("id") or run_id),
            workflow_run_id=str(run_id),
            status=opt_str(run.get("status")),
            created_at=epoch_to_datetime(run.get("created_at") or item.get("created_at")),
            session_id=opt_str(user.get("session_id")),
            elapsed_time=opt_float(run.get("elapsed_time")),
            total_tokens=opt_int(run.get("total_tokens")),
            raw=item,
        )


# --- records: a run to and from what the ledger, the XCom and a trigger event keep -----------------


def run_record(run: WorkflowRun) -> dict[str, Any]:
    """What the ledger keeps of a run (``raw`` as Dify sent it, the summed usage, the task id).

    The same record travels in a trigger's success event, so operators, sensors and triggers read
    it back with :func:`run_from_record`; it lives beside the model so none of them imports another.
    """
    return {"body": run.raw, "usage": dict(run.usage), "task_id": run.task_id}


def run_from_record(record: Mapping[str, Any], base_url: str | None) -> WorkflowRun:
    """The ``WorkflowRun`` a ``run_record`` (or a trigger event's ``run``) stands for."""
    body = dict(record.get("body") or {})
    task_id = record.get("task_id")
    if "event" in body:
        run = WorkflowRun.from_event(body, usage=record.get("usage"), base_url=base_url)
    elif isinstance(body.get("data"), dict):
        run = WorkflowRun.from_blocking(body, base_url=base_url)
    else:
        run = WorkflowRun.from_detail(body, task_id=task_id, base_url=base_url)
    if record.get("usage") and not any(run.usage.get(k) for k in ("total_price",)):
        run = replace(run, usage={**run.usage, **record["usage"]})
    if task_id and not run.task_id:
        run = replace(run, task_id=task_id)
    return run


def form_of_pause(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """The human-input form a ``workflow_paused`` data (or a paused blocking answer) waits on, as
    ``FormRequest.as_dict()``; ``{}`` when its reasons name none with a token (``type`` or ``TYPE``:
    :func:`human_input_reason`)."""
    reason = human_input_reason((data or {}).get("reasons"))
    return FormRequest.from_api(reason).as_dict() if reason is not None else {}


def form_of_events(events: Iterable[Any]) -> dict[str, Any] | None:
    """The form of the first ``workflow_paused`` in a run's events (a state snapshot replays it);
    None once the run is seen to end or the events end without a pause."""
    for event in events:
        if event.event == "workflow_paused":
            return form_of_pause(event.data) or None
        if event.event == "workflow_finished":
            return None
    return None
