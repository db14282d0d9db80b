"""A client's settings: where the service is, how long to wait, and whom to trust with the key.

Shared by every backend; a backend subclasses ``ClientConfig`` for its default base URL, its name
in messages and its error classes (``docify_provider.docify.config``, ``docify_provider.dify.config``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import urlsplit

from docify_provider._core.errors import ConfigError, ProviderError, error_class

DEFAULT_USER = "airflow-provider-docify"


class Secret:
    """A credential that never shows itself: its ``repr`` and ``str`` are ``'***'``.

    Tracebacks that print every frame's local variables (the rich tracebacks of Airflow 3.0's
    ``airflow dags test`` and console logs) would otherwise print the key from any frame that holds
    it as a plain string. Code that needs the value asks for it with ``reveal()`` at the last moment
    and does not keep it in a local variable.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str | None) -> None:
        self._value = value or ""

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value.strip())


def reveal(secret: str | Secret) -> str:
    """The value of a key given as a plain string or as a ``Secret``."""
    return secret.reveal() if isinstance(secret, Secret) else str(secret)


def redact_key(body: bytes, api_key: str | Secret) -> bytes:
    """``body`` with every occurrence of the key replaced by ``***`` (a server may echo the key).

    A function of its own so that the key's bytes live only in this short frame, never in the
    frame that raises the error built from the body.
    """
    key = reveal(api_key).encode("utf-8")
    return body.replace(key, b"***") if key and key in body else body


def conn_env_var(conn_id: str) -> str:
    """The environment variable Airflow reads the connection ``conn_id`` from (``AIRFLOW_CONN_<ID>``)."""
    return "AIRFLOW_CONN_" + conn_id.upper()


