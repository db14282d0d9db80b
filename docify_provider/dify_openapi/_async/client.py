"""Dify user-scoped OpenAPI client I/O, written once: ``_async/client.py``
(``AsyncDifyOpenAPIClient``, the triggers') is the hand-written source and ``_sync/client.py``
(``DifyOpenAPIClient``, workers and the login CLI) is generated from it by
``scripts/unasync.py``. Import the clients from ``dify_openapi.client``.

Both sit on the shared transport (timeouts, TLS, retries by endpoint, the token only to the
configured host, bounded SSE) and read runs with the Service API's stream verdict
(``OpenAPIEventTracker``: events, usage, failures). What both share lives in
``DifyOpenAPIClientBase`` (``client_base``) and the sans-IO modules (``protocol``, ``inputs``,
``device``, ``discovery``); this class only drives I/O.

Money rule: a run request is never sent twice. A stream cut once the run id is known re-attaches
through ``GET /apps/{id}/tasks/{run_id}/events`` with the state snapshot (replayed events are
counted once); cut before any id, the outcome is unknown: this API has no run-detail or log
endpoint to look the run up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import httpx
from tenacity import AsyncRetrying

from docify_provider._core.concurrency import AsyncSleep, async_sleep
from docify_provider._core.errors import OutcomeUnknownError, TransportError
from docify_provider._core.retries import retry_kwargs
from docify_provider._core.transport import AsyncHTTP
from docify_provider.dify.inputs import InputPlan
from docify_provider.dify.models import WorkflowEvent, WorkflowRun
from docify_provider.dify_openapi import discovery, protocol
from docify_provider.dify_openapi.client_base import _CUT, PAGE_SIZE, STOP_WAIT_SECONDS, DifyOpenAPIClientBase, log
from docify_provider.dify_openapi.device import DeviceCode, DevicePoll, DeviceToken
from docify_provider.dify_openapi.errors import (
    DifyOpenAPIError,
    DifyOpenAPIHTTPError,
    DifyOpenAPIInputError,
    DifyOpenAPINotFoundError,
    DifyOpenAPIRunFailedError,
)
from docify_provider.dify_openapi.inputs import check_inputs
from docify_provider.dify_openapi.models import (
    Account,
    AppDescription,
    AppSummary,
    HumanInputForm,
    ResolvedApp,
    Session,
    Workspace,
)
from docify_provider.dify_openapi.stream import OpenAPIEventTracker

if TYPE_CHECKING:
    from docify_provider._core.endpoints import Endpoint


class AsyncDifyOpenAPIClient(DifyOpenAPIClientBase, AsyncHTTP):
    """Dify OpenAPI client for one account token; close it when done, or use it as a context manager.

    The sync form is thread-safe; the async form belongs to one event loop.
    """

    # -- plumbing -------------------------------------------------------------------------------

    async def _read(self, endpoint: Endpoint, params: dict[str, Any] | None = None) -> tuple[httpx.Response, Any]:
        """A retried read: the checked response and its JSON."""
        async for attempt in AsyncRetrying(**retry_kwargs(self.config, endpoint)):
            with attempt:
                response = await self._request(endpoint, params=params)
                return response, self._json(response, endpoint)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _get(self, endpoint: Endpoint, params: dict[str, Any] | None = None) -> Any:
        _, body = await self._read(endpoint, params)
        return body

    async def detect_generation(self, app_id: str) -> str:
        """The server's path generation, found once per client with reads only (never a run)."""
        probe = self._probe
        if probe.generation:
            return probe.generation
        if not self._version_read:
            self._version_read = True
            try:
                response, body = await self._read(protocol.VERSION)
                probe.on_version(response.status_code, response.headers, body)
            except DifyOpenAPIHTTPError as exc:
                probe.on_version(exc.status_code or 500, {}, None)
            except DifyOpenAPIError as exc:
                log.debug("GET /_version failed (%s); detecting the generation from a describe read", exc)
            if probe.generation:
                return probe.generation
        await self._probe_describe(app_id)
        return str(probe.generation)

    async def _probe_describe(self, app_id: str) -> None:
        """Describe reads (current path, then legacy) until one decides the generation; its answer is
        kept on the probe (``described``) so that ``describe_app`` reads nothing again."""
        probe = self._probe
        while True:
            endpoint = probe.describe_request(app_id)
            try:
                response, body = await self._read(endpoint, protocol.describe_params(probe.candidate))
            except DifyOpenAPINotFoundError:
                if probe.on_describe(404, {}):
                    probe.candidate = protocol.ACTION
                    raise
                continue
            probe.on_describe(response.status_code, response.headers, body)
            log.info("Dify OpenAPI at %s uses the %s paths", self.config.base_url, probe.generation)
            return

    # -- account and workspaces -----------------------------------------------------------------

    async def get_account(self) -> Account:
        """``GET /account``: who the token belongs to (costs nothing)."""
        account = Account.from_api(await self._get(protocol.ACCOUNT))
        if self._workspace_id is None:
            self._workspace_id = account.default_workspace_id
        return account

    async def workspace_id(self) -> str:
        """The configured workspace, else the account's default one (``GET /account``, once)."""
        if self._workspace_id is None:
            await self.get_account()
        if not self._workspace_id:
            raise DifyOpenAPIInputError(["no workspace_id configured and the account has no default workspace"])
        return self._workspace_id

    async def _pages(self, endpoint: Endpoint, params: dict[str, Any], what: str) -> list[Any]:
        """Every page's items (paginated envelope or the older ``{"workspaces": [...]}``)."""
        out: list[Any] = []
        page = 1
        while True:
            items, more = self._page(await self._get(endpoint, {**params, "page": page, "limit": PAGE_SIZE}), what)
            out.extend(items)
            if not more:
                return out
            page += 1

    async def list_workspaces(self) -> list[Workspace]:
        """``GET /workspaces``, every page."""
        return [Workspace.from_api(w) for w in await self._pages(protocol.WORKSPACES, {}, "workspaces")]

    # -- apps -----------------------------------------------------------------------------------

    async def list_apps(
        self, *, mode: str | None = None, name: str | None = None, tag: str | None = None
    ) -> list[AppSummary]:
        """``GET /apps`` of the workspace, every page; each filter is checked again on every row
        (``discovery.checked_rows``): a ``tag`` on a server whose rows carry no tags raises."""
        discovery.check_mode(mode)  # before the workspace lookup: nothing is sent for a wrong mode
        workspace = await self.workspace_id()
        params = self._apps_params(1, workspace, mode=mode, name=name, tag=tag)
        rows = [AppSummary.from_api(row) for row in await self._pages(protocol.APPS, params, "apps")]
        return discovery.checked_rows(rows, mode=mode, name=name, tag=tag, workspace_id=workspace)

    async def list_permitted_external_apps(
        self, *, mode: str | None = None, name: str | None = None
    ) -> list[AppSummary]:
        """``GET /permitted-external-apps`` (external SSO subjects, Enterprise), every page."""
        params = self._apps_params(1, None, mode=mode, name=name)
        rows = [AppSummary.from_api(row) for row in await self._pages(protocol.PERMITTED_APPS, params, "apps")]
        return discovery.checked_rows(rows, mode=mode, name=name)

    async def describe_app(self, app: str, *, refresh: bool = False) -> AppDescription:
        """``GET /apps/{id}`` (legacy ``/describe``): info, ``parameters`` and ``input_schema`` (cached)."""
        app_id = (await self.resolve_app(app)).id if not self._is_id(app) else app
        if not refresh and app_id in self._descriptions:
            return self._descriptions[app_id]
        if self._probe.generation is None:
            await self.detect_generation(app_id)
            body = self._probe.described
            self._probe.described = None
            if body is None:  # decided by /_version: read the describe now
                body = await self._get(*self._describe_request(str(self._probe.generation), app_id))
        else:
            body = await self._get(*self._describe_request(self._probe.generation, app_id))
        description = AppDescription.from_api(body, app_id)
        self._descriptions[app_id] = description
        self._resolved.setdefault(app_id, ResolvedApp(app_id, description.mode, description.name))
        return description

    async def resolve_app(self, app: str) -> ResolvedApp:
        """An app id or exact name -> its id and mode (cached); several or no matches raise, listing them."""
        if app in self._resolved:
            return self._resolved[app]
        if self._is_id(app):
            description = await self.describe_app(app)
            resolved = ResolvedApp(description.id, description.mode, description.name)
        else:
            rows = await self.list_apps(name=app)
            if not self._named(app, rows):  # no such name: every app, for the close names
                rows = await self.list_apps()
            resolved = self._pick_app(app, rows)
        self._resolved[app] = resolved
        return resolved

    # -- runs -----------------------------------------------------------------------------------

    async def prepare_run(
        self, app: str, inputs: Mapping[str, Any] | None, *, query: str | None = None, validate: bool = True
    ) -> tuple[ResolvedApp, InputPlan]:
        """Resolve ``app`` and check ``inputs`` against its ``input_schema`` (nothing sent but reads)."""
        resolved = await self.resolve_app(app)
        description = await self.describe_app(resolved.id)
        resolved = ResolvedApp(resolved.id, description.mode or resolved.mode, description.name or resolved.name)
        plan = check_inputs(inputs, description, query=query) if validate else InputPlan(values=dict(inputs or {}))
        return resolved, plan

    async def run_app(
        self,
        app: str,
        inputs: Mapping[str, Any] | InputPlan | None,
        *,
        query: str | None = None,
        files: list[Any] | None = None,
        conversation_id: str | None = None,
        workflow_id: str | None = None,
        validate: bool = True,
    ) -> AsyncIterator[WorkflowEvent]:
        """Run ``app`` (id or exact name) and stream its events up to ``workflow_finished`` or
        ``workflow_paused``.

        ``inputs`` may be the ``InputPlan`` that ``prepare_run`` returned for them: it is sent as
        planned (its local files as ``files[<var>]`` parts), not checked again. Nothing is read or
        sent before the first event is asked for (an async generator cannot read before it is
        iterated, and the sync one does the same); then the inputs are checked and the route picked
        before the run request goes out, so their errors reach the caller's loop.
        """
        if isinstance(inputs, InputPlan):
            resolved, plan = (await self.prepare_run(app, None, validate=False))[0], inputs
        else:
            resolved, plan = await self.prepare_run(app, inputs, query=query, validate=validate)
        with contextlib.ExitStack() as stack:
            endpoint, request = self._run_request(
                resolved,
                plan,
                stack=stack,
                query=query,
                files=files,
                conversation_id=conversation_id,
                workflow_id=workflow_id,
            )
            tracker = self._tracker(endpoint)
            try:
                stream, response = await self._open_stream(endpoint, **request)
                async for event in self._read_stream(stream, response, endpoint, tracker):
                    yield event
            except _CUT as exc:
                self._on_cut(resolved, tracker, exc)
        if not tracker.done:
            self._on_cut(resolved, tracker, None)
            async for event in self._reattach(resolved, tracker):
                yield event

    async def _reattach(self, app: ResolvedApp, tracker: OpenAPIEventTracker) -> AsyncIterator[WorkflowEvent]:
        deadline, budget = self._attach_budget()
        idle = 0
        while not tracker.done:
            if time.monotonic() > deadline:
                raise self._attach_gave_up(tracker, "max_stream_seconds passed")
            before = len(tracker.events_seen)
            try:
                async for event in self._events(app.id, str(tracker.run_id), tracker, include_state_snapshot=True):
                    yield event
            except _CUT as exc:
                log.warning("Re-attached Dify stream of run %s broke (%s)", tracker.run_id, exc)
            if tracker.done:
                return
            idle = self._attach_progress(tracker, before, idle, budget)
            await async_sleep(self.config.poll_interval)

    async def _events(
        self, app_id: str, run_id: str, tracker: OpenAPIEventTracker, *, include_state_snapshot: bool
    ) -> AsyncIterator[WorkflowEvent]:
        endpoint = protocol.events_endpoint(app_id, run_id)
        params = protocol.events_params(
            include_state_snapshot=include_state_snapshot, continue_on_pause=tracker.continue_on_pause
        )
        stream, response = await self._open_stream(endpoint, params=params)
        async for event in self._read_stream(stream, response, endpoint, tracker):
            yield event

    async def task_events(
        self,
        app: str,
        workflow_run_id: str,
        *,
        include_state_snapshot: bool = False,
        continue_on_pause: bool = False,
    ) -> AsyncIterator[WorkflowEvent]:
        """``GET /apps/{id}/tasks/{run_id}/events``: a run's events (live; replayed with the snapshot).

        Opening the stream is a read (429 and 502/503/504/524 retried with backoff). A stream that
        breaks or ends before ``workflow_finished`` (or a pause) raises
        ``DifyOpenAPIStreamIncompleteError``: the run may still be going. Nothing is read before
        the first event is asked for.
        """
        resolved = await self.resolve_app(app)
        await self.detect_generation(resolved.id)
        tracker = self._tracker(protocol.EVENTS, run_id=workflow_run_id, continue_on_pause=continue_on_pause)
        try:
            async for event in self._events(
                resolved.id, workflow_run_id, tracker, include_state_snapshot=include_state_snapshot
            ):
                yield event
        except TransportError as exc:
            if isinstance(exc, OutcomeUnknownError):  # e.g. idle past idle_timeout: already says so
                raise
            raise self._events_incomplete(tracker, exc) from None
        if not tracker.done:
            raise self._events_incomplete(tracker, None)

    async def follow_run(
        self, app: str, workflow_run_id: str, *, task_id: str | None = None
    ) -> AsyncIterator[WorkflowEvent]:
        """Follow a run started elsewhere (another process, an earlier try) to its end or pause.

        Each (re-)attach asks for the state snapshot, so what happened while nobody listened is
        replayed (each event counted once); a cut re-attaches within ``max_stream_seconds``, as a
        run's own stream does. Nothing is ever sent that could start a run. ``task_id`` (when the
        caller saw it) is the run's task: the frame of an already finished run names none (C3).
        Nothing is read before the first event is asked for.
        """
        resolved = await self.resolve_app(app)
        await self.detect_generation(resolved.id)
        tracker = self._tracker(protocol.EVENTS, run_id=workflow_run_id, task_id=task_id)
        async for event in self._reattach(resolved, tracker):
            yield event

    async def stop_task(self, app: str, task_id: str, *, workflow_run_id: str | None = None) -> WorkflowRun | None:
        """Stop a task, then (with the run id, for apps with events) read what became of the run.

        The stop is sent once; what the run became is read from its events for at most
        ``STOP_WAIT_SECONDS``, and a read that fails is logged and returns None (not seen).
        """
        resolved = await self.resolve_app(app)
        generation = await self.detect_generation(resolved.id)
        await self._get(protocol.stop_endpoint(generation, resolved.id, task_id))
        last: WorkflowEvent | None = None
        if workflow_run_id and resolved.mode in protocol.EVENT_MODES:
            short = dataclasses.replace(self.config, max_stream_seconds=STOP_WAIT_SECONDS)
            async with AsyncDifyOpenAPIClient(short) as reader:
                reader._probe, reader._resolved = self._probe, self._resolved
                try:
                    # the snapshot ends a paused run's stream at its pause (a stop leaves it paused, C6)
                    async for event in reader.task_events(resolved.id, workflow_run_id, include_state_snapshot=True):
                        last = event
                except DifyOpenAPIRunFailedError as exc:  # ended stopped (or failed): what we want to see
                    raw = exc.result if isinstance(exc.result, dict) else {}
                    last = WorkflowEvent.from_api(raw) if raw.get("event") == "workflow_finished" else None
                except DifyOpenAPIError as exc:  # a timeout included: the outcome was not seen
                    log.warning(
                        "Dify answered success to the stop of task %s; run %s not seen ending (%s)",
                        task_id,
                        workflow_run_id,
                        exc,
                    )
        return self._stopped(workflow_run_id, task_id, last)

    # -- human input ----------------------------------------------------------------------------

    async def get_form(self, app: str, form_token: str) -> HumanInputForm:
        """A paused run's human-input form (content, fields, actions, expiry)."""
        resolved = await self.resolve_app(app)
        generation = await self.detect_generation(resolved.id)
        body = await self._get(protocol.form_endpoint(generation, resolved.id, form_token))
        return HumanInputForm.from_api(body, form_token)

    async def submit_form(self, app: str, form_token: str, action: str, inputs: Mapping[str, Any] | None = None) -> Any:
        """Answer a form with ``action`` (checked against the form's actions first); the run resumes."""
        form = await self.get_form(app, form_token)
        self._form_action_ok(form, action)
        resolved = await self.resolve_app(app)
        endpoint = protocol.submit_endpoint(str(self._probe.generation), resolved.id, form_token)
        return await self._call(endpoint, lambda: {"json": {"action": action, "inputs": dict(inputs or {})}})

    # -- sessions -------------------------------------------------------------------------------

    async def list_sessions(self) -> list[Session]:
        """``GET /account/sessions``: the account's tokens (one per device login), every page."""
        return [Session.from_api(s) for s in await self._pages(protocol.SESSIONS, {}, "sessions")]

    async def revoke_session(self, session_id: str | None = None) -> Any:
        """``DELETE /account/sessions/{id}``, or this token's own session (``/self``) without an id."""
        endpoint = protocol.REVOKE_SESSION.format(session_id=session_id) if session_id else protocol.REVOKE_SELF
        return await self._call(endpoint)

    # -- device flow ----------------------------------------------------------------------------

    async def start_device_flow(self, *, client_id: str = "difyctl", device_label: str) -> DeviceCode:
        """``POST /oauth/device/code``: show ``user_code`` at ``verification_uri``, then ``poll_device_token``."""
        body = {"client_id": client_id, "device_label": device_label}
        return DeviceCode.from_api(await self._call(protocol.DEVICE_CODE, lambda: {"json": body}), client_id)

    async def poll_device_token(self, code: DeviceCode, *, sleep: AsyncSleep = async_sleep) -> DeviceToken:
        """Poll until the user approves (token, ``expires_at``, account) or the login ends without one.

        ``sleep`` waits between polls (the login CLI's also says when Dify asks to slow down).
        """
        poll = DevicePoll(code)
        while True:
            if poll.expired():
                raise poll.timeout_error()
            await sleep(poll.wait())
            try:
                token = poll.on_answer(200, await self._call(protocol.DEVICE_TOKEN, lambda: {"json": poll.request()}))
            except DifyOpenAPIHTTPError as exc:
                error = "slow_down" if exc.status_code == 429 else exc.code
                token = poll.on_answer(exc.status_code or 400, {"error": error})
            if token is not None:
                return token
