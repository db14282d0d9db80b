"""Dify Workflow Service API clients: ``DifyClient`` (workers) and ``AsyncDifyClient`` (triggerer).

Both sit on the shared transport (``docify_provider._core.transport``: timeouts, TLS, retries by
endpoint, the key only to trusted hosts, typed ``Dify*`` errors, bounded SSE). What they share
beyond it lives once in ``DifyClientBase`` and the sans-IO helpers below (``DifyEventTracker``,
``RunRecovery``); the two classes only drive I/O.

Money rule: a run request (``POST /workflows/run``) is never sent twice. A blocking answer that
is lost after the request went out is found again in the app's logs (same end user, created since
the request, the run's inputs confirmed against what was sent) and waited for; a stream that is
cut once the run id is known is re-attached (``GET /workflow/{id}/events``, else polling).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from docify_provider._core.config import DEFAULT_USER
from docify_provider._core.errors import (
    OutcomeUnknownError,
    ProviderError,
    TransportError,
)
from docify_provider._core.files import open_file_source
from docify_provider._core.transport import AsyncHTTP, HTTPBase, SyncHTTP
from docify_provider._core.transport import shared_async_client as core_shared_async_client
from docify_provider.dify import protocol
from docify_provider.dify.config import DifyClientConfig
from docify_provider.dify.errors import (
    DifyHTTPError,
    DifyProtocolError,
    DifyRunTimeoutError,
)
from docify_provider.dify.inputs import plan_inputs
from docify_provider.dify.models import (
    AppInfo,
    AppParameters,
    UploadedFile,
    WorkflowEvent,
    WorkflowLog,
    WorkflowRun,
)
from docify_provider.dify.stream import DifyEventTracker, RunRecovery, raise_if_failed, settled_by_detail, with_task

if TYPE_CHECKING:

    from docify_provider._core.endpoints import Endpoint

log = logging.getLogger(__name__)

__all__ = [
    "AsyncDifyClient",
    "DifyClient",
    "DifyClientBase",
    "DifyEventTracker",
    "RunRecovery",
    "shared_async_client",
]

#: Reads of the run detail after a stop, to log what the status really became.
STOP_CHECKS = 3
LOGS_PAGE_SIZE = 100
def _iso(value: datetime | float | str | None) -> str | None:
    """A logs filter time as ISO 8601 (``created_at__after``): datetime, epoch seconds or a string."""
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, datetime):
        value = datetime.fromtimestamp(float(value), tz=timezone.utc)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalize_inputs(inputs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Wire ``inputs``: ``UploadedFile`` values (alone or in lists) become file mappings."""

    def one(value: Any) -> Any:
        if isinstance(value, UploadedFile):
            return value.as_input()
        if isinstance(value, list):
            return [one(v) for v in value]
        return value

    return {str(k): one(v) for k, v in (inputs or {}).items()}


