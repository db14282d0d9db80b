"""``DifyEmulator``: a real HTTP/1.1 Dify Workflow Service API server on localhost.

Runs execute in background threads, independent of connections (as on Dify with Celery
workers and Redis pub/sub), so "the stream closed but the run went on" is observable.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from docify_provider.testing.dify import engine
from docify_provider.testing.dify.apps import DEFAULT_APP_KEYS, DifyApp, builtin_apps
from docify_provider.testing.dify.handler import DifyRequestHandler
from docify_provider.testing.dify.runs import DifyRun, HumanForm
from docify_provider.testing.dify.state import DifyState
from docify_provider.testing.errors import RequestError
from docify_provider.testing.keys import fingerprint
from docify_provider.testing.server import EmulatorServer, ToolPage

if TYPE_CHECKING:
    from docify_provider.testing.base_handler import EmulatorRequestHandler

#: Where the Dify modes list every run (id, app, user, status, inputs, times) as JSON.
RUNS_PATH = "/_emulator/runs"
#: ``"current"``: as the newest Dify server source behaves (Part C); ``"documented"``: as its documents say.
SERVER_PROFILES = ("current", "documented")


def _fp(key: str | None) -> str | None:
    return None if key is None else fingerprint(key)


class DifyEmulator(EmulatorServer):
    """A fake Dify server: ``with DifyEmulator() as emu: ... emu.base_url ...`` (ends in ``/v1``).

    Options: ``ping_interval`` (seconds between ``event: ping`` frames; the first is sent at
    once; None: only the first), ``idle_close_seconds`` (a stream body ends after that long
    without a real event), ``event_interval`` (pacing of a run's events),
    ``form_expiry_seconds`` (human-input forms), ``files_access_timeout`` (signed file URLs),
    ``max_active_requests`` (0: unlimited; else 429 ``too_many_requests`` beyond that many
    running runs of an app), the ``/parameters`` ``system_parameters`` limits in MB
    (``file_size_limit`` ... ``workflow_file_upload_limit``; floats allowed so that a test can
    set a tiny one), ``public_host`` (``host:port`` of output-file URLs). The default app keys
    (see :mod:`docify_provider.testing.dify.apps`) are registered unless ``default_keys`` is False.

    ``server_profile``: ``"current"`` (the default) behaves like the newest Dify server source
    (``shared/reference/dify-server-behaviour.md`` Part C: worker-side validation of streaming
    runs, no tag filter, ``TYPE``-keyed pause reasons, ...); ``"documented"`` behaves as Dify's
    documents describe, for tests of the documented wire. Read it through ``emu.current``.
    """

    handler_class = DifyRequestHandler
    name = "dify-emulator"
    mode = "dify"
    #: (message, code) of the 404 for an unknown form token (the OpenAPI has its own).
    form_not_found = ("Form not found", "not_found")

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ping_interval: float | None = 10.0,
        idle_close_seconds: float = 300.0,
        event_interval: float = 0.01,
        form_expiry_seconds: float = 86400.0,
        files_access_timeout: float = 300.0,
        max_active_requests: int = 0,
        file_size_limit: float = 15,
        image_file_size_limit: float = 10,
        audio_file_size_limit: float = 50,
        video_file_size_limit: float = 100,
        workflow_file_upload_limit: int = 10,
        public_host: str | None = None,
        default_keys: bool = True,
        server_profile: str = "current",
    ) -> None:
        if server_profile not in SERVER_PROFILES:
            raise ValueError(f"server_profile must be one of {SERVER_PROFILES}, not {server_profile!r}")
        if ping_interval is not None and ping_interval <= 0:
            raise ValueError("ping_interval must be positive or None")
        if idle_close_seconds <= 0:
            raise ValueError("idle_close_seconds must be positive")
        super().__init__(host, port, DifyState())
        self.state: DifyState
        self.ping_interval = ping_interval
        self.idle_close_seconds = idle_close_seconds
        self.event_interval = event_interval
        self.form_expiry_seconds = form_expiry_seconds
        self.files_access_timeout = files_access_timeout
        self.max_active_requests = max_active_requests
        self.system_parameters: dict[str, Any] = {
            "file_size_limit": file_size_limit,
            "image_file_size_limit": image_file_size_limit,
            "audio_file_size_limit": audio_file_size_limit,
            "video_file_size_limit": video_file_size_limit,
            "workflow_file_upload_limit": workflow_file_upload_limit,
        }
        self.public_host = public_host
        self.server_profile = server_profile
        #: How each stream of a run its worker rejected ended (C1): "client closed" or "idle".
        self.worker_error_streams: list[str] = []
        self.apps: dict[str, DifyApp] = builtin_apps()
        self.tenant_id = str(uuid.uuid4())
        self.secret = os.urandom(32)
        if default_keys:
            for key, code, disabled in DEFAULT_APP_KEYS:
                self.add_key(key, code, disabled)

    @property
    def current(self) -> bool:
        """True when the emulator behaves like the newest server rather than its documents."""
        return self.server_profile == "current"

    @property
    def base_url(self) -> str:
        """E.g. ``http://127.0.0.1:PORT/v1`` (Dify's API base URL includes ``/v1``)."""
        return f"http://{self.netloc}/v1"

    @property
    def files_base(self) -> str:
        """Origin of output-file URLs (Dify's ``FILES_URL``; on ``public_host`` when set)."""
        return f"http://{self.public_host or self.netloc}"

    def stop(self) -> None:
        """Stop serving; runs still executing are abandoned (their threads end)."""
        self.stopping.set()
        for run in self.state.runs():
            run.wake.set()
        super().stop()

    # configuration ------------------------------------------------------------------------
    def add_key(self, key: str, app_code: str, disabled: bool = False) -> None:
        """Accept ``key`` for the app ``app_code`` (403 ``forbidden`` when ``disabled``)."""
        self.state.add_key(key, app_code, disabled)

    def add_app(self, app: DifyApp) -> None:
        """Register (or replace) an app by its code; its ``kind`` must be a built-in graph."""
        self.apps[app.code] = app

    def app(self, code: str) -> DifyApp:
        """The app with that code (``app("text").workflow_id`` for the by-id run route)."""
        return self.apps[code]

    def end_user_id(self, user: str) -> str:
        """The stable end-user id Dify would create for ``user`` (``created_by``)."""
        return str(uuid.uuid5(uuid.UUID(self.tenant_id), user))

    # runs ---------------------------------------------------------------------------------
    def run(self, run_id: str) -> DifyRun:
        """The run's live state (KeyError when unknown)."""
        run = self.state.run(run_id)
        if run is None:
            raise KeyError(run_id)
        return run

    @property
    def runs(self) -> list[DifyRun]:
        """Every run, oldest first."""
        return self.state.runs()

    def wait_run_finished(self, run_id: str, timeout: float = 10.0) -> DifyRun:
        """Wait until the run has ended (succeeded/failed/stopped/partial-succeeded)."""
        run = self.run(run_id)
        if not run.wait_for(lambda r: r.ended, timeout):
            raise TimeoutError(f"run {run_id} still {run.status} after {timeout} s")
        return run

    def wait_run_status(self, run_id: str, status: str, timeout: float = 10.0) -> DifyRun:
        """Wait until the run has that status (e.g. ``"paused"``)."""
        run = self.run(run_id)
        if not run.wait_for(lambda r: r.status == status, timeout):
            raise TimeoutError(f"run {run_id} is {run.status}, not {status}, after {timeout} s")
        return run

    def active_runs(self, app_code: str) -> int:
        return sum(1 for r in self.state.runs() if r.app.code == app_code and r.status == "running")

    def stop_run(self, run: DifyRun) -> None:
        """What a stop request does: a running run ends ``stopped``; a paused one at once with
        the documented profile, and not at all with the current one (no live engine holds a
        paused run, so the stop flag and command reach nothing: it stays ``paused``, C6)."""
        if run.status == "paused":
            if not run.current:
                engine.stop_paused(self, run)
        elif not run.ended:
            run.update(stop_requested=True)
            run.wake.set()

    # human input --------------------------------------------------------------------------
    def form_token(self, run_id: str) -> str:
        """The token of the run's human-input form (KeyError when it has none)."""
        form = self.run(run_id).form
        if form is None:
            raise KeyError(run_id)
        return form.form_token

    def answer_when_paused(
        self,
        action: str = "approve",
        inputs: Any = None,
        *,
        app_code: str | None = None,
        timeout: float = 60.0,
    ) -> FormAnswerer:
        """Answer a run's form as a person in Dify's UI would, from a started background thread.

        It waits for the first run (of ``app_code`` when given) to pause, then for the client to
        have seen the pause (a run-detail, form or events request after it: answering earlier
        could resume the run before a blocking call returned), then submits ``action`` and
        ``inputs``. ``join()`` the thread; ``answered`` is the run, ``error`` what went wrong.
        """
        answerer = FormAnswerer(self, action, inputs, app_code, timeout)
        answerer.start()
        return answerer

    def checked_form(self, token: str, app_code: str | None = None) -> HumanForm:
        """The form, or the API's error: 404 not found, 412 submitted / expired."""
        form = self.state.form(token)
        if form is None or (app_code is not None and form.app_code != app_code):
            raise RequestError(self.form_not_found[0], 404, self.form_not_found[1])
        if form.submitted:
            raise RequestError("This form has already been submitted.", 412, "human_input_form_submitted")
        if form.expired:
            raise RequestError("This form has expired.", 412, "human_input_form_expired")
        return form

    def submit_form(
        self, token: str, action: str = "approve", inputs: Any = None, *, app_code: str | None = None
    ) -> DifyRun:
        """Submit a form as ``POST /v1/form/human_input/{token}`` does and resume its run.

        Raises :class:`~docify_provider.testing.errors.RequestError` as the API answers.
        """
        form = self.checked_form(token, app_code)
        if action not in {a["id"] for a in form.actions}:
            raise RequestError(f"Invalid action: {action}", 400, "invalid_form_data")
        if inputs is not None and not isinstance(inputs, dict):
            raise RequestError("inputs must be an object", 400, "invalid_form_data")
        if not self.state.claim_form(form):
            raise RequestError("This form has already been submitted.", 412, "human_input_form_submitted")
        run = self.run(form.run_id)
        engine.resume(self, run, action, dict(inputs or {}))
        return run

    # observations -------------------------------------------------------------------------
    def runs_started(self, key: str | None = None, user: str | None = None) -> int:
        """Runs that passed validation and were started, in total or per app key and/or user."""
        return self.state.total("started", _fp(key), user)

    def runs_completed(self, key: str | None = None, user: str | None = None) -> int:
        """Runs that reached an end: succeeded, failed (also by an ``error`` event), stopped,
        partial-succeeded; paused runs are not (yet) counted."""
        return self.state.total("completed", _fp(key), user)

    def stop_requests(self, key: str | None = None, user: str | None = None) -> int:
        """Stop requests answered (ignored ones included)."""
        return self.state.total("stop", _fp(key), user)

    def events_requests(self, key: str | None = None, user: str | None = None) -> int:
        """``GET /v1/workflow/{id}/events`` requests that passed authentication."""
        return self.state.total("events", _fp(key), user)

    def upload_count(self, key: str | None = None, user: str | None = None) -> int:
        """Accepted uploads."""
        return self.state.total("upload", _fp(key), user)

    def tool_pages(self) -> dict[str, ToolPage]:
        """The counters and ``/_emulator/runs``: every run, for scripts that count runs per input."""
        return {**super().tool_pages(), RUNS_PATH: runs_page}

    def run_list(self) -> list[dict[str, Any]]:
        """Every run, oldest first: ``id``, ``app``, ``user``, ``status``, ``inputs``, ``created_at``,
        ``finished_at`` (seconds since the epoch). What ``GET /_emulator/runs`` serves."""
        return [
            {
                "id": run.id,
                "app": run.app.name,
                "user": run.user,
                "status": run.status,
                "inputs": run.inputs,
                "created_at": run.created_at,
                "finished_at": run.finished_at,
            }
            for run in self.state.runs()
        ]

    def turned_away(self) -> int:
        """Requests answered 429 (``too_many_requests`` over ``max_active_requests``: nothing started)."""
        return sum(1 for r in self.state.requests() if r.status == 429)

    def counters(self) -> dict[str, Any]:
        """The shared counters plus ``stop_requests``, ``events_requests`` (re-attaches),
        ``runs_turned_away`` (429 answers: not started, not billed), ``runs_started_by_app``
        (runs started per app name) and ``runs_by_status`` (every run by its status now:
        ``running``, ``paused`` on a form, ``succeeded``, ...)."""
        by_app: dict[str, int] = {}
        by_status: dict[str, int] = {}
        for run in self.state.runs():
            by_app[run.app.name] = by_app.get(run.app.name, 0) + 1
            by_status[run.status] = by_status.get(run.status, 0) + 1
        return {
            **super().counters(),
            "stop_requests": self.state.total("stop"),
            "events_requests": self.state.total("events"),
            "runs_turned_away": self.turned_away(),
            "runs_started_by_app": dict(sorted(by_app.items())),
            "runs_by_status": dict(sorted(by_status.items())),
        }


def runs_page(handler: EmulatorRequestHandler) -> None:
    """``GET /_emulator/runs``: ``{"runs": emu.run_list(), "runs_turned_away": n}`` as JSON."""
    if handler.command not in ("GET", "HEAD"):
        handler._extra_headers["Allow"] = "GET, HEAD"
        handler._send_json(405, {"error": f"{RUNS_PATH} answers GET only", "status": 405})
        return
    emu = handler.emulator
    assert isinstance(emu, DifyEmulator)
    body = {"runs": emu.run_list(), "runs_turned_away": emu.turned_away()}
    handler._send_json(200, body, {"Cache-Control": "no-store"})


class FormAnswerer(threading.Thread):
    """The thread of :meth:`DifyEmulator.answer_when_paused`."""

    #: Requests that show a client looking at a paused run.
    LOOKS = frozenset({"run_detail", "form", "events"})

    def __init__(self, emu: DifyEmulator, action: str, inputs: Any, app_code: str | None, timeout: float) -> None:
        super().__init__(name="dify-form-answer", daemon=True)
        self.emu, self.action, self.inputs, self.app_code, self.timeout = emu, action, inputs, app_code, timeout
        self.answered: DifyRun | None = None
        self.error: BaseException | None = None

    def _looks(self) -> int:
        return sum(1 for r in self.emu.requests if r.endpoint in self.LOOKS)

    def run(self) -> None:
        try:
            deadline = time.monotonic() + self.timeout
            run = None
            while run is None or run.status != "paused":
                if time.monotonic() > deadline or self.emu.stopping.is_set():
                    raise TimeoutError(f"no run paused within {self.timeout:g} s")
                run = next((r for r in self.emu.runs if self.app_code in (None, r.app.code)), None)
                time.sleep(0.02)
            seen = self._looks()
            while self._looks() <= seen:
                if time.monotonic() > deadline or self.emu.stopping.is_set():
                    raise TimeoutError(f"nobody looked at paused run {run.id} within {self.timeout:g} s")
                time.sleep(0.02)
            self.answered = self.emu.submit_form(self.emu.form_token(run.id), self.action, self.inputs)
        except BaseException as exc:  # reported by the caller through ``error``
            self.error = exc
