"""What every backend's hook shares: connection -> client config, storage URLs, file downloads.

A backend hook (``DocifyHook``, ``DifyHook``) subclasses ``ProviderHook`` and names its client
classes, its config class and its connection form; this module turns the Airflow connection into
the backend's ``ClientConfig`` (base URL, timeouts, TLS, proxies, trusted hosts, retries, the
default user) without ever holding the key in clear, resolves storage URLs through
``ObjectStoragePath`` and streams produced files to local folders or object storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import shutil
import tempfile
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import IO, Any, ClassVar, TypeVar

from airflow.providers.common.compat.sdk import BaseHook

from docify_provider._core.config import DEFAULT_USER, ClientConfig, Secret, conn_env_var
from docify_provider._core.errors import BadRequestError, ConfigError, UnsafeDownloadError, error_class
from docify_provider._core.files import local_fs_path, safe_file_name
from docify_provider.compat import mask_secret_once

T = TypeVar("T")

_URL_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_storage_url(value: str) -> bool:
    """``s3://``, ``gs://``, ``file://``... (any scheme but http(s))."""
    return bool(_URL_SCHEME.match(value)) and not value.lower().startswith(("http://", "https://"))


def resolve_user(op: Any, hook: Any) -> str:
    """The task's ``user``; else the connection's ``default_user`` extra; else ``airflow:<dag>.<task>``.

    Here, beside the connection it reads, so that every adapter that sends or answers for a task
    (operators, the human-input re-attach) asks one place without importing the operators.
    """
    if op.user:
        return str(op.user)
    configured = hook.config.default_user
    if configured and configured != DEFAULT_USER:
        return configured
    return f"airflow:{op.dag_id}.{op.task_id}"


