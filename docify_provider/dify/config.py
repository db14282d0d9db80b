"""Dify's client configuration: the shared ``ClientConfig`` with Dify's base URL and errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from docify_provider._core import config as core
from docify_provider.dify.errors import DifyError

#: Dify Cloud's Service API; self-hosted servers are ``http(s)://<host>/v1``.
DEFAULT_BASE_URL = "https://api.dify.ai/v1"


@dataclass(frozen=True)
class DifyClientConfig(core.ClientConfig):
    """Everything a Dify client needs: an app's API key and where its ``/v1`` API is.

    ``read_timeout`` defaults to 100 s, what Dify Cloud's Cloudflare front allows a blocking answer;
    a lost answer is found again through the logs, never re-sent.
    """

    label: ClassVar[str] = "Dify"
    errors: ClassVar[type[DifyError]] = DifyError
    conn_env: ClassVar[str] = "AIRFLOW_CONN_DIFY_DEFAULT"
    retry_logger: ClassVar[str] = "docify_provider.dify.retries"

    base_url: str = DEFAULT_BASE_URL
    read_timeout: float = 100.0
    #: Dify pings every 10 s and closes a stream after 300 s without an event; a stream silent
    #: (no byte at all) this long is treated as cut and the run is re-attached.
    idle_timeout: float = 330.0
