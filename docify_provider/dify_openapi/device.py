"""The device login (RFC 8628) as a small sans-IO state machine; the clients drive its I/O.

``POST /oauth/device/code`` gives a ``device_code``, a ``user_code`` the user enters at
``verification_uri`` and a poll ``interval``; ``POST /oauth/device/token`` is then polled. Every
poll answer but success is HTTP 400 ``{"error": ...}`` (B9): ``authorization_pending`` (poll
again after ``interval``), ``slow_down`` (Dify's limiter: within 5 s of the previous poll; the
interval grows by 5 s, RFC 8628 3.5), ``expired_token`` (unknown or expired code, or the token
was already handed out: it is given once) and ``access_denied`` (the user said no).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from docify_provider._core.config import Secret
from docify_provider.dify.models import epoch_to_datetime
from docify_provider.dify_openapi.errors import DifyOpenAPIDeviceFlowError, DifyOpenAPIProtocolError
from docify_provider.dify_openapi.protocol import DEVICE_TOKEN

log = logging.getLogger(__name__)

#: RFC 8628 3.5: "the interval MUST be increased by 5 seconds for this and all subsequent requests".
SLOW_DOWN_STEP = 5.0
DEFAULT_INTERVAL = 5.0

_FINAL = {
    "expired_token": "The device code expired (or its token was already handed out); start a new login.",
    "access_denied": "The login was denied in the Dify console; start a new login to try again.",
    "unsupported_client": "Dify does not know this client_id (OPENAPI_KNOWN_CLIENT_IDS; 'difyctl' by default).",
    "invalid_client": "Dify refused the client_id.",
    "invalid_grant": "Dify refused the device code; start a new login.",
}


@dataclass(frozen=True)
class DeviceCode:
    """``POST /oauth/device/code``'s answer: show ``user_code`` and ``verification_uri`` to the user."""

    device_code: Secret
    user_code: str
    verification_uri: str
    expires_in: float
    interval: float
    client_id: str
    issued_at: float = field(default_factory=time.monotonic)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def verification_uri_complete(self) -> str:
        """The page with the code filled in: the server's ``verification_uri_complete`` when it sends
        one (RFC 8628 3.2; Dify does not), else ``verification_uri`` with ``?user_code=``, which
        Dify's console page (``web/app/device``) and the emulator's ``/device`` read."""
        given = self.raw.get("verification_uri_complete")
        if isinstance(given, str) and given.startswith(("http://", "https://")):
            return given
        sep = "&" if "?" in self.verification_uri else "?"
        return f"{self.verification_uri}{sep}user_code={quote(self.user_code, safe='-')}"

    @classmethod
    def from_api(cls, data: Any, client_id: str) -> DeviceCode:
        if not isinstance(data, dict) or not data.get("device_code") or not data.get("user_code"):
            raise DifyOpenAPIProtocolError(f"Device code answer without device_code/user_code: {type(data).__name__}")
        raw = {k: v for k, v in data.items() if k != "device_code"}
        return cls(
            device_code=Secret(str(data["device_code"])),
            user_code=str(data["user_code"]),
            verification_uri=str(data.get("verification_uri") or ""),
            expires_in=float(data.get("expires_in") or 900),
            interval=float(data.get("interval") or DEFAULT_INTERVAL),
            client_id=client_id,
            raw=raw,
        )


@dataclass(frozen=True)
class DeviceToken:
    """A successful poll: the account token (a ``Secret``), when it lapses, and whose it is."""

    token: Secret
    expires_at: datetime | None
    account: dict[str, Any]
    workspaces: list[dict[str, Any]]
    default_workspace_id: str | None
    token_id: str | None = None
    subject_type: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, data: Any) -> DeviceToken:
        if not isinstance(data, dict) or not data.get("token"):
            raise DifyOpenAPIProtocolError("Device token answer without a token")
        raw = {k: v for k, v in data.items() if k != "token"}
        return cls(
            token=Secret(str(data["token"])),
            expires_at=epoch_to_datetime(data.get("expires_at")),
            account=data["account"] if isinstance(data.get("account"), dict) else {},
            workspaces=[w for w in data.get("workspaces") or [] if isinstance(w, dict)],
            default_workspace_id=str(data["default_workspace_id"]) if data.get("default_workspace_id") else None,
            token_id=str(data["token_id"]) if data.get("token_id") else None,
            subject_type=str(data["subject_type"]) if data.get("subject_type") else None,
            raw=raw,
        )


#: Statuses of a gateway or an overloaded server, never an RFC 8628 error answer (those are 400):
#: the poll goes on at its interval. (A 502 may hide a token handed out and lost: the next poll then
#: answers ``expired_token``, which ends the login with "start a new login".)
TRANSIENT_STATUSES = frozenset({502, 503, 504, 524})


@dataclass
class DevicePoll:
    """The polling side: what to send, how long to wait, and what each answer means.

    ``request()`` is the poll body, ``wait()`` the seconds before the next poll, ``on_answer``
    reads one answer and returns a ``DeviceToken`` (done), None (poll again) or raises
    ``DifyOpenAPIDeviceFlowError`` (done without a token). ``clock`` is injectable for tests.
    """

    code: DeviceCode
    clock: Callable[[], float] = time.monotonic
    interval: float = 0.0
    polls: int = 0
    slow_downs: int = 0
    deadline: float = 0.0

    def __post_init__(self) -> None:
        self.interval = max(self.code.interval, 1.0)
        self.deadline = self.code.issued_at + self.code.expires_in

    def request(self) -> dict[str, str]:
        return {"device_code": self.code.device_code.reveal(), "client_id": self.code.client_id}

    def wait(self) -> float:
        return self.interval

    def expired(self) -> bool:
        return self.clock() >= self.deadline

    def on_answer(self, status: int, body: bytes | Any) -> DeviceToken | None:
        self.polls += 1
        payload = body
        if isinstance(body, (bytes, str)):
            try:
                payload = json.loads(body)
            except ValueError:
                payload = None
        if 200 <= status < 300:
            return DeviceToken.from_api(payload)
        if status in TRANSIENT_STATUSES:
            if self.expired():
                raise self._final("expired_token")
            log.warning("Dify answered HTTP %s to a device token poll; polling again in %.0f s", status, self.interval)
            return None
        error = str(payload.get("error") or "") if isinstance(payload, dict) else ""
        if error == "authorization_pending":
            if self.expired():
                raise self._final("expired_token")
            return None
        if error == "slow_down":
            self.slow_downs += 1
            self.interval += SLOW_DOWN_STEP
            return None
        if error:
            raise self._final(error, payload.get("error_description") if isinstance(payload, dict) else None)
        raise DifyOpenAPIDeviceFlowError(
            f"Unexpected device token answer (HTTP {status}); start a new login.",
            reason=f"http_{status}",
            endpoint=str(DEVICE_TOKEN),
        )

    def _final(self, error: str, description: Any = None) -> DifyOpenAPIDeviceFlowError:
        text = _FINAL.get(error, f"The device login failed ({error}).")
        if description:
            text += f" {description}"
        return DifyOpenAPIDeviceFlowError(f"Dify device login: {text}", reason=error, endpoint=str(DEVICE_TOKEN))

    def timeout_error(self) -> DifyOpenAPIDeviceFlowError:
        return self._final("expired_token")


__all__ = ["DeviceCode", "DevicePoll", "DeviceToken"]
