"""Dify user-scoped OpenAPI clients: ``DifyOpenAPIClient`` (workers) and ``AsyncDifyOpenAPIClient``
(triggers), for one account token.

Both sit on the shared transport (timeouts, TLS, retries by endpoint, the token only to the
configured host, bounded SSE) and read runs with the Service API's stream verdict
(``DifyEventTracker``: events, usage, failures). What both share lives in ``DifyOpenAPIClientBase``
and the sans-IO modules (``protocol``, ``schema``, ``device``); the two classes only drive I/O.

Money rule: a run request is never sent twice. A stream cut once the run id is known re-attaches
through ``GET /apps/{id}/tasks/{run_id}/events`` with the state snapshot (replayed events are
counted once); cut before any id, the outcome is unknown: this API has no run-detail or log
endpoint to look the run up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from docify_provider._core.config import reveal
from docify_provider._core.errors import OutcomeUnknownError, ProviderError, TransportError
from docify_provider._core.files import open_file_source
from docify_provider._core.transport import AsyncHTTP, HTTPBase, SyncHTTP
from docify_provider.dify.client import DifyClientBase, normalize_inputs
from docify_provider.dify.inputs import InputPlan
from docify_provider.dify.models import UploadedFile, WorkflowEvent, WorkflowRun
from docify_provider.dify_openapi import discovery, protocol
from docify_provider.dify_openapi.config import DifyOpenAPIClientConfig
from docify_provider.dify_openapi.device import DeviceCode, DevicePoll, DeviceToken
from docify_provider.dify_openapi.errors import (
    DifyOpenAPIAppLookupError,
    DifyOpenAPIError,
    DifyOpenAPIHTTPError,
    DifyOpenAPIInputError,
    DifyOpenAPINotFoundError,
    DifyOpenAPIProtocolError,
    DifyOpenAPIRunFailedError,
    DifyOpenAPIStreamIncompleteError,
    error_for_status,
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
from docify_provider.dify_openapi.stream import NO_LOOKUP, OpenAPIEventTracker

if TYPE_CHECKING:
    from docify_provider._core.endpoints import Endpoint

log = logging.getLogger(__name__)

__all__ = ["AsyncDifyOpenAPIClient", "DifyOpenAPIClient", "DifyOpenAPIClientBase"]

PAGE_SIZE = 100
#: How long a stop waits on the run's events to see what really happened.
STOP_WAIT_SECONDS = 10.0
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_CUT = (OutcomeUnknownError, TransportError)


def _unknown_before_id(exc: ProviderError) -> ProviderError:
    """A run cut before any event named it: say that no run lookup exists on this API."""
    if isinstance(exc, OutcomeUnknownError) and NO_LOOKUP not in exc.message:
        exc.message += NO_LOOKUP
        exc.args = (exc._render(),)
    return exc


class DifyOpenAPIClientBase(HTTPBase):
    """The OpenAPI's requests and answers over the shared transport (mixed with ``SyncHTTP``/``AsyncHTTP``).

    Per client it caches the path generation (``GenerationProbe``), the account's default
    workspace, each app's description and each app reference's resolution.
    """

    config: DifyOpenAPIClientConfig
    protocol = protocol

    def __init__(self, config: DifyOpenAPIClientConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._probe = protocol.GenerationProbe(
            generation=None if config.api_generation == "auto" else config.api_generation
        )
        self._version_read = False
        self._workspace_id: str | None = config.workspace_id
        self._descriptions: dict[str, AppDescription] = {}
        self._resolved: dict[str, ResolvedApp] = {}

    @property
    def generation(self) -> str | None:
        """The server's path generation once detected (or pinned by ``api_generation``)."""
        return self._probe.generation

    # -- transport hooks ------------------------------------------------------------------------

    def _auth(self) -> dict[str, str]:
        # A login-only client (device flow) has no token yet: send no Authorization at all.
        return {"Authorization": f"Bearer {reveal(self.config.api_key)}"} if self.config.api_key else {}

    def _error_for_status(self, status: int, body: bytes, headers: httpx.Headers, endpoint: Endpoint) -> ProviderError:
        return error_for_status(status, body, headers, endpoint)

    def _tracker(self, endpoint: Endpoint, **kwargs: Any) -> OpenAPIEventTracker:
        return OpenAPIEventTracker(str(endpoint), base_url=self.config.base_url, **kwargs)

    # -- sans-IO helpers ------------------------------------------------------------------------

    @staticmethod
    def _is_id(app: str) -> bool:
        return bool(_UUID.match(app))

    @staticmethod
    def _page(answer: Any, what: str) -> tuple[list[Any], bool]:
        """A paginated envelope ``{data, has_more, ...}`` (or the older ``{"workspaces": [...]}``)."""
        if isinstance(answer, list):
            return answer, False
        if not isinstance(answer, dict):
            raise DifyOpenAPIProtocolError(f"Expected a JSON object for {what}, got {type(answer).__name__}")
        items = answer.get("data")
        if items is None and isinstance(answer.get("workspaces"), list):
            return list(answer["workspaces"]), False
        items = items if isinstance(items, list) else []
        return items, bool(answer.get("has_more")) and bool(items)

    def _apps_params(self, page: int, workspace_id: str | None, **filters: str | None) -> dict[str, Any]:
        discovery.check_mode(filters.get("mode"))  # a closed enum: named before anything is sent
        params: dict[str, Any] = {"page": page, "limit": PAGE_SIZE}
        if workspace_id:
            params["workspace_id"] = workspace_id
        params.update({k: v for k, v in filters.items() if v})
        return params

    def _pick_app(self, app: str, rows: list[AppSummary]) -> ResolvedApp:
        exact = [r for r in rows if r.name == app]
        if len(exact) == 1:
            return ResolvedApp(exact[0].id, exact[0].mode, exact[0].name)
        candidates = exact or rows
        listing = ", ".join(f"{r.name!r} ({r.id}, {r.mode})" for r in candidates[:20]) or "none"
        if exact:
            why = f"app name {app!r} is ambiguous: {len(exact)} apps have it ({listing}); pass the app id instead"
        else:
            why = f"no app is named exactly {app!r} in this workspace (similar names: {listing})"
        raise DifyOpenAPIAppLookupError([why], candidates=[r.as_dict() for r in candidates[:20]])

    def _describe_request(self, generation: str, app_id: str) -> tuple[Endpoint, dict[str, str]]:
        return protocol.describe_endpoint(generation, app_id), protocol.describe_params(
            generation, workspace_id=self.config.workspace_id
        )

    def _run_request(
        self,
        app: ResolvedApp,
        plan: InputPlan,
        *,
        query: str | None,
        files: list[Any] | None,
        conversation_id: str | None,
        workflow_id: str | None,
        stack: contextlib.ExitStack,
    ) -> tuple[Endpoint, dict[str, Any]]:
        generation = str(self._probe.generation)
        if plan.uploads and generation == protocol.LEGACY:
            raise DifyOpenAPIInputError(
                [
                    f"{u.variable!r}: this Dify server (legacy OpenAPI paths) takes no file parts with a run; "
                    "pass an http(s) URL for it, or upgrade Dify"
                    for u in plan.uploads
                ]
            )
        pending = {(u.variable, u.index) for u in plan.uploads}
        inputs = normalize_inputs(
            {
                k: ([x for i, x in enumerate(v) if (k, i) not in pending] if isinstance(v, list) else v)
                for k, v in plan.values.items()
                if (k, None) not in pending
            }
        )
        inputs = {k: v for k, v in inputs.items() if not (isinstance(v, list) and not v and (k, 0) in pending)}
        wire_files = [f.as_input() if isinstance(f, UploadedFile) else f for f in files or []]
        body = protocol.run_body(
            generation,
            app.mode,
            inputs,
            query=query,
            conversation_id=conversation_id,
            workflow_id=workflow_id,
            workspace_id=self.config.workspace_id,
            files=wire_files or None,
        )
        endpoint = protocol.run_endpoint(generation, app.id, app.mode)
        if not plan.uploads:
            return endpoint, {"json": body}
        parts = []
        for upload in plan.uploads:
            source = open_file_source(upload.source, file_name=upload.file_name, errors=self.errors)
            fileobj = source.opener()
            if source.owned:
                stack.callback(fileobj.close)
            parts.append((protocol.file_part_name(upload.variable), (source.name, fileobj, source.mime_type)))
        return endpoint, {"data": protocol.multipart_fields(body), "files": parts}

    def _no_reattach(self, app: ResolvedApp, tracker: OpenAPIEventTracker, cause: Exception) -> ProviderError:
        return DifyOpenAPIStreamIncompleteError(
            f"The stream of Dify run {tracker.run_id} broke ({cause}) and a {app.mode} app cannot be re-attached "
            "(the events route serves workflow and advanced-chat apps only)."
            + NO_LOOKUP.replace("whose id was never seen ", "")
            + " It is not re-sent.",
            endpoint=tracker.endpoint,
            run_id=tracker.run_id,
            session_id=tracker.run_id,
            events_seen=tracker.events_seen,
        )

    def _attach_gave_up(self, tracker: OpenAPIEventTracker, why: str) -> ProviderError:
        return DifyOpenAPIStreamIncompleteError(
            f"Dify run {tracker.run_id}: re-attaching gave up ({why}) after {len(tracker.events_seen)} event(s). "
            "The run may still be going and was billed; it is not re-sent.",
            endpoint=tracker.endpoint,
            run_id=tracker.run_id,
            session_id=tracker.run_id,
            events_seen=tracker.events_seen,
        )

    def _on_cut(self, app: ResolvedApp, tracker: OpenAPIEventTracker, exc: ProviderError | None) -> None:
        """A run's stream broke (``exc``) or ended early (None): re-attach, or raise why it cannot."""
        if exc is not None and not tracker.run_id:
            raise _unknown_before_id(exc) from None
        if app.mode not in protocol.EVENT_MODES:
            raise self._no_reattach(app, tracker, exc or RuntimeError("the stream ended early")) from None
        log.warning("Dify stream of run %s broke (%s); re-attaching", tracker.run_id, exc or "ended early")

    def _events_incomplete(self, tracker: OpenAPIEventTracker, cause: Exception | None) -> ProviderError:
        """``task_events`` whose stream broke (``cause``) or ended before the run's final event."""
        how = f"broke ({cause})" if cause is not None else "ended"
        return DifyOpenAPIStreamIncompleteError(
            f"The events stream of Dify run {tracker.run_id} {how} before the run's final event, after "
            f"{len(tracker.events_seen)} event(s). The run may still be going: read its events again "
            "(task_events, include_state_snapshot=True) or look in the Dify console. Nothing was re-sent.",
            endpoint=tracker.endpoint,
            run_id=tracker.run_id,
            session_id=tracker.run_id,
            events_seen=tracker.events_seen,
        )

    def _attach_progress(self, tracker: OpenAPIEventTracker, before: int, idle: int, budget: int) -> int:
        """Re-attaches in a row that brought no event; raise once there were ``budget`` of them."""
        idle = 0 if len(tracker.events_seen) > before else idle + 1
        if idle >= budget:
            raise self._attach_gave_up(tracker, f"{idle} re-attaches in a row brought no event")
        return idle

    def _attach_budget(self) -> tuple[float, int]:
        """(deadline, attempts without progress) for re-attaching a run."""
        seconds = self.config.max_stream_seconds or 86400.0
        return time.monotonic() + seconds, max(3, self.config.max_retries + 1)

    def _form_action_ok(self, form: HumanInputForm, action: str) -> None:
        if form.action_ids and action not in form.action_ids:
            raise DifyOpenAPIInputError(
                [f"action {action!r} is not an action of this form (its actions: {', '.join(form.action_ids)})"]
            )

    @staticmethod
    def _stopped(run_id: str | None, task_id: str, event: WorkflowEvent | None) -> WorkflowRun | None:
        """What the stopped task's run became: its finished frame, or the pause it still waits in
        (a current Dify's stop reaches no paused run: there is no live engine, Part C6); logged
        as the Service API client logs it (the status seen, never a wait for ``stopped``)."""
        run = None
        if event is not None:
            run = event.run or (WorkflowRun.from_event(event) if event.event == "workflow_paused" else None)
        if run is None:
            log.info("Asked Dify to stop task %s (run %s); its outcome was not seen", task_id, run_id or "?")
        else:
            DifyClientBase._log_stop(task_id, run)
        return run


