"""The user-scoped OpenAPI client's configuration: the shared ``ClientConfig`` with an account token."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import ClassVar

from docify_provider._core import config as core
from docify_provider._core.errors import ConfigError, error_class
from docify_provider.dify_openapi.errors import DifyOpenAPIError, login_hint

#: Dify Cloud's API host with the OpenAPI blueprint's prefix; self-hosted: ``https://<dify>/openapi/v1``.
DEFAULT_BASE_URL = "https://api.dify.ai/openapi/v1"
#: Which path generation to use: detected from the server (reads only), or pinned.
GENERATIONS = ("auto", "legacy", "action", "per-mode")


@dataclass(frozen=True)
class DifyOpenAPIClientConfig(core.ClientConfig):
    """Everything a user-scoped OpenAPI client needs: an account token and where ``/openapi/v1`` is.

    ``api_key`` is the account token (``dfoa_...``, from the device flow); it may be empty only with
    ``login_only`` (a client that runs the device flow before any token exists). ``workspace_id``
    defaults to the account's default workspace (``GET /account``). ``api_generation`` pins the
    path generation instead of detecting it.
    """

    label: ClassVar[str] = "Dify"
    errors: ClassVar[type[DifyOpenAPIError]] = DifyOpenAPIError
    api_suffix: ClassVar[str] = "/openapi/v1"
    api_name: ClassVar[str] = "the Dify account API"
    other_apis: ClassVar[tuple[tuple[str, str], ...]] = (("/v1", "the Dify Service API"),)
    key_name: ClassVar[str] = "account token"
    retry_logger: ClassVar[str] = "docify_provider.dify_openapi.retries"

    api_key: core.Secret | str = field(default="", repr=False)
    base_url: str = DEFAULT_BASE_URL
    read_timeout: float = 100.0
    #: Dify pings every 10 s and closes a stream after 300 s without an event.
    idle_timeout: float = 330.0
    workspace_id: str | None = None
    #: The Dify console (for messages pointing at a run there); optional.
    console_url: str | None = None
    #: When the token lapses (the device flow's ``expires_at``), for warnings; optional.
    token_expires_at: datetime | None = None
    api_generation: str = "auto"
    #: Seconds between re-attaches of a run whose stream ended without news.
    poll_interval: float = 5.0
    login_only: bool = False

    def _check_key(self, bad: type[ConfigError]) -> None:
        if self.login_only or core.reveal(self.api_key).strip():
            return
        super()._check_key(bad)

    def set_key_hint(self) -> str:
        """An account token comes from this package's device login, which writes the connection."""
        return login_hint(self.conn_id, self.conn_from_env, self.base_url, again=False)

    def refused_key_hint(self) -> str:
        return login_hint(self.conn_id, self.conn_from_env, self.base_url)

    def __post_init__(self) -> None:
        super().__post_init__()
        bad = error_class(self.errors, ConfigError)
        if self.api_generation not in GENERATIONS:
            raise bad(f"api_generation must be one of {', '.join(GENERATIONS)}, got {self.api_generation!r}")
        value = self.poll_interval
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise bad(f"poll_interval must be a positive number of seconds, got {value!r}")

    def token_lapses_in(self, now: datetime | None = None) -> float | None:
        """Seconds until ``token_expires_at`` (negative once lapsed); None when unknown."""
        if self.token_expires_at is None:
            return None
        expires = self.token_expires_at
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=timezone.utc)
        return (expires - (now or datetime.now(timezone.utc))).total_seconds()