class DifyClientBase(HTTPBase):
    """Dify's requests and answers over the shared transport (mixed with ``SyncHTTP`` or ``AsyncHTTP``)."""

    config: DifyClientConfig
    protocol = protocol

    def _user(self, user: str | None) -> str:
        return user or self.config.default_user or DEFAULT_USER

    def _run_request(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        user: str | None,
        files: list[Any] | None,
        workflow_id: str | None,
        streaming: bool,
    ) -> tuple[Endpoint, dict[str, Any]]:
        wire_files = [f.as_input() if isinstance(f, UploadedFile) else f for f in files or []]
        body = protocol.run_body(
            normalize_inputs(inputs), user=self._user(user), streaming=streaming, files=wire_files or None
        )
        return protocol.run_endpoint(streaming=streaming, workflow_id=workflow_id), body

    def _upload_parts(self, source: Any, *, user: str | None, file_name: str | None, stack: contextlib.ExitStack):  # type: ignore[no-untyped-def]
        upload = open_file_source(source, file_name=file_name, errors=self.errors)
        return upload, self._upload_kwargs(upload, {"user": self._user(user)}, stack)

    def _tracker(self, endpoint: Endpoint, *, run_id: str | None = None, task_id: str | None = None, **options: Any):  # type: ignore[no-untyped-def]
        return DifyEventTracker(str(endpoint), run_id=run_id, task_id=task_id, base_url=self.config.base_url, **options)

    def _error_for_status(self, status: int, body: bytes, headers: Any, endpoint: Endpoint) -> ProviderError:
        """A blocking run's model-provider error (400/429 with its code) as the run failure it is."""
        return protocol.pipeline_error(super()._error_for_status(status, body, headers, endpoint), endpoint)

    def _blocking(self, answer: Any) -> WorkflowRun:
        return WorkflowRun.from_blocking(answer, base_url=self.config.base_url)

    def _detail(self, answer: Any, task_id: str | None) -> WorkflowRun:
        return WorkflowRun.from_detail(answer, task_id, base_url=self.config.base_url)

    @staticmethod
    def _detail_endpoint(workflow_run_id: str) -> Endpoint:
        if not workflow_run_id:
            raise DifyProtocolError("A workflow_run_id is needed")
        return protocol.RUN_DETAIL.format(workflow_run_id=workflow_run_id)

    @staticmethod
    def _events_request(
        workflow_run_id: str, user: str, continue_on_pause: bool = False
    ) -> tuple[Endpoint, dict[str, str]]:
        endpoint = protocol.EVENTS.format(workflow_run_id=workflow_run_id)
        params = {"user": user, "include_state_snapshot": "true"}
        if continue_on_pause:
            params["continue_on_pause"] = "true"
        return endpoint, params

    @staticmethod
    def _events_unsupported(exc: DifyHTTPError) -> bool:
        """404 / 405 from the events endpoint (older Dify, or another user's run): poll instead."""
        return exc.status_code in (404, 405, 501)

    @staticmethod
    def _logs_params(
        page: int,
        *,
        status: str | None,
        keyword: str | None,
        user: str | None,
        created_after: Any,
        created_before: Any,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"page": page, "limit": LOGS_PAGE_SIZE}
        optional = {
            "status": status,
            "keyword": keyword,
            "created_by_end_user_session_id": user,
            "created_at__after": _iso(created_after),
            "created_at__before": _iso(created_before),
        }
        params.update({k: v for k, v in optional.items() if v})
        return params

    @staticmethod
    def _logs_page(answer: Any) -> tuple[list[WorkflowLog], bool]:
        if not isinstance(answer, dict):
            raise DifyProtocolError(f"Expected a JSON object for the logs, got {type(answer).__name__}")
        items = [WorkflowLog.from_api(item) for item in answer.get("data") or []]
        return items, bool(answer.get("has_more")) and bool(items)

    @staticmethod
    def _wait_timeout(workflow_run_id: str, run: WorkflowRun, timeout: float) -> DifyRunTimeoutError:
        return DifyRunTimeoutError(
            f"Dify run {workflow_run_id} is still {run.status} after {timeout:g}s of waiting",
            endpoint=str(protocol.RUN_DETAIL),
            run_id=workflow_run_id,
            session_id=workflow_run_id,
        )

    @staticmethod
    def _log_stop(task_id: str, run: WorkflowRun | None) -> None:
        if run is None:
            log.info("Asked Dify to stop task %s", task_id)
        elif run.ended:
            log.info("Dify task %s: run %s is now %s", task_id, run.workflow_run_id, run.status)
        else:
            log.warning(
                "Dify answered success to the stop of task %s, but run %s is still %s (Dify does not always "
                "stop a run it says it stopped; a paused run has no live engine to stop); not waiting for it",
                task_id,
                run.workflow_run_id,
                run.status,
            )

    def _stream_recovery(self, body: Mapping[str, Any], sent_at: float, exc: Exception) -> RunRecovery:
        """A stream cut before its first event: the run, if one started, is searched for in the logs.

        Only when the request may have reached Dify (an outcome-unknown error); a connection that
        was never made re-raises, since no run can have started.
        """
        if not isinstance(exc, OutcomeUnknownError):
            raise exc
        log.warning("The Dify stream broke before its first event (%s); looking for the run in the logs", exc)
        return RunRecovery(body, sent_at, self.config, exc)

    def _stop_pause(self) -> float:
        return min(1.0, self.config.poll_interval)


