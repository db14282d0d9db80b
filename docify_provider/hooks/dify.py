"""``DifyHook``: an Airflow connection of type ``dify`` turned into a Dify Workflow Service API client.

Host = the API base URL including ``/v1`` (default ``https://api.dify.ai/v1``), password = the
app's API key, extras as for Docify (timeouts, TLS, proxies, trusted hosts, retries, default user).
Inputs are validated against ``GET /parameters`` before any file is uploaded or any run is sent
(``prepare_inputs``); storage URLs are resolved through ``ObjectStoragePath``; output files are
streamed to local folders or object storage by the shared ``download_file``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from docify_provider._core.errors import InputError
from docify_provider.dify.client import AsyncDifyClient, DifyClient
from docify_provider.dify.config import DifyClientConfig
from docify_provider.dify.errors import DifyError, DifyInputError
from docify_provider.dify.inputs import InputPlan
from docify_provider.dify.models import AppInfo, AppParameters, OutputFile, UploadedFile, WorkflowEvent, WorkflowRun
from docify_provider.dify.stream import RunRecovery
from docify_provider.get_provider_info import DIFY_CONN_FIELDS, DIFY_CONN_FORM_FIELDS, DIFY_UI_FIELD_BEHAVIOUR
from docify_provider.hooks.base import DownloadTarget, ProviderHook


class DifyHook(ProviderHook):
    """Talk to the Dify workflow app bound to the connection's API key.

    :param dify_conn_id: Airflow connection of type ``dify``.
    """

    conn_name_attr = "dify_conn_id"
    default_conn_name = "dify_default"
    conn_type = "dify"
    hook_name = "Dify"

    config_class = DifyClientConfig
    conn_fields = DIFY_CONN_FIELDS
    form_fields = DIFY_CONN_FORM_FIELDS
    ui_behaviour = DIFY_UI_FIELD_BEHAVIOUR
    client_class = DifyClient
    async_client_class = AsyncDifyClient

    client: DifyClient

    def __init__(self, dify_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dify_conn_id = dify_conn_id
        self._info: AppInfo | None = None

    @classmethod
    def config_from_connection(cls, conn: Any) -> DifyClientConfig:
        """The shared extras, plus Dify's ``recovery_timeout`` and ``poll_interval`` (seconds)."""
        import dataclasses

        from docify_provider._core.errors import ConfigError, error_class

        config = super().config_from_connection(conn)
        extra = getattr(conn, "extra_dejson", None) or {}
        overrides: dict[str, float] = {}
        for name in ("recovery_timeout", "poll_interval"):
            value = extra.get(name)
            if value in (None, ""):
                continue
            try:
                overrides[name] = float(value)
            except (TypeError, ValueError):
                raise error_class(DifyError, ConfigError)(
                    f"Connection {getattr(conn, 'conn_id', '?')!r}: extra {name!r} must be a number, got {value!r}"
                ) from None
        return dataclasses.replace(config, **overrides) if overrides else config

    # -- app ------------------------------------------------------------------------------------

    def get_app_info(self, *, refresh: bool = False) -> AppInfo:
        """``GET /info`` (cached on the hook; costs nothing)."""
        if self._info is None or refresh:
            self._info = self.client.get_app_info()
        return self._info

    description_label = "the app's parameters"
    description_pronoun = "them"
    #: The ``_core.app_cache`` entry kind of ``GET /parameters``.
    description_cache_kind = "dify-parameters"

    def get_parameters(self, *, refresh: bool = False) -> AppParameters:
        """``GET /parameters``: the app's input form and upload limits, kept on the hook and reused across
        tasks for the connection's ``info_cache_seconds`` (``_core.app_cache``); ``refresh`` reads them again."""
        return self._description(refresh=refresh)

    def _read_description(self) -> AppParameters:
        return self.client.get_parameters()

    def _parse_description(self, raw: Any) -> AppParameters:
        return AppParameters.from_api(raw)

    def test_connection(self) -> tuple[bool, str]:
        """Used by the UI / ``airflow connections test``: ``GET /info``, costs nothing."""
        try:
            with DifyClient(self.config) as client:
                info = client.get_app_info()
        except DifyError as exc:
            return False, str(exc)
        message = f"Connected to Dify app {info.name!r} (mode {info.mode})"
        self.log.info("%s", message)
        return True, message

    # -- files in -------------------------------------------------------------------------------

    def upload_file(self, source: Any, *, user: str | None = None, file_name: str | None = None) -> UploadedFile:
        """Upload a local path, bytes, file object, ``ObjectStoragePath`` or storage URL (streamed)."""
        return self.client.upload_file(self.resolve_path(source), user=user, file_name=file_name)

    def _resolve_file_values(self, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [self.resolve_path(item) for item in value]
        return self.resolve_path(value)

    def plan_inputs(self, inputs: Mapping[str, Any] | None, *, parameters: AppParameters | None = None) -> InputPlan:
        """Check ``inputs`` against ``/parameters`` (storage URLs of file variables resolved); upload nothing.

        ``prepare_inputs`` uploads the plan's files on the worker; a batch checks every item with
        this first, then uploads each item's files just before it is sent.
        """
        from docify_provider.dify.inputs import plan_inputs

        return self._checked_against_description(
            lambda described: plan_inputs(self._resolved_inputs(inputs, described), described), parameters
        )

    def _resolved_inputs(self, inputs: Mapping[str, Any] | None, parameters: AppParameters) -> dict[str, Any]:
        """``inputs`` with the storage URLs of file variables as ``ObjectStoragePath``s."""
        resolved: dict[str, Any] = {}
        for name, value in (inputs or {}).items():
            variable = parameters.variable(name)
            resolved[name] = self._resolve_file_values(value) if variable and variable.takes_files else value
        return resolved

    def prepare_inputs(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        user: str | None = None,
        validate: bool = True,
        parameters: AppParameters | None = None,
    ) -> dict[str, Any]:
        """Validate ``inputs`` against ``/parameters``, then upload file sources; return wire inputs.

        A file variable's value may be a local path, ``ObjectStoragePath``, storage URL, bytes, an
        http(s) URL (sent as ``remote_url``), an ``UploadedFile``, the upload operator's XCom, a
        ready mapping with ``transfer_method``, or a list of these for ``file-list``. Every problem
        is reported at once (one ``DifyInputError``) and before anything is uploaded.
        """
        if not validate:
            return dict(inputs or {})
        plan = self.plan_inputs(inputs, parameters=parameters)
        uploaded = [self.upload_file(upload.source, user=user, file_name=upload.file_name) for upload in plan.uploads]
        return plan.build(uploaded)

    # -- runs -----------------------------------------------------------------------------------

    def run_workflow(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        user: str | None = None,
        files: list[Any] | None = None,
        workflow_id: str | None = None,
        on_sent: Any = None,
        validate: bool = True,
    ) -> WorkflowRun:
        """Blocking run after validation and uploads; a lost answer is recovered, never re-sent."""
        wire = self.prepare_inputs(inputs, user=user, validate=validate)
        with self._refusal_forgets_description():  # never re-sent; the next task reads them again
            return self.client.run_workflow(wire, user=user, files=files, workflow_id=workflow_id, on_sent=on_sent)

    def stream_workflow(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        user: str | None = None,
        files: list[Any] | None = None,
        workflow_id: str | None = None,
        validate: bool = True,
    ) -> Iterator[WorkflowEvent]:
        """Streaming run: events as they arrive, up to ``workflow_finished`` / ``workflow_paused``."""
        wire = self.prepare_inputs(inputs, user=user, validate=validate)
        return self._forgetting_on_bad_request(
            self.client.stream_workflow(wire, user=user, files=files, workflow_id=workflow_id)
        )

    def attach(
        self, workflow_run_id: str, *, user: str, task_id: str | None = None, continue_on_pause: bool = False
    ) -> Iterator[WorkflowEvent]:
        return self.client.attach(workflow_run_id, user=user, task_id=task_id, continue_on_pause=continue_on_pause)

    def get_workflow_run(self, workflow_run_id: str, *, task_id: str | None = None) -> WorkflowRun:
        return self.client.get_workflow_run(workflow_run_id, task_id=task_id)

    def wait_for_run(
        self, workflow_run_id: str, *, poll_interval: float | None = None, timeout: float | None = None
    ) -> WorkflowRun:
        return self.client.wait_for_run(workflow_run_id, poll_interval=poll_interval, timeout=timeout)

    def stop_task(
        self, task_id: str, *, user: str | None = None, workflow_run_id: str | None = None
    ) -> WorkflowRun | None:
        """Stop a running task, then (with the run id) log what its status really became."""
        return self.client.stop_task(task_id, user=user, workflow_run_id=workflow_run_id)

    def iter_workflow_logs(self, **filters: Any) -> Iterator[Any]:
        return self.client.iter_workflow_logs(**filters)

    def find_run(self, search: RunRecovery) -> str:
        """The id of the one run ``search`` describes, read from the app's logs (``DifyOutcomeUnknownError``
        when there is none by its deadline, or more than one); nothing is sent."""
        return self.client.find_run(search)

    def get_form(self, form_token: str) -> dict[str, Any]:
        """``GET /form/human_input/{token}`` (a paused run's human-input form)."""
        return self.client.get_form(form_token)

    def submit_form(
        self, form_token: str, *, action: str, inputs: Mapping[str, Any] | None = None, user: str | None = None
    ) -> None:
        """Answer a human-input form with the run's ``user``; the run resumes on Dify."""
        self.client.submit_form(form_token, action=action, inputs=inputs, user=user)

    # -- files out ------------------------------------------------------------------------------

    def _as_download(self, file: OutputFile | Mapping[str, Any] | str) -> DownloadTarget:
        return dify_download_target(file, self.config.base_url, DifyInputError)


def dify_download_target(
    file: OutputFile | Mapping[str, Any] | str, base_url: str | None, refused: type[InputError]
) -> DownloadTarget:
    """A Dify output file (``OutputFile``, its dict, the XCom's ``files`` entry, or a URL) as a
    ``DownloadTarget``: the Service API's and the account API's hooks download the same files.
    ``refused`` is the backend's input error, raised for anything else."""
    if isinstance(file, str):
        return DownloadTarget(file, "", None)
    if isinstance(file, Mapping):
        if OutputFile.is_file_object(dict(file)):
            file = OutputFile.from_api(dict(file), base_url=base_url)
        else:
            size = file.get("file_size")
            return DownloadTarget(
                str(file.get("file_url") or ""),
                str(file.get("file_name") or ""),
                None if size is None else int(size),
            )
    if isinstance(file, OutputFile) and file.file_url:
        return DownloadTarget(file.file_url, file.file_name, file.file_size)
    raise refused([f"download_file: expected a Dify file object, dict or URL, got {file!r:.100}"])


__all__ = ["DifyHook", "dify_download_target"]
