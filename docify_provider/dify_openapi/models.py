"""Typed views of what the user-scoped OpenAPI sends about the account, workspaces, apps and sessions.

Runs and their events are the Service API's models (``docify_provider.dify.models``:
``WorkflowEvent``, ``WorkflowRun``, ``FormRequest``, ``AppParameters``): the OpenAPI streams the
same SSE. Each model keeps its payload in ``raw``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from docify_provider.dify.errors import DifyProtocolError
from docify_provider.dify.models import AppParameters, epoch_to_datetime
from docify_provider.dify_openapi.errors import DifyOpenAPIProtocolError


def _mapping(payload: Any, what: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise DifyOpenAPIProtocolError(f"Expected a JSON object for {what}, got {type(payload).__name__}")
    return payload


def _s(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


@dataclass(frozen=True)
class Workspace:
    """A workspace (``/account``'s ``workspaces`` or a ``/workspaces`` item)."""

    id: str
    name: str
    role: str | None = None
    status: str | None = None
    current: bool | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, data: Any) -> Workspace:
        data = _mapping(data, "a workspace")
        if not data.get("id"):
            raise DifyOpenAPIProtocolError("Workspace without an id")
        current = data.get("current")
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or ""),
            role=_s(data.get("role")),
            status=_s(data.get("status")),
            current=bool(current) if current is not None else None,
            raw=data,
        )


@dataclass(frozen=True)
class Account:
    """``GET /account``: who the token belongs to and the account's workspaces."""

    subject_type: str
    id: str | None
    email: str | None
    name: str | None
    workspaces: list[Workspace]
    default_workspace_id: str | None
    subject_email: str | None = None
    subject_issuer: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, data: Any) -> Account:
        data = _mapping(data, "the account")
        account = data.get("account") if isinstance(data.get("account"), dict) else {}
        return cls(
            subject_type=str(data.get("subject_type") or "account"),
            id=_s(account.get("id")),
            email=_s(account.get("email")) or _s(data.get("subject_email")),
            name=_s(account.get("name")),
            workspaces=[Workspace.from_api(w) for w in data.get("workspaces") or [] if isinstance(w, dict)],
            default_workspace_id=_s(data.get("default_workspace_id")),
            subject_email=_s(data.get("subject_email")),
            subject_issuer=_s(data.get("subject_issuer")),
            raw=data,
        )


@dataclass(frozen=True)
class AppSummary:
    """One ``GET /apps`` (or ``/permitted-external-apps``) row; ``tags`` only where the server sends them."""

    id: str
    name: str
    mode: str | None
    description: str = ""
    workspace_id: str | None = None
    workspace_name: str | None = None
    #: None when the row has no ``tags`` field (current Dify sends none, C5): unknown, not "no tags".
    tags: list[str] | None = None
    updated_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, data: Any) -> AppSummary:
        data = _mapping(data, "an app row")
        if not data.get("id"):
            raise DifyOpenAPIProtocolError("App row without an id")
        listed = data.get("tags")
        tags = [str(t.get("name") if isinstance(t, dict) else t) for t in listed] if isinstance(listed, list) else None
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or ""),
            mode=_s(data.get("mode")),
            description=str(data.get("description") or ""),
            workspace_id=_s(data.get("workspace_id")),
            workspace_name=_s(data.get("workspace_name")),
            tags=tags,
            updated_at=epoch_to_datetime(data.get("updated_at")),
            raw=data,
        )

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "mode": self.mode, "workspace_id": self.workspace_id}


@dataclass(frozen=True)
class AppDescription:
    """``GET /apps/{id}`` (legacy ``/describe``): the app's info, ``parameters`` and ``input_schema``.

    ``parameters`` is the Service API's ``/parameters`` shape, typed with the same ``AppParameters``;
    ``input_schema`` a JSON Schema 2020-12 of the run body (``inputs``, and ``query`` for chat apps).
    """

    id: str
    name: str
    mode: str | None
    service_api_enabled: bool | None
    parameters: AppParameters | None
    input_schema: dict[str, Any] | None
    description: str = ""
    is_agent: bool | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, data: Any, app_id: str | None = None) -> AppDescription:
        data = _mapping(data, "the app description")
        info = data.get("info") if isinstance(data.get("info"), dict) else {}
        params = data.get("parameters")
        try:
            parameters = AppParameters.from_api(params) if isinstance(params, dict) else None
        except DifyProtocolError as exc:
            raise DifyOpenAPIProtocolError(f"The app's parameters are malformed: {exc.message}") from None
        schema = data.get("input_schema")
        ident = info.get("id") or app_id
        if not ident:
            raise DifyOpenAPIProtocolError("App description without an id")
        enabled = info.get("service_api_enabled")
        agent = info.get("is_agent")
        return cls(
            id=str(ident),
            name=str(info.get("name") or ""),
            mode=_s(info.get("mode")),
            service_api_enabled=bool(enabled) if enabled is not None else None,
            parameters=parameters,
            input_schema=schema if isinstance(schema, dict) else None,
            description=str(info.get("description") or ""),
            is_agent=bool(agent) if agent is not None else None,
            raw=data,
        )


@dataclass(frozen=True)
class ResolvedApp:
    """An app reference made concrete: its id and mode (what picks the run route)."""

    id: str
    mode: str | None
    name: str | None = None


@dataclass(frozen=True)
class Session:
    """One ``GET /account/sessions`` row: a token issued to a device (``prefix`` is its visible start)."""

    id: str
    client_id: str | None
    device_label: str | None
    prefix: str | None
    created_at: datetime | None = None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, data: Any) -> Session:
        data = _mapping(data, "a session")
        if not data.get("id"):
            raise DifyOpenAPIProtocolError("Session without an id")
        return cls(
            id=str(data["id"]),
            client_id=_s(data.get("client_id")),
            device_label=_s(data.get("device_label")),
            prefix=_s(data.get("prefix")),
            created_at=epoch_to_datetime(data.get("created_at")),
            expires_at=epoch_to_datetime(data.get("expires_at")),
            last_used_at=epoch_to_datetime(data.get("last_used_at")),
            raw=data,
        )


@dataclass(frozen=True)
class HumanInputForm:
    """``GET`` of a human-input form: its content, fields, actions and expiry."""

    form_token: str
    form_content: str | None
    inputs: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    resolved_default_values: dict[str, Any]
    expiration_time: datetime | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, data: Any, form_token: str) -> HumanInputForm:
        data = _mapping(data, "the form")
        return cls(
            form_token=form_token,
            form_content=_s(data.get("form_content")),
            inputs=[i for i in data.get("inputs") or [] if isinstance(i, dict)],
            actions=[a for a in data.get("user_actions") or data.get("actions") or [] if isinstance(a, dict)],
            resolved_default_values=dict(data.get("resolved_default_values") or {}),
            expiration_time=epoch_to_datetime(data.get("expiration_time")),
            raw=data,
        )

    @property
    def action_ids(self) -> list[str]:
        return [str(a.get("id")) for a in self.actions if a.get("id")]


__all__ = ["Account", "AppDescription", "AppSummary", "HumanInputForm", "ResolvedApp", "Session", "Workspace"]
