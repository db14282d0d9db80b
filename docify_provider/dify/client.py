"""Dify Workflow Service API clients: ``DifyClient`` (workers) and ``AsyncDifyClient`` (triggerer).

Both sit on the shared transport (``docify_provider._core.transport``) and share
``DifyClientBase`` (``client_base``: requests, answers, the stop log) and the sans-IO stream
rules of ``dify.stream``. Only the async client is written by hand (``_async/client.py``); the
sync one is generated from it (``_sync/client.py``, by ``scripts/unasync.py``), so the two cannot
drift. This module is where callers import them.

Money rule: a run request (``POST /workflows/run``) is never sent twice. A blocking answer that
is lost after the request went out is found again in the app's logs and waited for; a stream
that is cut once the run id is known is re-attached (``GET /workflow/{id}/events``, else polling).
"""

from __future__ import annotations

import contextlib

from docify_provider._core.transport import shared_async_client as core_shared_async_client
from docify_provider.dify._async.client import AsyncDifyClient
from docify_provider.dify._sync.client import DifyClient
from docify_provider.dify.client_base import DifyClientBase, normalize_inputs
from docify_provider.dify.config import DifyClientConfig
from docify_provider.dify.stream import DifyEventTracker, RunRecovery

__all__ = [
    "AsyncDifyClient",
    "DifyClient",
    "DifyClientBase",
    "DifyEventTracker",
    "RunRecovery",
    "normalize_inputs",
    "shared_async_client",
]


def shared_async_client(
    config: DifyClientConfig, *, scope: str
) -> contextlib.AbstractAsyncContextManager[AsyncDifyClient]:
    """An ``AsyncDifyClient`` over the httpx client its connection shares in this event loop (async-only)."""
    return core_shared_async_client(config, scope=scope, client_class=AsyncDifyClient)
