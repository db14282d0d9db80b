"""How the OpenAPI emulator's tests speak to it: an emulator with quick timers (``make``), a client with
the account token, each path generation's URLs, the SSE items of a run, Dify's error body checked.

Shared by ``tests/dify_openapi/test_dify_openapi_emulator.py`` (probes, auth, account, apps, runs,
device flow, CLI) and ``test_dify_openapi_emulator_runs_in_progress.py`` (stop, re-attach, forms),
which are apart only to keep each file readable.
"""

from __future__ import annotations

import json

import httpx
from httpx_sse import ServerSentEvent, connect_sse

from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN, LONG_APP_ID, TEXT_APP_ID, DifyOpenAPIEmulator
from helpers import auth

TEXT = {"topic": "tea", "tone": "formal"}
GENERATIONS = ("current", "legacy")
#: Quicker pings and idle close than ``helpers.BACKENDS``: the emulator's own timers are under test.
OPTIONS: dict[str, object] = {
    "ping_interval": 0.1,
    "idle_close_seconds": 3.0,
    "event_interval": 0.002,
    "device_poll_interval": 0.5,
}


def make(paths: str = "current", **options: object) -> DifyOpenAPIEmulator:
    return DifyOpenAPIEmulator(paths=paths, **{**OPTIONS, **options})  # type: ignore[arg-type]


def client(emu: DifyOpenAPIEmulator, token: str | None = ACCOUNT_TOKEN) -> httpx.Client:
    return httpx.Client(base_url=emu.base_url + "/", headers=auth(token) if token else {}, timeout=10)


# paths of each generation --------------------------------------------------------------------
def run_path(emu: DifyOpenAPIEmulator, app_id: str, mode: str = "workflow") -> str:
    return f"apps/{app_id}/run" if emu.paths == "legacy" else f"apps/{app_id}/{mode}:run"


def describe_path(emu: DifyOpenAPIEmulator, app_id: str) -> str:
    return f"apps/{app_id}/describe" if emu.paths == "legacy" else f"apps/{app_id}"


def stop_path(emu: DifyOpenAPIEmulator, app_id: str, task_id: str) -> str:
    return f"apps/{app_id}/tasks/{task_id}/stop" if emu.paths == "legacy" else f"apps/{app_id}/tasks/{task_id}:stop"


def form_path(emu: DifyOpenAPIEmulator, app_id: str, token: str, submit: bool = False) -> str:
    if emu.paths == "legacy":
        return f"apps/{app_id}/form/human_input/{token}"
    return f"apps/{app_id}/human-input-forms/{token}" + (":submit" if submit else "")


def sse(c: httpx.Client, method: str, url: str, **kwargs: object) -> tuple[list[ServerSentEvent], list[dict]]:
    """Every SSE item (pings included) and the decoded data events."""
    with connect_sse(c, method, url, **kwargs) as source:  # type: ignore[arg-type]
        assert source.response.status_code == 200, source.response.read()
        items = list(source.iter_sse())
    return items, [json.loads(i.data) for i in items if i.event == "message"]


def run(emu: DifyOpenAPIEmulator, c: httpx.Client, app_id: str = TEXT_APP_ID, mode: str = "workflow", **body: object):
    return sse(c, "POST", run_path(emu, app_id, mode), json={"inputs": TEXT, **body})


def names(events: list[dict]) -> list[str]:
    return [e["event"] for e in events]


def error_body(response: httpx.Response, status: int, code: str, message: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and body["status"] == status and isinstance(body["message"], str)
    if message is not None:
        assert body["message"] == message
    return body


def start_long(emu: DifyOpenAPIEmulator, c: httpx.Client, seconds: float = 5, steps: int = 50) -> dict:
    """Start a long run and return its workflow_started event (the stream is left behind)."""
    with connect_sse(
        c, "POST", run_path(emu, LONG_APP_ID), json={"inputs": {"seconds": seconds, "steps": steps}}
    ) as source:
        for item in source.iter_sse():
            if item.event == "message":
                return json.loads(item.data)
    raise AssertionError("no event")
