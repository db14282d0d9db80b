"""``DocifyHook``: an Airflow connection turned into a Docify client, plus the Airflow-aware parts.

The wire layer (``docify_provider.client``) knows nothing of Airflow. This hook adds what does:
reading the connection and its extras, masking the key, resolving storage URLs through
``ObjectStoragePath`` (so ``s3://`` inputs and outputs use Airflow connections), uploading file
inputs after they were validated, and writing attachments to local folders or object storage.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import IO, TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseHook

from docify_provider.client import (
    AsyncDocifyClient,
    ClientConfig,
    DocifyClient,
    DocifyConfigError,
    DocifyError,
    DocifyInputError,
    DocifyUnsafeDownloadError,
    ResultFile,
    RunResult,
    ScenarioInfo,
    StreamEvent,
    UploadedFile,
    normalize_inputs,
    safe_file_name,
    validate_inputs,
)
from docify_provider.client.config import DEFAULT_BASE_URL, DEFAULT_USER, Secret
from docify_provider.client.files import local_fs_path
from docify_provider.compat import mask_secret_once
from docify_provider.get_provider_info import CONN_FIELDS, CONN_FORM_FIELDS, UI_FIELD_BEHAVIOUR

if TYPE_CHECKING:
    from docify_provider.client.models import FileType

_URL_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def _is_storage_url(value: str) -> bool:
    return bool(_URL_SCHEME.match(value)) and not value.lower().startswith(("http://", "https://"))


def _to_bool(value: Any, default: bool) -> bool:
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


def config_from_connection(conn: Any) -> ClientConfig:
    """Build a ``ClientConfig`` from an Airflow ``Connection`` (host = base URL, password = key)."""
    conn = ConnectionView.of(conn)  # from here on no local holds the key in clear
    extra = conn.extra_dejson
    host = (conn.host or "").strip()
    if not host:
        base_url = DEFAULT_BASE_URL
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
    verify: bool | str = _to_bool(extra.get("verify_ssl", extra.get("verify")), True)
    if extra.get("ca_bundle"):
        verify = str(extra["ca_bundle"])
    proxies = extra.get("proxies") or extra.get("proxy") or None

    def number(name: str, cast: type = float) -> Any:
        value = extra.get(name)
        if value in (None, ""):
            return CONN_FIELDS[name]["schema"]["default"]
        try:
            return cast(value)
        except (TypeError, ValueError):
            raise DocifyConfigError(
                f"Connection {conn.conn_id!r}: extra {name!r} must be a number, got {value!r}"
            ) from None

    optional: dict[str, Any] = {}
    if extra.get("max_event_chars"):
        optional["max_event_chars"] = int(extra["max_event_chars"])
    if extra.get("max_stream_seconds") not in (None, ""):
        # 0 switches the limit off (the config's None); anything else must be positive.
        optional["max_stream_seconds"] = number("max_stream_seconds") or None
    return ClientConfig(
        api_key=conn.password,
        base_url=base_url,
        connect_timeout=number("connect_timeout"),
        read_timeout=number("read_timeout"),
        idle_timeout=number("idle_timeout"),
        verify=verify,
        proxies=proxies,
        trusted_hosts=tuple(str(h).lower() for h in trusted),
        allow_insecure_http=_to_bool(extra.get("allow_insecure_http"), False),
        max_retries=number("max_retries", int),
        default_user=str(extra.get("default_user") or DEFAULT_USER),
        **optional,
    )


class DocifyHook(BaseHook):
    """Talk to the Docify scenario bound to the connection's API key.

    :param docify_conn_id: Airflow connection of type ``docify``: Base URL in *host*
        (default ``https://console.docify.jp/docify``), API key in *password*, options in extras.
    """

    conn_name_attr = "docify_conn_id"
    default_conn_name = "docify_default"
    conn_type = "docify"
    hook_name = "Docify"

    def __init__(self, docify_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.docify_conn_id = docify_conn_id
        self._scenario: ScenarioInfo | None = None

    # -- connection form for Airflow < 3.2 (3.2+ reads it from provider info) -----------------------

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from wtforms import BooleanField, IntegerField, StringField

        # The same fields, labels and descriptions as conn-fields; defaults only where the form keeps one.
        widgets: dict[str, Any] = {}
        for name, spec in CONN_FORM_FIELDS.items():
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
            "hidden_fields": UI_FIELD_BEHAVIOUR["hidden-fields"],
            "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
            "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
        }

    # -- clients --------------------------------------------------------------------------------

    @cached_property
    def config(self) -> ClientConfig:
        return self._config(self.get_connection(self.docify_conn_id))

    @staticmethod
    def _config(conn: Any) -> ClientConfig:
        view = ConnectionView.of(conn)
        del conn  # the Connection's repr shows the key: keep it out of this frame's locals
        if view.password:
            mask_secret_once(view.password)
        return config_from_connection(view)

    async def aget_config(self) -> ClientConfig:
        """Resolve the connection without blocking the triggerer's event loop."""
        if "config" in self.__dict__:
            return self.config
        aget = getattr(type(self), "aget_connection", None)
        if aget is not None:
            conn = await aget(self.docify_conn_id)
        else:  # pragma: no cover - Airflow without async connection lookup
            from asgiref.sync import sync_to_async

            conn = await sync_to_async(self.get_connection)(self.docify_conn_id)
        self.__dict__["config"] = self._config(conn)
        return self.config

    @cached_property
    def client(self) -> DocifyClient:
        return DocifyClient(self.config)

    def get_conn(self) -> DocifyClient:
        return self.client

    async def get_async_client(self) -> AsyncDocifyClient:
        """A new async client (one per event loop; close it with ``aclose``)."""
        return AsyncDocifyClient(await self.aget_config())

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()
            del self.__dict__["client"]

    # -- scenario -------------------------------------------------------------------------------

    def get_scenario_info(self, *, refresh: bool = False) -> ScenarioInfo:
        """The scenario bound to the key (cached on the hook; free of charge)."""
        if self._scenario is None or refresh:
            self._scenario = self.client.get_scenario_info()
        return self._scenario

    def test_connection(self) -> tuple[bool, str]:
        """Used by the UI / ``airflow connections test``: reads the scenario, spends no points."""
        try:
            with DocifyClient(self.config) as client:
                info = client.get_scenario_info()
        except DocifyError as exc:
            return False, str(exc)
        params = ", ".join(f"{p.variable} ({p.type})" for p in info.parameters) or "no parameters"
        message = f"Connected to Docify scenario {info.scenario_name!r} ({info.scenario_code}): {params}"
        # ``airflow connections test`` prints only "Connection success!"; log what was found.
        self.log.info("%s", message)
        return True, message

    # -- files in -------------------------------------------------------------------------------

    @staticmethod
    def resolve_path(value: Any) -> Any:
        """A storage URL string (``s3://``, ``gs://``, ``file://``) -> ``ObjectStoragePath``; else as is."""
        if isinstance(value, str) and _is_storage_url(value):
            if value.startswith("file://"):
                return value[len("file://") :]
            from airflow.providers.common.compat.sdk import ObjectStoragePath

            return ObjectStoragePath(value)
        return value

    def upload_file(
        self,
        source: Any,
        *,
        user: str | None = None,
        file_type: FileType | str | None = None,
        file_name: str | None = None,
    ) -> UploadedFile:
        """Upload a local path, bytes, binary file object, ``ObjectStoragePath`` or storage URL (streamed)."""
        return self.client.upload_file(self.resolve_path(source), user=user, file_type=file_type, file_name=file_name)

    @staticmethod
    def _is_file_source(value: Any) -> bool:
        if isinstance(value, (str, os.PathLike)):
            return not str(value).lower().startswith(("http://", "https://"))
        return hasattr(value, "open") and hasattr(value, "name")

    def prepare_inputs(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        user: str | None = None,
        scenario: ScenarioInfo | None = None,
        validate: bool = True,
    ) -> dict[str, dict[str, Any]]:
        """Validate ``inputs`` against the scenario, then upload file sources; return wire inputs.

        For FILE / FILELIST parameters a value may be a local path, an ``ObjectStoragePath``, a
        storage URL, an http(s) URL (passed to Docify as a remote file), an ``UploadedFile``, the
        upload operator's XCom, an ``uploadFileOid`` dict, or a list of these. Every problem is
        reported at once and before any file is uploaded.
        """
        scenario = scenario or self.get_scenario_info()
        pending: dict[str, Any] = {}
        shaped: dict[str, Any] = {}
        for name, value in (inputs or {}).items():
            param = scenario.parameter(name)
            if param is None or not param.takes_files:
                shaped[name] = value
                continue
            if isinstance(value, Mapping) and value and set(value) <= {"text", "files"} and not value.get("text"):
                # Already in wire form ({"files": [...]}, e.g. inputs prepared earlier): unwrap.
                value = value.get("files") or []
            values = list(value) if isinstance(value, (list, tuple)) else [value]
            entries: list[Any] = []
            for item in values:
                if isinstance(item, str) and item.lower().startswith(("http://", "https://")):
                    entries.append({"url": item})
                elif self._is_file_source(item):
                    # Placeholder for validation; uploaded only when every input is fine.
                    token = f"pending-upload-{len(pending)}"
                    pending[token] = item
                    entries.append({"uploadFileOid": token, "fileType": "DOCUMENT"})
                else:
                    entries.append(item)
            shaped[name] = {"files": entries}
        wire = normalize_inputs(shaped)
        if validate:
            validate_inputs(scenario, wire)
        if pending:
            self._check_sources(pending)
            uploaded = {token: self.upload_file(source, user=user).to_input() for token, source in pending.items()}
            for value in wire.values():
                value["files"] = [uploaded.get(f.get("uploadFileOid", ""), f) for f in value.get("files", [])]
        return wire

    def _check_sources(self, pending: Mapping[str, Any]) -> None:
        """Open every file source's metadata before uploading any (all problems at once).

        Raises ``DocifyFileError`` (a ``DocifyInputError``), as ``upload_file`` does for one file.
        """
        from docify_provider.client.errors import DocifyFileError
        from docify_provider.client.files import open_upload_source

        problems: list[str] = []
        for source in pending.values():
            try:
                open_upload_source(self.resolve_path(source))
            except DocifyInputError as exc:
                problems.extend(exc.problems)
        if problems:
            raise DocifyFileError(problems)

    # -- runs -----------------------------------------------------------------------------------

    def run_scenario(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        user: str | None = None,
        additional_info: Any = None,
        validate: bool = True,
    ) -> RunResult:
        """Blocking run (``POST /v1/scenario/run``) after validation and uploads. Never re-sent."""
        wire = self.prepare_inputs(inputs, user=user, validate=validate)
        return self.client.run(wire, user=user, additional_info=additional_info)

    def stream_scenario(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        user: str | None = None,
        additional_info: Any = None,
        validate: bool = True,
    ) -> Iterator[StreamEvent]:
        """Streaming run: yields events as they arrive; raises on ERROR / failed COMPLETE / cut stream."""
        wire = self.prepare_inputs(inputs, user=user, validate=validate)
        return self.client.stream(wire, user=user, additional_info=additional_info)

    # -- async counterparts (triggers) ----------------------------------------------------------

    async def aget_scenario_info(self) -> ScenarioInfo:
        async with await self.get_async_client() as client:
            return await client.get_scenario_info()

    async def arun_scenario(
        self, inputs: Mapping[str, Any] | None, *, user: str | None = None, additional_info: Any = None
    ) -> RunResult:
        """Async blocking run with inputs already in wire form (prepared on the worker)."""
        async with await self.get_async_client() as client:
            return await client.run(inputs, user=user, additional_info=additional_info)

    async def astream_scenario(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        user: str | None = None,
        additional_info: Any = None,
        shared_client: bool = False,
    ) -> AsyncIterator[StreamEvent]:
        """Async streaming run with inputs already in wire form (prepared on the worker).

        ``shared_client``: use the HTTP client that streams of this connection share in the running
        event loop (``client.aio.shared_async_client``; what the trigger does) instead of a new one.
        """
        if shared_client:
            from docify_provider.client.aio import shared_async_client

            shared: contextlib.AbstractAsyncContextManager[AsyncDocifyClient] = shared_async_client(
                await self.aget_config(), scope=self.docify_conn_id
            )
        else:
            shared = await self.get_async_client()
        async with shared as client:
            async for event in client.stream(inputs, user=user, additional_info=additional_info):
                yield event

    # -- files out ------------------------------------------------------------------------------

    def download_file(
        self,
        file: ResultFile | Mapping[str, Any] | str,
        destination: Any,
        *,
        file_name: str | None = None,
        max_bytes: int | None = None,
    ) -> Any:
        """Stream an attachment to ``destination`` and return where it was stored.

        ``destination`` is a local path, an ``ObjectStoragePath`` or a storage URL. When it is a
        folder (exists as one, or is a string ending with "/"), the attachment's name (made safe)
        is appended. Its size is checked against the declared ``fileSize``; a partial file is removed.
        """
        result_file = _as_result_file(file)
        name = safe_file_name(file_name or result_file.file_name or result_file.file_url.rsplit("/", 1)[-1])
        # ObjectStoragePath drops a trailing "/", so note it on the string before resolving.
        is_folder = isinstance(destination, str) and destination.endswith("/")
        target = self.resolve_path(destination)
        local = local_fs_path(target)
        if local is not None:
            return self._download_local(result_file, local, name, max_bytes)
        if is_folder or (target.exists() and target.is_dir()):
            target = target / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download(
                result_file.file_url,
                lambda: target.open("wb"),
                expected_size=result_file.file_size,
                max_bytes=max_bytes,
            )
        except BaseException:
            with contextlib.suppress(Exception):
                target.unlink()
            raise
        return target

    def _download_local(self, file: ResultFile, target: str, name: str, max_bytes: int | None) -> str:
        if target.endswith(os.sep) or os.path.isdir(target):
            target = os.path.join(target, name)
        folder = os.path.dirname(os.path.abspath(target))
        os.makedirs(folder, exist_ok=True)
        free = shutil.disk_usage(folder).free
        if file.file_size is not None and file.file_size > free:
            # Refused before a byte is fetched: a failed half-download would fill the disk first.
            raise DocifyUnsafeDownloadError(
                f"Attachment {name!r} declares {file.file_size} bytes (fileSize) but only {free} bytes are free "
                f"in {folder}; not downloaded",
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


def _as_result_file(file: ResultFile | Mapping[str, Any] | str) -> ResultFile:
    if isinstance(file, ResultFile):
        return file
    if isinstance(file, str):
        return ResultFile(file_url=file, file_name="", file_size=None)
    if isinstance(file, Mapping):
        if "fileUrl" in file:
            return ResultFile.from_api(dict(file))
        return ResultFile(
            file_url=str(file.get("file_url") or ""),
            file_name=str(file.get("file_name") or ""),
            file_size=None if file.get("file_size") is None else int(file["file_size"]),
        )
    raise DocifyInputError([f"download_file: expected a result file, dict or URL, got {type(file).__name__}"])


__all__ = ["ConnectionView", "DocifyHook", "config_from_connection"]
