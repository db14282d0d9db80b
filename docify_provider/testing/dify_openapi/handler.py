"""HTTP handling of the Dify user-scoped OpenAPI emulator (``/openapi/v1``, part B).

It extends the Service-API handler (body reading, SSE relay, re-attach) with the OpenAPI's
routes of both path generations, bearer sessions, workspace membership, the ErrorBody
``{code, message, status, hint?, details?}`` (B3), the raw per-token 429 (B2) and the raw
RFC 8628 device-flow answers (B9). The URL side (path table, catalog, paging) is in ``routes``,
the error answers in ``errors``.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import queue
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from docify_provider.testing.base_handler import DISCONNECTS
from docify_provider.testing.dify import current
from docify_provider.testing.dify.handler import MAX_JSON_BODY, DifyRequestHandler
from docify_provider.testing.dify.runs import DifyRun
from docify_provider.testing.dify.streaming import TERMINAL
from docify_provider.testing.dify.validation import extension_of, file_type_of
from docify_provider.testing.dify_openapi.current import TOKEN_EXPIRED_HINT, UNKNOWN_TOKEN
from docify_provider.testing.dify_openapi.describe import DESCRIBE_FIELDS, app_row, describe
from docify_provider.testing.dify_openapi.device import DeviceError
from docify_provider.testing.dify_openapi.directory import APP_MODES, CHAT_MODES, Account, OpenAPIApp, Session, iso
from docify_provider.testing.dify_openapi.errors import ApiError, RawError, invalid_request, unprocessable
from docify_provider.testing.dify_openapi.routes import catalog, envelope, is_uuid, match, page_of, version_key
from docify_provider.testing.errors import RequestError
from docify_provider.testing.keys import fingerprint
from docify_provider.testing.records import UploadRecord

if TYPE_CHECKING:
    from docify_provider.testing.dify_openapi.emulator import DifyOpenAPIEmulator

MAX_RUN_BODY = 64 * 1024 * 1024
#: Modes whose events route works (B7).
REATTACH_MODES = frozenset({"workflow", "advanced-chat"})
_CHAT_FIELDS = frozenset({"query", "conversation_id", "auto_generate_name"})
_WORKFLOW_FIELDS = frozenset({"inputs", "files", "attachments", "workspace_id", "workflow_id"})
_OLD_RUN_FIELDS = frozenset(
    {"inputs", "query", "files", "conversation_id", "auto_generate_name", "workflow_id", "workspace_id"}
)
_CHAT_TERMINAL = frozenset({"message_end", "workflow_paused"})


class OpenAPIRequestHandler(DifyRequestHandler):
    """Serves ``/openapi/v1`` (current or legacy paths, per the emulator's ``paths``)."""

    server_version = "DifyOpenAPIEmulator/1.0"
    _args: tuple[str, ...] = ()
    _session: Session | None = None
    _hint_app: str | None = None
    _op: str = ""

    @property
    def emulator(self) -> DifyOpenAPIEmulator:
        return self.server.emulator  # type: ignore[attr-defined]

    @property
    def legacy(self) -> bool:
        return self.emulator.paths == "legacy"

    # errors -------------------------------------------------------------------------------
    def _error_body(self, status: int, message: str, code: str | None) -> dict[str, Any]:
        if status >= 500:
            message = "Internal Server Error"
        return super()._error_body(status, message, code)

    def _fail(self, exc: Exception, path: str) -> None:
        if self._status is None and isinstance(exc, RawError | ApiError):
            try:
                if isinstance(exc, RawError):
                    self._send_json(exc.status, exc.body, exc.headers)
                else:
                    body = self._error_body(exc.status, exc.message, exc.code)
                    if exc.hint is not None:
                        body["hint"] = exc.hint
                    if exc.details is not None:
                        body["details"] = exc.details
                    self._send_json(exc.status, body)
            except DISCONNECTS:
                self._abort()
            return
        super()._fail(exc, path)

    # routing ------------------------------------------------------------------------------
    def _route(self, path: str) -> tuple[str, str]:
        self._body = None
        self._session = None
        self._hint_app = None
        if not self.legacy:
            operations = catalog(self.emulator.version, legacy=self.legacy)
            self._extra_headers["X-Dify-Catalog"] = hashlib.sha256(json.dumps(operations).encode()).hexdigest()
        if path.startswith("/files/tools/") and path.count("/") == 3:
            # Output files, at the host's root as Dify serves them (FILES_URL), signed, no token.
            if self.command not in ("GET", "HEAD"):
                raise RequestError("The method is not allowed for the requested URL.", 405, "method_not_allowed")
            return "download", path
        found = match(path, legacy=self.legacy) if self.emulator.openapi_enabled else None
        if found is None:
            raise RequestError("The requested URL was not found on the server.", 404, "not_found")
        endpoint, op, methods, args = found
        if endpoint != "probe" and self._outdated_difyctl():
            raise ApiError(
                "upgrade_required", 426, "upgrade_required", hint=f"difyctl >= {self.emulator.min_difyctl_version}"
            )
        if self.command not in methods:
            self._extra_headers["Allow"] = ", ".join(sorted(methods))
            raise RequestError("The method is not allowed for the requested URL.", 405, "method_not_allowed")
        self._args = args
        self._op = op
        if endpoint == "form" and self.command == "POST":
            endpoint = "form_submit"  # its own fault endpoint: a submit reads the form first
        return endpoint, op

    def _outdated_difyctl(self) -> bool:
        """B1 version gate: ``User-Agent: difyctl/<ver>`` older than the minimum (others pass)."""
        agent = self.headers.get("User-Agent") or ""
        minimum = self.emulator.min_difyctl_version
        if minimum is None or not agent.startswith("difyctl/"):
            return False
        return version_key(agent.split("/", 1)[1].split()[0]) < version_key(minimum)

    # request pieces -----------------------------------------------------------------------
    def _multi_query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)

    def _json_body(self) -> dict[str, Any]:
        """The JSON object body; 422 when it is not one."""
        assert self._reader is not None
        if self._body is None:
            raw = self._reader.read_all(MAX_JSON_BODY)
            try:
                self._body = json.loads(raw) if raw.strip() else {}
            except ValueError:
                self._body = ValueError
        if not isinstance(self._body, dict):
            raise invalid_request(("json_invalid", ["body"], "Invalid JSON payload received or JSON payload is empty."))
        return self._body

    def _caller(self) -> tuple[Session, Account]:
        """Authenticate the bearer (B2): rate limit first, then prefix, then the session row."""
        emu = self.emulator
        scheme, _, token = (self.headers.get("Authorization") or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            self._extra_headers["WWW-Authenticate"] = 'Bearer realm="openapi"'
            raise ApiError("bearer required", 401, "unauthorized")
        token_fp = fingerprint(token)
        wait = emu.rate_limited(token_fp)
        if wait is not None:
            retry_ms = max(1, int(wait * 1000))
            body = {"error": "rate_limited", "retry_after_ms": retry_ms}
            raise RawError(429, body, {"Retry-After": str(max(1, -(-retry_ms // 1000)))})
        if not token.startswith(("dfoa_", "dfoe_")):
            raise ApiError("invalid_bearer", 401, "unauthorized")
        session = emu.sessions.get(token_fp)
        if emu.current and session is not None and time.time() >= session.expires_at:
            # C6: an expired session answers token_expired with a hint (the row is revoked on use)
            emu.sessions.revoke(session)
            raise ApiError("Token expired", 401, "token_expired", hint=TOKEN_EXPIRED_HINT)
        if session is None or session.revoked:
            raise ApiError(UNKNOWN_TOKEN if emu.current else "Invalid or revoked token", 401, "unauthorized")
        if not session.live:  # an expired row is hard-revoked on use
            emu.sessions.revoke(session)
            raise ApiError("Token expired", 401, "unauthorized")
        session.last_used_at = time.time()
        self._session = session
        return session, emu.accounts[session.account_id]

    def _member_app(self, account: Account, app_id: str, *, run: bool = False, workspace_id: Any = None) -> OpenAPIApp:
        """The app, 404 for an unknown app or a non-member; 403 ``service_api_disabled`` for
        run routes of an app whose Service API is off."""
        app = self.emulator.openapi_apps.get(app_id)
        if app is None or app.workspace_id not in account.roles or workspace_id not in (None, "", app.workspace_id):
            raise ApiError("App not found", 404, "not_found")
        if run and not app.service_api_enabled:
            raise ApiError("service_api_disabled", 403, "forbidden")
        return app

    # probes, account, workspaces ----------------------------------------------------------
    def _do_probe(self, op: str) -> None:
        emu = self.emulator
        if op == "health":
            self._send_json(200, {"ok": True})
        elif op == "version":
            self._send_json(200, {"version": emu.version, "edition": emu.edition})
        else:
            self._send_json(200, catalog(self.emulator.version, legacy=self.legacy))

    def _workspace_items(self, account: Account) -> list[dict[str, Any]]:
        items = []
        for ws_id, role in account.roles.items():
            ws = self.emulator.workspaces[ws_id]
            current = ws_id == account.default_workspace_id
            items.append({"id": ws.id, "name": ws.name, "role": role, "status": ws.status, "current": current})
        return items

    def _do_account(self, _op: str) -> None:
        account = self._caller()[1]
        body = {
            "subject_type": "account",
            "subject_email": account.email,
            "subject_issuer": None,
            "account": account.payload(),
            "workspaces": [{k: w[k] for k in ("id", "name", "role")} for w in self._workspace_items(account)],
            "default_workspace_id": account.default_workspace_id,
        }
        self._send_json(200, body)

    def _do_sessions(self, op: str) -> None:
        session, account = self._caller()
        emu = self.emulator
        if op == "sessions":
            page, limit = page_of(self._query(), 100)
            rows = [s.row() for s in emu.sessions.of_account(account.id)]
            self._send_json(200, envelope(rows, page, limit))
            return
        target = session if op == "revoke_self" else emu.sessions.by_id(self._args[0])
        if target is None or target.account_id != account.id:
            raise ApiError("Session not found", 404, "not_found")
        emu.sessions.revoke(target)
        self._send_json(200, {"status": "revoked"})

    def _do_workspaces(self, op: str) -> None:
        _, account = self._caller()
        items = self._workspace_items(account)
        if op in ("workspace", "switch"):
            item = next((w for w in items if w["id"] == self._args[0]), None)
            if item is None:
                raise ApiError("Workspace not found", 404, "not_found")
            if op == "switch":  # POST /workspaces/{id}:switch: the account's default workspace
                account.default_workspace_id = item["id"]
                item = next(w for w in self._workspace_items(account) if w["id"] == item["id"])
            self._send_json(200, {**item, "created_at": self.emulator.workspaces[item["id"]].created_at})
        elif self.legacy:
            self._send_json(200, {"workspaces": items})
        else:
            page, limit = page_of(self._query(), 100)
            self._send_json(200, envelope(items, page, limit))

    # apps ---------------------------------------------------------------------------------
    def _do_apps(self, op: str) -> None:
        account = self._caller()[1]
        if op == "external_apps":  # for dfoe_ (EE external SSO) subjects only
            raise ApiError("unsupported_token_type", 403, "forbidden")
        emu = self.emulator
        query = self._query()
        workspace_id = query.get("workspace_id")
        if not workspace_id:
            raise invalid_request(("missing", ["workspace_id"], "Field required"))
        if not is_uuid(workspace_id):
            raise invalid_request(("uuid_parsing", ["workspace_id"], "Input should be a valid UUID"))
        if workspace_id not in account.roles:
            raise ApiError("Workspace not found", 404, "not_found")
        page, limit = page_of(query, 200 if self.legacy else 100)
        mode, name = query.get("mode"), query.get("name")
        # C5: a current server has no tag filter (the parameter is ignored) and rows carry no tags
        tag = None if emu.current else query.get("tag")
        if mode is not None and mode not in APP_MODES:
            raise invalid_request(("enum", ["mode"], f"Input should be one of {list(APP_MODES)}"))
        if name is not None and len(name) > 200:
            raise invalid_request(("string_too_long", ["name"], "String should have at most 200 characters"))
        ws = emu.workspaces[workspace_id]
        apps = [
            a
            for a in emu.openapi_apps.values()
            if a.workspace_id == workspace_id
            and (mode is None or a.mode == mode)
            and (tag is None or tag in a.tags)
            and (not name or (a.app_id == name if is_uuid(name) else name.lower() in a.name.lower()))
        ]
        rows = [app_row(a, ws.name, documented=not emu.current) for a in apps]
        body = envelope(rows, page, limit)
        if not self.legacy:
            more = {"workspace_id": workspace_id, "page": page + 1, "limit": limit}
            body["hints"] = (
                [{"summary": "Next page", "op": "get.console_app", "input": more}] if body["has_more"] else []
            )
        self._send_json(200, body)

    def _do_describe(self, _op: str) -> None:
        account = self._caller()[1]
        query = self._multi_query()
        fields: list[str] = [f.strip() for value in query.get("fields", []) for f in value.split(",") if f.strip()]
        bad = [(i, f) for i, f in enumerate(fields) if f not in DESCRIBE_FIELDS]
        if bad:
            msg = "Input should be 'info', 'parameters' or 'input_schema'"
            raise invalid_request(*(("literal_error", ["fields", i], msg) for i, _f in bad))
        # C5: workspace_id is no longer a parameter of describe on a current server (ignored)
        workspace_id = "" if self.emulator.current else query.get("workspace_id", [""])[0]
        app = self._member_app(account, self._args[0], workspace_id=workspace_id)
        body = describe(app, tuple(fields), self.emulator.system_parameters, documented=not self.emulator.current)
        if not self.legacy:
            body["hints"] = [
                {
                    "summary": "Run this app",
                    "op": f"console_app.{app.mode.replace('-', '_')}.run",
                    "input": {"app_id": app.app_id},
                }
            ]
        self._send_json(200, body)

    # runs ---------------------------------------------------------------------------------
    def _run_payload(self, app: OpenAPIApp, route_mode: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the body's fields, the inputs with files merged in) after B5's payload checks."""
        ctype = (self.headers.get("Content-Type") or "").lower()
        body, parts = self._multipart(app) if ctype.startswith("multipart/form-data") else (self._json_body(), {})
        if route_mode:  # current per-mode payloads, extra="forbid"
            allowed = _WORKFLOW_FIELDS | (_CHAT_FIELDS if app.mode in CHAT_MODES else frozenset())
        else:
            allowed = _OLD_RUN_FIELDS
        problems = [("extra_forbidden", [k], "Extra inputs are not permitted") for k in body if k not in allowed]
        if "inputs" not in body and not parts:
            problems.append(("missing", ["inputs"], "Field required"))
        elif "inputs" in body and not isinstance(body["inputs"], dict):
            problems.append(("dict_type", ["inputs"], "Input should be a valid dictionary"))
        query = body.get("query")
        if route_mode and app.mode in CHAT_MODES:
            if query is None:
                problems.append(("missing", ["query"], "Field required"))
            elif not isinstance(query, str) or not query.strip():
                problems.append(("string_too_short", ["query"], "query must not be blank"))
        files = body.get("files")
        if files is not None and not isinstance(files, list if not route_mode else dict):
            kind = "list_type" if not route_mode else "dict_type"
            problems.append((kind, ["files"], f"Input should be a valid {'list' if not route_mode else 'dictionary'}"))
        if problems:
            raise invalid_request(*problems)
        if not route_mode:
            if app.mode == "workflow" and query is not None:
                raise unprocessable("query_not_supported_for_workflow")
            if app.mode in CHAT_MODES and (not isinstance(query, str) or not query.strip()):
                raise unprocessable("query_required_for_chat")
        inputs = dict(body.get("inputs") or {})
        if route_mode and isinstance(files, dict):
            for var, value in files.items():
                inputs[var] = {"transfer_method": "remote_url", "url": value} if isinstance(value, str) else value
        inputs.update(parts)
        return body, inputs

    def _multipart(self, app: OpenAPIApp) -> tuple[dict[str, Any], dict[str, Any]]:
        """A multipart run: JSON fields (``inputs`` as JSON text; or one ``payload`` part with
        the whole JSON body) and ``files[<var>]`` parts, uploaded and turned into
        ``local_file`` mappings (a file-list variable collects every part of its name)."""
        assert self._reader is not None
        raw = self._reader.read_all(MAX_RUN_BODY)
        head = f"Content-Type: {self.headers.get('Content-Type')}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
        body: dict[str, Any] = {}
        parts: dict[str, Any] = {}
        if not message.is_multipart():
            raise invalid_request(("multipart", ["body"], "Malformed multipart body"))
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            filename = part.get_filename()
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            if not isinstance(name, str):
                continue
            if name.startswith("files[") and name.endswith("]") and filename:
                var = name[len("files[") : -1]
                mapping = self._store_upload(filename, data, part.get_content_type())
                variable = app.variable(var)
                if variable is not None and variable["type"] == "file-list":
                    parts.setdefault(var, []).append(mapping)
                else:
                    parts[var] = mapping
                continue
            text = data.decode("utf-8", "replace")
            if name in ("payload", "inputs"):
                try:
                    value = json.loads(text)
                except ValueError:
                    raise invalid_request(("json_invalid", [name], f"{name} must be JSON")) from None
                if name == "payload" and isinstance(value, dict):
                    body.update(value)
                    continue
                body[name] = value
            else:
                body[name] = text
        return body, parts

    def _store_upload(self, filename: str, data: bytes, ctype: str) -> dict[str, Any]:
        emu = self.emulator
        ext = extension_of(filename)
        record = UploadRecord(
            key_fingerprint=self._key_fp or "",
            user=self._session.account_id if self._session else "",
            file_name=filename,
            size=len(data),
            file_type=file_type_of(ext),
            sha256=hashlib.sha256(data).hexdigest(),
            upload_file_oid=str(uuid.uuid4()),
            content_type=ctype,
            head=data[:64],
        )
        emu.state.add_upload(record)
        emu.state.count("upload", record.key_fingerprint, record.user)
        return {"transfer_method": "local_file", "upload_file_id": record.upload_file_oid, "type": record.file_type}

    def _start_run(self, subscribe: bool = False) -> tuple[DifyRun, queue.SimpleQueue[dict[str, Any]] | None]:
        """Authenticate, check app, mode and body, count the run and execute it in the background."""
        session, account = self._caller()
        app_id, route_mode = self._args
        app = self._member_app(account, app_id, run=True)
        if route_mode and route_mode != app.mode:
            raise unprocessable("app_mode_mismatch")
        body, inputs = self._run_payload(app, route_mode)
        self._member_app(account, app_id, run=True, workspace_id=body.get("workspace_id"))
        workflow_id = body.get("workflow_id")
        if workflow_id not in (None, "", app.workflow_id):
            raise ApiError("Workflow not found", 404, "not_found")
        emu = self.emulator
        conversation = body.get("conversation_id") or None
        if conversation is not None and emu.conversations.get(str(conversation)) != app.app_id:
            raise ApiError("Conversation Not Exists.", 404, "not_found")
        # Every OpenAPI run streams, so a current server validates its inputs in the worker (C1)
        try:
            values, files, rejected = current.check_inputs(
                app, inputs, lambda oid: emu.state.uploaded_file(None, oid), in_worker=emu.current
            )
        except RequestError as exc:
            if not emu.current:  # the documents: ValueError -> 400 "invalid run input", detail hidden (B5)
                raise ApiError("invalid run input", 400, "bad_request") from None
            raise ApiError(exc.message, 400, "bad_request") from None  # a file mapping's; C6: the real message
        if emu.max_active_requests and emu.active_runs(app.code) >= emu.max_active_requests:
            raise ApiError("Too many requests. Please try again later.", 429, "too_many_requests")
        fault = emu.state.take_fault(self._endpoint or "stream", session.token_fp, "run")
        rejected = current.rejection(rejected, fault)
        if rejected is not None:  # no run is started (C1: validation comes before the graph)
            if emu.current:
                raise current.WorkerRejection(rejected)
            raise ApiError("invalid run input", 400, "bad_request")
        run = DifyRun(app=app, key_fp=session.token_fp, user=account.id, inputs=values, files=files, fault=fault)
        run.end_user_id = account.id
        if app.mode in CHAT_MODES:
            run.query = str(body.get("query"))
            run.conversation_id = str(conversation or uuid.uuid4())
            emu.conversations[run.conversation_id] = app.app_id
        return self._launch(run, app.app_id, subscribe=subscribe)

    def _do_stream(self, _: str) -> None:
        started = self._start_stream()
        if started is None:
            return
        run, channel = started
        self._hint_app = run.app.code
        deprecated = not self.legacy and not self._args[1]  # POST /apps/{id}:run
        self._stream_headers(*([("Deprecation", "true")] if deprecated else []))
        assert isinstance(run.app, OpenAPIApp)
        self._relay(run, channel, TERMINAL if run.app.mode == "workflow" else _CHAT_TERMINAL)

    def _outgoing(self, event: dict[str, Any]) -> dict[str, Any]:
        """B5: ``human_input_required`` gets top-level ``hints`` (one per action), chat
        ``message_end`` a "Reply in this conversation" hint; a current server keys pause
        reasons ``TYPE`` (C4, the Service API's rule); everything else is unchanged."""
        event = super()._outgoing(event)
        name = event.get("event")
        if name == "human_input_required":
            data = event.get("data") or {}
            op = "run.form.submit" if self.legacy else "submit.run.form"
            fields = [dict(i) for i in data.get("inputs") or []]
            empty = {i.get("output_variable_name"): None for i in fields}
            hints = [
                {
                    "summary": action.get("title"),
                    "op": op,
                    "input": {
                        "app_id": self._hint_app,
                        "form_token": data.get("form_token"),
                        "action": action.get("id"),
                        "inputs": empty,
                    },
                    "form": fields,
                }
                for action in data.get("actions") or []
            ]
            return {**event, "hints": hints}
        if name == "message_end":
            hint: dict[str, Any] = {"summary": "Reply in this conversation", "op": "console_app.chat.run"}
            hint["input"] = {"app_id": self._hint_app, "conversation_id": event.get("conversation_id"), "query": None}
            return {**event, "hints": [hint]}
        return event

    def _do_events(self, _: str) -> None:
        session, account = self._caller()
        app_id, run_id = self._args
        app = self._member_app(account, app_id, run=True)
        if app.mode not in REATTACH_MODES:
            raise unprocessable("mode_not_supported_for_event_reconnect")
        self.emulator.state.count("events", session.token_fp, app.app_id)
        run = self.emulator.state.run(run_id)
        if run is None or run.app is not app or run.user != account.id:
            raise ApiError("Workflow run not found", 404, "not_found")
        self._hint_app = app.app_id
        self._reattach(run, session.token_fp, self._query())

    def _do_stop(self, _: str) -> None:
        session, account = self._caller()
        app_id, task_id = self._args
        app = self._member_app(account, app_id, run=True)
        emu = self.emulator
        emu.state.count("stop", session.token_fp, app.app_id)
        fault = emu.state.take_fault("stop", session.token_fp, "run")
        run = emu.state.run_by_task(task_id)
        if run is not None and run.app is app and fault is None:
            emu.stop_run(run)
        self._send_json(200, {"result": "success"})

    def _do_form_submit(self, op: str) -> None:
        self._do_form(op)

    def _do_form(self, op: str) -> None:
        _, account = self._caller()
        app_id, token = self._args
        app = self._member_app(account, app_id, run=True)
        emu = self.emulator
        if self.command == "GET":
            self._send_json(200, emu.checked_form(token, app.code).definition())
            return
        body = self._json_body()
        problems = [
            ("extra_forbidden", [k], "Extra inputs are not permitted")
            for k in body
            if k not in ("action", "inputs", "files")
        ]
        if not isinstance(body.get("action"), str):
            problems.append(("missing", ["action"], "Field required"))
        if not isinstance(body.get("inputs"), dict):
            problems.append(("missing", ["inputs"], "Field required"))
        if problems:
            raise invalid_request(*problems)
        emu.submit_form(token, body["action"], body["inputs"], app_code=app.code)
        self._send_json(200, {})

    # device flow (RFC 8628: raw {"error": ...} bodies) ---------------------------------------
    def _do_device(self, op: str) -> None:
        emu = self.emulator
        flow = emu.device
        try:
            if op == "device_lookup":
                code = flow.by_user_code(self._query().get("user_code", ""))
                valid = code is not None and not code.expired and code.status == "pending"
                body: dict[str, Any] = {"valid": valid}
                body.update(
                    expires_in_remaining=int(flow.expires_in) if valid else 0,
                    client_id=code.client_id if code else None,
                )
                self._send_json(200, body)
                return
            try:
                payload = self._json_body()
            except ApiError:
                raise DeviceError("invalid_request") from None
            if op == "device_code":
                client_id, label = payload.get("client_id"), payload.get("device_label")
                if not isinstance(client_id, str) or not isinstance(label, str) or not label:
                    raise DeviceError("invalid_request")
                code = flow.create(client_id, label)
                interval = flow.advertised if flow.advertised != int(flow.advertised) else int(flow.advertised)
                body = {"device_code": code.device_code, "user_code": code.user_code}
                body.update(verification_uri=emu.device_url, expires_in=int(flow.expires_in), interval=interval)
                self._send_json(200, body)
            elif op == "device_token":
                code = flow.poll(str(payload.get("device_code") or ""), str(payload.get("client_id") or ""))
                account = emu.accounts[code.account_id or ""]
                token, session = emu.sessions.issue(
                    account.id, emu.token_ttl, client_id=code.client_id, device_label=code.device_label
                )
                workspaces = [{"id": w, "name": emu.workspaces[w].name, "role": r} for w, r in account.roles.items()]
                body = {"token": token, "expires_at": iso(session.expires_at), "subject_type": "account"}
                body.update(
                    account=account.payload(), workspaces=workspaces, default_workspace_id=account.default_workspace_id
                )
                body["token_id"] = session.id
                self._send_json(200, body)
            else:
                user_code = payload.get("user_code")
                if not isinstance(user_code, str):
                    raise DeviceError("invalid_request")
                account_id = str(payload.get("account_id") or "") or next(iter(emu.accounts))
                status = flow.resolve(user_code, op == "device_approve", account_id)
                self._send_json(200, {"status": status})
        except DeviceError as exc:
            raise RawError(exc.status, {"error": exc.code}) from None
