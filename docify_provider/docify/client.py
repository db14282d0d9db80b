"""Docify's clients: ``DocifyClient`` (workers) and ``AsyncDocifyClient`` (the triggerer).

The transport (``docify_provider._core.transport``: httpx arguments, answer checking, retries,
downloads, stream reading) is every backend's; ``ClientBase`` (``client_base``) adds Docify's
request bodies and the upload checks of its file rules, once for both clients. The two clients
differ only in I/O, and only one is written by hand: ``_async/client.py``, from which
``scripts/unasync.py`` generates ``_sync/client.py``. This module is where callers import them.
"""

from __future__ import annotations

import contextlib
from typing import Any

from docify_provider._core.transport import _SHARED, CHUNK, MAX_REDIRECTS, ssl_context
from docify_provider._core.transport import shared_async_client as core_shared_async_client
from docify_provider.docify._async.client import AsyncDocifyClient
from docify_provider.docify._sync.client import DocifyClient
from docify_provider.docify.client_base import ClientBase

__all__ = [
    "CHUNK",
    "MAX_REDIRECTS",
    "_SHARED",
    "AsyncDocifyClient",
    "ClientBase",
    "DocifyClient",
    "shared_async_client",
    "ssl_context",
]


def shared_async_client(config: Any, *, scope: str) -> contextlib.AbstractAsyncContextManager[AsyncDocifyClient]:
    """An ``AsyncDocifyClient`` over the httpx client its connection shares in this event loop.

    Async-only: see ``docify_provider._core.transport.shared_async_client``.
    """
    return core_shared_async_client(config, scope=scope, client_class=AsyncDocifyClient)
