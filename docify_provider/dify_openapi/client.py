"""Dify user-scoped OpenAPI clients: ``DifyOpenAPIClient`` (workers, the login CLI) and
``AsyncDifyOpenAPIClient`` (triggers), for one account token.

Both sit on the shared transport and share ``DifyOpenAPIClientBase`` (``client_base``) and the
sans-IO modules (``protocol``, ``inputs``, ``device``, ``discovery``, ``stream``). Only the async
client is written by hand (``_async/client.py``); the sync one is generated from it
(``_sync/client.py``, by ``scripts/unasync.py``), so the two cannot drift. This module is where
callers import them.

Money rule: a run request is never sent twice. A stream cut once the run id is known re-attaches
through the run's events with the state snapshot; cut before any id, the outcome is unknown (this
API has no run-detail or log endpoint to look the run up).
"""

from __future__ import annotations

from docify_provider.dify_openapi._async.client import AsyncDifyOpenAPIClient
from docify_provider.dify_openapi._sync.client import DifyOpenAPIClient
from docify_provider.dify_openapi.client_base import DifyOpenAPIClientBase

__all__ = ["AsyncDifyOpenAPIClient", "DifyOpenAPIClient", "DifyOpenAPIClientBase"]