class DifyOpenAPIClient(DifyOpenAPIClientBase, SyncHTTP):
    """Synchronous client for one account token. Thread-safe; close it when done."""

    # -- plumbing -------------------------------------------------------------------------------

    def _read(self, endpoint: Endpoint, params: dict[str, Any] | None = None) -> tuple[httpx.Response, Any]:
        """A retried read: the checked response and its JSON."""
        from tenacity import Retrying

        from docify_provider._core.retries import retry_kwargs

        for attempt in Retrying(**retry_kwargs(self.config, endpoint)):
            with attempt:
                response = self._request(endpoint, params=params)
                return response, self._json(response, endpoint)
        raise AssertionError("unreachable")  # pragma: no cover

    def _get(self, endpoint: Endpoint, params: dict[str, Any] | None = None) -> Any:
        return self._read(endpoint, params)[1]

    def detect_generation(self, app_id: str) -> str:
        """The server's path generation, found once per client with reads only (never a run)."""
        probe = self._probe
        if probe.generation:
            return probe.generation
        if not self._version_read:
            self._version_read = True
            try:
                response, body = self._read(protocol.VERSION)
                probe.on_version(response.status_code, response.headers, body)
            except DifyOpenAPIHTTPError as exc:
                probe.on_version(exc.status_code or 500, {}, None)
            except DifyOpenAPIError as exc:
                log.debug("GET /_version failed (%s); detecting the generation from a describe read", exc)
            if probe.generation:
                return probe.generation
        self._probe_describe(app_id)
        return str(probe.generation)

    def _probe_describe(self, app_id: str) -> Any:
        probe = self._probe
        while True:
            endpoint = probe.describe_request(app_id)
            try:
                response, body = self._read(endpoint, protocol.describe_params(probe.candidate))
            except DifyOpenAPINotFoundError:
                if probe.on_describe(404, {}):
                    probe.candidate = protocol.ACTION
                    raise
                continue
            probe.on_describe(response.status_code, response.headers, body)
            log.info("Dify OpenAPI at %s uses the %s paths", self.config.base_url, probe.generation)
            return body

    # -- account and workspaces -----------------------------------------------------------------

    def get_account(self) -> Account:
        """``GET /account``: who the token belongs to (costs nothing)."""
        account = Account.from_api(self._get(protocol.ACCOUNT))
        if self._workspace_id is None:
            self._workspace_id = account.default_workspace_id
        return account

    def workspace_id(self) -> str:
        """The configured workspace, else the account's default one (``GET /account``, once)."""
        if self._workspace_id is None:
            self.get_account()
        if not self._workspace_id:
            raise DifyOpenAPIInputError(["no workspace_id configured and the account has no default workspace"])
        return self._workspace_id

    def list_workspaces(self) -> list[Workspace]:
        """``GET /workspaces``, every page (paginated envelope or the older ``{"workspaces": [...]}``)."""
        out: list[Workspace] = []
        page = 1
        while True:
            items, more = self._page(self._get(protocol.WORKSPACES, {"page": page, "limit": PAGE_SIZE}), "workspaces")
            out.extend(Workspace.from_api(w) for w in items)
            if not more:
                return out
            page += 1

    # -- apps -----------------------------------------------------------------------------------

    def _pages(self, endpoint: Endpoint, params: dict[str, Any], what: str) -> Iterator[Any]:
        page = 1
        while True:
            items, more = self._page(self._get(endpoint, {**params, "page": page, "limit": PAGE_SIZE}), what)
            yield from items
            if not more:
                return
            page += 1

    def list_apps(
        self, *, mode: str | None = None, name: str | None = None, tag: str | None = None
    ) -> list[AppSummary]:
        """``GET /apps`` of the workspace, every page; each filter is checked again on every row
        (``discovery.checked_rows``): a ``tag`` on a server whose rows carry no tags raises."""
        discovery.check_mode(mode)  # before the workspace lookup: nothing is sent for a wrong mode
        workspace = self.workspace_id()
        params = self._apps_params(1, workspace, mode=mode, name=name, tag=tag)
        rows = [AppSummary.from_api(row) for row in self._pages(protocol.APPS, params, "apps")]
        return discovery.checked_rows(rows, mode=mode, name=name, tag=tag, workspace_id=workspace)

    def list_permitted_external_apps(self, *, mode: str | None = None, name: str | None = None) -> list[AppSummary]:
        """``GET /permitted-external-apps`` (external SSO subjects, Enterprise), every page."""
        params = self._apps_params(1, None, mode=mode, name=name)
        rows = [AppSummary.from_api(row) for row in self._pages(protocol.PERMITTED_APPS, params, "apps")]
        return discovery.checked_rows(rows, mode=mode, name=name)

    def describe_app(self, app: str, *, refresh: bool = False) -> AppDescription:
        """``GET /apps/{id}`` (legacy ``/describe``): info, ``parameters`` and ``input_schema`` (cached)."""
        app_id = self.resolve_app(app).id if not self._is_id(app) else app
        if not refresh and app_id in self._descriptions:
            return self._descriptions[app_id]
        if self._probe.generation is None:
            self.detect_generation(app_id)
            body = self._probe.described
            self._probe.described = None
            if body is None:  # decided by /_version: read the describe now
                body = self._get(*self._describe_request(str(self._probe.generation), app_id))
        else:
            body = self._get(*self._describe_request(self._probe.generation, app_id))
        description = AppDescription.from_api(body, app_id)
        self._descriptions[app_id] = description
        self._resolved.setdefault(app_id, ResolvedApp(app_id, description.mode, description.name))
        return description

    def resolve_app(self, app: str) -> ResolvedApp:
        """An app id or exact name -> its id and mode (cached); several or no matches raise, listing them."""
        if app in self._resolved:
            return self._resolved[app]
        if self._is_id(app):
            description = self.describe_app(app)
            resolved = ResolvedApp(description.id, description.mode, description.name)
        else:
            resolved = self._pick_app(app, self.list_apps(name=app))
        self._resolved[app] = resolved
        return resolved

    # -- runs -----------------------------------------------------------------------------------

    def prepare_run(
        self, app: str, inputs: Mapping[str, Any] | None, *, query: str | None = None, validate: bool = True
    ) -> tuple[ResolvedApp, InputPlan]:
        """Resolve ``app`` and check ``inputs`` against its ``input_schema`` (nothing sent but reads)."""
        resolved = self.resolve_app(app)
        description = self.describe_app(resolved.id)
        resolved = ResolvedApp(resolved.id, description.mode or resolved.mode, description.name or resolved.name)
        plan = check_inputs(inputs, description, query=query) if validate else InputPlan(values=dict(inputs or {}))
        return resolved, plan

    def run_app(
        self,
        app: str,
        inputs: Mapping[str, Any] | None,
        *,
        query: str | None = None,
        files: list[Any] | None = None,
        conversation_id: str | None = None,
        workflow_id: str | None = None,
        validate: bool = True,
    ) -> Iterator[WorkflowEvent]:
        """Run ``app`` (id or exact name) and stream its events up to ``workflow_finished`` or
        ``workflow_paused``.

        Nothing is read or sent before the first event is asked for (as with the async client,
        which cannot read before it is iterated); then the inputs are checked and the route
        picked before the run request goes out, so their errors reach the caller's loop.
        """
        resolved, plan = self.prepare_run(app, inputs, query=query, validate=validate)
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
                stream, response = self._open_stream(endpoint, **request)
                yield from self._read_stream(stream, response, endpoint, tracker)
            except _CUT as exc:
                self._on_cut(resolved, tracker, exc)
        if not tracker.done:
            self._on_cut(resolved, tracker, None)
            yield from self._reattach(resolved, tracker)

    def _reattach(self, app: ResolvedApp, tracker: OpenAPIEventTracker) -> Iterator[WorkflowEvent]:
        deadline, budget = self._attach_budget()
        idle = 0
        while not tracker.done:
            if time.monotonic() > deadline:
                raise self._attach_gave_up(tracker, "max_stream_seconds passed")
            before = len(tracker.events_seen)
            try:
                yield from self._events(app.id, str(tracker.run_id), tracker, include_state_snapshot=True)
            except _CUT as exc:
                log.warning("Re-attached Dify stream of run %s broke (%s)", tracker.run_id, exc)
            if tracker.done:
                return
            idle = self._attach_progress(tracker, before, idle, budget)
            time.sleep(self.config.poll_interval)

    def _events(
        self, app_id: str, run_id: str, tracker: OpenAPIEventTracker, *, include_state_snapshot: bool
    ) -> Iterator[WorkflowEvent]:
        endpoint = protocol.events_endpoint(app_id, run_id)
        params = protocol.events_params(
            include_state_snapshot=include_state_snapshot, continue_on_pause=tracker.continue_on_pause
        )
        stream, response = self._open_stream(endpoint, params=params)
        yield from self._read_stream(stream, response, endpoint, tracker)

    def task_events(
        self,
        app: str,
        workflow_run_id: str,
        *,
        include_state_snapshot: bool = False,
        continue_on_pause: bool = False,
    ) -> Iterator[WorkflowEvent]:
        """``GET /apps/{id}/tasks/{run_id}/events``: a run's events (live; replayed with the snapshot).

        Opening the stream is a read (429 and 502/503/504/524 retried with backoff). A stream that
        breaks or ends before ``workflow_finished`` (or a pause) raises
        ``DifyOpenAPIStreamIncompleteError``: the run may still be going. Nothing is read before
        the first event is asked for.
        """
        resolved = self.resolve_app(app)
        self.detect_generation(resolved.id)
        tracker = self._tracker(protocol.EVENTS, run_id=workflow_run_id, continue_on_pause=continue_on_pause)
        try:
            yield from self._events(
                resolved.id, workflow_run_id, tracker, include_state_snapshot=include_state_snapshot
            )
        except TransportError as exc:
            if isinstance(exc, OutcomeUnknownError):  # e.g. idle past idle_timeout: already says so
                raise
            raise self._events_incomplete(tracker, exc) from None
        if not tracker.done:
            raise self._events_incomplete(tracker, None)

    def follow_run(self, app: str, workflow_run_id: str, *, task_id: str | None = None) -> Iterator[WorkflowEvent]:
        """Follow a run started elsewhere (another process, an earlier try) to its end or pause.

        Each (re-)attach asks for the state snapshot, so what happened while nobody listened is
        replayed (each event counted once); a cut re-attaches within ``max_stream_seconds``, as a
        run's own stream does. Nothing is ever sent that could start a run. ``task_id`` (when the
        caller saw it) is the run's task: the frame of an already finished run names none (C3).
        Nothing is read before the first event is asked for.
        """
        resolved = self.resolve_app(app)
        self.detect_generation(resolved.id)
        tracker = self._tracker(protocol.EVENTS, run_id=workflow_run_id, task_id=task_id)
        yield from self._reattach(resolved, tracker)

    def stop_task(self, app: str, task_id: str, *, workflow_run_id: str | None = None) -> WorkflowRun | None:
        """Stop a task, then (with the run id, for apps with events) read what became of the run."""
        resolved = self.resolve_app(app)
        generation = self.detect_generation(resolved.id)
        self._get(protocol.stop_endpoint(generation, resolved.id, task_id))
        last: WorkflowEvent | None = None
        if workflow_run_id and resolved.mode in protocol.EVENT_MODES:
            short = dataclasses.replace(self.config, max_stream_seconds=STOP_WAIT_SECONDS)
            with DifyOpenAPIClient(short) as reader:
                reader._probe, reader._resolved = self._probe, self._resolved
                try:
                    # the snapshot ends a paused run's stream at its pause (a stop leaves it paused, C6)
                    for event in reader.task_events(resolved.id, workflow_run_id, include_state_snapshot=True):
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

    def get_form(self, app: str, form_token: str) -> HumanInputForm:
        """A paused run's human-input form (content, fields, actions, expiry)."""
        resolved = self.resolve_app(app)
        generation = self.detect_generation(resolved.id)
        return HumanInputForm.from_api(
            self._get(protocol.form_endpoint(generation, resolved.id, form_token)), form_token
        )

    def submit_form(self, app: str, form_token: str, action: str, inputs: Mapping[str, Any] | None = None) -> Any:
        """Answer a form with ``action`` (checked against the form's actions first); the run resumes."""
        form = self.get_form(app, form_token)
        self._form_action_ok(form, action)
        resolved = self.resolve_app(app)
        endpoint = protocol.submit_endpoint(str(self._probe.generation), resolved.id, form_token)
        return self._call(endpoint, lambda: {"json": {"action": action, "inputs": dict(inputs or {})}})

    # -- sessions -------------------------------------------------------------------------------

    def list_sessions(self) -> list[Session]:
        """``GET /account/sessions``: the account's tokens (one per device login), every page."""
        return [Session.from_api(s) for s in self._pages(protocol.SESSIONS, {}, "sessions")]

    def revoke_session(self, session_id: str | None = None) -> Any:
        """``DELETE /account/sessions/{id}``, or this token's own session (``/self``) without an id."""
        endpoint = protocol.REVOKE_SESSION.format(session_id=session_id) if session_id else protocol.REVOKE_SELF
        return self._call(endpoint)

    # -- device flow ----------------------------------------------------------------------------

    def start_device_flow(self, *, client_id: str = "difyctl", device_label: str) -> DeviceCode:
        """``POST /oauth/device/code``: show ``user_code`` at ``verification_uri``, then ``poll_device_token``."""
        answer = self._call(
            protocol.DEVICE_CODE, lambda: {"json": {"client_id": client_id, "device_label": device_label}}
        )
        return DeviceCode.from_api(answer, client_id)

    def poll_device_token(self, code: DeviceCode, *, sleep: Any = time.sleep) -> DeviceToken:
        """Poll until the user approves (token, ``expires_at``, account) or the login ends without one."""
        poll = DevicePoll(code)
        while True:
            if poll.expired():
                raise poll.timeout_error()
            sleep(poll.wait())
            try:
                token = poll.on_answer(200, self._call(protocol.DEVICE_TOKEN, lambda: {"json": poll.request()}))
            except DifyOpenAPIHTTPError as exc:
                error = "slow_down" if exc.status_code == 429 else exc.code
                token = poll.on_answer(exc.status_code or 400, {"error": error})
            if token is not None:
                return token


