"""HTTP handling of the Dify emulator: the Workflow Service API under ``/v1`` and tool files.

Plumbing (records, request faults, body I/O) is the shared
:class:`~docify_provider.testing.base_handler.EmulatorRequestHandler`. Error bodies are
Dify's ``{"code": "<snake_code>", "message": ..., "status": N}``.
"""

from __future__ import annotations

import json
import queue
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from docify_provider.testing.base_handler import EmulatorRequestHandler, reason
from docify_provider.testing.dify import current, engine
from docify_provider.testing.dify.apps import DifyApp, parameters_body
from docify_provider.testing.dify.files import verify
from docify_provider.testing.dify.runs import DifyRun
from docify_provider.testing.dify.streaming import TERMINAL, dify_stream, pump
from docify_provider.testing.dify.validation import extension_of, file_type_of, invalid
from docify_provider.testing.errors import RequestError
from docify_provider.testing.records import UploadRecord
from docify_provider.testing.uploads import parse_multipart

if TYPE_CHECKING:
    from docify_provider.testing.dify.emulator import DifyEmulator

MAX_JSON_BODY = 1024 * 1024
MIB = 1024 * 1024
_ROUTES = {
    "/v1/info": ("info", "GET"),
    "/v1/parameters": ("parameters", "GET"),
    "/v1/files/upload": ("upload", "POST"),
    "/v1/workflows/run": ("run", "POST"),
    "/v1/workflows/logs": ("logs", "GET"),
}
#: Routes only the newest server has (C6); 404 with ``server_profile="documented"``.
_CURRENT_ROUTES = {"/v1/meta": ("info", "GET"), "/v1/site": ("info", "GET")}
_LOG_STATUSES = ("succeeded", "failed", "stopped")
_GATEWAY_BODY = "<html><head><title>{status}</title></head><body>error code: {status}</body></html>"


def snake(text: str) -> str:
    return "_".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


def _user(body: Mapping[str, Any]) -> str:
    user = body.get("user")
    if not isinstance(user, str) or not user:
        raise invalid("Arg user must be provided.")
    return user


def _iso(name: str, value: str) -> float:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"{name}: invalid ISO 8601 datetime") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()


def _int(query: Mapping[str, str], name: str, default: int, high: int) -> int:
    try:
        value = int(query.get(name, default))
    except ValueError:
        raise invalid(f"{name} must be an integer") from None
    if not 1 <= value <= high:
        raise invalid(f"{name} must be between 1 and {high}")
    return value


