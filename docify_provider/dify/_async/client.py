"""Dify Workflow Service API client I/O, written once: ``_async/client.py`` (``AsyncDifyClient``,
the triggerer's) is the hand-written source and ``_sync/client.py`` (``DifyClient``, the
workers') is generated from it by ``scripts/unasync.py``. Import the clients from
``dify.client``.

Both sit on the shared transport (``docify_provider._core.transport``: timeouts, TLS, retries by
endpoint, the key only to trusted hosts, typed ``Dify*`` errors, bounded SSE). What they share
beyond it lives once in ``DifyClientBase`` (``client_base``) and the sans-IO helpers of
``dify.stream`` (``DifyEventTracker``, ``RunRecovery``); this class only drives I/O.

Money rule: a run request (``POST /workflows/run``) is never sent twice. A blocking answer that
is lost after the request went out is found again in the app's logs (same end user, created since
the request, the run's inputs confirmed against what was sent) and waited for; a stream that is
cut once the run id is known is re-attached (``GET /workflow/{id}/events``, else polling).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from docify_provider._core.concurrency import async_sleep
from docify_provider._core.errors import OutcomeUnknownError, ProviderError
from docify_provider._core.transport import AsyncHTTP
from docify_provider._core.wording import sized
from docify_provider.dify import protocol
from docify_provider.dify.client_base import _CUT, STOP_CHECKS, DifyClientBase, log
from docify_provider.dify.errors import DifyHTTPError, DifyRunTimeoutError
from docify_provider.dify.inputs import plan_inputs
from docify_provider.dify.models import AppInfo, AppParameters, UploadedFile, WorkflowEvent, WorkflowLog, WorkflowRun
from docify_provider.dify.stream import DifyEventTracker, RunRecovery, raise_if_failed, settled_by_detail, with_task

if TYPE_CHECKING:
    from docify_provider._core.endpoints import Endpoint


class AsyncDifyClient(DifyClientBase, AsyncHTTP):
    """Dify client for one app API key; close it when done, or use it as a context manager.

    The sync form is thread-safe; the async form belongs to one event loop.
    """

    async def get_app_info(self) -> AppInfo:
        """``GET /info``: the app bound to the key."""
        return AppInfo.from_api(await self._call(protocol.INFO))

    async def get_parameters(self) -> AppParameters:
        """``GET /parameters``: the start-node variables and file limits."""
        return AppParameters.from_api(await self._call(protocol.PARAMETERS))

    async def upload_file(self, source: Any, *, user: str | None = None, file_name: str | None = None) -> UploadedFile:
        """``POST /files/upload``, streamed from ``source`` (path, bytes, file object, ObjectStoragePath)."""
        with contextlib.ExitStack() as stack:
            upload, make_kwargs = self._upload_parts(source, user=user, file_name=file_name, stack=stack)
            uploaded = UploadedFile.from_api(await self._call(protocol.UPLOAD, make_kwargs))
        log.info("Uploaded %s%s to Dify as %s", upload.name, sized(upload.size), uploaded.id)
        return uploaded

    async def prepare_inputs(
        self, inputs: Mapping[str, Any] | None, *, user: str | None = None, parameters: AppParameters | None = None
    ) -> dict[str, Any]:
        """Check ``inputs`` against ``/parameters`` (``plan_inputs``), upload their files, return wire inputs."""
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
        """``POST /workflows/run`` (blocking mode). Never re-sent; a lost answer is recovered from the logs.

        ``on_sent({"user", "sent_at", "inputs"})`` is called once, just before the request goes out.
        A run that ended failed or stopped raises ``DifyRunFailedError``; a paused run is returned.
        """
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
        """Find the run that the request ``body`` sent at ``sent_at`` started, and wait for it to end."""
        rec = RunRecovery(body, sent_at, self.config, cause)
        found = await self.find_run(rec)
        try:
            return await self.wait_for_run(found, timeout=max(rec.remaining(), self.config.poll_interval))
        except DifyRunTimeoutError as exc:
            raise rec.unknown(exc.message, run_id=found) from exc

    async def find_run(self, rec: RunRecovery) -> str:
        """The id of the one run ``rec`` describes, read from the logs until ``recovery_timeout``.

        Reads are free, so a failed read is tried again at the next poll; one that cannot heal (a
        permanent error) or the deadline ends the search with ``DifyOutcomeUnknownError``.
        """
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
            await async_sleep(rec.pause())

    def stream_workflow(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        user: str | None = None,
        files: list[Any] | None = None,
        workflow_id: str | None = None,
    ) -> AsyncIterator[WorkflowEvent]:
        """Stream a run's events up to ``workflow_finished`` (or ``workflow_paused``), re-attaching on a cut.

        The request is built now and sent on first iteration.
        """
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
        """Re-attach to a run: its events up to the terminal one (one synthesized if it has ended);
        with ``continue_on_pause`` across its pauses, up to ``workflow_finished``."""
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
                await async_sleep(self.config.poll_interval)

    async def _poll(self, tracker: DifyEventTracker) -> AsyncIterator[WorkflowEvent]:
        run = await self.wait_for_run(str(tracker.run_id))
        event = tracker.accept_run(with_task(run, tracker.task_id) if tracker.task_id else run)
        if event is not None:
            yield event

    async def get_workflow_run(self, workflow_run_id: str, *, task_id: str | None = None) -> WorkflowRun:
        """``GET /workflows/run/{id}``: the run's status, inputs and outputs."""
        return self._detail(await self._call(self._detail_endpoint(workflow_run_id)), task_id)

    async def wait_for_run(
        self, workflow_run_id: str, *, poll_interval: float | None = None, timeout: float | None = None
    ) -> WorkflowRun:
        """Poll the run detail until the run has ended or paused; ``DifyRunTimeoutError`` after ``timeout``."""
        interval = poll_interval or self.config.poll_interval
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = await self.get_workflow_run(workflow_run_id)
            if run.is_terminal:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise self._wait_timeout(workflow_run_id, run, float(timeout or 0))
            await async_sleep(interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic())))

    async def get_form(self, form_token: str) -> dict[str, Any]:
        """``GET /form/human_input/{token}``: the form's content, inputs, defaults, actions, expiry."""
        return dict(await self._call(protocol.FORM.format(form_token=form_token)) or {})

    async def submit_form(
        self, form_token: str, *, action: str, inputs: Mapping[str, Any] | None = None, user: str | None = None
    ) -> None:
        """``POST /form/human_input/{token}`` with the run's ``user``; the run resumes on Dify."""
        body = {"action": action, "inputs": dict(inputs or {}), "user": self._user(user)}
        await self._call(protocol.FORM_SUBMIT.format(form_token=form_token), lambda: {"json": body})

    async def stop_task(
        self, task_id: str, *, user: str | None = None, workflow_run_id: str | None = None
    ) -> WorkflowRun | None:
        """``POST /workflows/tasks/{task_id}/stop``; with the run id, read what the status became."""
        await self._call(protocol.STOP.format(task_id=task_id), lambda: {"json": {"user": self._user(user)}})
        run = None
        for attempt in range(STOP_CHECKS if workflow_run_id else 0):
            run = await self.get_workflow_run(str(workflow_run_id), task_id=task_id)
            if run.is_terminal or attempt == STOP_CHECKS - 1:
                break
            await async_sleep(self._stop_pause())
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
            items, more = self._logs_page(await self._call(protocol.LOGS, functools.partial(dict, params=params)))
            for item in items:
                yield item
            if not more:
                return
            page += 1