def to_bool(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


@dataclass(frozen=True)
class ConnectionView:
    """The fields of an Airflow ``Connection`` that a client needs, the key kept as a ``Secret``.

    Airflow's ``Connection`` repr shows the password, and the tracebacks of Airflow 3.0's console
    logs print every frame's locals: a frame that holds a ``Connection`` while an error passes
    through it would print the key. The hook turns the connection into this view first and drops it.
    """

    conn_id: str | None
    host: str | None
    port: int | None
    schema: str | None
    password: Secret
    extra_dejson: Mapping[str, Any]

    @classmethod
    def of(cls, conn: Any) -> ConnectionView:
        if isinstance(conn, ConnectionView):
            return conn
        return cls(
            conn_id=conn.conn_id,
            host=conn.host,
            port=conn.port,
            schema=conn.schema,
            password=Secret(conn.password),
            extra_dejson=dict(conn.extra_dejson or {}),
        )


def config_from_view(conn: Any, config_class: type[ClientConfig], conn_fields: Mapping[str, Mapping[str, Any]]) -> Any:
    """Build a ``config_class`` from an Airflow ``Connection`` (host = base URL, password = key).

    ``conn_fields`` are the backend's connection extras (``get_provider_info``); their schema
    ``default`` is used for an extra that is missing or ``null``.
    """
    conn = ConnectionView.of(conn)  # from here on no local holds the key in clear
    extra = conn.extra_dejson
    host = (conn.host or "").strip()
    if not host:
        base_url = str(config_class.__dataclass_fields__["base_url"].default)
    elif "://" in host:
        base_url = host
    else:
        scheme = extra.get("scheme") or "https"
        port = f":{conn.port}" if conn.port else ""
        path = f"/{conn.schema.strip('/')}" if conn.schema else ""
        base_url = f"{scheme}://{host}{port}{path}"
    trusted = extra.get("trusted_hosts") or ()
    if isinstance(trusted, str):
        trusted = [h.strip() for h in trusted.split(",") if h.strip()]
    verify: bool | str = to_bool(extra.get("verify_ssl", extra.get("verify")), True)
    if extra.get("ca_bundle"):
        verify = str(extra["ca_bundle"])
    proxies = extra.get("proxies") or extra.get("proxy") or None

    def number(name: str, cast: type = float) -> Any:
        value = extra.get(name)
        if value in (None, ""):
            return conn_fields[name]["schema"]["default"]
        try:
            return cast(value)
        except (TypeError, ValueError):
            raise error_class(config_class.errors, ConfigError)(
                f"Connection {conn.conn_id!r}: extra {name!r} must be a number, got {value!r}"
            ) from None

    optional: dict[str, Any] = {}
    if extra.get("max_event_chars"):
        optional["max_event_chars"] = int(extra["max_event_chars"])
    if extra.get("max_stream_seconds") not in (None, ""):
        # 0 switches the limit off (the config's None); anything else must be positive.
        optional["max_stream_seconds"] = number("max_stream_seconds") or None
    if "info_cache_seconds" in conn_fields:  # the backends whose hooks cache the app's description
        optional["info_cache_seconds"] = max(0.0, number("info_cache_seconds"))
    return config_class(
        api_key=conn.password,
        base_url=base_url,
        connect_timeout=number("connect_timeout"),
        read_timeout=number("read_timeout"),
        idle_timeout=number("idle_timeout"),
        verify=verify,
        proxies=proxies,
        trusted_hosts=tuple(str(h).lower() for h in trusted),
        allow_insecure_http=to_bool(extra.get("allow_insecure_http"), False),
        max_retries=number("max_retries", int),
        default_user=str(extra.get("default_user") or DEFAULT_USER),
        # Messages name the connection actually used (and its variable, when it came from one).
        conn_id=conn.conn_id,
        conn_from_env=bool(conn.conn_id and os.environ.get(conn_env_var(conn.conn_id))),
        **optional,
    )


@dataclass(frozen=True)
class DownloadTarget:
    """A produced file to download: its URL, name and declared size (any backend's file object)."""

    file_url: str
    file_name: str
    file_size: int | None


class ProviderHook(BaseHook):
    """The Airflow-aware part every backend hook shares (not for direct use).

    Subclasses set ``conn_name_attr`` & co., ``config_class``, ``conn_fields`` (extras with their
    defaults), ``form_fields`` / ``ui_behaviour`` (the connection form), ``client_class`` and
    ``async_client_class``, and ``_as_download`` for their produced-file objects.
    """

    conn_name_attr: ClassVar[str]
    config_class: ClassVar[type[ClientConfig]]
    conn_fields: ClassVar[Mapping[str, Mapping[str, Any]]]
    form_fields: ClassVar[Mapping[str, Mapping[str, Any]]]
    ui_behaviour: ClassVar[Mapping[str, Any]]
    client_class: ClassVar[type[Any]]
    async_client_class: ClassVar[type[Any]]

    @property
    def conn_id(self) -> str:
        return str(getattr(self, self.conn_name_attr))

    # -- connection form for Airflow < 3.2 (3.2+ reads it from provider info) -----------------------

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from wtforms import BooleanField, IntegerField, StringField

        # The same fields, labels and descriptions as conn-fields; defaults only where the form keeps one.
        widgets: dict[str, Any] = {}
        for name, spec in cls.form_fields.items():
            kinds = spec["schema"]["type"]
            description = spec.get("description")
            if "boolean" in kinds:
                widgets[name] = BooleanField(
                    spec["label"], default=spec["schema"].get("default"), description=description
                )
            elif "integer" in kinds:
                widgets[name] = IntegerField(spec["label"], widget=BS3TextFieldWidget(), description=description)
            else:
                widgets[name] = StringField(spec["label"], widget=BS3TextFieldWidget(), description=description)
        return widgets

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": cls.ui_behaviour["hidden-fields"],
            "relabeling": cls.ui_behaviour["relabeling"],
            "placeholders": cls.ui_behaviour["placeholders"],
        }

    # -- clients --------------------------------------------------------------------------------

    @classmethod
    def config_from_connection(cls, conn: Any) -> Any:
        return config_from_view(conn, cls.config_class, cls.conn_fields)

    @cached_property
    def config(self) -> Any:
        return self._config(self.get_connection(self.conn_id))

    @classmethod
    def _config(cls, conn: Any) -> Any:
        view = ConnectionView.of(conn)
        del conn  # the Connection's repr shows the key: keep it out of this frame's locals
        if view.password:
            mask_secret_once(view.password)
        return cls.config_from_connection(view)

    #: Seconds a connection resolved in an event loop (a triggerer's) serves later hooks of the same
    #: connection id in that loop, without looking it up again (``aget_config``).
    connection_reuse_seconds: ClassVar[float] = 30.0

    async def aget_config(self) -> Any:
        """Resolve the connection without blocking the triggerer's event loop.

        One lookup per connection id serves every hook of this class in the loop for
        ``connection_reuse_seconds`` (hooks asking while it is under way wait for it): a triggerer
        starting 1,000 triggers of one connection otherwise looks it up 1,000 times, each through
        ``asgiref``'s one thread and Airflow's secrets masker, and the last trigger sends its run
        request seconds later. A connection edited in the meantime reaches the triggers started
        after that time. A lookup that fails is not reused: the next hook looks it up again.
        """
        if "config" not in self.__dict__:
            self.__dict__["config"] = await _reused_config(self)
        return self.config

    async def _lookup_config(self) -> Any:
        aget = getattr(type(self), "aget_connection", None)
        if aget is not None:
            conn = await aget(self.conn_id)
        else:  # pragma: no cover - Airflow without async connection lookup
            from asgiref.sync import sync_to_async

            conn = await sync_to_async(self.get_connection)(self.conn_id)
        return self._config(conn)

    @cached_property
    def client(self) -> Any:
        return self.client_class(self.config)

    def get_conn(self) -> Any:
        return self.client

    @contextlib.asynccontextmanager
    async def async_client(self, **overrides: Any) -> AsyncIterator[Any]:
        """The backend's async client (``async_client_class``), for ``async with``: the one way in.

        It borrows the ``httpx.AsyncClient`` that every user of this connection (and the same
        transport settings) shares in the running event loop (``_core.transport.shared_async_client``):
        a triggerer runs thousands of triggers in one loop, and a client each would cost a connection
        pool and ~1 ms of CPU each. The client object itself (config, retries, caches) is this
        caller's. ``overrides`` replace config fields for this client only (``idle_timeout``,
        ``max_retries``); the transport settings are part of the sharing key, so an override of
        those gets a pool of its own.
        """
        from docify_provider._core.transport import shared_async_client

        config = await self.aget_config()
        if overrides:
            config = dataclasses.replace(config, **overrides)
        async with shared_async_client(config, scope=self.conn_id, client_class=self.async_client_class) as client:
            yield client

    # -- the app's description, reused across tasks (``_core.app_cache``) -----------------------------

    #: How the description is named in log lines (``the scenario description``), and the pronoun for it.
    description_label: ClassVar[str] = "the app's description"
    description_pronoun: ClassVar[str] = "it"
    #: Seconds since the description in use was read (a cached copy), None when it was read by this hook.
    description_age: float | None = None
    #: The description this hook holds (the last one read or taken from the cache), and the one a
    #: refresh replaced: a caller still holding that one gets the new one (``_checked_against_description``).
    _held_description: Any = None
    _replaced_description: Any = None

    def _read_description(self) -> Any:
        """Read the description from the server now (the backend's free read); ``raw`` holds its JSON."""
        raise NotImplementedError

    def _parse_description(self, raw: Any) -> Any:
        """The description built from its server JSON (a cached copy)."""
        raise NotImplementedError

    def _description(self, *, refresh: bool = False) -> Any:
        """The description held by this hook; else a fresh cached copy (``info_cache_seconds``) or a read now.

        ``refresh`` reads it again (and remembers the one it replaces).
        """
        if self._held_description is None or refresh:
            if self._held_description is not None:
                self._replaced_description = self._held_description
            self._held_description = self._cached_description(refresh=refresh)
        return self._held_description

    def _cached_description(self, *, refresh: bool) -> Any:
        """A fresh cached copy of the description (``info_cache_seconds``), else ``_read_description()`` now.

        Sets ``description_age``: seconds since the copy was read, None when read now.
        """
        from docify_provider._core.app_cache import CACHE, entry_name

        config = self.config
        ttl = float(getattr(config, "info_cache_seconds", 0) or 0)
        name = entry_name(str(self.description_cache_kind), config.base_url, config.api_key)
        if not refresh:
            hit = CACHE.get(name, ttl)
            if hit is not None:
                with contextlib.suppress(Exception):  # a copy that no longer parses is a miss
                    described = self._parse_description(hit[0])
                    self.description_age = hit[1]
                    self.log.info(
                        "Checking inputs against %s read %.0f s ago (info_cache_seconds=%g)",
                        self.description_label,
                        hit[1],
                        ttl,
                    )
                    return described
        described = self._read_description()
        self.description_age = None
        if ttl > 0 and isinstance(getattr(described, "raw", None), dict):
            CACHE.put(name, described.raw)
        return described

    def _checked_against_description(self, check: Callable[[Any], T], given: Any = None, *, recheck: bool = True) -> T:
        """``check(description)``; when it refuses the inputs checked against a cached copy, read again once.

        ``given`` is a description the caller holds: this hook's own (the current one or the one a
        refresh replaced) means the current one, any other is checked as it is and never read again.
        ``check`` raises the backend's ``InputError``; ``recheck=False`` never reads again (the
        check did not compare against the description). An edited app thus never blocks a valid input,
        and a second refusal is the error.
        """
        from docify_provider._core.errors import InputError, error_class

        ours = given is None or given is self._held_description or given is self._replaced_description
        try:
            return check(self._description() if ours else given)
        except error_class(self.config_class.errors, InputError):
            if not (ours and recheck and self.description_age is not None):
                raise
        # Checked against a copy read by an earlier task: the app may have been edited since. (Out of
        # the ``except`` block, so that a second refusal is one error, not one chained to another.)
        self.log.info(
            "The inputs do not match %s read %.0f s ago; reading %s again",
            self.description_label,
            self.description_age,
            self.description_pronoun,
        )
        return check(self._description(refresh=True))

    #: The ``_core.app_cache`` entry kind of this backend's description; None: not cached.
    description_cache_kind: ClassVar[str | None] = None

    def forget_description(self) -> None:
        """Drop the cached description (the server refused a run's inputs, 400): the next task reads it again.

        Never a reason to send the run again: the refused run is reported as it is.
        """
        if not self.description_cache_kind:
            return
        from docify_provider._core.app_cache import CACHE, entry_name

        config = self.config
        CACHE.drop(entry_name(self.description_cache_kind, config.base_url, config.api_key))

    def forget_description_if_refused(self, exc: BaseException) -> None:
        """``forget_description`` when ``exc`` is the server refusing a run's inputs (400): the run paths
        on the worker (``_refusal_forgets_description``) and a deferred run's resume call this."""
        if isinstance(exc, BadRequestError):
            self.forget_description()

    @contextlib.contextmanager
    def _refusal_forgets_description(self) -> Iterator[None]:
        """Around a run request: a 400 refusal drops the cached description, then goes on as it was."""
        try:
            yield
        except BadRequestError as exc:
            self.forget_description_if_refused(exc)
            raise

    def _forgetting_on_bad_request(self, events: Iterator[Any]) -> Iterator[Any]:
        """A run's stream of events, under ``_refusal_forgets_description`` (the refusal comes as it starts)."""
        with self._refusal_forgets_description():
            yield from events

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()
            del self.__dict__["client"]

    # -- files in -------------------------------------------------------------------------------

    @staticmethod
    def resolve_path(value: Any) -> Any:
        """A storage URL string (``s3://``, ``gs://``, ``file://``) -> ``ObjectStoragePath``; else as is."""
        if isinstance(value, str) and is_storage_url(value):
            if value.startswith("file://"):
                return value[len("file://") :]
            from airflow.providers.common.compat.sdk import ObjectStoragePath

            return ObjectStoragePath(value)
        return value

    # -- files out ------------------------------------------------------------------------------

    def _as_download(self, file: Any) -> DownloadTarget:
        """The backend's file object (or a dict, or a URL) as a ``DownloadTarget``."""
        raise NotImplementedError

    def download_file(
        self,
        file: Any,
        destination: Any,
        *,
        file_name: str | None = None,
        max_bytes: int | None = None,
    ) -> Any:
        """Stream a produced file to ``destination`` and return where it was stored.

        ``destination`` is a local path, an ``ObjectStoragePath`` or a storage URL. When it is a
        folder (exists as one, or is a string ending with "/"), the file's name (made safe) is
        appended. Its size is checked against the declared size; a partial file is removed.
        """
        target_file = self._as_download(file)
        name = safe_file_name(file_name or target_file.file_name or target_file.file_url.rsplit("/", 1)[-1])
        # ObjectStoragePath drops a trailing "/", so note it on the string before resolving.
        is_folder = isinstance(destination, str) and destination.endswith("/")
        target = self.resolve_path(destination)
        local = local_fs_path(target)
        if local is not None:
            return self._download_local(target_file, local, name, max_bytes)
        if is_folder or (target.exists() and target.is_dir()):
            target = target / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download(
                target_file.file_url,
                lambda: target.open("wb"),
                expected_size=target_file.file_size,
                max_bytes=max_bytes,
            )
        except BaseException:
            with contextlib.suppress(Exception):
                target.unlink()
            raise
        return target

    def _download_local(self, file: DownloadTarget, target: str, name: str, max_bytes: int | None) -> str:
        if target.endswith(os.sep) or os.path.isdir(target):
            target = os.path.join(target, name)
        folder = os.path.dirname(os.path.abspath(target))
        os.makedirs(folder, exist_ok=True)
        free = shutil.disk_usage(folder).free
        if file.file_size is not None and file.file_size > free:
            # Refused before a byte is fetched: a failed half-download would fill the disk first.
            errors = self.config_class.errors
            raise error_class(errors, UnsafeDownloadError)(
                f"Attachment {name!r} declares {file.file_size} bytes ({errors.size_field}) but only {free} bytes "
                f"are free in {folder}; not downloaded",
                endpoint="download",
            )
        fd, partial = tempfile.mkstemp(prefix=".docify-", suffix=".part", dir=folder)
        os.close(fd)

        @contextlib.contextmanager
        def sink() -> Iterator[IO[bytes]]:
            with open(partial, "wb") as fh:
                yield fh

        try:
            self.client.download(file.file_url, sink, expected_size=file.file_size, max_bytes=max_bytes)
            os.replace(partial, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(partial)
        return target


#: Per event loop: (hook class, connection id) -> (``time.monotonic()`` of the lookup, its future).
_RESOLVED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[type, str], tuple[float, Any]]] = (
    weakref.WeakKeyDictionary()
)
#: The result of a lookup that failed or was cancelled: whoever waited for it looks it up again.
_AGAIN = object()


async def _reused_config(hook: ProviderHook) -> Any:
    """``hook``'s config from the loop's lookup of its connection id (``ProviderHook.aget_config``)."""
    loop = asyncio.get_running_loop()
    known = _RESOLVED.setdefault(loop, {})
    key = (type(hook), hook.conn_id)
    while (entry := known.get(key)) is not None and (
        not entry[1].done() or time.monotonic() - entry[0] < hook.connection_reuse_seconds
    ):
        config = await asyncio.shield(entry[1])
        if config is not _AGAIN:
            return config
    future = loop.create_future()
    known[key] = (time.monotonic(), future)
    config = _AGAIN
    try:
        config = await hook._lookup_config()
    finally:
        if config is _AGAIN and known.get(key, (0.0, None))[1] is future:
            del known[key]
        future.set_result(config)
    return config


__all__ = [
    "ConnectionView",
    "DownloadTarget",
    "ProviderHook",
    "config_from_view",
    "is_storage_url",
    "resolve_user",
    "to_bool",
]
