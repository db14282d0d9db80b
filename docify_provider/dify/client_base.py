"""Dify Workflow Service API: what both clients share, once (sans-IO).

``DifyClientBase`` builds Dify's requests and reads its answers over ``HTTPBase``;
``_async/client.py`` (hand-written) and ``_sync/client.py`` (generated from it by
``scripts/unasync.py``) only drive the I/O. The stream verdict and run recovery rules are
``dify.stream``'s (``DifyEventTracker``, ``RunRecovery``). Callers import from ``dify.client``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from docify_provider._core.config import DEFAULT_USER
from docify_provider._core.errors import OutcomeUnknownError, ProviderError, TransportError
from docify_provider._core.files import open_file_source
from docify_provider._core.transport_base import HTTPBase
from docify_provider.dify import protocol
from docify_provider.dify.config import DifyClientConfig
from docify_provider.dify.errors import DifyHTTPError, DifyProtocolError, DifyRunTimeoutError
from docify_provider.dify.models import UploadedFile, WorkflowLog, WorkflowRun
from docify_provider.dify.stream import DifyEventTracker, RunRecovery

if TYPE_CHECKING:
    from docify_provider._core.endpoints import Endpoint
    from docify_provider._core.files import FileSource

#: The public module's name, whichever file logs (log configuration keys on it).
log = logging.getLogger("docify_provider.dify.client")

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

    def _upload_parts(
        self, source: Any, *, user: str | None, file_name: str | None, stack: contextlib.ExitStack
    ) -> tuple[FileSource, Callable[[], dict[str, Any]]]:
        """Check ``source`` (before any request); return it and the per-attempt upload kwargs."""
        upload = open_file_source(source, file_name=file_name, errors=self.errors)
        return upload, self._upload_kwargs(upload, {"user": self._user(user)}, stack)

    def _tracker(
        self, endpoint: Endpoint, *, run_id: str | None = None, task_id: str | None = None, **options: Any
    ) -> DifyEventTracker:
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


#: What cuts a stream without settling the run: the clients re-attach (or look the run up).
_CUT = (OutcomeUnknownError, TransportError)
