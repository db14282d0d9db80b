"""The OAuth device flow (RFC 8628) as Dify's OpenAPI runs it (B9).

Codes live ``expires_in`` seconds; ``/token`` answers ``slow_down`` to a poll within
``interval`` seconds of the previous one (checked first; every poll resets the timer), hands
the token out exactly once and then answers ``expired_token``. Approval happens in the
console (a cookie session); the emulator approves on its ``/device`` page (``device_page``), with
``POST /oauth/device/approve`` without auth, with :meth:`DeviceFlow.resolve`, or at once for every
new code (``auto_approve_as``: the command line's ``--auto-approve``).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

USER_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXY3456789"


class DeviceError(Exception):
    """A device-flow answer ``{"error": code}`` with ``status``."""

    def __init__(self, code: str, status: int = 400) -> None:
        super().__init__(code)
        self.code = code
        self.status = status


@dataclass(eq=False)
class DeviceCode:
    device_code: str
    user_code: str
    client_id: str
    device_label: str
    expires_at: float
    status: str = "pending"  # pending | approved | denied | consumed
    account_id: str | None = None
    last_poll: float | None = None
    created_at: float = field(default_factory=time.time)
    #: ``time.monotonic()`` of every poll of this code (tests check a client's poll gaps).
    polls: list[float] = field(default_factory=list)

    @property
    def expired(self) -> bool:
        return time.time() >= self.expires_at


def _user_code() -> str:
    chars = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
    return f"{chars[:4]}-{chars[4:]}"


class DeviceFlow:
    """Thread-safe device codes by device code and user code."""

    def __init__(
        self,
        known_clients: tuple[str, ...],
        expires_in: float,
        interval: float,
        advertised: float | None = None,
        auto_approve_as: str | None = None,
    ) -> None:
        self.known_clients = known_clients
        #: An account id: every new code is approved by it as soon as it is issued (scripts and CI
        #: that run a device login with nobody at a browser). None: codes wait for an approval.
        self.auto_approve_as = auto_approve_as
        self.expires_in = expires_in
        #: The poll gap enforced (``slow_down`` below it) and the one the code answer states
        #: (``advertised``, default the same): a smaller advertised interval makes a client that
        #: follows it meet ``slow_down``.
        self.interval = interval
        self.advertised = interval if advertised is None else advertised
        self._lock = threading.Lock()
        self._codes: dict[str, DeviceCode] = {}

    def create(self, client_id: str, device_label: str) -> DeviceCode:
        if client_id not in self.known_clients:
            raise DeviceError("unsupported_client")
        code = DeviceCode(
            device_code="dc_" + secrets.token_urlsafe(24),
            user_code=_user_code(),
            client_id=client_id,
            device_label=device_label,
            expires_at=time.time() + self.expires_in,
        )
        if self.auto_approve_as is not None:
            code.status, code.account_id = "approved", self.auto_approve_as
        with self._lock:
            self._codes[code.device_code] = code
        return code

    def by_user_code(self, user_code: str) -> DeviceCode | None:
        wanted = user_code.strip().upper()
        with self._lock:
            return next((c for c in self._codes.values() if c.user_code == wanted), None)

    def tally(self) -> dict[str, int]:
        """The device logins so far, for the counters: codes issued, codes still waiting for an
        answer, approved (the token handed out or not yet), denied, tokens handed out, expired
        unanswered."""
        now = time.time()
        with self._lock:
            codes = list(self._codes.values())
        status = [c.status for c in codes]
        return {
            "codes_issued": len(codes),
            "waiting": sum(1 for c in codes if c.status == "pending" and c.expires_at > now),
            "approved": status.count("approved") + status.count("consumed"),
            "denied": status.count("denied"),
            "tokens_handed_out": status.count("consumed"),
            "expired": sum(1 for c in codes if c.status == "pending" and c.expires_at <= now),
        }

    def poll(self, device_code: str, client_id: str) -> DeviceCode:
        """The approved code, consumed (the caller mints the token); else :class:`DeviceError`."""
        now = time.time()
        with self._lock:
            code = self._codes.get(device_code)
            if code is not None:
                code.polls.append(time.monotonic())
            if code is not None and code.last_poll is not None and now - code.last_poll < self.interval:
                code.last_poll = now
                raise DeviceError("slow_down")
            if code is None or code.expired or code.status == "consumed" or code.client_id != client_id:
                raise DeviceError("expired_token")
            code.last_poll = now
            if code.status == "denied":
                raise DeviceError("access_denied")
            if code.status == "pending":
                raise DeviceError("authorization_pending")
            code.status = "consumed"
            return code

    def resolve(self, user_code: str, approve: bool, account_id: str) -> str:
        """Approve or deny; returns ``"approved"`` / ``"denied"``. 404 ``expired_or_unknown``,
        409 ``already_resolved``."""
        code = self.by_user_code(user_code)
        with self._lock:
            if code is None or code.expired:
                raise DeviceError("expired_or_unknown", 404)
            if code.status != "pending":
                raise DeviceError("already_resolved", 409)
            code.status = "approved" if approve else "denied"
            code.account_id = account_id
            # Dify raises the code's TTL to at least 60 s after approval.
            code.expires_at = max(code.expires_at, time.time() + 60)
            return code.status
