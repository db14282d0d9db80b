"""Dify's stream verdict (``DifyEventTracker``) and the search for a run whose answer was lost (``RunRecovery``).

Sans-IO: both clients (and the account API's, which extends the tracker) feed decoded events or
log pages in and read the verdict out, so the rules of when a run has ended, which events are
duplicates after a re-attach, and which logged run is ours are written once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from docify_provider._core.errors import (
    ProviderError,
    RunFailedError,
    StreamIncompleteError,
    error_class,
)
from docify_provider._core.sse import json_decode
from docify_provider.dify import protocol
from docify_provider.dify.config import DifyClientConfig
from docify_provider.dify.errors import (
    DifyError,
    DifyOutcomeUnknownError,
    DifyProtocolError,
)
from docify_provider.dify.matching import inputs_match
from docify_provider.dify.models import (
    PRICE_NOT_SEEN,
    WorkflowEvent,
    WorkflowLog,
    WorkflowRun,
    add_usage,
    empty_usage,
    unpriced,
)
from docify_provider.dify.parsing import opt_int

if TYPE_CHECKING:
    from httpx_sse import ServerSentEvent


log = logging.getLogger(__name__)

__all__ = ["DifyEventTracker", "LostRunSearch", "RunRecovery", "raise_if_failed"]

#: The server's clock may be a little behind ours: look for runs created this much before the send.
CLOCK_SLACK_SECONDS = 5.0
#: Dify's default user when the upload form has none; the provider always sends one.
_DEDUPED_EVENTS = frozenset({"node_started", "node_finished", "human_input_required", "workflow_started"})
#: A ``node_finished`` with all of these null is detail-stripped (Dify's ``to_ignore_detail_dict``, as a
#: state snapshot replays a node): its usage is not known. A live one has inputs or outputs.
_STRIPPED = ("inputs", "process_data", "outputs", "execution_metadata")


def raise_if_failed(run: WorkflowRun, endpoint: str, errors: type[ProviderError] = DifyError) -> WorkflowRun:
    """``DifyRunFailedError`` (``errors``' class) for a run that ended failed or stopped; a warning for
    partial success."""
    if run.failed:
        raise error_class(errors, RunFailedError)(
            f"Dify run {run.workflow_run_id} ended {run.status}: {run.error or 'no error message'}",
            endpoint=endpoint,
            run_id=run.workflow_run_id,
            session_id=run.workflow_run_id,
            error=run.error,
            result=run.raw,
        )
    if run.status == "partial-succeeded":
        log.warning(
            "Dify run %s partially succeeded: a node failed and its error strategy supplied a value (%s)",
            run.workflow_run_id,
            run.error or "no error message",
        )
    return run


# --- the stream verdict --------------------------------------------------------------------------


class DifyEventTracker:
    """Reads Dify's SSE frames into ``WorkflowEvent``s and decides how the run ended.

    Keeps ``session_id`` (the workflow_run_id), ``task_id`` (for a stop) and the usage summed from
    ``node_finished.execution_metadata`` (once per node execution: a state snapshot replayed on
    re-attach does not count twice). ``feed`` raises ``DifyRunFailedError`` on an ``error`` event
    or a ``workflow_finished`` that failed or stopped; ``finish`` at the end of a body without a
    terminal event returns None when the run id is known (the client re-attaches) and raises
    ``DifyStreamIncompleteError`` when it is not. ``errors`` is the backend's error root (the
    user-scoped OpenAPI reads the same events under ``DifyOpenAPIError``).
    """

    #: Appended to the "ended before any event named its run" message (what the backend can't look up).
    unknown_hint: str = ""
    #: Where this API lists the app's inputs, for a run its worker rejected (Part C1).
    inputs_hint: str = "Check the inputs against the app's parameters (GET /parameters)."

    def __init__(
        self,
        endpoint: str,
        *,
        run_id: str | None = None,
        task_id: str | None = None,
        base_url: str | None = None,
        errors: type[ProviderError] = DifyError,
        continue_on_pause: bool = False,
    ) -> None:
        self.endpoint = endpoint
        #: Follow a run across its pauses up to ``workflow_finished`` (``attach(continue_on_pause=True)``).
        self.continue_on_pause = continue_on_pause
        self.errors = errors
        self.session_id: str | None = run_id
        self.task_id: str | None = task_id
        self.base_url = base_url
        self.events_seen: list[str] = []
        self.malformed = 0
        self.done = False
        self.result: WorkflowRun | None = None
        self.terminal: WorkflowEvent | None = None
        self._node_usage: dict[str, Any] = {}
        #: Node executions seen starting, seen finishing, and seen finishing detail-stripped (no usage).
        self._nodes_started: set[str] = set()
        self._nodes_finished: set[str] = set()
        self._nodes_stripped: set[str] = set()
        self._seen_keys: set[tuple[str, str]] = set()

    @property
    def run_id(self) -> str | None:
        return self.session_id

    @property
    def usage(self) -> dict[str, Any]:
        usage = empty_usage()
        for metadata in self._node_usage.values():
            add_usage(usage, metadata)
        return usage

    def _duplicate(self, event: WorkflowEvent) -> bool:
        if event.event not in _DEDUPED_EVENTS:
            return False
        data = event.data
        if event.event == "workflow_started":
            ident = str(data.get("reason") or "initial")
        elif event.event == "human_input_required":
            ident = str(data.get("form_token") or data.get("form_id") or "")
        else:
            ident = str(data.get("id") or "")
        if not ident:
            return False
        key = (event.event, ident)
        if key in self._seen_keys:
            return True
        self._seen_keys.add(key)
        return False

    def feed(self, sse: ServerSentEvent) -> WorkflowEvent | None:
        data = sse.data
        if sse.event == "ping" or not data or data.isspace():
            return None
        try:
            event = WorkflowEvent.from_api(json_decode(data))
        except (ValueError, DifyProtocolError) as exc:
            self.malformed += 1
            log.warning("Skipping malformed Dify stream event (%s): %.200r", exc, data)
            return None
        if event.event == "ping":
            return None
        return self.accept(event)

    def accept(self, event: WorkflowEvent) -> WorkflowEvent | None:
        """Record one decoded event (a fed one or one synthesized from the run detail)."""
        if event.workflow_run_id:
            self.session_id = event.workflow_run_id
        if event.task_id:
            self.task_id = event.task_id
        if self._duplicate(event):
            return None
        name = event.event
        self.events_seen.append(name)
        if name == "node_started":
            self._nodes_started.add(str(event.data.get("id") or ""))
        elif name == "node_finished":
            execution = str(event.data.get("id") or f"#{len(self.events_seen)}")
            metadata = event.data.get("execution_metadata")
            if isinstance(metadata, dict):
                self._node_usage[execution] = metadata
            self._nodes_finished.add(execution)
            if all(event.data.get(k) is None for k in _STRIPPED):
                self._nodes_stripped.add(execution)
        elif name == "error":
            message = event.error_message or "no message"
            failed = error_class(self.errors, RunFailedError)(
                protocol.error_event_message(
                    self.session_id,
                    event.error_code,
                    event.error_message,
                    status=event.raw.get("status"),
                    inputs_hint=self.inputs_hint,
                ),
                endpoint=self.endpoint,
                run_id=self.session_id,
                session_id=self.session_id,
                error=message,
                result=event.raw,
            )
            failed.code = event.error_code  # type: ignore[attr-defined]
            raise failed
        elif name == "workflow_finished":
            usage = self.usage
            if self._price_not_seen(event.data):
                usage = unpriced(usage, PRICE_NOT_SEEN)
            run = WorkflowRun.from_event(event.raw, usage=usage, base_url=self.base_url)
            if run.task_id is None and self.task_id:
                run = with_task(run, self.task_id)
            event = _with_result(event, run)
            self.result, self.terminal, self.done = run, event, True
            raise_if_failed(run, self.endpoint, self.errors)
        elif name == "workflow_paused":
            self.terminal, self.done = event, not self.continue_on_pause
        elif not event.is_known:
            log.debug("Unknown Dify stream event %r kept: %.200r", name, event.raw)
        return event

    def _price_not_seen(self, finished: Mapping[str, Any]) -> bool:
        """Whether a node's usage went unseen, so that the nodes' sum is not the run's price: a node
        replayed detail-stripped (a state snapshot), a node seen starting but not finishing, or an
        ended run's final frame with steps and no node seen (Dify's answer to a re-attach after the end)."""
        if self._nodes_stripped or (self._nodes_started - {""}) - self._nodes_finished:
            return True
        return not self._nodes_finished and bool(opt_int(finished.get("total_steps")))

    def ends_stream(self, event: WorkflowEvent) -> bool:
        """Whether the transport stops reading after ``event``: at ``workflow_finished`` always.

        With ``continue_on_pause`` the newest Dify treats no event as terminal and keeps the body
        open after ``workflow_finished`` until its idle close (Part C3): the client must end there
        itself, not wait for the server to close.
        """
        if event.event == "workflow_paused":
            return not self.continue_on_pause
        return event.is_terminal

    def accept_run(self, run: WorkflowRun) -> WorkflowEvent | None:
        """A run read from the run detail, as the terminal event a stream would have sent."""
        if run.ended:
            data = {**run.raw, "id": run.workflow_run_id, "status": run.status}
            data.pop("inputs", None)
            name = "workflow_finished"
        else:
            data = {
                "workflow_run_id": run.workflow_run_id,
                "status": run.status,
                "outputs": {},
                "reasons": [],
                "elapsed_time": run.elapsed_time,
                "total_tokens": run.total_tokens,
                "total_steps": run.total_steps,
            }
            name = "workflow_paused"
        raw = {"event": name, "task_id": self.task_id, "workflow_run_id": run.workflow_run_id, "data": data}
        return self.accept(WorkflowEvent.from_api(raw))

    def finish(self) -> WorkflowRun | None:
        if self.done:
            return self.result
        if self.session_id:
            log.info(
                "Dify stream of run %s ended without its final event after %d event(s); re-attaching",
                self.session_id,
                len(self.events_seen),
            )
            return None
        seen = ", ".join(self.events_seen[-10:]) or "none"
        raise error_class(self.errors, StreamIncompleteError)(
            f"The Dify stream ended before any event named its run ({len(self.events_seen)} event(s) seen, "
            f"last: {seen}" + (f", {self.malformed} malformed" if self.malformed else "") + "). The run may have "
            "started and been billed; it is not re-sent automatically." + self.unknown_hint,
            endpoint=self.endpoint,
            events_seen=self.events_seen,
        )


def _with_result(event: WorkflowEvent, run: WorkflowRun) -> WorkflowEvent:
    import dataclasses

    return dataclasses.replace(event, result=run)


def settled_by_detail(run: WorkflowRun, snapshot_read: bool, continue_on_pause: bool = False) -> bool:
    """Whether a re-attach ends on the run detail instead of reading the events endpoint.

    An ended run: yes. A paused one only once the events endpoint has been read: the detail
    carries no form (Dify's run detail has no ``reasons``, so no ``form_token``), while the
    events endpoint's state snapshot (``include_state_snapshot``) replays ``human_input_required``
    and ``workflow_paused`` with it. Without that a re-attach (a retry, the next try of a
    second form) saw a pause with no form and could not ask Airflow for the answer. A Dify whose
    events endpoint sends no snapshot ends the stream without a pause; the next detail read
    then settles it (a pause without form, as before).
    """
    return run.ended or (run.paused and snapshot_read and not continue_on_pause)


def with_task(run: WorkflowRun, task_id: str) -> WorkflowRun:
    import dataclasses

    return dataclasses.replace(run, task_id=task_id)


# --- finding a lost blocking run -----------------------------------------------------------------


class RunRecovery:
    """Sans-IO search for the run a lost blocking answer started: candidates from the logs,
    confirmed by their run detail's inputs, until one matches or ``recovery_timeout`` runs out."""

    def __init__(self, body: Mapping[str, Any], sent_at: float, config: DifyClientConfig, cause: Exception) -> None:
        self.inputs: Mapping[str, Any] = body.get("inputs") or {}
        self.user: str = str(body.get("user"))
        self.sent_at = sent_at
        self.since = sent_at - CLOCK_SLACK_SECONDS
        self.deadline = sent_at + config.recovery_timeout
        self.poll_interval = config.poll_interval
        self.cause = cause
        self.checked: set[str] = set()
        self.matches: list[str] = []
        self.read_errors = 0

    def log_filter(self) -> dict[str, Any]:
        return {"user": self.user, "created_after": self.since}

    def unchecked(self, logs: list[WorkflowLog]) -> list[str]:
        """Run ids to read the detail of: this user's, created since the request, not read yet."""
        out = []
        for item in logs:
            if item.workflow_run_id in self.checked:
                continue
            if item.session_id not in (None, self.user):
                continue
            if item.created_at is not None and item.created_at.timestamp() < self.since - 1:
                continue
            out.append(item.workflow_run_id)
        return out

    def check(self, run: WorkflowRun) -> None:
        self.checked.add(run.workflow_run_id)
        created = run.created_at.timestamp() if run.created_at else None
        if (created is None or created >= self.since - 1) and self.same_inputs(run):
            self.matches.append(run.workflow_run_id)

    def same_inputs(self, run: WorkflowRun) -> bool:
        """Whether ``run`` was started with the inputs the request sent."""
        return inputs_match(self.inputs, run.inputs)

    def found(self) -> str | None:
        """The one matching run id; several matches are an unknown outcome (which one is ours?)."""
        if len(self.matches) > 1:
            raise self.unknown(self.ambiguous())
        return self.matches[0] if self.matches else None

    def ambiguous(self) -> str:
        return (
            f"{len(self.matches)} runs of user {self.user!r} with these inputs started since the request "
            f"({', '.join(self.matches)}); which one it started cannot be told."
        )

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.time())

    def pause(self) -> float:
        return min(self.poll_interval, self.remaining())

    def unknown(self, why: str, run_id: str | None = None) -> DifyOutcomeUnknownError:
        cause = getattr(self.cause, "message", str(self.cause))
        err = DifyOutcomeUnknownError(
            f"{cause} Recovery: {why} The run may have started and been billed; it is not re-sent.",
            endpoint=getattr(self.cause, "endpoint", None),
            status_code=getattr(self.cause, "status_code", None),
            run_id=run_id,
            session_id=run_id,
        )
        err.__cause__ = self.cause
        return err

    def read_failed(self, exc: ProviderError) -> None:
        """A logs or run-detail read failed: go on at the next poll, unless it cannot heal."""
        if exc.permanent:
            raise self.unknown(f"reading the app's logs failed ({exc.message})") from exc
        self.read_errors += 1
        log.warning("Reading the Dify logs to find the run failed (%s); trying again", exc.message)

    def expired(self) -> DifyOutcomeUnknownError:
        return self.unknown(
            f"no run of user {self.user!r} with these inputs appeared in the logs within recovery_timeout "
            f"({self.deadline - self.sent_at:g}s"
            + (f"; {self.read_errors} reads of the logs failed" if self.read_errors else "")
            + ")."
        )