class AsyncDifyOpenAPIClient(DifyOpenAPIClientBase, AsyncHTTP):
    """Asynchronous twin of ``DifyOpenAPIClient`` (for triggers); use ``async with`` or ``await aclose()``."""

    async def _read(self, endpoint: Endpoint, params: dict[str, Any] | None = None) -> tuple[httpx.Response, Any]:
        from tenacity import AsyncRetrying

        from docify_provider._core.retries import retry_kwargs

        async for attempt in AsyncRetrying(**retry_kwargs(self.config, endpoint)):
            with attempt:
                response = await self._request(endpoint, params=params)
                return response, self._json(response, endpoint)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _get(self, endpoint: Endpoint, params: dict[str, Any] | None = None) -> Any:
        return (await self._read(endpoint, params))[1]

    async def detect_generation(self, app_id: str) -> str:
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

    async def _probe_describe(self, app_id: str) -> Any:
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
            return body

    async def get_account(self) -> Account:
        account = Account.from_api(await self._get(protocol.ACCOUNT))
        if self._workspace_id is None:
            self._workspace_id = account.default_workspace_id
        return account

    async def workspace_id(self) -> str:
        if self._workspace_id is None:
            await self.get_account()
        if not self._workspace_id:
            raise DifyOpenAPIInputError(["no workspace_id configured and the account has no default workspace"])
        return self._workspace_id

    async def _pages(self, endpoint: Endpoint, params: dict[str, Any], what: str) -> list[Any]:
        out: list[Any] = []
        page = 1
        while True:
            items, more = self._page(await self._get(endpoint, {**params, "page": page, "limit": PAGE_SIZE}), what)
            out.extend(items)
            if not more:
                return out
            page += 1

    async def list_workspaces(self) -> list[Workspace]:
        return [Workspace.from_api(w) for w in await self._pages(protocol.WORKSPACES, {}, "workspaces")]

    async def list_apps(
        self, *, mode: str | None = None, name: str | None = None, tag: str | None = None
    ) -> list[AppSummary]:
        discovery.check_mode(mode)
        workspace = await self.workspace_id()
        params = self._apps_params(1, workspace, mode=mode, name=name, tag=tag)
        rows = [AppSummary.from_api(row) for row in await self._pages(protocol.APPS, params, "apps")]
        return discovery.checked_rows(rows, mode=mode, name=name, tag=tag, workspace_id=workspace)

    async def list_permitted_external_apps(
        self, *, mode: str | None = None, name: str | None = None
    ) -> list[AppSummary]:
        params = self._apps_params(1, None, mode=mode, name=name)
        rows = [AppSummary.from_api(row) for row in await self._pages(protocol.PERMITTED_APPS, params, "apps")]
        return discovery.checked_rows(rows, mode=mode, name=name)

    async def describe_app(self, app: str, *, refresh: bool = False) -> AppDescription:
        app_id = (await self.resolve_app(app)).id if not self._is_id(app) else app
        if not refresh and app_id in self._descriptions:
            return self._descriptions[app_id]
        if self._probe.generation is None:
            await self.detect_generation(app_id)
            body = self._probe.described
            self._probe.described = None
            if body is None:
                body = await self._get(*self._describe_request(str(self._probe.generation), app_id))
        else:
            body = await self._get(*self._describe_request(self._probe.generation, app_id))
        description = AppDescription.from_api(body, app_id)
        self._descriptions[app_id] = description
        self._resolved.setdefault(app_id, ResolvedApp(app_id, description.mode, description.name))
        return description

    async def resolve_app(self, app: str) -> ResolvedApp:
        if app in self._resolved:
            return self._resolved[app]
        if self._is_id(app):
            description = await self.describe_app(app)
            resolved = ResolvedApp(description.id, description.mode, description.name)
        else:
            resolved = self._pick_app(app, await self.list_apps(name=app))
        self._resolved[app] = resolved
        return resolved

    async def prepare_run(
        self, app: str, inputs: Mapping[str, Any] | None, *, query: str | None = None, validate: bool = True
    ) -> tuple[ResolvedApp, InputPlan]:
        resolved = await self.resolve_app(app)
        description = await self.describe_app(resolved.id)
        resolved = ResolvedApp(resolved.id, description.mode or resolved.mode, description.name or resolved.name)
        plan = check_inputs(inputs, description, query=query) if validate else InputPlan(values=dict(inputs or {}))
        return resolved, plan

    async def run_app(
        self,
        app: str,
        inputs: Mapping[str, Any] | None,
        *,
        query: str | None = None,
        files: list[Any] | None = None,
        conversation_id: str | None = None,
        workflow_id: str | None = None,
        validate: bool = True,
    ) -> AsyncIterator[WorkflowEvent]:
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
            await asyncio.sleep(self.config.poll_interval)

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
        resolved = await self.resolve_app(app)
        await self.detect_generation(resolved.id)
        tracker = self._tracker(protocol.EVENTS, run_id=workflow_run_id, continue_on_pause=continue_on_pause)
        try:
            async for event in self._events(
                resolved.id, workflow_run_id, tracker, include_state_snapshot=include_state_snapshot
            ):
                yield event
        except TransportError as exc:
            if isinstance(exc, OutcomeUnknownError):
                raise
            raise self._events_incomplete(tracker, exc) from None
        if not tracker.done:
            raise self._events_incomplete(tracker, None)

    async def follow_run(
        self, app: str, workflow_run_id: str, *, task_id: str | None = None
    ) -> AsyncIterator[WorkflowEvent]:
        """The async :meth:`DifyOpenAPIClient.follow_run` (snapshot on every attach, re-attach on a cut)."""
        resolved = await self.resolve_app(app)
        await self.detect_generation(resolved.id)
        tracker = self._tracker(protocol.EVENTS, run_id=workflow_run_id, task_id=task_id)
        async for event in self._reattach(resolved, tracker):
            yield event

    async def stop_task(self, app: str, task_id: str, *, workflow_run_id: str | None = None) -> WorkflowRun | None:
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
                except DifyOpenAPIError as exc:
                    log.warning(
                        "Dify answered success to the stop of task %s; run %s not seen ending (%s)",
                        task_id,
                        workflow_run_id,
                        exc,
                    )
        return self._stopped(workflow_run_id, task_id, last)

    async def get_form(self, app: str, form_token: str) -> HumanInputForm:
        resolved = await self.resolve_app(app)
        generation = await self.detect_generation(resolved.id)
        body = await self._get(protocol.form_endpoint(generation, resolved.id, form_token))
        return HumanInputForm.from_api(body, form_token)

    async def submit_form(self, app: str, form_token: str, action: str, inputs: Mapping[str, Any] | None = None) -> Any:
        form = await self.get_form(app, form_token)
        self._form_action_ok(form, action)
        resolved = await self.resolve_app(app)
        endpoint = protocol.submit_endpoint(str(self._probe.generation), resolved.id, form_token)
        return await self._call(endpoint, lambda: {"json": {"action": action, "inputs": dict(inputs or {})}})

    async def list_sessions(self) -> list[Session]:
        return [Session.from_api(s) for s in await self._pages(protocol.SESSIONS, {}, "sessions")]

    async def revoke_session(self, session_id: str | None = None) -> Any:
        endpoint = protocol.REVOKE_SESSION.format(session_id=session_id) if session_id else protocol.REVOKE_SELF
        return await self._call(endpoint)

    async def start_device_flow(self, *, client_id: str = "difyctl", device_label: str) -> DeviceCode:
        body = {"client_id": client_id, "device_label": device_label}
        return DeviceCode.from_api(await self._call(protocol.DEVICE_CODE, lambda: {"json": body}), client_id)

    async def poll_device_token(
        self, code: DeviceCode, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> DeviceToken:
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
