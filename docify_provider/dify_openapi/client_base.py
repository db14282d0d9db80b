"""Dify user-scoped OpenAPI: what both clients share, once (sans-IO).

``DifyOpenAPIClientBase`` builds the OpenAPI's requests and reads its answers over ``HTTPBase``,
and holds each client's caches (path generation, default workspace, app descriptions and
resolutions); ``_async/client.py`` (hand-written) and ``_sync/client.py`` (generated from it by
``scripts/unasync.py``) only drive the I/O. The other sans-IO modules are ``protocol``,
``inputs``, ``device``, ``discovery`` and ``stream``. Callers import from ``dify_openapi.client``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from typing import TYPE_CHECKING, Any

import httpx

from docify_provider._core.config import reveal
from docify_provider._core.errors import OutcomeUnknownError, ProviderError, TransportError
from docify_provider._core.files import open_file_source
from docify_provider._core.transport_base import HTTPBase
from docify_provider.dify.client_base import DifyClientBase, normalize_inputs
from docify_provider.dify.inputs import InputPlan
from docify_provider.dify.models import UploadedFile, WorkflowEvent, WorkflowRun
from docify_provider.dify_openapi import discovery, protocol
from docify_provider.dify_openapi.config import DifyOpenAPIClientConfig
from docify_provider.dify_openapi.errors import (
    DifyOpenAPIAppLookupError,
    DifyOpenAPIInputError,
    DifyOpenAPIProtocolError,
    DifyOpenAPIStreamIncompleteError,
    error_for_status,
)
from docify_provider.dify_openapi.models import AppDescription, AppSummary, HumanInputForm, ResolvedApp
from docify_provider.dify_openapi.stream import NO_LOOKUP, OpenAPIEventTracker

if TYPE_CHECKING:
    from docify_provider._core.endpoints import Endpoint

#: The public module's name, whichever file logs (log configuration keys on it).
log = logging.getLogger("docify_provider.dify_openapi.client")

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
        return error_for_status(status, body, headers, endpoint, self.config)

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

    @staticmethod
    def _named(app: str, rows: list[AppSummary]) -> bool:
        """Some row has exactly the name ``app`` (else every app is listed for the close names)."""
        return any(r.name == app for r in rows)

    def _pick_app(self, app: str, rows: list[AppSummary]) -> ResolvedApp:
        """The one app named exactly ``app`` among ``rows``; none (``rows`` is then every app of the
        workspace, for close names) or several raise, naming what to pass instead."""
        exact = [r for r in rows if r.name == app]
        if len(exact) == 1:
            return ResolvedApp(exact[0].id, exact[0].mode, exact[0].name)
        if exact:
            listing = ", ".join(f"{r.id} ({r.mode})" for r in exact[:20])
            why = f"app: {app!r} names {len(exact)} apps ({listing}); pass the app id instead"
            candidates = exact
        else:
            why, candidates = discovery.no_such_app("app", app, rows)
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

    @staticmethod
    def _incomplete(tracker: OpenAPIEventTracker, message: str) -> ProviderError:
        """A run whose stream could not be followed to its end: outcome unknown, with the run's id
        and the events seen, so that a human can find it in the console (never re-sent)."""
        return DifyOpenAPIStreamIncompleteError(
            message,
            endpoint=tracker.endpoint,
            run_id=tracker.run_id,
            session_id=tracker.run_id,
            events_seen=tracker.events_seen,
        )

    def _no_reattach(self, app: ResolvedApp, tracker: OpenAPIEventTracker, cause: Exception) -> ProviderError:
        return self._incomplete(
            tracker,
            f"The stream of Dify run {tracker.run_id} broke ({cause}) and a {app.mode} app cannot be re-attached "
            "(the events route serves workflow and advanced-chat apps only)."
            + NO_LOOKUP.replace("whose id was never seen ", "")
            + " It is not re-sent.",
        )

    def _attach_gave_up(self, tracker: OpenAPIEventTracker, why: str) -> ProviderError:
        return self._incomplete(
            tracker,
            f"Dify run {tracker.run_id}: re-attaching gave up ({why}) after {len(tracker.events_seen)} event(s). "
            "The run may still be going and was billed; it is not re-sent.",
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
        return self._incomplete(
            tracker,
            f"The events stream of Dify run {tracker.run_id} {how} before the run's final event, after "
            f"{len(tracker.events_seen)} event(s). The run may still be going: read its events again "
            "(task_events, include_state_snapshot=True) or look in the Dify console. Nothing was re-sent.",
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
