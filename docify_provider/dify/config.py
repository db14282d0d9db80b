"""Dify's client configuration: the shared ``ClientConfig`` with Dify's base URL and errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from docify_provider._core import config as core
from docify_provider._core.errors import ConfigError, error_class
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
    api_suffix: ClassVar[str] = "/v1"
    api_name: ClassVar[str] = "the Dify Service API"
    other_apis: ClassVar[tuple[tuple[str, str], ...]] = (("/openapi/v1", "the Dify account API"),)
    retry_logger: ClassVar[str] = "docify_provider.dify.retries"

    base_url: str = DEFAULT_BASE_URL
    read_timeout: float = 100.0
    #: Dify pings every 10 s and closes a stream after 300 s without an event; a stream silent
    #: (no byte at all) this long is treated as cut and the run is re-attached.
    idle_timeout: float = 330.0
    #: How long a run whose answer was lost (gateway timeout, cut connection) is looked for in the
    #: logs and waited for, from the moment the request was sent; then the outcome is unknown.
    recovery_timeout: float = 1800.0
    #: Seconds between two reads of a run's status (log recovery, polling a run without a stream).
    poll_interval: float = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        bad = error_class(self.errors, ConfigError)
        for name in ("recovery_timeout", "poll_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise bad(f"{name} must be a positive number of seconds, got {value!r}")
