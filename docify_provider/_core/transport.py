"""The httpx clients every backend drives, sync (workers) and async (the triggerer), and the
triggerer's per-loop pool of them.

Only the I/O differs between ``SyncHTTP`` and ``AsyncHTTP``; what is sent and how answers are
checked lives once in ``HTTPBase`` (``transport_base``). ``AsyncHTTP`` is written by hand
(``_async/transport.py``) and ``SyncHTTP`` generated from it (``_sync/transport.py``, by
``scripts/unasync.py``). A backend client subclasses one of these and adds its operations
(``docify.client.DocifyClient``, ``dify.client.DifyClient``). ``shared_async_client`` is
async-only: a worker's sync client has no event loop to share a pool in.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Hashable
from typing import Any, TypeVar

import httpx

from docify_provider._core._async.transport import AsyncHTTP
from docify_provider._core._sync.transport import SyncHTTP
from docify_provider._core.transport_base import (
    CHUNK,
    DOWNLOAD,
    MAX_REDIRECTS,
    HTTPBase,
    StreamVerdict,
    ssl_context,
)

__all__ = [
    "CHUNK",
    "DOWNLOAD",
    "MAX_REDIRECTS",
    "_SHARED",
    "AsyncHTTP",
    "HTTPBase",
    "StreamVerdict",
    "SyncHTTP",
    "shared_async_client",
    "ssl_context",
]

A = TypeVar("A", bound=AsyncHTTP)

# -- one httpx client per event loop and connection (the triggerer) ----------------------------------


class _SharedHttp:
    __slots__ = ("http", "users")

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.users = 0


#: event loop -> (connection id, transport settings) -> the client its triggers share. Weak on the
#: loop: an httpx client (its connections, anyio primitives) belongs to the loop it was used in.
_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, _SharedHttp]] = weakref.WeakKeyDictionary()


def _http_settings(config: Any) -> Hashable:
    """What ``httpx.AsyncClient`` is built from; the key, timeouts per request and limits are not in it."""
    proxies = config.proxies
    if isinstance(proxies, dict):
        proxies = tuple(sorted(proxies.items()))
    return (
        config.base_url,
        config.connect_timeout,
        config.read_timeout,
        config.write_timeout,
        config.verify,
        config.user_agent,
        proxies,
    )


@contextlib.asynccontextmanager
async def shared_async_client(config: Any, *, scope: str, client_class: type[A]) -> AsyncIterator[A]:
    """A ``client_class`` client (an ``AsyncHTTP``) for ``config`` over the ``httpx.AsyncClient`` that
    every user of the same ``scope`` (a connection id) and transport settings shares in the running
    event loop.

    A triggerer runs many triggers in one loop: building a client per stream costs ~1 ms of CPU and
    its own connection pool. The shared client is built by the first user and closed when the last
    one leaves (a later user builds a new one), and is never used from another loop. Everything
    per run stays per client: the API key and stream timeouts go with each request, and the
    client (its config, retries, event decoding) is the caller's own. Its pool has no
    connection cap (each stream holds a connection for its whole length; a cap would make the
    101st concurrent stream of a connection wait for a slot), as separate clients had none.
    """
    pool = _SHARED.setdefault(asyncio.get_running_loop(), {})
    key = (scope, _http_settings(config))
    entry = pool.get(key)
    if entry is None or entry.http.is_closed:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=20)
        entry = pool[key] = _SharedHttp(client_class(config)._new_http(limits=limits))
    entry.users += 1
    client = client_class(config, http=entry.http)
    try:
        yield client
    finally:
        await client.aclose()  # borrowed: only forgets the shared client
        entry.users -= 1
        if entry.users == 0:
            if pool.get(key) is entry:
                del pool[key]
            await entry.http.aclose()