def shown_url(url: str) -> str:
    """``url`` for a message: scheme, host, port and path only (no ``user:password@``, query or fragment)."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return url.split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}"


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ClientConfig:
    """Everything a client needs; built by a hook from an Airflow connection, or by hand.

    Timeouts are separate because they guard different things: ``connect_timeout`` a dead host,
    ``read_timeout`` a blocking run that the service takes long to answer, ``idle_timeout`` a stream that
    stopped sending events (pings do not count as events).
    """

    #: Name of the service in messages, and the backend's error root.
    label: ClassVar[str] = "the service"
    errors: ClassVar[type[ProviderError]] = ProviderError
    #: The path the backend's API lives under (a base URL ends with it) and the API's name, for the
    #: message that says what a wrong base URL should look like.
    api_suffix: ClassVar[str] = ""
    api_name: ClassVar[str] = "the API"
    #: Another API's path a base URL may end with by mistake, and its name (Dify's account API
    #: ``/openapi/v1`` also ends with the Service API's ``/v1``).
    other_apis: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: What the connection's password holds, for the message about a missing one.
    key_name: ClassVar[str] = "API key"
    #: Logger of the retry messages, so users set levels per backend.
    retry_logger: ClassVar[str] = "docify_provider._core.retries"

    #: The API key; a plain string or a ``Secret`` (the hook passes one). Never shown by ``repr``.
    api_key: str | Secret = field(repr=False)
    base_url: str = ""
    connect_timeout: float = 10.0
    read_timeout: float = 600.0
    write_timeout: float = 120.0
    idle_timeout: float = 300.0
    verify: bool | str = True
    #: One proxy URL for every request, or a mapping of URL pattern ("https://", "all://") to proxy URL.
    proxies: str | dict[str, str] | None = None
    #: Hosts besides the base URL's host that may receive the API key (attachment downloads).
    trusted_hosts: tuple[str, ...] = ()
    #: Allow a plain http:// base URL on a non-loopback host (the key would travel unencrypted).
    allow_insecure_http: bool = False
    #: Retries for requests that are safe to repeat (info, upload, download).
    max_retries: int = 4
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    #: Longest ``Retry-After`` waited for inside one call; a longer one is cut to this.
    retry_after_cap: float = 120.0
    #: Largest single stream event accepted, in characters; protects memory from a runaway event.
    max_event_chars: int = 64 * 1024 * 1024
    #: Longest a streaming run may stay open, in seconds (None: unbounded). Unlike ``idle_timeout``
    #: it also stops a stream that keeps sending events but never COMPLETE. Two hours by default:
    #: far beyond a document scenario's minutes, short enough that a broken stream does not hold a
    #: triggerer slot (or a worker) through the night.
    max_stream_seconds: float | None = 7200.0
    #: Seconds the free description of the app (Docify's scenario info, Dify's ``/parameters``) read
    #: by one task is reused by the next ones (``_core.app_cache``); 0: read it for every task.
    info_cache_seconds: float = 60.0
    default_user: str = DEFAULT_USER
    user_agent: str = "airflow-provider-docify"
    #: The Airflow connection this config was read from (the hook sets it), so that messages name
    #: the connection to fix rather than a default one; None for a config built by hand.
    conn_id: str | None = None
    #: The connection came from its ``AIRFLOW_CONN_<ID>`` environment variable (the hook checks), so
    #: a fix goes there: a change in the metadata database would stay hidden behind it.
    conn_from_env: bool = False

    def __post_init__(self) -> None:
        bad = error_class(self.errors, ConfigError)
        self._check_key(bad)
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            default = type(self).__dataclass_fields__["base_url"].default
            raise bad(f"base_url must be an http(s) URL such as {default!r}, got {self.base_url!r}")
        if parts.scheme == "http" and not self.allow_insecure_http and not is_loopback(parts.hostname):
            raise bad(
                f"Refusing plain http:// base_url for host {parts.hostname!r}: the API key would be sent "
                "unencrypted. Use https://, or set allow_insecure_http (connection extra) if you must."
            )
        for name in ("connect_timeout", "read_timeout", "write_timeout", "idle_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise bad(f"{name} must be a positive number of seconds, got {value!r}")
        if self.max_stream_seconds is not None and (
            isinstance(self.max_stream_seconds, bool)
            or not isinstance(self.max_stream_seconds, (int, float))
            or self.max_stream_seconds <= 0
        ):
            raise bad(
                f"max_stream_seconds must be a positive number of seconds or None, got {self.max_stream_seconds!r}"
            )
        if self.max_retries < 0:
            raise bad(f"max_retries must be >= 0, got {self.max_retries!r}")

    def _check_key(self, bad: type[ConfigError]) -> None:
        """Refuse a missing key; a backend whose credential is not an API key words it its own way."""
        if not reveal(self.api_key).strip():
            where = f" {self.in_connection()}" if self.conn_id else ""
            raise bad(f"No {self.label} {self.key_name}{where}: {self.set_key_hint()}.")

    # -- what messages say about where the settings came from ------------------------------------

    def in_connection(self) -> str:
        """``in connection 'x'``, with ``(from AIRFLOW_CONN_X)`` when it came from there; ``""`` for a
        config built by hand."""
        if not self.conn_id:
            return ""
        source = f" (from {conn_env_var(self.conn_id)})" if self.conn_from_env else ""
        return f"in connection {self.conn_id!r}{source}"

    def set_key_hint(self) -> str:
        """How to give the key, where this config came from (the connection actually used)."""
        if not self.conn_id:
            return "pass api_key"
        if self.conn_from_env:
            return f"set the 'password' of {conn_env_var(self.conn_id)} to the {self.key_name}"
        return (
            f"set its password to the {self.key_name} (or define the connection as "
            f"{conn_env_var(self.conn_id)} with a 'password')"
        )

    def refused_key_hint(self) -> str:
        """What to check when the server refuses the key (HTTP 401)."""
        if not self.conn_id:
            return f"check the {self.key_name} given as api_key"
        return f"check the {self.key_name} {self.in_connection()}, its password"

    def _other_api(self) -> str | None:
        """The name of the other API whose path the base URL ends with, if it does."""
        path = urlsplit(self.base_url).path.rstrip("/")
        for suffix, name in self.other_apis:
            if path.endswith(suffix) and (len(suffix) > len(self.api_suffix) or not path.endswith(self.api_suffix)):
                return name
        return None

    def lacks_api_suffix(self) -> bool:
        """The base URL does not end with the path the backend's API lives under (or ends with another's)."""
        if not self.api_suffix:
            return False
        path = urlsplit(self.base_url).path.rstrip("/")
        return not path.endswith(self.api_suffix) or self._other_api() is not None

    def base_url_hint(self) -> str:
        """What to fix when the base URL answers as the API never would (a 404 on its own path, an
        HTML page): the suffix the backend's API lives under, and the URL actually configured."""
        where = f"the base URL {self.in_connection()}" if self.conn_id else "the base URL"
        url = shown_url(self.base_url)
        if not self.lacks_api_suffix():
            return f"{where} is {url}: check that {self.api_name} answers there"
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        other = self._other_api()
        shown = f"{url} ({other}'s path)" if other else url
        return f"{where} is {shown}, but {self.api_name} is under {self.api_suffix}: e.g. {origin}{self.api_suffix}"

    @property
    def host(self) -> str:
        return (urlsplit(self.base_url).hostname or "").lower()

    def is_trusted_host(self, url: str) -> bool:
        """May the API key be sent to ``url``? Only its own host and explicitly trusted ones."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if not host:
            return False
        if parts.scheme == "http" and not self.allow_insecure_http and not is_loopback(host):
            return False
        trusted = {self.host, *(h.lower() for h in self.trusted_hosts)}
        return host in trusted
