"""What the sync and async clients share: request building, answer checking, stream setup.

Only the transport differs between ``sync.DocifyClient`` (workers) and ``aio.AsyncDocifyClient``
(the triggerer); everything that decides *what* happens lives here or below, once.
"""

from __future__ import annotations

import functools
import json
import os
import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from docify_provider import __version__
from docify_provider.client.errors import DocifyConfigError, DocifyProtocolError, DocifyUnsafeDownloadError
from docify_provider.client.http_errors import error_for_status
from docify_provider.client.inputs import normalize_inputs, validate_inputs
from docify_provider.client.protocol import DocifyProtocol, Endpoint

if TYPE_CHECKING:
    from collections.abc import Mapping

    from docify_provider.client.config import ClientConfig
    from docify_provider.client.models import ScenarioInfo

MAX_REDIRECTS = 5


@functools.lru_cache(maxsize=16)
def _ssl_context(verify: bool | str) -> ssl.SSLContext:
    # Building a context loads the CA bundle (~50 ms of CPU, ~1 MB); share one per setting instead
    # of one per client (a triggerer holds a client per stream). A CA bundle path is turned into a
    # context here because httpx deprecates ``verify=<str>``.
    if isinstance(verify, str):
        if os.path.isdir(verify):
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    return httpx.create_ssl_context(verify=verify)


def ssl_context(verify: bool | str) -> ssl.SSLContext:
    """The process-wide TLS context for a ``ClientConfig.verify`` value."""
    try:
        return _ssl_context(verify)
    except (OSError, ssl.SSLError) as exc:
        raise DocifyConfigError(f"Cannot load the CA bundle {verify!r} (connection extra ca_bundle): {exc}") from None


class ClientBase:
    """Configuration -> httpx arguments; responses -> models or typed errors."""

    protocol: type[DocifyProtocol] = DocifyProtocol

    def __init__(self, config: ClientConfig, *, protocol: type[DocifyProtocol] | None = None):
        self.config = config
        if protocol is not None:
            self.protocol = protocol

    # -- httpx arguments ------------------------------------------------------------------------

    def _client_kwargs(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "base_url": cfg.base_url.rstrip("/") + "/",
            "timeout": httpx.Timeout(
                connect=cfg.connect_timeout, read=cfg.read_timeout, write=cfg.write_timeout, pool=cfg.connect_timeout
            ),
            "verify": ssl_context(cfg.verify),
            "headers": {"User-Agent": f"{cfg.user_agent}/{__version__}", "Accept": "application/json"},
            "follow_redirects": False,
            "limits": httpx.Limits(max_connections=100, max_keepalive_connections=20),
        }

    def _proxy_mounts(self, transport_cls: type[Any]) -> dict[str, Any] | None:
        proxies = self.config.proxies
        if not proxies:
            return None
        if isinstance(proxies, str):
            proxies = {"all://": proxies}
        verify = ssl_context(self.config.verify)
        return {pattern: transport_cls(proxy=url, verify=verify) for pattern, url in proxies.items()}

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.api_key}"}

    def _stream_timeout(self) -> httpx.Timeout:
        cfg = self.config
        # Between stream chunks the read timeout is the idle timeout; pings keep it alive.
        return httpx.Timeout(
            connect=cfg.connect_timeout, read=cfg.idle_timeout, write=cfg.write_timeout, pool=cfg.connect_timeout
        )

    def _download_headers(self, url: str) -> dict[str, str]:
        """Send the key with a download only to the API's own host or hosts trusted in the connection."""
        return self._auth() if self.config.is_trusted_host(url) else {}

    # -- requests -------------------------------------------------------------------------------

    def _run_body(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        user: str | None,
        additional_info: Any,
        scenario: ScenarioInfo | None,
    ) -> dict[str, Any]:
        wire = normalize_inputs(inputs)
        if scenario is not None:
            validate_inputs(scenario, wire)
        return self.protocol.run_body(wire, user=user or self.config.default_user, additional_info=additional_info)

    # -- responses ------------------------------------------------------------------------------

    @staticmethod
    def _check(response: httpx.Response, endpoint: Endpoint) -> None:
        """Raise the typed error for a non-2xx answer (the body must be read)."""
        if response.status_code >= 300:
            raise error_for_status(response.status_code, response.content, response.headers, endpoint)

    @staticmethod
    def _json(response: httpx.Response, endpoint: Endpoint) -> Any:
        try:
            return json.loads(response.content)
        except ValueError as exc:
            raise DocifyProtocolError(
                f"Docify answered with non-JSON content ({response.headers.get('content-type', 'no content type')}): "
                f"{response.content[:200]!r}",
                status_code=response.status_code,
                endpoint=str(endpoint),
            ) from exc

    @staticmethod
    def _next_location(response: httpx.Response, url: str, hops: int) -> str:
        if hops >= MAX_REDIRECTS:
            raise DocifyUnsafeDownloadError(f"Too many redirects downloading {urlsplit(url).path}", endpoint="download")
        location = response.headers.get("location")
        if not location:
            raise DocifyProtocolError("Redirect without a Location header", status_code=response.status_code)
        return str(response.url.join(location))

    @staticmethod
    def _check_download_size(received: int, expected: int | None, limit: int | None, url: str) -> None:
        name = urlsplit(url).path.rsplit("/", 1)[-1]
        if limit is not None and received > limit:
            raise DocifyUnsafeDownloadError(
                f"Attachment {name!r} exceeds the download limit of {limit} bytes; stopped at {received}",
                endpoint="download",
            )
        if expected is not None and received > expected:
            raise DocifyUnsafeDownloadError(
                f"Attachment {name!r} is larger than the {expected} bytes Docify declared (fileSize); "
                f"stopped at {received}",
                endpoint="download",
            )

    @staticmethod
    def _check_download_complete(received: int, expected: int | None, url: str) -> None:
        if expected is not None and received != expected:
            name = urlsplit(url).path.rsplit("/", 1)[-1]
            raise DocifyUnsafeDownloadError(
                f"Attachment {name!r} has {received} bytes but Docify declared {expected} (fileSize)",
                endpoint="download",
            )