_CUT = (OutcomeUnknownError, TransportError)


class DifyClient(DifyClientBase, SyncHTTP):
    """Synchronous client for one app API key. Thread-safe; close it when done."""

    def get_app_info(self) -> AppInfo:
        """``GET /info``: the app bound to the key."""
        return AppInfo.from_api(self._call(protocol.INFO))

    def get_parameters(self) -> AppParameters:
        """``GET /parameters``: the start-node variables and file limits."""
        return AppParameters.from_api(self._call(protocol.PARAMETERS))

    def upload_file(self, source: Any, *, user: str | None = None, file_name: str | None = None) -> UploadedFile:
        """``POST /files/upload``, streamed from ``source`` (path, bytes, file object, ObjectStoragePath)."""
        with contextlib.ExitStack() as stack:
            upload, make_kwargs = self._upload_parts(source, user=user, file_name=file_name, stack=stack)
            uploaded = UploadedFile.from_api(self._call(protocol.UPLOAD, make_kwargs))
        log.info("Uploaded %s (%s bytes) to Dify as %s", upload.name, upload.size, uploaded.id)
        return uploaded

    def prepare_inputs(
        self, inputs: Mapping[str, Any] | None, *, user: str | None = None, parameters: AppParameters | None = None
    ) -> dict[str, Any]:
        """Check ``inputs`` against ``/parameters`` (``plan_inputs``), upload their files, return wire inputs."""
        plan = plan_inputs(inputs, parameters or self.get_parameters())
        return plan.build([self.upload_file(p.source, user=user, file_name=p.file_name) for p in plan.uploads])

    def run_workflow(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        user: str | None = None,
        files: list[Any] | None = None,
        workflow_id: str | None = None,
        on_sent: Callable[[dict[str, Any]], None] | None = None,
    ) -> WorkflowRun:
        """``POST /workflows/run`` (blocking). Never re-sent; a lost answer is recovered from the logs.

        ``on_sent({"user", "sent_at", "inputs"})`` is called once, just before the request goes out.
        A run that ended failed or stopped raises ``DifyRunFailedError``; a paused run is returned.
        """
        endpoint, body = self._run_request(inputs, user=user, files=files, workflow_id=workflow_id, streaming=False)
        sent_at = time.time()
        if on_sent is not None:
            on_sent({"user": body["user"], "sent_at": sent_at, "inputs": body["inputs"]})
        try:
            run = self._blocking(self._call(endpoint, lambda: {"json": body}))
        except OutcomeUnknownError as exc:
            log.warning("The answer to the Dify run request was lost (%s); looking for the run in the logs", exc)
            run = self.recover_run(body, sent_at, exc)
        else:
            if not run.is_terminal:
                run = self.wait_for_run(run.workflow_run_id, timeout=self.config.recovery_timeout)
        return raise_if_failed(run, str(endpoint))

    def recover_run(self, body: Mapping[str, Any], sent_at: float, cause: Exception) -> WorkflowRun:
        """Find the run that the request ``body`` sent at ``sent_at`` started, and wait for it to end."""
        rec = RunRecovery(body, sent_at, self.config, cause)
        found = self.find_run(rec)
        try:
            return self.wait_for_run(found, timeout=max(rec.remaining(), self.config.poll_interval))
        except DifyRunTimeoutError as exc:
            raise rec.unknown(exc.message, run_id=found) from exc

    def find_run(self, rec: RunRecovery) -> str:
        """The id of the one run ``rec`` describes, read from the logs until ``recovery_timeout``.

        Reads are free, so a failed read is tried again at the next poll; one that cannot heal (a
        permanent error) or the deadline ends the search with ``DifyOutcomeUnknownError``.
        """
        while True:
            try:
                for run_id in rec.unchecked(list(self.iter_workflow_logs(**rec.log_filter()))):
                    rec.check(self.get_workflow_run(run_id))
            except ProviderError as exc:
                rec.read_failed(exc)
            found = rec.found()
            if found is not None:
                log.info("Recovered Dify run %s from the logs", found)
                return found
            if not rec.remaining():
                raise rec.expired()
            time.sleep(rec.pause())

    def stream_workflow(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        user: str | None = None,
        files: list[Any] | None = None,
        workflow_id: str | None = None,
    ) -> Iterator[WorkflowEvent]:
        """Stream a run's events up to ``workflow_finished`` (or ``workflow_paused``), re-attaching on a cut."""
        endpoint, body = self._run_request(inputs, user=user, files=files, workflow_id=workflow_id, streaming=True)
        return self._stream(endpoint, body)

    def _stream(self, endpoint: Endpoint, body: dict[str, Any]) -> Iterator[WorkflowEvent]:
        tracker = self._tracker(endpoint)
        sent_at = time.time()
        try:
            stream, response = self._open_stream(endpoint, json=body)
            yield from self._read_stream(stream, response, endpoint, tracker)
        except _CUT as exc:
            if not tracker.run_id:
                rec = self._stream_recovery(body, sent_at, exc)
                tracker.session_id = self.find_run(rec)
            log.warning("Dify stream of run %s broke (%s); re-attaching", tracker.run_id, exc)
        if not tracker.done:
            yield from self._attach(tracker, body["user"])

    def attach(
        self, workflow_run_id: str, *, user: str, task_id: str | None = None, continue_on_pause: bool = False
    ) -> Iterator[WorkflowEvent]:
        """Re-attach to a run: its events up to the terminal one (one synthesized if it has ended);
        with ``continue_on_pause`` across its pauses, up to ``workflow_finished``."""
        tracker = self._tracker(
            protocol.EVENTS, run_id=workflow_run_id, task_id=task_id, continue_on_pause=continue_on_pause
        )
        return self._attach(tracker, self._user(user))

    def _attach(self, tracker: DifyEventTracker, user: str) -> Iterator[WorkflowEvent]:
        run_id = str(tracker.run_id)
        snapshot_read = False
        while not tracker.done:
            run = self.get_workflow_run(run_id, task_id=tracker.task_id)
            if settled_by_detail(run, snapshot_read, tracker.continue_on_pause):
                event = tracker.accept_run(run)
                if event is not None:
                    yield event
                return
            endpoint, params = self._events_request(run_id, user, tracker.continue_on_pause)
            before = len(tracker.events_seen)
            snapshot_read = True
            try:
                stream, response = self._open_stream(endpoint, params=params)
                yield from self._read_stream(stream, response, endpoint, tracker)
            except DifyHTTPError as exc:
                if not self._events_unsupported(exc):
                    raise
                log.info("Dify events endpoint unavailable for run %s (%s); polling", run_id, exc.status_code)
                yield from self._poll(tracker)
                return
            except _CUT as exc:
                log.warning("Re-attached Dify stream of run %s broke (%s); again", run_id, exc)
            if not tracker.done and len(tracker.events_seen) == before:
                time.sleep(self.config.poll_interval)

    def _poll(self, tracker: DifyEventTracker) -> Iterator[WorkflowEvent]:
        run = self.wait_for_run(str(tracker.run_id))
        event = tracker.accept_run(with_task(run, tracker.task_id) if tracker.task_id else run)
        if event is not None:
            yield event

    def get_workflow_run(self, workflow_run_id: str, *, task_id: str | None = None) -> WorkflowRun:
        """``GET /workflows/run/{id}``: the run's status, inputs and outputs."""
        return self._detail(self._call(self._detail_endpoint(workflow_run_id)), task_id)

    def wait_for_run(
        self, workflow_run_id: str, *, poll_interval: float | None = None, timeout: float | None = None
    ) -> WorkflowRun:
        """Poll the run detail until the run has ended or paused; ``DifyRunTimeoutError`` after ``timeout``."""
        interval = poll_interval or self.config.poll_interval
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self.get_workflow_run(workflow_run_id)
            if run.is_terminal:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise self._wait_timeout(workflow_run_id, run, float(timeout or 0))
            time.sleep(interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic())))

    def get_form(self, form_token: str) -> dict[str, Any]:
        """``GET /form/human_input/{token}``: the form's content, inputs, defaults, actions, expiry."""
        return dict(self._call(protocol.FORM.format(form_token=form_token)) or {})

    def submit_form(
        self, form_token: str, *, action: str, inputs: Mapping[str, Any] | None = None, user: str | None = None
    ) -> None:
        """``POST /form/human_input/{token}`` with the run's ``user``; the run resumes on Dify."""
        body = {"action": action, "inputs": dict(inputs or {}), "user": self._user(user)}
        self._call(protocol.FORM_SUBMIT.format(form_token=form_token), lambda: {"json": body})

    def stop_task(
        self, task_id: str, *, user: str | None = None, workflow_run_id: str | None = None
    ) -> WorkflowRun | None:
        """``POST /workflows/tasks/{task_id}/stop``; with the run id, read what the status became."""
        self._call(protocol.STOP.format(task_id=task_id), lambda: {"json": {"user": self._user(user)}})
        run = None
        for attempt in range(STOP_CHECKS if workflow_run_id else 0):
            run = self.get_workflow_run(str(workflow_run_id), task_id=task_id)
            if run.is_terminal or attempt == STOP_CHECKS - 1:
                break
            time.sleep(self._stop_pause())
        self._log_stop(task_id, run)
        return run

    def iter_workflow_logs(
        self,
        *,
        status: str | None = None,
        keyword: str | None = None,
        user: str | None = None,
        created_after: Any = None,
        created_before: Any = None,
    ) -> Iterator[WorkflowLog]:
        """``GET /workflows/logs``, every page (newest first)."""
        page = 1
        while True:
            params = self._logs_params(
                page,
                status=status,
                keyword=keyword,
                user=user,
                created_after=created_after,
                created_before=created_before,
            )
            items, more = self._logs_page(self._call(protocol.LOGS, functools.partial(dict, params=params)))
            yield from items
            if not more:
                return
            page += 1


