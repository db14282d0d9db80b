"""``DifyOpenAPIEmulator``: Dify's user-scoped OpenAPI (``/openapi/v1``, bearer account tokens).

It is the Service-API emulator with another front: the same run engine, runs, forms, SSE
framing and faults (:mod:`docify_provider.testing.dify`), behind the OpenAPI's routes, auth
(bearer sessions, workspaces, membership), error bodies and device flow.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from docify_provider.testing.dify.emulator import DifyEmulator
from docify_provider.testing.dify.runs import DifyRun
from docify_provider.testing.dify_openapi.device import DeviceFlow
from docify_provider.testing.dify_openapi.device_page import DEVICE_PATH, device_page
from docify_provider.testing.dify_openapi.directory import (
    ACCOUNT_ID,
    ACCOUNT_TOKEN,
    OTHER_ACCOUNT_ID,
    OTHER_ACCOUNT_TOKEN,
    Account,
    OpenAPIApp,
    Session,
    Sessions,
    Workspace,
    builtin_accounts,
    builtin_openapi_apps,
    builtin_workspaces,
)
from docify_provider.testing.dify_openapi.handler import OpenAPIRequestHandler
from docify_provider.testing.keys import fingerprint
from docify_provider.testing.server import ToolPage

PATH_GENERATIONS = ("current", "legacy")
#: ``/_version`` per path generation (the legacy paths are those of Dify up to mid-2026).
VERSIONS = {"current": "1.18.0", "legacy": "1.14.0"}
FOURTEEN_DAYS = 14 * 86400.0


class DifyOpenAPIEmulator(DifyEmulator):
    """A fake Dify OpenAPI: ``with DifyOpenAPIEmulator() as emu: ... emu.base_url ...``.

    ``paths``: ``"current"`` (``/apps/{id}/workflow:run``, ``GET /apps/{id}``, ``:stop``,
    ``/human-input-forms/{token}[:submit]``) or ``"legacy"`` (``/apps/{id}/run``,
    ``/describe``, ``/tasks/{tid}/stop``, ``/form/human_input/{token}``); the other
    generation's paths 404. ``rate_limit_per_token`` requests per ``rate_limit_window``
    seconds (0: off) before a raw 429. ``token_ttl`` (seconds) of minted and built-in tokens.
    Device flow: ``known_client_ids``, ``device_code_ttl``, ``device_poll_interval`` (the gap
    enforced with ``slow_down``) and ``device_advertised_interval`` (the ``interval`` the code
    answer states; default the enforced one). ``auto_approve``: every device code is approved
    by the built-in account (``ACCOUNT_ID``) as soon as it is issued, for scripts and CI;
    otherwise a person approves it on the ``/device`` page (``verification_uri``) or a test with
    :meth:`approve`.
    ``openapi_enabled=False``: every path 404s (``OPENAPI_ENABLED`` off). ``min_difyctl_version``:
    a ``User-Agent: difyctl/<older>`` gets 426 ``upgrade_required`` (None: no gate).
    ``max_active_requests``: 429 ``too_many_requests`` beyond that many running runs of an app.
    ``server_profile`` (from :class:`DifyEmulator`): ``"current"`` (default) answers as the newest
    Dify server does (Part C of the server-behaviour reference): no tag filter and no ``tags``
    on app rows or in describe (no ``author`` either), run inputs rejected by the worker after
    the 200 (a ping, then ``{"event": "error", "message", "status": 500}``, the body held open
    until the idle close; file-mapping errors stay a 400 ``bad_request`` with the real message),
    pause reasons keyed ``TYPE``, a ``continue_on_pause`` re-attach held open after
    ``workflow_finished``, the frame of an already finished run with ``task_id`` = the run id,
    401 ``token_expired`` (with a ``hint``) for an expired session and "Invalid or unknown bearer
    token." for an unknown one; and the run engine's rules it shares with the Service API (C6):
    a stop of a paused run answers success and leaves it ``paused``, and on resume the node's
    ``node_started`` comes again before ``human_input_form_filled`` (the re-attach stream too).
    ``"documented"`` answers as Dify's documents say (tag filter, tags and author, ``type``, 400
    "invalid run input", 401 ``unauthorized`` for both, a paused run's stop ends it ``stopped``).
    Everything else (``ping_interval``, ``idle_close_seconds``, ``event_interval``,
    ``form_expiry_seconds``, ...) is as for :class:`DifyEmulator`.
    """

    handler_class = OpenAPIRequestHandler
    name = "dify-openapi-emulator"
    mode = "dify-openapi"
    form_not_found = ("Form not found. It may be wrong, expired, or already submitted.", "form_not_found")

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        paths: str = "current",
        version: str | None = None,
        edition: str = "SELF_HOSTED",
        rate_limit_per_token: int = 0,
        rate_limit_window: float = 60.0,
        token_ttl: float = FOURTEEN_DAYS,
        known_client_ids: tuple[str, ...] = ("difyctl",),
        device_code_ttl: float = 900.0,
        device_poll_interval: float = 5.0,
        device_advertised_interval: float | None = None,
        openapi_enabled: bool = True,
        min_difyctl_version: str | None = "0.2.0-alpha",
        auto_approve: bool = False,
        **options: Any,
    ) -> None:
        if paths not in PATH_GENERATIONS:
            raise ValueError(f"paths must be one of {PATH_GENERATIONS}, not {paths!r}")
        if rate_limit_per_token < 0 or rate_limit_window <= 0:
            raise ValueError("rate_limit_per_token must be >= 0 and rate_limit_window positive")
        super().__init__(host, port, default_keys=False, **options)
        self.paths = paths
        self.openapi_enabled = openapi_enabled
        self.min_difyctl_version = min_difyctl_version
        self.version = version or VERSIONS[paths]
        self.edition = edition
        self.rate_limit_per_token = rate_limit_per_token
        self.rate_limit_window = rate_limit_window
        self.token_ttl = token_ttl
        self.openapi_apps: dict[str, OpenAPIApp] = builtin_openapi_apps()
        self.apps = dict(self.openapi_apps)
        self.workspaces: dict[str, Workspace] = builtin_workspaces()
        self.accounts: dict[str, Account] = builtin_accounts()
        self.sessions = Sessions()
        self.sessions.issue(ACCOUNT_ID, token_ttl, token=ACCOUNT_TOKEN, device_label="built-in")
        self.sessions.issue(OTHER_ACCOUNT_ID, token_ttl, token=OTHER_ACCOUNT_TOKEN, device_label="built-in")
        self.device = DeviceFlow(
            known_client_ids,
            device_code_ttl,
            device_poll_interval,
            device_advertised_interval,
            auto_approve_as=ACCOUNT_ID if auto_approve else None,
        )
        #: conversation id -> app id (chat-family runs continue a known conversation only)
        self.conversations: dict[str, str] = {}
        self._hits: dict[str, deque[float]] = {}
        self._hits_lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """E.g. ``http://127.0.0.1:PORT/openapi/v1``."""
        return f"http://{self.netloc}/openapi/v1"

    @property
    def device_url(self) -> str:
        """The device-login page (``verification_uri``): ``http://127.0.0.1:PORT/device``, at the root
        as Dify's console serves it; on ``public_host`` when set."""
        return f"http://{self.public_host or self.netloc}{DEVICE_PATH}"

    @property
    def auto_approve(self) -> bool:
        """Whether device codes are approved as soon as they are issued."""
        return self.device.auto_approve_as is not None

    def tool_pages(self) -> dict[str, ToolPage]:
        """The counters and the device-login page (Dify's console page, served by the emulator)."""
        return {**super().tool_pages(), DEVICE_PATH: device_page}

    def counters(self) -> dict[str, Any]:
        """The Service API emulator's counters (app names here) plus ``device_logins``: codes
        issued, waiting, approved, denied, tokens handed out, expired."""
        return {**super().counters(), "device_logins": self.device.tally()}

    # tokens -------------------------------------------------------------------------------
    def issue_token(
        self,
        account_id: str = ACCOUNT_ID,
        *,
        ttl: float | None = None,
        client_id: str = "difyctl",
        device_label: str = "test",
    ) -> str:
        """A new live ``dfoa_`` token of that account (``ttl`` seconds, default ``token_ttl``)."""
        return self.sessions.issue(
            account_id, self.token_ttl if ttl is None else ttl, client_id=client_id, device_label=device_label
        )[0]

    def session(self, token: str) -> Session | None:
        """The session row of ``token`` (revoked and expired rows included)."""
        return self.sessions.get(fingerprint(token))

    def revoke_token(self, token: str) -> None:
        """Revoke ``token`` as ``DELETE /account/sessions/self`` does."""
        session = self.session(token)
        if session is not None:
            self.sessions.revoke(session)

    def rate_limited(self, token_fp: str) -> float | None:
        """Count a request of that token; the seconds until it may retry when over the limit."""
        if not self.rate_limit_per_token:
            return None
        now = time.monotonic()
        with self._hits_lock:
            hits = self._hits.setdefault(token_fp, deque())
            while hits and now - hits[0] >= self.rate_limit_window:
                hits.popleft()
            if len(hits) >= self.rate_limit_per_token:
                return self.rate_limit_window - (now - hits[0])
            hits.append(now)
        return None

    # device flow --------------------------------------------------------------------------
    def approve(self, user_code: str, account_id: str = ACCOUNT_ID) -> None:
        """Approve a device code as a signed-in console user would (``/device`` page)."""
        self.device.resolve(user_code, True, account_id)

    def deny(self, user_code: str, account_id: str = ACCOUNT_ID) -> None:
        """Deny a device code from the console."""
        self.device.resolve(user_code, False, account_id)

    def device_polls(self, user_code: str) -> list[float]:
        """``time.monotonic()`` of every token poll of that code (empty for an unknown code)."""
        code = self.device.by_user_code(user_code)
        return list(code.polls) if code is not None else []

    # human input --------------------------------------------------------------------------
    def answer_in_ui(self, token: str, action: str = "approve", inputs: Any = None) -> DifyRun:
        """Answer a form in Dify's web UI (not through the OpenAPI): the run resumes and the
        OpenAPI's form routes then answer 412 ``human_input_form_submitted``."""
        return self.submit_form(token, action, inputs)

    # observations -------------------------------------------------------------------------
    def runs_started(self, key: str | None = None, user: str | None = None, *, app: str | None = None) -> int:
        """Runs started, in total or per bearer token (``key``) and/or app id (``app``)."""
        return self.state.total("started", None if key is None else fingerprint(key), app or user)

    def stop_requests(self, key: str | None = None, user: str | None = None, *, app: str | None = None) -> int:
        """Stop requests answered, per token and/or app id."""
        return self.state.total("stop", None if key is None else fingerprint(key), app or user)

    def events_requests(self, key: str | None = None, user: str | None = None, *, app: str | None = None) -> int:
        """Re-attach requests that passed auth, per token and/or app id."""
        return self.state.total("events", None if key is None else fingerprint(key), app or user)

    def runs_completed(self, key: str | None = None, user: str | None = None) -> int:
        """Runs that reached an end, per token (``user``: the account id)."""
        return self.state.total("completed", None if key is None else fingerprint(key), user)