class LostRunSearch(RunRecovery):
    """Sans-IO search for a run an earlier try (or its trigger) may have sent but never named.

    What is known comes from the ledger's pending record: the end user the run was sent as and a
    time the request went out at or after (``sent_at``, the worker's clock; Dify's clock may differ
    by ``CLOCK_SLACK_SECONDS``). The inputs are not kept there, so a candidate is a logged run of
    exactly that user created since then, checked here row by row (the server's filters only narrow
    the reading) and then by its run detail's time. Exactly one candidate is the run; more than one
    cannot be told apart, and none by ``sent_at + recovery_timeout`` means none is known: both fail
    closed with ``todo`` (what the user can do), nothing is sent.
    """

    def __init__(self, user: str, sent_at: float, config: DifyClientConfig, *, who: str, todo: str) -> None:
        super().__init__({"user": user, "inputs": {}}, sent_at, config, DifyOutcomeUnknownError(who))
        self.who, self.todo = who, todo

    def unchecked(self, logs: list[WorkflowLog]) -> list[str]:
        """This user's runs (the row must name the user: an account's run or a row without one is not),
        created since the pending record, not read yet."""
        return [
            item.workflow_run_id
            for item in logs
            if item.workflow_run_id not in self.checked
            and item.session_id == self.user
            and item.created_at is not None
            and item.created_at.timestamp() >= self.since - 1
        ]

    def same_inputs(self, run: WorkflowRun) -> bool:
        return True  # not kept in the pending record: the user and the time decide

    def ambiguous(self) -> str:
        return (
            f"{len(self.matches)} runs of end user {self.user!r} were created since then "
            f"({', '.join(self.matches)}): which one {self.who} started cannot be told, so none is followed."
        )

    def window(self) -> str:
        """The search, for messages: the user and the earliest creation time looked for (UTC)."""
        from datetime import datetime, timezone

        since = datetime.fromtimestamp(self.since, tz=timezone.utc).isoformat(timespec="seconds")
        return f"end user {self.user!r}, created at or after {since}"

    def unknown(self, why: str, run_id: str | None = None) -> DifyOutcomeUnknownError:
        return DifyOutcomeUnknownError(
            f"Dify run outcome unknown: {self.who} may have sent the run request, and its run id never arrived. "
            f"Looked for it in the app's logs ({self.window()}): {why} The run may have been started and billed, "
            f"so it is not re-sent. {self.todo}",
            run_id=run_id,
            session_id=run_id,
        )

    def expired(self) -> DifyOutcomeUnknownError:
        errors = f"; {self.read_errors} reads of the logs failed" if self.read_errors else ""
        return self.unknown(
            f"no such run appeared within recovery_timeout ({self.deadline - self.sent_at:g}s after the request"
            f"{errors}), so none is known to have started."
        )


# --- what both clients share ---------------------------------------------------------------------