class AsyncDifyClient(DifyClientBase, AsyncHTTP):
    """Asynchronous twin of ``DifyClient``; use ``async with`` or ``await aclose()``."""

    async def get_app_info(self) -> AppInfo:
        return AppInfo.from_api(await self._call(protocol.INFO))

    async def get_parameters(self) -> AppParameters:
        return AppParameters.from_api(await self._call(protocol.PARAMETERS))

    async def upload_file(self, source: Any, *, user: str | None = None, file_name: str | None = None) -> UploadedFile:
        with contextlib.ExitStack() as stack:
            upload, make_kwargs = self._upload_parts(source, user=user, file_name=file_name, stack=stack)
            uploaded = UploadedFile.from_api(await self._call(protocol.UPLOAD, make_kwargs))
        log.info("Uploaded %s (%s bytes) to Dify as %s", upload.name, upload.size, uploaded.id)
        return uploaded

    async def prepare_inputs(
        self, inputs: Mapping[str, Any] | None, *, user: str | None = None, parameters: AppParameters | None = None
    ) -> dict[str, Any]:
        plan = plan_inputs(inputs, parameters or await self.get_parameters())
        return plan.build([await self.upload_file(p.source, user=user, file_name=p.file_name) for p in plan.uploads])

    async def run_workflow(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        user: str | None = None,
        files: list[Any] | None = None,
        workflow_id: str | None = None,
        on_sent: Callable[[dict[str, Any]], None] | None = None,
    ) -> WorkflowRun:
        endpoint, body = self._run_request(inputs, user=user, files=files, workflow_id=workflow_id, streaming=False)
        sent_at = time.time()
        if on_sent is not None:
            on_sent({"user": body["user"], "sent_at": sent_at, "inputs": body["inputs"]})
        try:
            run = self._blocking(await self._call(endpoint, lambda: {"json": body}))
        except OutcomeUnknownError as exc:
            log.warning("The answer to the Dify run request was lost (%s); looking for the run in the logs", exc)
            run = await self.recover_run(body, sent_at, exc)
        else:
            if not run.is_terminal:
                run = await self.wait_for_run(run.workflow_run_id, timeout=self.config.recovery_timeout)
        return raise_if_failed(run, str(endpoint))

    async def recover_run(self, body: Mapping[str, Any], sent_at: float, cause: Exception) -> WorkflowRun:
        rec = RunRecovery(body, sent_at, self.config, cause)
        found = await self.find_run(rec)
        try:
            return await self.wait_for_run(found, timeout=max(rec.remaining(), self.config.poll_interval))
        except DifyRunTimeoutError as exc:
            raise rec.unknown(exc.message, run_id=found) from exc

    async def find_run(self, rec: RunRecovery) -> str:
        while True:
            try:
                logs = [item async for item in self.iter_workflow_logs(**rec.log_filter())]
                for run_id in rec.unchecked(logs):
                    rec.check(await self.get_workflow_run(run_id))
            except ProviderError as exc:
                rec.read_failed(exc)
            found = rec.found()
            if found is not None:
                log.info("Recovered Dify run %s from the logs", found)
                return found
            if not rec.remaining():
                raise rec.expired()
            await asyncio.sleep(rec.pause())

    def stream_workflow(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        user: str | None = None,
        files: list[Any] | None = None,
        workflow_id: str | None = None,
    ) -> AsyncIterator[WorkflowEvent]:
        endpoint, body = self._run_request(inputs, user=user, files=files, workflow_id=workflow_id, streaming=True)
        return self._stream(endpoint, body)

    async def _stream(self, endpoint: Endpoint, body: dict[str, Any]) -> AsyncIterator[WorkflowEvent]:
        tracker = self._tracker(endpoint)
        sent_at = time.time()
        try:
            stream, response = await self._open_stream(endpoint, json=body)
            async for event in self._read_stream(stream, response, endpoint, tracker):
                yield event
        except _CUT as exc:
            if not tracker.run_id:
                rec = self._stream_recovery(body, sent_at, exc)
                tracker.session_id = await self.find_run(rec)
            log.warning("Dify stream of run %s broke (%s); re-attaching", tracker.run_id, exc)
        if not tracker.done:
            async for event in self._attach(tracker, body["user"]):
                yield event

    def attach(
        self, workflow_run_id: str, *, user: str, task_id: str | None = None, continue_on_pause: bool = False
    ) -> AsyncIterator[WorkflowEvent]:
        tracker = self._tracker(
            protocol.EVENTS, run_id=workflow_run_id, task_id=task_id, continue_on_pause=continue_on_pause
        )
        return self._attach(tracker, self._user(user))

    async def _attach(self, tracker: DifyEventTracker, user: str) -> AsyncIterator[WorkflowEvent]:
        run_id = str(tracker.run_id)
        snapshot_read = False
        while not tracker.done:
            run = await self.get_workflow_run(run_id, task_id=tracker.task_id)
            if settled_by_detail(run, snapshot_read, tracker.continue_on_pause):
                event = tracker.accept_run(run)
                if event is not None:
                    yield event
                return
            endpoint, params = self._events_request(run_id, user, tracker.continue_on_pause)
            before = len(tracker.events_seen)
            snapshot_read = True
            try:
                stream, response = await self._open_stream(endpoint, params=params)
                async for event in self._read_stream(stream, response, endpoint, tracker):
                    yield event
            except DifyHTTPError as exc:
                if not self._events_unsupported(exc):
                    raise
                log.info("Dify events endpoint unavailable for run %s (%s); polling", run_id, exc.status_code)
                async for event in self._poll(tracker):
                    yield event
                return
            except _CUT as exc:
                log.warning("Re-attached Dify stream of run %s broke (%s); again", run_id, exc)
            if not tracker.done and len(tracker.events_seen) == before:
                await asyncio.sleep(self.config.poll_interval)

    async def _poll(self, tracker: DifyEventTracker) -> AsyncIterator[WorkflowEvent]:
        run = await self.wait_for_run(str(tracker.run_id))
        event = tracker.accept_run(with_task(run, tracker.task_id) if tracker.task_id else run)
        if event is not None:
            yield event

    async def get_workflow_run(self, workflow_run_id: str, *, task_id: str | None = None) -> WorkflowRun:
        return self._detail(await self._call(self._detail_endpoint(workflow_run_id)), task_id)

    async def wait_for_run(
        self, workflow_run_id: str, *, poll_interval: float | None = None, timeout: float | None = None
    ) -> WorkflowRun:
        interval = poll_interval or self.config.poll_interval
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = await self.get_workflow_run(workflow_run_id)
            if run.is_terminal:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise self._wait_timeout(workflow_run_id, run, float(timeout or 0))
            await asyncio.sleep(interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic())))

    async def get_form(self, form_token: str) -> dict[str, Any]:
        return dict(await self._call(protocol.FORM.format(form_token=form_token)) or {})

    async def submit_form(
        self, form_token: str, *, action: str, inputs: Mapping[str, Any] | None = None, user: str | None = None
    ) -> None:
        body = {"action": action, "inputs": dict(inputs or {}), "user": self._user(user)}
        await self._call(protocol.FORM_SUBMIT.format(form_token=form_token), lambda: {"json": body})

    async def stop_task(
        self, task_id: str, *, user: str | None = None, workflow_run_id: str | None = None
    ) -> WorkflowRun | None:
        await self._call(protocol.STOP.format(task_id=task_id), lambda: {"json": {"user": self._user(user)}})
        run = None
        for attempt in range(STOP_CHECKS if workflow_run_id else 0):
            run = await self.get_workflow_run(str(workflow_run_id), task_id=task_id)
            if run.is_terminal or attempt == STOP_CHECKS - 1:
                break
            await asyncio.sleep(self._stop_pause())
        self._log_stop(task_id, run)
        return run

    async def iter_workflow_logs(
        self,
        *,
        status: str | None = None,
        keyword: str | None = None,
        user: str | None = None,
        created_after: Any = None,
        created_before: Any = None,
    ) -> AsyncIterator[WorkflowLog]:
        page = 1
        while True:
            params = self._logs_params(
                page,
                status=status,
                keyword=keyword,
                user=user,
                created_after=created_after,
                created_before=created_before,
            )
            items, more = self._logs_page(await self._call(protocol.LOGS, functools.partial(dict, params=params)))
            for item in items:
                yield item
            if not more:
                return
            page += 1


def shared_async_client(
    config: DifyClientConfig, *, scope: str
) -> contextlib.AbstractAsyncContextManager[AsyncDifyClient]:
    """An ``AsyncDifyClient`` over the httpx client its connection shares in this event loop."""
    return core_shared_async_client(config, scope=scope, client_class=AsyncDifyClient)
