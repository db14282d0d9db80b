"""``DifyOpenAPIHook``: an Airflow connection of type ``dify-openapi`` (or ``dify_openapi``) turned into a Dify
user-scoped OpenAPI client (an account's token, every app the account may run).

Host = ``https://<dify>/openapi/v1``, password = the account token (``dfoa_...``, from a device
login), extras ``workspace_id`` (default: the account's default workspace), ``console_url``,
``token_expires_at`` and the shared HTTP extras (timeouts, TLS, proxies, retries). Thin over
``DifyOpenAPIClient``; the ``a``-prefixed methods are the async counterparts for triggers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from docify_provider.dify.inputs import InputPlan
from docify_provider.dify.models import OutputFile, WorkflowEvent, WorkflowRun
from docify_provider.dify_openapi.client import AsyncDifyOpenAPIClient, DifyOpenAPIClient
from docify_provider.dify_openapi.config import DifyOpenAPIClientConfig
from docify_provider.dify_openapi.errors import DifyOpenAPIConfigError, DifyOpenAPIError, login_command
from docify_provider.dify_openapi.models import Account, AppDescription, AppSummary, HumanInputForm, ResolvedApp
from docify_provider.get_provider_info import (
    DIFY_OPENAPI_CONN_FIELDS,
    DIFY_OPENAPI_CONN_FORM_FIELDS,
    DIFY_OPENAPI_CONN_TYPE,
    DIFY_OPENAPI_UI_FIELD_BEHAVIOUR,
)
from docify_provider.hooks.base import DownloadTarget, ProviderHook

#: The connection test warns when the token lapses within this many seconds.
LAPSE_WARNING_SECONDS = 3 * 86400.0


class DifyOpenAPIHook(ProviderHook):
    """Talk to Dify as an account (user-scoped OpenAPI).

    :param dify_openapi_conn_id: Airflow connection of type ``dify-openapi`` (or ``dify_openapi``,
        the type of connections made by 0.6.0 and earlier: both are read alike).
    """

    conn_name_attr = "dify_openapi_conn_id"
    default_conn_name = "dify_openapi_default"
    conn_type = DIFY_OPENAPI_CONN_TYPE
    hook_name = "Dify account"

    config_class = DifyOpenAPIClientConfig
    conn_fields = DIFY_OPENAPI_CONN_FIELDS
    form_fields = DIFY_OPENAPI_CONN_FORM_FIELDS
    ui_behaviour = DIFY_OPENAPI_UI_FIELD_BEHAVIOUR
    client_class = DifyOpenAPIClient
    async_client_class = AsyncDifyOpenAPIClient

    client: DifyOpenAPIClient

    def __init__(self, dify_openapi_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dify_openapi_conn_id = dify_openapi_conn_id

    @classmethod
    def config_from_connection(cls, conn: Any) -> DifyOpenAPIClientConfig:
        """The shared extras, plus ``workspace_id``, ``console_url``, ``token_expires_at``, ``poll_interval``."""
        from docify_provider.dify.models import epoch_to_datetime

        config = super().config_from_connection(conn)
        extra = getattr(conn, "extra_dejson", None) or {}
        overrides: dict[str, Any] = {}
        for name in ("workspace_id", "console_url", "api_generation"):
            if extra.get(name) not in (None, ""):
                overrides[name] = str(extra[name])
        if extra.get("token_expires_at") not in (None, ""):
            when = epoch_to_datetime(extra["token_expires_at"])
            if when is None:
                raise DifyOpenAPIConfigError(
                    f"Connection {getattr(conn, 'conn_id', '?')!r}: extra 'token_expires_at' must be an ISO 8601 "
                    f"time or epoch seconds, got {extra['token_expires_at']!r}"
                )
            overrides["token_expires_at"] = when
        if extra.get("poll_interval") not in (None, ""):
            try:
                overrides["poll_interval"] = float(extra["poll_interval"])
            except (TypeError, ValueError):
                raise DifyOpenAPIConfigError(
                    f"Connection {getattr(conn, 'conn_id', '?')!r}: extra 'poll_interval' must be a number"
                ) from None
        return dataclasses.replace(config, **overrides) if overrides else config

    def test_connection(self) -> tuple[bool, str]:
        """Used by the UI / ``airflow connections test``: ``GET /account``, costs nothing."""
        try:
            with DifyOpenAPIClient(self.config) as client:
                account = client.get_account()
        except DifyOpenAPIError as exc:
            return False, str(exc)
        message = f"Connected to Dify as {account.email or account.name or account.id}"
        lapses = self.config.token_lapses_in()
        if lapses is not None:
            when = self.config.token_expires_at.isoformat()
            if lapses <= 0:
                return False, f"{message}, but the token lapsed at {when}: {self.config.refused_key_hint()}"
            days = lapses / 86400
            message += f"; the token lapses at {when} (in {days:.1f} days)"
            if lapses < LAPSE_WARNING_SECONDS:
                config = self.config
                message += (
                    f": log in again soon with {login_command(config.conn_id, config.conn_from_env, config.base_url)}"
                )
        self.log.info("%s", message)
        return True, message

    # -- sync (workers) -------------------------------------------------------------------------

    def get_account(self) -> Account:
        return self.client.get_account()

    def list_apps(self, **filters: Any) -> list[AppSummary]:
        """``GET /apps`` with ``mode``, ``name`` and ``tag`` filters, each checked again on every row.

        ``tag`` raises ``DifyOpenAPITagFilterError`` on a server whose rows carry no tags (current
        Dify ignores the filter): to pick apps to run, use :meth:`select_apps`.
        """
        return self.client.list_apps(**filters)

    def select_apps(
        self, apps: Sequence[str] | None = None, *, name_pattern: str | None = None, mode: str | None = None
    ) -> list[AppSummary]:
        """The workspace's apps a DAG chose to run: ``apps`` (exact names or ids; each must match
        one app, or nothing is returned) and/or ``name_pattern`` (a glob on the whole name), all
        checked here on every listed app, so no server-side filter decides what runs (and bills)."""
        from docify_provider.dify_openapi.discovery import select_apps

        return select_apps(self.client.list_apps(mode=mode), apps=apps, name_pattern=name_pattern)

    def describe_app(self, app: str) -> AppDescription:
        return self.client.describe_app(app)

    def resolve_app(self, app: str) -> ResolvedApp:
        return self.client.resolve_app(app)

    def resolve_file_inputs(self, app: str, inputs: Mapping[str, Any] | None) -> dict[str, Any]:
        """Storage URLs (``s3://``...) of the app's file inputs become ``ObjectStoragePath``s (opened lazily)."""
        from docify_provider.dify_openapi.inputs import file_variables

        names = {v.variable for v in file_variables(self.client.describe_app(app))}

        def one(value: Any) -> Any:
            if isinstance(value, (list, tuple)):
                return [one(v) for v in value]
            return self.resolve_path(value) if isinstance(value, str) else value

        return {k: one(v) if k in names else v for k, v in (inputs or {}).items()}

    def prepare_run(
        self, app: str, inputs: Mapping[str, Any] | None, *, query: str | None = None, validate: bool = True
    ) -> tuple[ResolvedApp, InputPlan]:
        """Resolve ``app`` and check ``inputs`` against its ``input_schema`` (reads only, nothing sent):
        the plan ``run_app`` sends as it is (its local files as parts of the run request)."""
        return self.client.prepare_run(app, self.resolve_file_inputs(app, inputs), query=query, validate=validate)

    def run_app(self, app: str, inputs: Mapping[str, Any] | InputPlan | None, **kwargs: Any) -> Iterator[WorkflowEvent]:
        """Validate against the app's ``input_schema`` (unless ``inputs`` is ``prepare_run``'s plan,
        checked already), then stream the run (re-attached on a cut)."""
        if not isinstance(inputs, InputPlan):
            inputs = self.resolve_file_inputs(app, inputs)
        return self.client.run_app(app, inputs, **kwargs)

    def task_events(self, app: str, workflow_run_id: str, **kwargs: Any) -> Iterator[WorkflowEvent]:
        return self.client.task_events(app, workflow_run_id, **kwargs)

    def follow_run(self, app: str, workflow_run_id: str, *, task_id: str | None = None) -> Iterator[WorkflowEvent]:
        """Follow a run by id (events route with the state snapshot, re-attached on a cut); ``task_id``
        keeps the run's task when the events name none (a finished run's frame, Part C3)."""
        return self.client.follow_run(app, workflow_run_id, task_id=task_id)

    def stop_task(self, app: str, task_id: str, *, workflow_run_id: str | None = None) -> WorkflowRun | None:
        return self.client.stop_task(app, task_id, workflow_run_id=workflow_run_id)

    def get_form(self, app: str, form_token: str) -> HumanInputForm:
        return self.client.get_form(app, form_token)

    def submit_form(self, app: str, form_token: str, action: str, inputs: Mapping[str, Any] | None = None) -> Any:
        return self.client.submit_form(app, form_token, action, inputs)

    # -- files out ------------------------------------------------------------------------------

    def _as_download(self, file: OutputFile | Mapping[str, Any] | str) -> DownloadTarget:
        """A run's output file, as the Service API's hook reads it (``attachments_to``, ``download_file``)."""
        from docify_provider.dify_openapi.errors import DifyOpenAPIInputError
        from docify_provider.hooks.dify import dify_download_target

        return dify_download_target(file, self.config.base_url, DifyOpenAPIInputError)


class DifyOpenAPIUnderscoreHook(DifyOpenAPIHook):
    """``DifyOpenAPIHook`` registered for the type ``dify_openapi`` (Airflow registers one type per hook
    class): connections made by 0.6.0 and earlier, and those Airflow parses from a ``dify-openapi`` URI or JSON,
    keep their form in the UI. Tasks use ``DifyOpenAPIHook`` for either type."""

    conn_type = "dify_openapi"
    hook_name = "Dify account (dify_openapi)"


__all__ = ["DifyOpenAPIHook", "DifyOpenAPIUnderscoreHook"]
