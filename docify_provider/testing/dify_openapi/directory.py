"""Who and what the OpenAPI emulator knows: accounts, workspaces, apps, bearer sessions (B2, B4).

Ids are fixed so that tests (and the client's tests) can name them as constants. Apps are
:class:`~docify_provider.testing.dify.apps.DifyApp` (the Service-API emulator's apps, run by the
same engine) with a mode, a workspace and the Service-API toggle added.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from docify_provider.testing.dify.apps import DifyApp, builtin_apps, variable
from docify_provider.testing.keys import fingerprint

APP_MODES = ("completion", "chat", "advanced-chat", "workflow", "agent-chat")
#: Modes whose run takes a ``query`` (and whose input schema has one).
CHAT_MODES = frozenset({"chat", "advanced-chat", "agent-chat"})

ACCOUNT_ID = "6f1c0000-0000-4000-8000-00000000a001"
ACCOUNT_EMAIL = "emulator@example.com"
ACCOUNT_NAME = "Emu Lator"
OTHER_ACCOUNT_ID = "6f1c0000-0000-4000-8000-00000000a002"
OTHER_ACCOUNT_EMAIL = "colleague@example.com"

#: A ready account token (``dfoa_`` + 43 characters) of ACCOUNT_ID, valid for ``token_ttl``.
ACCOUNT_TOKEN = "dfoa_EmulatorAccountToken00000000000000000000001"  # noqa: S105 (a test token)
#: A token of OTHER_ACCOUNT_ID, a member of the main workspace only (another caller).
OTHER_ACCOUNT_TOKEN = "dfoa_EmulatorColleagueToken000000000000000000002"  # noqa: S105

WORKSPACE_ID = "7a2d0000-0000-4000-8000-000000000001"
SECOND_WORKSPACE_ID = "7a2d0000-0000-4000-8000-000000000002"
#: A workspace ACCOUNT_ID is not a member of (its apps 404).
FOREIGN_WORKSPACE_ID = "7a2d0000-0000-4000-8000-000000000003"

TEXT_APP_ID = "a0000000-0000-4000-8000-000000000001"
DOCUMENT_APP_ID = "a0000000-0000-4000-8000-000000000002"
LONG_APP_ID = "a0000000-0000-4000-8000-000000000003"
HUMAN_INPUT_APP_ID = "a0000000-0000-4000-8000-000000000004"
TWO_FORMS_APP_ID = "a0000000-0000-4000-8000-000000000005"
CHAT_APP_ID = "a0000000-0000-4000-8000-000000000006"
ADVANCED_CHAT_APP_ID = "a0000000-0000-4000-8000-000000000007"
COMPLETION_APP_ID = "a0000000-0000-4000-8000-000000000008"
#: A workflow app whose Service API toggle is off: 403 ``service_api_disabled`` on run routes.
DISABLED_APP_ID = "a0000000-0000-4000-8000-000000000009"
#: A text workflow in SECOND_WORKSPACE_ID.
SECOND_WORKSPACE_APP_ID = "a0000000-0000-4000-8000-00000000000a"
#: A text workflow in FOREIGN_WORKSPACE_ID (404 for ACCOUNT_ID).
FOREIGN_APP_ID = "a0000000-0000-4000-8000-00000000000b"

NIGHTLY_TAG = "nightly"


@dataclass
class Account:
    id: str
    email: str
    name: str
    #: workspace id -> role
    roles: dict[str, str]
    default_workspace_id: str

    def payload(self) -> dict[str, str]:
        return {"id": self.id, "email": self.email, "name": self.name}


@dataclass
class Workspace:
    id: str
    name: str
    created_at: str = "2026-01-01T00:00:00Z"
    status: str = "normal"


@dataclass
class OpenAPIApp(DifyApp):
    """A Dify app as the user-scoped OpenAPI lists it."""

    mode: str = "workflow"
    workspace_id: str = WORKSPACE_ID
    service_api_enabled: bool = True
    updated_at: str = "2026-06-01T12:00:00Z"
    created_by_name: str = ACCOUNT_NAME

    def tag_items(self) -> list[dict[str, str]]:
        return [{"name": t} for t in self.tags]


@dataclass(eq=False)
class Session:
    """One bearer token row (``oauth_access_tokens``), known by the token's hash only."""

    id: str
    token_fp: str
    account_id: str
    client_id: str
    device_label: str
    prefix: str
    expires_at: float
    created_at: float = field(default_factory=time.time)
    last_used_at: float | None = None
    revoked: bool = False

    @property
    def live(self) -> bool:
        return not self.revoked and time.time() < self.expires_at

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "client_id": self.client_id,
            "device_label": self.device_label,
            "prefix": self.prefix,
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "last_used_at": None if self.last_used_at is None else iso(self.last_used_at),
        }


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def new_token() -> str:
    """``dfoa_`` + ``secrets.token_urlsafe(32)`` (43 characters), as Dify mints them."""
    return "dfoa_" + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _app(base: DifyApp, app_id: str, name: str, tags: list[str], **extra: Any) -> OpenAPIApp:
    return OpenAPIApp(
        code=app_id,
        kind=extra.pop("kind", base.kind),
        name=name,
        description=extra.pop("description", base.description),
        variables=[dict(v) for v in extra.pop("variables", base.variables)],
        tags=tags,
        app_id=app_id,
        workflow_id=str(uuid.uuid5(uuid.NAMESPACE_URL, app_id)),
        **extra,
    )


