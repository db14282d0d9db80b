"""Stream triggers of one connection share one HTTP client in an event loop, and close it after the last.

The triggerer runs many triggers in one asyncio loop; building an ``httpx.AsyncClient`` per stream
costs CPU and a connection pool each. ``shared_async_client`` hands every stream of one connection
(and the same transport settings) the same client in that loop, and closes it when the last ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import httpx
import pytest

from docify_provider.docify import ClientConfig
from docify_provider.docify import client as aio_module
from docify_provider.docify.client import shared_async_client
from docify_provider.docify.config import reveal
from docify_provider.testing import SUMMARY_KEY, Fault
from docify_provider.triggers.docify import DocifyStreamTrigger

pytestmark = pytest.mark.timeout(120)

WIRE = {"text": {"text": "Triggers hold streams. Workers do not."}, "language": {"text": "en"}}


@pytest.fixture
def built_clients(monkeypatch: pytest.MonkeyPatch) -> list[httpx.AsyncClient]:
    """Every ``httpx.AsyncClient`` built from now on, in order."""
    built: list[httpx.AsyncClient] = []
    original = httpx.AsyncClient

    class Recording(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(httpx, "AsyncClient", Recording)
    return built


async def _run(trigger: Any) -> list[Any]:
    return [event async for event in trigger.run()]


async def _run_together(triggers: list[Any]) -> tuple[list[list[Any]], int]:
    """Run ``triggers`` at once in this loop: their events, and the most users the shared pool had at once."""
    tasks = [asyncio.create_task(_run(trigger)) for trigger in triggers]
    peak_users = 0
    while not all(t.done() for t in tasks):
        pool = aio_module._SHARED.get(asyncio.get_running_loop(), {})
        peak_users = max([peak_users, *(entry.users for entry in pool.values())])
        await asyncio.sleep(0.02)
    return [t.result() for t in tasks], peak_users


async def test_triggers_of_one_connection_share_one_client_and_close_it_after_the_last(
    emulator, docify_conn, built_clients
):
    conn_id = docify_conn(SUMMARY_KEY, idle_timeout=10)
    # Slow enough that all streams are open at once.
    emulator.inject(Fault("stream", "slow_events", interval=0.2, times=None))
    streams = 5
    results, peak_users = await _run_together(
        [DocifyStreamTrigger(inputs=WIRE, docify_conn_id=conn_id) for _ in range(streams)]
    )

    assert [[e.payload["status"] for e in events] for events in results] == [["success"]] * streams
    assert len({events[0].payload["session_id"] for events in results}) == streams
    assert emulator.runs_started(SUMMARY_KEY) == streams
    assert peak_users == streams, "the streams did not overlap on one shared client"
    assert len(built_clients) == 1 and built_clients[0].is_closed
    assert not aio_module._SHARED.get(asyncio.get_running_loop())

    # A later trigger builds (and closes) a fresh client.
    assert [e.payload["status"] for e in await _run(DocifyStreamTrigger(inputs=WIRE, docify_conn_id=conn_id))] == [
        "success"
    ]
    assert len(built_clients) == 2 and built_clients[1].is_closed


async def test_shared_client_is_per_connection_and_settings_and_closed_on_errors(built_clients):
    base = ClientConfig(api_key="k1", base_url="https://docify.example/docify")
    other_key = dataclasses.replace(base, api_key="k2", idle_timeout=5)  # per request: same client
    other_host = dataclasses.replace(base, base_url="https://other.example/docify")
    async with (
        shared_async_client(base, scope="a") as c1,
        shared_async_client(other_key, scope="a") as c2,
        shared_async_client(base, scope="b") as c3,
        shared_async_client(other_host, scope="a") as c4,
    ):
        assert c1.http is c2.http
        assert reveal(c1.config.api_key) == "k1" and reveal(c2.config.api_key) == "k2" and c2.config.idle_timeout == 5
        assert len({id(c.http) for c in (c1, c3, c4)}) == 3
        # The shared pool must not cap concurrent streams of one connection (each holds a connection).
        assert c1.http._transport._pool._max_connections > 10_000  # type: ignore[attr-defined]
    assert len(built_clients) == 3 and all(c.is_closed for c in built_clients)

    with pytest.raises(RuntimeError):
        async with shared_async_client(base, scope="a"):
            raise RuntimeError("the stream failed")
    assert built_clients[-1].is_closed and not aio_module._SHARED.get(asyncio.get_running_loop())


def test_each_event_loop_gets_its_own_client(built_clients):
    config = ClientConfig(api_key="k1", base_url="https://docify.example/docify")

    async def use() -> int:
        async with shared_async_client(config, scope="a") as client:
            return id(client.http)

    asyncio.run(use())
    asyncio.run(use())
    assert len(built_clients) == 2 and all(c.is_closed for c in built_clients)


async def test_account_api_triggers_in_one_loop_share_one_http_client(openapi_conn, built_clients):
    """The account API's triggers borrow the per-loop pool through ``ProviderHook.async_client`` too
    (they used to build an ``httpx.AsyncClient`` per trigger, and per stop and form read)."""
    from docify_provider.hooks.dify_openapi import DifyOpenAPIHook
    from docify_provider.testing.dify_openapi import LONG_APP_ID
    from docify_provider.triggers.dify_openapi import DifyAppRunTrigger

    emu = openapi_conn
    hook = DifyOpenAPIHook()
    runs = []
    for _ in range(2):  # started on the worker, as the operator does; Dify goes on once the stream is closed
        events = hook.client.run_app(LONG_APP_ID, {"seconds": 1, "steps": 4})
        started = next(e for e in events if e.workflow_run_id)
        events.close()  # type: ignore[attr-defined]
        runs.append((str(started.workflow_run_id), started.task_id))
    hook.close()
    results, peak_users = await _run_together(
        [DifyAppRunTrigger(app_id=LONG_APP_ID, workflow_run_id=run_id, dify_task_id=task) for run_id, task in runs]
    )

    assert [[e.payload["status"] for e in events] for events in results] == [["success"], ["success"]]
    assert peak_users == 2, "the two streams did not overlap on one shared client"
    assert len(built_clients) == 1 and built_clients[0].is_closed
    assert emu.runs_started() == 2
