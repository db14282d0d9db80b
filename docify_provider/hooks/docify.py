"""``DocifyHook``: an Airflow connection turned into a Docify client, plus the Airflow-aware parts.

The wire layer (``docify_provider.docify``) knows nothing of Airflow. This hook adds what does:
reading the connection and its extras, masking the key, resolving storage URLs through
``ObjectStoragePath`` (so ``s3://`` inputs and outputs use Airflow connections), uploading file
inputs after they were validated, and writing attachments to local folders or object storage.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from docify_provider.docify import (
    AsyncDocifyClient,
    ClientConfig,
    DocifyClient,
    DocifyError,
    DocifyInputError,
    ResultFile,
    RunResult,
    ScenarioInfo,
    StreamEvent,
    UploadedFile,
)
from docify_provider.docify.inputs import UploadPlan, plan_inputs
from docify_provider.get_provider_info import CONN_FIELDS, CONN_FORM_FIELDS, UI_FIELD_BEHAVIOUR
from docify_provider.hooks.base import ConnectionView, DownloadTarget, ProviderHook, config_from_view

if TYPE_CHECKING:
    from docify_provider.docify.models import FileType


def config_from_connection(conn: Any) -> ClientConfig:
    """Build a ``ClientConfig`` from an Airflow ``Connection`` (host = base URL, password = key)."""
    return config_from_view(conn, ClientConfig, CONN_FIELDS)


class DocifyHook(ProviderHook):
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

    config_class = ClientConfig
    conn_fields = CONN_FIELDS
    form_fields = CONN_FORM_FIELDS
    ui_behaviour = UI_FIELD_BEHAVIOUR
    client_class = DocifyClient
    async_client_class = AsyncDocifyClient

    # ``config``, ``client``, ``aget_config``, ``async_client``, ``close``, the connection form,
    # ``resolve_path`` and ``download_file`` come from ``ProviderHook``.

    client: DocifyClient

    # -- scenario -------------------------------------------------------------------------------

    description_label = "the scenario description"
    #: The ``_core.app_cache`` entry kind of ``GET /v1/scenario/info``.
    description_cache_kind = "docify-scenario-info"

    def get_scenario_info(self, *, refresh: bool = False) -> ScenarioInfo:
        """The scenario bound to the key (free of charge): kept on the hook, and reused across tasks for
        the connection's ``info_cache_seconds`` (``_core.app_cache``); ``refresh`` reads it again."""
        return self._description(refresh=refresh)

    def _read_description(self) -> ScenarioInfo:
        return self.client.get_scenario_info()

    def _parse_description(self, raw: Any) -> ScenarioInfo:
        return self.client.protocol.parse_info(raw)

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

    def plan_inputs(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        scenario: ScenarioInfo | None = None,
        validate: bool = True,
    ) -> UploadPlan:
        """Check ``inputs`` against the scenario and open every file source's metadata; upload nothing.

        Storage URLs among the sources become ``ObjectStoragePath``s here. ``prepare_inputs`` uploads
        the plan's sources on the worker; a batch validates every item with this first, then uploads
        each item's sources just before it is sent.
        """
        plan = self._checked_against_description(
            lambda described: plan_inputs(inputs, described, validate=validate), scenario, recheck=validate
        )
        plan.pending = {token: self.resolve_path(source) for token, source in plan.pending.items()}
        if plan.pending:
            self._check_sources(plan.pending)
        return plan

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
        plan = self.plan_inputs(inputs, scenario=scenario, validate=validate)
        uploaded = {token: self.upload_file(source, user=user).to_input() for token, source in plan.pending.items()}
        return plan.build(uploaded)

    def _check_sources(self, pending: Mapping[str, Any]) -> None:
        """Open every file source's metadata before uploading any (all problems at once).

        Raises ``DocifyFileError`` (a ``DocifyInputError``), as ``upload_file`` does for one file.
        """
        from docify_provider.docify.errors import DocifyFileError
        from docify_provider.docify.files import open_upload_source

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
        with self._refusal_forgets_description():  # never re-sent; the next task reads the scenario again
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
        return self._forgetting_on_bad_request(self.client.stream(wire, user=user, additional_info=additional_info))

    # -- files out ------------------------------------------------------------------------------

    def _as_download(self, file: ResultFile | Mapping[str, Any] | str) -> DownloadTarget:
        result_file = _as_result_file(file)
        return DownloadTarget(result_file.file_url, result_file.file_name, result_file.file_size)


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
