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
from httpx_sse import SSEError

from docify_provider import __version__
from docify_provider.client.config import redact_key, reveal
from docify_provider.client.errors import (
    DocifyConfigError,
    DocifyError,
    DocifyProtocolError,
    DocifyRunTimeoutError,
    DocifyUnsafeDownloadError,
)
from docify_provider.client.files import UploadSource, open_upload_source
from docify_provider.client.http_errors import error_for_status, error_for_transport
from docify_provider.client.inputs import normalize_inputs, validate_inputs
from docify_provider.client.protocol import DocifyProtocol, Endpoint
from docify_provider.client.sse import BoundedEventText

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Callable, Mapping

    from docify_provider.client.config import ClientConfig
    from docify_provider.client.models import FileType, ScenarioInfo
    from docify_provider.client.sse import StreamTracker

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
        return {"Authorization": f"Bearer {reveal(self.config.api_key)}"}

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

    def _upload_request(
        self,
        source: Any,
        *,
        user: str | None,
        file_type: FileType | str | None,
        file_name: str | None,
        stack: contextlib.ExitStack,
    ) -> tuple[UploadSource, Callable[[], dict[str, Any]]]:
        """Check ``source`` (before any request) and return request kwargs made fresh per attempt.

        Each attempt opens the source again (closing files we opened when ``stack`` closes), so a
        retried upload streams from the start without holding the file in memory.
        """
        upload = open_upload_source(source, file_name=file_name, file_type=file_type)
        fields = self.protocol.upload_fields(user=user or self.config.default_user)

        def make_kwargs() -> dict[str, Any]:
            fileobj = upload.opener()
            if upload.owned:
                stack.callback(fileobj.close)
            return {"data": fields, "files": {"file": (upload.name, fileobj, upload.mime_type)}}

        return upload, make_kwargs

    def _stream_request(self, body: dict[str, Any]) -> dict[str, Any]:
        """Arguments for ``http.stream(...)`` of a streaming run."""
        endpoint = self.protocol.STREAM
        return {
            "method": endpoint.method,
            "url": endpoint.path,
            "json": body,
            "headers": {**self._auth(), "Accept": "text/event-stream", "Cache-Control": "no-store"},
            "timeout": self._stream_timeout(),
        }

    def _event_text(self, response: httpx.Response) -> BoundedEventText:
        return BoundedEventText(
            response,
            max_event_chars=self.config.max_event_chars,
            idle_timeout=self.config.idle_timeout,
            endpoint=str(self.protocol.STREAM),
            max_stream_seconds=self.config.max_stream_seconds,
        )

    def _stream_failure(self, exc: Exception, tracker: StreamTracker, response: httpx.Response) -> DocifyError:
        """The typed error for a stream that broke while being read, with what was seen so far.

        The session id and the events seen let a human find the run in Docify's console.
        """
        endpoint = self.protocol.STREAM
        if isinstance(exc, SSEError):
            return DocifyProtocolError(str(exc), status_code=response.status_code, endpoint=str(endpoint))
        if isinstance(exc, httpx.ReadTimeout):
            # Between stream chunks the read timeout is the idle timeout: say so, not just "timed out".
            err: Exception = DocifyRunTimeoutError(
                f"Nothing at all arrived on the stream for idle_timeout {self.config.idle_timeout:g}s (not even "
                "a keep-alive): the connection is stuck. The run may have started and been billed; it is not "
                "re-sent automatically.",
                endpoint=str(endpoint),
            )
        else:
            err = error_for_transport(exc, endpoint) if isinstance(exc, httpx.HTTPError) else exc
        if not isinstance(err, DocifyError):  # pragma: no cover - only the above reach here
            raise exc
        for attr in ("session_id", "events_seen"):
            if hasattr(err, attr):
                setattr(err, attr, getattr(tracker, attr))
        if tracker.session_id:
            # The last few only: an endless stream must not make an endless message.
            seen = tracker.events_seen
            err.message = (
                f"{err.message} Session {tracker.session_id}; {len(seen)} event(s) seen, last: {', '.join(seen[-10:])}."
            )
            err.args = (err._render(),)
        return err

    # -- responses ------------------------------------------------------------------------------

    def _check(self, response: httpx.Response, endpoint: Endpoint) -> None:
        """Raise the typed error for a non-2xx answer (the body must be read).

        A server that echoes the key in its error body ("Invalid API key sk-...") would otherwise
        put it into the exception, and from there into logs, trigger events and the metadata DB:
        the key is cut out of the body before the error is built.
        """
        if response.status_code >= 300:
            body = redact_key(response.content, self.config.api_key)
            raise error_for_status(response.status_code, body, response.headers, endpoint)

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
    def _check_declared_size(expected: int | None, limit: int | None, url: str) -> None:
        """Refuse before any request when the declared ``fileSize`` is already over ``max_bytes``.

        Otherwise the limit would only stop the body after ``limit`` bytes had been fetched and written.
        """
        if expected is not None and limit is not None and expected > limit:
            name = urlsplit(url).path.rsplit("/", 1)[-1]
            raise DocifyUnsafeDownloadError(
                f"Attachment {name!r} declares {expected} bytes (fileSize), over the download limit of {limit} "
                "bytes; not downloaded",
                endpoint="download",
            )

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