class DifyRequestHandler(EmulatorRequestHandler):
    """Serves the Dify Workflow Service API (``/v1``) and output files (``/files/tools``)."""

    server_version = "DifyEmulator/1.0"
    _body: Any = None

    @property
    def emulator(self) -> DifyEmulator:
        return self.server.emulator  # type: ignore[attr-defined]

    def _error_body(self, status: int, message: str, code: str | None) -> dict[str, Any]:
        return {"code": code or snake(reason(status)), "message": message, "status": status}

    # routing ------------------------------------------------------------------------------
    def _route(self, path: str) -> tuple[str, str]:
        self._body = None
        parts = path.strip("/").split("/")
        allowed = {"GET"}
        if path in _ROUTES or (path in _CURRENT_ROUTES and self.emulator.current):
            endpoint, method = _ROUTES.get(path) or _CURRENT_ROUTES[path]
            allowed = {method}
        elif len(parts) == 4 and parts[:3] == ["v1", "workflows", "run"]:
            endpoint = "run_detail"
        elif len(parts) == 4 and parts[:2] == ["v1", "workflows"] and parts[3] == "run":
            endpoint, allowed = "run", {"POST"}
        elif len(parts) == 5 and parts[:3] == ["v1", "workflows", "tasks"] and parts[4] == "stop":
            endpoint, allowed = "stop", {"POST"}
        elif len(parts) == 4 and parts[:2] == ["v1", "workflow"] and parts[3] == "events":
            endpoint = "events"
        elif len(parts) == 4 and parts[:3] == ["v1", "form", "human_input"]:
            endpoint, allowed = "form", {"GET", "POST"}
        elif len(parts) == 3 and parts[:2] == ["files", "tools"]:
            endpoint, allowed = "download", {"GET", "HEAD"}
        else:
            raise RequestError("The requested URL was not found on the server.", 404, "not_found")
        if self.command not in allowed:
            self._extra_headers = {"Allow": ", ".join(sorted(allowed))}
            raise RequestError("The method is not allowed for the requested URL.", 405, "method_not_allowed")
        if endpoint == "run" and self._peek_body().get("response_mode") == "streaming":
            endpoint = "stream"
        return endpoint, path

    def _peek_body(self) -> Mapping[str, Any]:
        """Read the JSON body now (the endpoint, run or stream, depends on it); {} if unreadable."""
        assert self._reader is not None
        raw = self._reader.read_all(MAX_JSON_BODY)
        try:
            self._body = json.loads(raw)
        except ValueError:
            self._body = ValueError
        return self._body if isinstance(self._body, Mapping) else {}

    def _json(self) -> Mapping[str, Any]:
        if self._body is None:
            self._peek_body()
        if not isinstance(self._body, Mapping):
            raise invalid("Invalid JSON payload received or JSON payload is empty.")
        return self._body

    def _query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}

    def _authenticate(self) -> tuple[str, DifyApp]:
        scheme, _, token = (self.headers.get("Authorization") or "").strip().partition(" ")
        binding = self.emulator.state.binding(self._key_fp)
        if self._key_fp is None or binding is None:
            self._extra_headers["WWW-Authenticate"] = 'Bearer realm="api"'
            if scheme.lower() != "bearer" or not token.strip():
                raise RequestError("Authorization header must be provided and start with 'Bearer'", 401)
            raise RequestError("Access token is invalid", 401)
        if binding.forbidden:
            raise RequestError("The app's API service has been disabled.", 403)
        app = self.emulator.apps.get(binding.scenario_code)
        if app is None:
            raise RequestError("The app no longer exists.", 403)
        return self._key_fp, app

    # endpoints ----------------------------------------------------------------------------
    def _do_info(self, path: str) -> None:
        app = self._authenticate()[1]
        if path == "/v1/meta":
            self._send_json(200, current.meta_body())
        elif path == "/v1/site":
            self._send_json(200, current.site_body(app))
        else:
            self._send_json(200, app.info())

    def _do_parameters(self, _: str) -> None:
        app = self._authenticate()[1]
        self._send_json(200, parameters_body(app, self.emulator.system_parameters))

    def _do_upload(self, _: str) -> None:
        key_fp, _app = self._authenticate()
        assert self._reader is not None
        emu = self.emulator
        limits = emu.system_parameters
        ctype = self.headers.get("Content-Type") or ""
        if not ctype.lower().startswith("multipart/form-data"):
            raise RequestError("Please upload your file.", 400, "no_file_uploaded")
        biggest = max(limits[k] for k in ("file_size_limit", "image_file_size_limit", "video_file_size_limit"))
        try:
            parsed = parse_multipart(self._reader, ctype, int(biggest * MIB) + MIB)
        except RequestError as exc:
            if exc.status == 413:
                raise RequestError(f"File size exceeded. {exc.message}", 413, "file_too_large") from None
            raise RequestError(exc.message, exc.status, "bad_request") from None
        if parsed.file_parts == 0:
            raise RequestError("Please upload your file.", 400, "no_file_uploaded")
        # Dify checks ``len(request.files)``: distinct file field names (C6), where the
        # documents suggest every part named ``file`` counts.
        many = len(parsed.file_fields) > 1 if emu.current else parsed.file_parts > 1
        if many:
            raise RequestError("Only one file is allowed.", 400, "too_many_files")
        if not parsed.file_name:
            raise RequestError("The specified filename does not exist.", 400, "filename_not_exists_error")
        if not parsed.content_type:
            raise RequestError("File type not allowed.", 415, "unsupported_file_type")
        ext = extension_of(parsed.file_name)
        file_type = file_type_of(ext)
        limit_mb = limits.get(f"{file_type}_file_size_limit", limits["file_size_limit"])
        if parsed.size > limit_mb * MIB:
            message = f"File size exceeded. {parsed.file_name} > {limit_mb} MB"
            raise RequestError(message, 413, "file_too_large")
        user = parsed.user or "DEFAULT-USER"
        record = UploadRecord(
            key_fingerprint=key_fp,
            user=user,
            file_name=parsed.file_name,
            size=parsed.size,
            file_type=file_type,
            sha256=parsed.sha256,
            upload_file_oid=str(uuid.uuid4()),
            content_type=parsed.content_type,
            head=bytes(parsed.head),
        )
        emu.state.add_upload(record)
        emu.state.count("upload", key_fp, user)
        body = {
            "id": record.upload_file_oid,
            "name": record.file_name,
            "size": record.size,
            "extension": ext.lstrip("."),
            "mime_type": parsed.content_type.split(";")[0].strip(),
            "created_by": emu.end_user_id(user),
            "created_at": int(time.time()),
            "preview_url": None,
            "source_url": None,
            "original_url": None,
            "user_id": None,
            "tenant_id": emu.tenant_id,
            "conversation_id": None,
            "file_key": None,
        }
        self._send_json(201, body)

    def _start_run(self, subscribe: bool = False) -> tuple[DifyRun, queue.SimpleQueue[dict[str, Any]] | None]:
        """Authenticate, validate, count the run as started and execute it in the background."""
        key_fp, app = self._authenticate()
        body = self._json()
        parts = urlsplit(self.path).path.strip("/").split("/")
        if len(parts) == 4:
            try:
                uuid.UUID(parts[2])
            except ValueError:
                raise RequestError("Invalid workflow ID format", 400, "bad_request") from None
            if parts[2] != app.workflow_id:
                raise RequestError("Workflow not found", 404, "not_found")
        if body.get("response_mode") not in (None, "blocking", "streaming"):
            raise invalid("response_mode must be 'blocking' or 'streaming'")
        if body.get("files") is not None and not isinstance(body["files"], list):
            raise invalid("files must be a list")
        user = _user(body)
        emu = self.emulator
        if emu.max_active_requests and emu.active_runs(app.code) >= emu.max_active_requests:
            message = (
                "Too many requests. Please try again later. The current maximum concurrent requests "
                f"allowed is {emu.max_active_requests}."
            )
            raise RequestError(message, 429, "too_many_requests")
        if "inputs" not in body:
            raise invalid("inputs: Field required")
        # The newest server validates a streaming run's inputs in its worker (C1): file mappings
        # are still built (and refused) here, everything else is answered in-band.
        in_worker = emu.current and self._endpoint == "stream"
        values, files, rejected = current.check_inputs(
            app, body["inputs"], lambda oid: emu.state.uploaded_file(None, oid), in_worker=in_worker
        )
        fault = emu.state.take_fault(self._endpoint or "run", key_fp, "run")
        rejected = current.rejection(rejected, fault)
        if rejected is not None:  # no run is started (C1: validation comes before the graph)
            raise current.WorkerRejection(rejected) if in_worker else invalid(rejected)
        run = DifyRun(app=app, key_fp=key_fp, user=user, inputs=values, files=files, fault=fault)
        run.end_user_id = emu.end_user_id(user)
        return self._launch(run, user, subscribe=subscribe)

    def _launch(
        self, run: DifyRun, counted_for: str, *, subscribe: bool
    ) -> tuple[DifyRun, queue.SimpleQueue[dict[str, Any]] | None]:
        """Count ``run`` as started (for its key and ``counted_for``) and execute it in the
        background; with ``subscribe`` the channel of its events (subscribed before it starts).
        The run follows the emulator's ``server_profile`` on both APIs (one server code path
        runs them: run detail ``inputs``, a paused run's stop, the resumed node, C6)."""
        emu = self.emulator
        run.current = emu.current
        emu.state.add_run(run)
        emu.state.count("started", run.key_fp, counted_for)
        channel = run.subscribe() if subscribe else None
        engine.start(emu, run)
        return run, channel

    def _do_run(self, _: str) -> None:
        run, channel = self._start_run(subscribe=True)
        assert channel is not None
        emu = self.emulator
        fault = run.fault
        try:
            if fault is not None and fault.kind == "timeout_after_start":
                run.unsubscribe(channel)
                if emu.stopping.wait(float(fault.seconds or 0)):
                    raise ConnectionAbortedError("emulator stopping")
                status = int(fault.status or 524)
                page = _GATEWAY_BODY.format(status=status).encode()
                self._send(status, page, "text/html; charset=UTF-8")
                return
            while True:
                try:
                    event = channel.get(timeout=0.2)
                except queue.Empty:
                    if emu.stopping.is_set():
                        raise ConnectionAbortedError("emulator stopping") from None
                    continue
                if event.get("event") == "error" and run.current:
                    self._send_json(*current.pipeline_error_body(event))  # C2: an HTTP error
                    return
                if event.get("event") in (*TERMINAL, "error"):
                    break
        finally:
            run.unsubscribe(channel)
        if run.ended or run.status == "paused":
            self._send_json(200, self._outgoing(run.blocking_body()), ensure_ascii=True)

    def _stream_headers(self, *extra: tuple[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        for name, value in extra:
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _relay(self, run: DifyRun, channel: queue.SimpleQueue[dict[str, Any]], terminal: frozenset[str]) -> None:
        emu = self.emulator
        stream = dify_stream(self.wfile.write, emu.ping_interval, emu.stopping)
        try:
            outcome = pump(
                stream,
                channel,
                ping_interval=emu.ping_interval,
                idle_close=emu.idle_close_seconds,
                terminal=terminal,
                fault=self._stream_fault,
                stopping=emu.stopping,
                transform=self._outgoing,
            )
        finally:
            run.unsubscribe(channel)
        if outcome == "abort":
            self._abort()

    _stream_fault = None

    def _outgoing(self, event: dict[str, Any]) -> dict[str, Any]:
        """An event (or a blocking answer) as this API writes it: a current server keys pause
        reasons ``TYPE`` (C4); everything else is unchanged."""
        if self.emulator.current and "reasons" in (event.get("data") or {}):
            return current.upper_case_reasons(event)
        return event

    def _worker_error(self, message: str) -> None:
        """C1: HTTP 200, a ping, the worker's ``error`` frame, then pings only until the idle close
        (or until the client closes it); how the body ended goes to ``emu.worker_error_streams``."""
        emu = self.emulator
        self._stream_headers()
        ending = "client closed"
        try:
            ending = current.send_worker_error(
                self.wfile.write,
                message,
                ping_interval=emu.ping_interval,
                idle_close=emu.idle_close_seconds,
                stopping=emu.stopping,
            )
        finally:
            emu.worker_error_streams.append(ending)

    def _start_stream(self) -> tuple[DifyRun, queue.SimpleQueue[dict[str, Any]]] | None:
        """Start a streaming run subscribed to its events (its faults apply to the stream); None
        when its worker rejected it (C1), the error frame then already answered, on either API."""
        try:
            run, channel = self._start_run(subscribe=True)
        except current.WorkerRejection as exc:
            self._worker_error(exc.message)
            return None
        assert channel is not None
        self._stream_fault = run.fault
        return run, channel

    def _do_stream(self, _: str) -> None:
        started = self._start_stream()
        if started is None:
            return
        run, channel = started
        self._stream_headers()
        self._relay(run, channel, TERMINAL)

    def _app_run(self, app: DifyApp, run_id: str) -> DifyRun:
        run = self.emulator.state.run(run_id)
        if run is None or run.app is not app:
            raise RequestError("Workflow run not found.", 404, "not_found")
        return run

    def _do_run_detail(self, path: str) -> None:
        _, app = self._authenticate()
        self._send_json(200, self._app_run(app, path.rsplit("/", 1)[1]).detail_body())

    def _do_events(self, path: str) -> None:
        key_fp, app = self._authenticate()
        query = self._query()
        user = _user(query)
        self.emulator.state.count("events", key_fp, user)
        run = self._app_run(app, path.split("/")[3])
        if run.user != user:
            raise RequestError("Workflow run not found.", 404, "not_found")
        self._reattach(run, key_fp, query)

    def _reattach(self, run: DifyRun, key_fp: str, query: Mapping[str, str]) -> None:
        """Re-attach to ``run`` (A8, B7): one ``workflow_finished`` frame when it has finished,
        else its live events (a state snapshot first with ``include_state_snapshot``)."""
        self._stream_fault = self.emulator.state.take_fault("events", key_fp, "run")
        snapshot = query.get("include_state_snapshot", "false").lower() == "true"
        channel = run.subscribe_unless_finished(snapshot)
        self._stream_headers(("Cache-Control", "no-cache"), ("Connection", "keep-alive"))
        current_server = self.emulator.current
        if channel is None:
            stream = dify_stream(self.wfile.write, None, self.emulator.stopping)
            frame = run.envelope("workflow_finished", run.finished_data())
            if current_server:  # the newest server's finished-run frame carries the run id as task id (C3)
                frame["task_id"] = run.id
            stream.frame("", json.dumps(frame))
            stream.end()
            return
        continue_on_pause = query.get("continue_on_pause", "false").lower() == "true"
        terminal = TERMINAL
        if continue_on_pause:
            # Documents: closes at workflow_finished. Newest server (C3): nothing is terminal,
            # the body stays open after workflow_finished until the idle close.
            terminal = frozenset() if current_server else frozenset({"workflow_finished"})
        self._relay(run, channel, terminal)

    def _do_stop(self, path: str) -> None:
        key_fp, app = self._authenticate()
        user = _user(self._json())
        emu = self.emulator
        emu.state.count("stop", key_fp, user)
        fault = emu.state.take_fault("stop", key_fp, "run")
        run = emu.state.run_by_task(path.split("/")[4])
        if run is not None and run.app is app and fault is None:
            emu.stop_run(run)
        self._send_json(200, {"result": "success"})

    def _do_logs(self, _: str) -> None:
        _, app = self._authenticate()
        query = self._query()
        page, limit = _int(query, "page", 1, 99999), _int(query, "limit", 20, 100)
        status = query.get("status")
        if status is not None and status not in _LOG_STATUSES:
            raise invalid(f"status must be one of {list(_LOG_STATUSES)}")
        before = _iso("created_at__before", query["created_at__before"]) if "created_at__before" in query else None
        after = _iso("created_at__after", query["created_at__after"]) if "created_at__after" in query else None
        session = query.get("created_by_end_user_session_id")
        # The newest server also filters by account (C6); Service API runs are end users' runs,
        # so no run matches an account. The documented profile ignores the parameter.
        by_account = self.emulator.current and bool(query.get("created_by_account"))
        keyword = query.get("keyword")
        runs = [
            run
            for run in reversed(self.emulator.state.runs())
            if run.app is app
            and not by_account
            and (status is None or run.status == status)
            and (before is None or run.created_at <= before)
            and (after is None or run.created_at >= after)
            and (session is None or run.user == session)
            and (not keyword or keyword.lower() in json.dumps([run.inputs, run.outputs], ensure_ascii=False).lower())
        ]
        chunk = runs[(page - 1) * limit : page * limit]
        body = {
            "page": page,
            "limit": limit,
            "total": len(runs),
            "has_more": page * limit < len(runs),
            "data": [run.log_item() for run in chunk],
        }
        self._send_json(200, body)

    def _do_form(self, path: str) -> None:
        _, app = self._authenticate()
        token = path.rsplit("/", 1)[1]
        emu = self.emulator
        if self.command == "GET":
            self._send_json(200, emu.checked_form(token, app.code).definition())
            return
        body = self._json()
        _user(body)
        emu.submit_form(token, str(body.get("action") or ""), body.get("inputs"), app_code=app.code)
        self._send_json(200, {})

    def _do_download(self, path: str) -> None:
        emu = self.emulator
        file_id = path.rsplit("/", 1)[1].split(".", 1)[0]
        query = self._query()
        signature = (query.get("timestamp", ""), query.get("nonce", ""), query.get("sign", ""))
        if not verify(file_id, *signature, emu.secret, emu.files_access_timeout):
            raise RequestError("Invalid request.", 403, "forbidden")
        attachment = emu.state.attachment(file_id)
        if attachment is None:
            raise RequestError("File not found", 404, "not_found")
        self._serve_attachment(attachment, "text/csv", "inline")
