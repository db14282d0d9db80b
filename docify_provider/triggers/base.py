"""What every backend's run trigger shares: identity, the restart guard, and the run loop, written once.

``RunTrigger.follow(spec)`` is the whole life of one run in the triggerer:

1. **restart guard**: a trigger may be restarted (triggerer crash, redeploy) and a run request must
   not be sent twice by it. Unless the spec already names the run, the trigger reads its XCom
   marker for its own task instance (``_marker_calls``: Airflow's async XCom calls in a 3.3
   triggerer, else ``XCom.get_one`` through ``asgiref.sync_to_async``) and the run policy
   (``durable.policy``) decides: send,
   re-attach to the run id the marker holds (Dify), or outcome unknown (Docify, or no run id);
2. the connection is resolved before anything is sent (a failure hands the run back to the worker);
3. the marker is written ``"sent"`` before the request goes out, then again with each run id as it
   appears (before the event is logged: a log line with the id means the guard holds it);
4. the stream is opened (sent, or re-attached by id), each event narrated, and the backend
   records what ends the run (a result; Dify: a pause);
5. one event is fired: success, paused, error, outcome unknown or ``trigger_failed``.

A backend trigger adds only what differs: how to open the run (``_open``), the ids an event names
(``_event_ids``), how to narrate (``_narrate``), what ends a run (``_record``), the marker and
event shapes (``_marker``, ``_ids``, ``_success``). The loop works on a ``RunSpec`` and a
``RunProgress``, never on trigger attributes, so one trigger can follow many runs at once
(``asyncio.gather`` over specs) once batch runs need it. Every event carries ``deferred_in_try``
(the try that deferred) and is an ``EventPayload`` (short ``repr`` in the task log).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, ClassVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from docify_provider.durable.ledger import now_iso
from docify_provider.durable.policy import Action, Backend, Decision, Known, decide
from docify_provider.events import EventPayload, error_to_event


def fire(payload: Mapping[str, Any]) -> TriggerEvent:
    return TriggerEvent(EventPayload(payload))


def trigger_failed(exc: BaseException | str, *, sent: bool | None, **ids: Any) -> dict[str, Any]:
    """The ``trigger_failed`` payload: the trigger itself failed (not the run), so the worker takes over.

    ``sent`` is False only when this trigger knows it sent nothing (it failed before its run
    request), None when it cannot tell (its restart marker cannot be read); ``ids`` name what it
    saw (``workflow_run_id`` / ``task_id``, ``session_id``). The worker, which reads the connection
    itself, follows the run or says what is known (``RunOperatorBase._after_trigger_failure``). The
    message is the exception's (or the one given), never a connection.
    """
    message = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return {"status": "trigger_failed", "sent": sent, "message": message, **ids}


class MarkerUnreadable(Exception):
    """The restart marker exists in a store that cannot be read: whether a run was sent is unknown."""


def no_xcom_channel(exc: BaseException) -> bool:
    """Whether ``exc`` says this process has no XCom channel at all, rather than that a read failed.

    Airflow 3.0's ``dag.test()`` runs a trigger inline in the test process, where the Task SDK's
    channel to a supervisor (``SUPERVISOR_COMMS``) does not exist: no marker can be stored there,
    and no triggerer can restart the trigger either (it runs once, in this process). A real
    triggerer always has the channel, so a failure there stays "unknown".
    """
    return isinstance(exc, ImportError) and "SUPERVISOR_COMMS" in str(exc)


def _xcom_class() -> Any:
    from airflow.providers.common.compat.sdk import XCom

    return XCom


def _marker_calls() -> tuple[Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]]:
    """``(get_one, set)`` of the XCom store as coroutines, for the restart marker.

    Airflow 3.3's ``XCom.aget_one`` / ``aset`` where this process's channel to its supervisor takes
    async requests (a 3.3 triggerer's, which lets many wait at once, each on its own answer): the
    marker calls of triggers starting together then no longer queue behind one another. The sync
    calls through ``asgiref`` all run on its one thread-sensitive thread, blocked for each round
    trip to the supervisor: with 1,000 triggers starting at once the last marker read waited
    seconds. Elsewhere the sync calls stay: Airflow 3.0 to 3.2 have no async XCom calls, and the
    in-process channel of ``dag.test()`` (3.3) has no async send.
    """
    xcom = _xcom_class()
    aget_one, aset = getattr(xcom, "aget_one", None), getattr(xcom, "aset", None)
    if aget_one is not None and aset is not None and _channel_takes_async_requests():
        return aget_one, aset
    from asgiref.sync import sync_to_async

    return sync_to_async(xcom.get_one), sync_to_async(xcom.set)


def _channel_takes_async_requests() -> bool:
    try:
        from airflow.sdk.execution_time import task_runner
    except ImportError:  # pragma: no cover - every supported Airflow has the Task SDK
        return False
    return callable(getattr(getattr(task_runner, "SUPERVISOR_COMMS", None), "asend", None))


class MarkerTrigger(BaseTrigger):
    """A trigger that knows its task instance and guards its run request with an XCom marker.

    Subclasses set ``marker_key`` (and ``legacy_marker_key``, read only when the current key
    holds nothing) and ``log_label``, and call ``_set_identity`` in ``__init__``.
    """

    marker_key: ClassVar[str]
    legacy_marker_key: ClassVar[str | None] = None
    #: How the trigger names itself in warnings ("Docify stream trigger").
    log_label: ClassVar[str] = "stream trigger"

    dag_id: str | None
    task_id: str | None
    run_id: str | None
    map_index: int
    try_number: int | None

    def _set_identity(
        self,
        dag_id: str | None,
        task_id: str | None,
        run_id: str | None,
        map_index: int | None,
        try_number: int | None,
    ) -> None:
        self.dag_id = dag_id
        self.task_id = task_id
        self.run_id = run_id
        self.map_index = -1 if map_index is None else int(map_index)
        self.try_number = try_number

    def _identity_kwargs(self) -> dict[str, Any]:
        """The identity part of ``serialize()``'s kwargs."""
        return {
            "dag_id": self.dag_id,
            "task_id": self.task_id,
            "run_id": self.run_id,
            "map_index": self.map_index,
            "try_number": self.try_number,
        }

    def _fire(self, payload: Mapping[str, Any]) -> TriggerEvent:
        return fire({**payload, "deferred_in_try": self.try_number})

    async def _connection_failed(self, hook: Any, *, sent: bool, **ids: Any) -> TriggerEvent | None:
        """Resolve the trigger's connection before anything is sent; on failure, the event handing the run back.

        A triggerer may not see a connection the worker sees (``airflow dags test`` runs triggers
        inline without the metadata database's connections; a secrets backend configured only on
        workers). Read first, the failure is known to have sent nothing, instead of surfacing
        inside the run request as "may have reached" the service.
        """
        try:
            await hook.aget_config()
        except Exception as exc:
            self.log.error(
                "%s cannot read its connection (%s: %s); the task resumes on the worker, which reads it itself",
                self.log_label,
                type(exc).__name__,
                exc,
            )
            return self._fire(trigger_failed(exc, sent=sent, **ids))
        return None

    # -- restart guard --------------------------------------------------------------------------

    def _identity(self) -> dict[str, Any] | None:
        ti = self.task_instance
        if ti is not None and getattr(ti, "run_id", None):
            map_index = getattr(ti, "map_index", -1)
            return {
                "dag_id": ti.dag_id,
                "task_id": ti.task_id,
                "run_id": ti.run_id,
                "map_index": -1 if map_index is None else int(map_index),
            }
        if self.dag_id and self.task_id and self.run_id:
            return {"dag_id": self.dag_id, "task_id": self.task_id, "run_id": self.run_id, "map_index": self.map_index}
        return None

    async def _read_marker(self, ident: Mapping[str, Any] | None) -> Any:
        """The restart marker of this task instance; None when there is none.

        Fails closed, like the ledger: a marker that cannot be read raises ``MarkerUnreadable``
        ("unknown"), never None ("nothing sent"). Without an identity there is no marker to read or
        write at all (a trigger built outside a task instance): the guard is off, and logged so.
        """
        if ident is None:
            self.log.warning("%s: no task instance identity; restart guard disabled", self.log_label)
            return None
        get_one, _ = _marker_calls()
        try:
            marker = await get_one(key=self.marker_key, **ident)
        except Exception as exc:
            if no_xcom_channel(exc):
                self.log.warning(
                    "%s: this process has no XCom channel (a trigger run inline by dag.test() on Airflow "
                    "3.0, where no triggerer restart can happen); restart guard disabled",
                    self.log_label,
                )
                return None
            raise MarkerUnreadable(f"{type(exc).__name__}: {exc}") from exc
        if marker is not None or self.legacy_marker_key is None:
            return marker
        # No marker under the current key: the task deferred under an earlier build, which kept it
        # under the old key (and whose trigger may have sent the run). Only then is the old key read:
        # Airflow logs every XCom it does not find at error level, in every trigger's log.
        try:
            return await get_one(key=self.legacy_marker_key, **ident)
        except Exception as exc:
            raise MarkerUnreadable(f"{type(exc).__name__} reading its old key: {exc}") from exc

    async def _write_marker(self, ident: Mapping[str, Any] | None, value: dict[str, Any]) -> bool:
        if ident is None:
            return False
        _, set_marker = _marker_calls()
        try:
            await set_marker(key=self.marker_key, value=value, **ident)
        except Exception as exc:
            self.log.warning(
                "%s: cannot write the restart marker (%s); proceeding without the guard "
                "(a triggerer restart could re-send this run)",
                self.log_label,
                exc,
            )
            return False
        return True


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run a trigger follows: the request to send, or the run to re-attach to.

    ``inputs`` are wire inputs (validated and uploaded on the worker); ``run_id`` / ``task_id`` name a
    run the operator already knows (re-attach, no marker read); ``options`` are the backend's own
    request fields (files, workflow_id, additional_info, idle_timeout, app id...).
    """

    inputs: Mapping[str, Any] | None = None
    run_id: str | None = None
    task_id: str | None = None
    user: str | None = None
    allow_resubmit: bool = False
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: Why the run ``run_id`` names is re-attached ("an earlier try started it", "resumed after
    #: human input"), for the log; None: the operator has just started it and deferred to follow it.
    reattach: str | None = None
    #: Seconds a run request turned away (429, not started) is waited on and sent again (the
    #: operator's ``max_wait_not_started``; 0: fail at once), and the ``time.time()`` that
    #: ``execution_timeout`` ends the try at (None: none), never waited past.
    max_wait_not_started: float = 0.0
    not_started_deadline: float | None = None


@dataclasses.dataclass
class RunProgress:
    """What one followed run has shown so far: its ids as they appear, and what ended it."""

    spec: RunSpec
    run_id: str | None
    task_id: str | None
    sent_at: str
    #: The run request may have gone out (or a re-attach began).
    opened: bool = False
    #: The run's result, once its final event arrived.
    result: Any = None
    #: A payload that ends the run before a result (Dify: paused for human input).
    final: dict[str, Any] | None = None


class RunTrigger(MarkerTrigger):
    """The run loop (module docstring) over one ``RunSpec``; a backend trigger adds only what differs."""

    #: The backend in the run policy (run id field, whether it can re-attach).
    policy_backend: ClassVar[Backend]
    #: The service in messages ("Docify", "Dify").
    label: ClassVar[str]

    def _root(self) -> Any:
        """The backend's error root: its classes for the decisions the loop makes (incomplete stream)."""
        raise NotImplementedError

    # -- what a backend trigger provides ---------------------------------------------------------

    def _spec(self) -> RunSpec:
        """The run this trigger follows, from its kwargs."""
        raise NotImplementedError

    def _hook(self) -> Any:
        """This trigger's hook, made once: its connection is resolved before anything is sent."""
        hook = self.__dict__.get("_hook_made")
        if hook is None:
            hook = self.__dict__["_hook_made"] = self._new_hook()
        return hook

    def _new_hook(self) -> Any:
        raise NotImplementedError

    def _client_overrides(self, spec: RunSpec) -> dict[str, Any]:
        """Config fields this run's client overrides (Docify: ``idle_timeout``)."""
        return {}

    def _open(self, client: Any, progress: RunProgress) -> AsyncIterator[Any]:
        """The run's events: sent now, or re-attached to ``progress.run_id``."""
        raise NotImplementedError

    def _event_ids(self, event: Any) -> tuple[str | None, str | None]:
        """The (run id, task id) an event names, if any."""
        raise NotImplementedError

    def _narrate(self, event: Any) -> None:
        """One task-log line for an event (after its ids are in the marker)."""
        raise NotImplementedError

    def _record(self, event: Any, progress: RunProgress) -> bool:
        """Keep what ``event`` says about the run's end in ``progress``; True stops reading the stream."""
        raise NotImplementedError

    def _marker(self, progress: RunProgress) -> dict[str, Any]:
        """The ``"sent"`` restart marker for ``progress`` (with the ids seen so far)."""
        raise NotImplementedError

    def _unsent_marker(self) -> dict[str, Any]:
        """The marker's "nothing sent" state (``"deferred"``), written back before a wait after a 429."""
        raise NotImplementedError

    #: This backend's batch operator, named when a run is turned away (429) for longer than allowed.
    batch_operator: ClassVar[str | None] = None

    def _ids(self, run_id: str | None, task_id: str | None) -> dict[str, Any]:
        """The ids every event of this backend carries (Docify: ``session_id``; Dify: run and task)."""
        raise NotImplementedError

    def _success(self, progress: RunProgress) -> dict[str, Any]:
        """The success payload for the result in ``progress``."""
        raise NotImplementedError

    # -- the loop -------------------------------------------------------------------------------

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield await self.follow(self._spec())

    async def follow(self, spec: RunSpec) -> TriggerEvent:
        """Follow one run to its end (module docstring) and return the one event that says how it ended."""
        ident = self._identity()
        known, decision = await self._restart_guard(ident, spec)
        if decision.action is Action.UNKNOWN:
            return self._unknown(known, decision)
        progress = RunProgress(spec, decision.run_id, decision.task_id, sent_at=now_iso())
        self._following.append(progress)
        failed = await self._connection_failed(
            self._hook(), sent=bool(progress.run_id), **self._ids(progress.run_id, progress.task_id)
        )
        if failed is not None:
            return failed
        try:
            await self._send_until_started(ident, progress)
        except asyncio.CancelledError:
            self.log.warning(
                "%s cancelled; the stream was closed, the run was not stopped: it may still finish on %s%s",
                self.log_label,
                self.label,
                f" ({self.policy_backend.id_noun} {progress.run_id})" if progress.run_id else "",
            )
            raise
        except Exception as exc:
            return self._failed(exc, progress)
        if progress.final is not None:
            return self._fire(progress.final)
        if progress.result is None:
            from docify_provider._core.errors import StreamIncompleteError, error_class

            # Docify's run_id is its result's runId (unknown here); Dify's is the workflow run id.
            dify_run = None if self.policy_backend.id_field == "session_id" else progress.run_id
            incomplete = error_class(self._root(), StreamIncompleteError)(
                f"The {self.label} stream ended without a result", session_id=progress.run_id, run_id=dify_run
            )
            return self._error(incomplete, progress)
        return self._fire(self._success(progress))

    async def _send_until_started(self, ident: Mapping[str, Any] | None, progress: RunProgress) -> None:
        """Mark "sent", send (or re-attach) and read the stream; again while the server turns the run away.

        Only a 429 to the run request itself (``RunNotStartedError``: nothing started) is waited on,
        within the spec's ``max_wait_not_started`` and ``not_started_deadline``. Before each wait the
        marker goes back to "deferred": a triggerer restarted during the wait sends the run (nothing
        was sent) instead of reporting its outcome unknown.
        """
        from docify_provider._core.not_started import NotStartedWaits, asend_until_started

        async def send() -> None:
            if not progress.run_id:
                progress.sent_at = now_iso()
                await self._write_marker(ident, self._marker(progress))
            await self._stream(ident, progress)

        async def not_sent() -> None:
            progress.opened = False
            await self._write_marker(ident, self._unsent_marker())

        spec, config = progress.spec, self._hook().config
        waits = NotStartedWaits(
            spec.max_wait_not_started if not progress.run_id else 0.0,
            deadline=spec.not_started_deadline,
            label=self.label,
            batch_operator=self.batch_operator,
            initial=config.backoff_initial,
            maximum=config.backoff_max,
            cap=config.retry_after_cap,
        )
        await asend_until_started(send, waits, before_wait=not_sent, log=self.log)

    @property
    def _following(self) -> list[RunProgress]:
        """The runs this trigger has followed (for ``on_kill``: what to stop)."""
        return self.__dict__.setdefault("_following_runs", [])

    async def _restart_guard(self, ident: Mapping[str, Any] | None, spec: RunSpec) -> tuple[Known, Decision]:
        """The run policy over the restart marker: send, re-attach, or outcome unknown (logged)."""
        if spec.run_id:  # the operator named the run: follow it, whatever a marker says
            known = Known(sent=True, run_id=spec.run_id, task_id=spec.task_id)
            return known, Decision(Action.REATTACH, run_id=spec.run_id, task_id=spec.task_id)
        try:
            marker = await self._read_marker(ident)
        except MarkerUnreadable as exc:
            known = Known.unreadable(f"the {self.log_label} cannot read its restart marker ({exc}).")
        else:
            known = Known.from_marker(marker, self.policy_backend)
        decision = decide(known, self.policy_backend, allow_resubmit=spec.allow_resubmit)
        if decision.action is Action.UNKNOWN:
            self.log.error("%s", decision.message)
        elif decision.message:
            self.log.warning("%s", decision.message)
        return known, decision

    def _unknown(self, known: Known, decision: Decision) -> TriggerEvent:
        """Nothing is sent. A run an earlier trigger sent: ``outcome_unknown``. A marker that cannot be
        read: ``trigger_failed`` with ``sent`` None, so the worker, which reads the marker (and the
        ledger) itself, settles it: nothing sent, a run to follow, or outcome unknown."""
        ids = self._ids(decision.run_id, decision.task_id)
        if known.sent is None:
            why = f"{known.why_unknown[:1].upper()}{known.why_unknown[1:]} It sent nothing; the worker decides"
            return self._fire(trigger_failed(why, sent=None, **ids))
        return self._fire({"status": "outcome_unknown", "message": decision.message, **ids})

    async def _stream(self, ident: Mapping[str, Any] | None, progress: RunProgress) -> None:
        """Read the run's events into ``progress``, writing each new id into the marker first."""
        spec = progress.spec
        self.log.info("%s", self._opening_line(progress))
        async with self._hook().async_client(**self._client_overrides(spec)) as client:
            stream = self._open(client, progress)
            progress.opened = True
            try:
                async for event in stream:
                    run_id, task_id = self._event_ids(event)
                    if (run_id and run_id != progress.run_id) or (task_id and not progress.task_id):
                        progress.run_id, progress.task_id = run_id or progress.run_id, task_id or progress.task_id
                        await self._write_marker(ident, self._marker(progress))
                    self._narrate(event)
                    if self._record(event, progress):
                        break
            finally:
                # Closed before the event is fired: a runner that takes the first event and drops the
                # generator (dag.test()) would otherwise close it on another task at loop shutdown.
                await stream.aclose()  # type: ignore[attr-defined]

    def _opening_line(self, progress: RunProgress) -> str:
        """What the trigger does with the run, as it is: sends it (streaming), follows the run the
        operator has just started (a first deferral), or re-attaches to one (retry, resume, restart)."""
        spec = progress.spec
        user = f" for user {spec.user}" if spec.user else ""
        if not progress.run_id:
            return f"Sending {self.label} run from the triggerer (streaming){user}"
        run = f"{self.label} run {progress.run_id}"
        if spec.run_id and not spec.reattach:
            return f"The triggerer follows {run}{user}, started by the task before it deferred"
        why = spec.reattach or "an earlier trigger of this task sent it"
        return f"Re-attaching to {run} ({why}){user}"

    def _failed(self, exc: Exception, progress: RunProgress) -> TriggerEvent:
        """The stream failed: the run's error, or (not the run's) ``trigger_failed`` for the worker to settle."""
        from docify_provider._core.errors import ProviderError

        self.log.error("%s stream failed: %s", self.label, exc)
        if not isinstance(exc, ProviderError):  # the trigger broke, not the run: the worker takes over
            ids = self._ids(progress.run_id, progress.task_id)
            return self._fire(trigger_failed(exc, sent=progress.opened, **ids))
        return self._error(exc, progress)

    def _error(self, exc: Exception, progress: RunProgress) -> TriggerEvent:
        payload = error_to_event(exc, session_id=progress.run_id, posted=progress.opened, root=self._root())
        return self._fire({**payload, **self._ids(progress.run_id, progress.task_id)})


__all__ = [
    "MarkerTrigger",
    "MarkerUnreadable",
    "RunProgress",
    "RunSpec",
    "RunTrigger",
    "fire",
    "trigger_failed",
]
