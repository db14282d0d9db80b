"""The bought-once ledger: one record per task instance, intent -> started -> bought.

Every backend's run operators keep it the same way, in one key of the task's durable state
(``TaskState``):

* ``{"pending": {"sent_at", "try_number", <run ids>}}`` written **before** the run request is sent
  (``intend``; a failed write stops the try), then completed with the ids the server gave
  (``started``: Docify's session id, Dify's ``task_id`` and ``workflow_run_id``) as soon as they
  are known;
* ``{"result": {"raw", "stored_at", "try_number", <run ids>}}`` written in the same key the moment
  the result arrives (``bought``), before attachments are downloaded or anything else can fail.

A retry reads it first (``read``, which fails closed): a result is reused, a pending record is
the backend's to decide on (Docify: outcome unknown, never re-sent; Dify: re-attach to the run by
its id). One write per step, and never a moment without either record.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from docify_provider.durable.state import TaskState


def now_iso() -> str:
    """The current UTC time as ISO 8601: the one clock of the ledger's records and the restart
    markers the operators and triggers write (defined here once; issue 18)."""
    return datetime.now(tz=timezone.utc).isoformat()


class RunLedger:
    """The ledger of one task instance in ``state`` under ``key``.

    ``legacy`` maps older record keys (``{"result": key, "pending": key}``) that earlier builds
    wrote; they are read only when ``key`` holds nothing and dropped once superseded.
    """

    def __init__(self, state: TaskState, key: str, *, legacy: Sequence[tuple[str, str]] = ()) -> None:
        self.state = state
        self.key = key
        self.legacy = tuple(legacy)
        #: What this try wrote (the pending record), so ``started`` needs no read.
        self.pending: dict[str, Any] | None = None
        self._legacy_found: tuple[str, ...] = ()

    def describe(self, key: str | None = None) -> str:
        return self.state.describe(key or self.key)

    def read(self) -> dict[str, Any]:
        """``{"result": ..., "key": ...}``, ``{"pending": ..., "key": ...}`` or ``{}``; raises ``LedgerError``.

        One read, and none on try 1 (see ``durable.state``). Only when a retry finds nothing does it
        look at the keys earlier builds wrote.
        """
        if not self.state.may_hold_state:
            return {}
        return self.left()

    def left(self) -> dict[str, Any]:
        """What the next try's ``read`` will find, read even on try 1 (a failing try asks whether a
        retry can settle its run); raises ``LedgerError``."""
        value = self.state.get(self.key)
        if isinstance(value, dict):
            for part in ("result", "pending"):
                if isinstance(value.get(part), dict):
                    return {part: value[part], "key": self.key}
        for part, key in self.legacy:
            old = self.state.get(key)
            if isinstance(old, dict):
                self._legacy_found = tuple(k for _, k in self.legacy)
                return {part: old, "key": key}
        return {}

    def intend(self, **ids: Any) -> dict[str, Any]:
        """Record that this try is about to send a run; raises ``LedgerError`` (nothing sent) if it cannot."""
        self.pending = {"sent_at": now_iso(), "try_number": self.state.try_number, **ids}
        self.state.set(self.key, {"pending": self.pending}, must=True)
        # A record of an earlier build is superseded now; left behind it could outlive ours.
        for key in self._legacy_found:
            self.state.delete(key)
        self._legacy_found = ()
        return self.pending

    def started(self, **ids: Any) -> None:
        """Add the server's run ids to the pending record (once each; best effort, the run is going)."""
        pending = self.pending
        if pending is None:  # resumed after deferral: another process wrote the record
            value = self.state.get(self.key, must=False)
            pending = value.get("pending") if isinstance(value, dict) else None
        if not isinstance(pending, dict):
            return
        new = {k: v for k, v in ids.items() if v and not pending.get(k)}
        if new:
            self.pending = {**pending, **new}
            self.state.set(self.key, {"pending": self.pending})

    def bought(self, raw: Any, **ids: Any) -> None:
        """Keep the bought result where a retry finds it (replacing the pending record in one write)."""
        self.state.set(
            self.key,
            {"result": {"raw": raw, **ids, "stored_at": now_iso(), "try_number": self.state.try_number}},
        )
        self.pending = None

    def forget(self) -> None:
        """The run is settled without a result to keep (none started, or it failed): drop the record."""
        self.state.delete(self.key)
        self.pending = None

    def succeeded(self) -> None:
        """The task is done: drop what only a retry needed, where the store would keep it forever."""
        self.state.succeeded(self.key, *self._legacy_found)