def builtin_openapi_apps() -> dict[str, OpenAPIApp]:
    """The built-in apps by id (codes are the ids: forms and runs refer to apps by code)."""
    base = builtin_apps()
    topic = [variable("text-input", "topic", "Topic", required=True, max_length=200)]
    name_var = [variable("text-input", "name", "Your name", required=False, max_length=50)]
    apps = [
        _app(base["text"], TEXT_APP_ID, "Text Writer", ["emulator", NIGHTLY_TAG]),
        _app(base["document"], DOCUMENT_APP_ID, "Document Summary", ["emulator", NIGHTLY_TAG]),
        _app(base["long"], LONG_APP_ID, "Long Job", ["emulator", NIGHTLY_TAG]),
        _app(base["human_input"], HUMAN_INPUT_APP_ID, "Review Gate", ["emulator", "human-input"]),
        _app(
            base["human_input"],
            TWO_FORMS_APP_ID,
            "Two-Step Review",
            ["emulator", "human-input"],
            kind="human_input_two",
            description="Pauses twice: an outline review, then a final sign-off",
        ),
        _app(
            base["text"],
            CHAT_APP_ID,
            "Chat Assistant",
            ["emulator", "chat", NIGHTLY_TAG],
            kind="chat",
            mode="chat",
            description="Answers the query",
            variables=name_var,
        ),
        _app(
            base["text"],
            ADVANCED_CHAT_APP_ID,
            "Advanced Chat",
            ["emulator", "chat"],
            kind="advanced_chat",
            mode="advanced-chat",
            description="A chatflow answering the query",
            variables=name_var,
        ),
        _app(
            base["text"],
            COMPLETION_APP_ID,
            "Completion Writer",
            ["emulator", NIGHTLY_TAG],
            kind="completion",
            mode="completion",
            description="Completes a text about a topic",
            variables=topic,
        ),
        _app(base["text"], DISABLED_APP_ID, "Disabled Writer", ["emulator"], service_api_enabled=False),
        _app(base["text"], SECOND_WORKSPACE_APP_ID, "Second Writer", [NIGHTLY_TAG], workspace_id=SECOND_WORKSPACE_ID),
        _app(base["text"], FOREIGN_APP_ID, "Foreign Writer", [], workspace_id=FOREIGN_WORKSPACE_ID),
    ]
    return {app.app_id: app for app in apps}


def builtin_workspaces() -> dict[str, Workspace]:
    return {
        WORKSPACE_ID: Workspace(WORKSPACE_ID, "Emulator Workspace"),
        SECOND_WORKSPACE_ID: Workspace(SECOND_WORKSPACE_ID, "Second Workspace", "2026-02-01T00:00:00Z"),
        FOREIGN_WORKSPACE_ID: Workspace(FOREIGN_WORKSPACE_ID, "Someone Else's Workspace"),
    }


def builtin_accounts() -> dict[str, Account]:
    return {
        ACCOUNT_ID: Account(
            ACCOUNT_ID,
            ACCOUNT_EMAIL,
            ACCOUNT_NAME,
            {WORKSPACE_ID: "owner", SECOND_WORKSPACE_ID: "normal"},
            WORKSPACE_ID,
        ),
        OTHER_ACCOUNT_ID: Account(
            OTHER_ACCOUNT_ID, OTHER_ACCOUNT_EMAIL, "Col League", {WORKSPACE_ID: "editor"}, WORKSPACE_ID
        ),
    }


class Sessions:
    """Thread-safe bearer sessions by token fingerprint; revoked and expired rows stay (401)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_fp: dict[str, Session] = {}

    def issue(
        self,
        account_id: str,
        ttl: float,
        *,
        token: str | None = None,
        client_id: str = "difyctl",
        device_label: str = "emulator",
    ) -> tuple[str, Session]:
        """Mint a token (or register ``token``); a re-login of the same (account, client,
        device label) revokes the previous live row, as Dify rotates it."""
        token = token or new_token()
        session = Session(
            id=str(uuid.uuid4()),
            token_fp=fingerprint(token),
            account_id=account_id,
            client_id=client_id,
            device_label=device_label,
            prefix=token[:9],
            expires_at=time.time() + ttl,
        )
        with self._lock:
            for old in self._by_fp.values():
                if (old.account_id, old.client_id, old.device_label) == (account_id, client_id, device_label):
                    old.revoked = True
            self._by_fp[session.token_fp] = session
        return token, session

    def get(self, token_fp: str | None) -> Session | None:
        with self._lock:
            return self._by_fp.get(token_fp) if token_fp else None

    def by_id(self, session_id: str) -> Session | None:
        with self._lock:
            return next((s for s in self._by_fp.values() if s.id == session_id), None)

    def of_account(self, account_id: str) -> list[Session]:
        with self._lock:
            return [s for s in self._by_fp.values() if s.account_id == account_id and s.live]

    def revoke(self, session: Session) -> None:
        with self._lock:
            session.revoked = True
