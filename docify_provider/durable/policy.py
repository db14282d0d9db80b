"""The run policy: what to do about a run, given what the durable state says an earlier attempt did.

A run costs money and is not idempotent, so before a run operator sends one (and before a
trigger that may have been restarted sends one) it reads what an earlier attempt left: the
ledger (``durable.ledger``) or the trigger's restart marker. This module turns that into one of
four decisions, the same way for every backend and every caller:

* **reuse** the result an earlier try bought (only post-processing is redone);
* **re-attach** to the run an earlier attempt started, by its id (only where the backend can
  follow a run by id: Dify's run detail and events routes; the account API's events route for
  workflow and advanced-chat apps; never Docify, which has no status endpoint);
* **find** the run a request may have started whose id never arrived, in the server's run logs
  (Dify's Service API: the end user and the time the pending record holds), then re-attach to it;
  the caller fails closed when it finds none, or more than one;
* **send** a new run (nothing was sent; or the user opted in with ``force_rerun`` /
  ``allow_resubmit``, told that the earlier run may also have been billed);
* **outcome unknown**: a request may have gone out and cannot be followed, or the state that
  would tell cannot be read. Nothing is sent, and the message says what is known, why it is not
  re-sent, and what the user can do.

Pure: no Airflow, no I/O. The callers (``operators/*``, ``triggers/base.py``, the worker's
takeover after a trigger failure in ``operators/base.py``) read the state, build a ``Known``,
and act on the ``Decision``.

Decision table (``decide``), first matching row wins:

=====================  ============  ==============  ===========  ===========================
known                  force_rerun   allow_resubmit  can_reattach decision
=====================  ============  ==============  ===========  ===========================
state unreadable       any           any             any          UNKNOWN (fails closed)
result bought          no            any             any          REUSE
result bought          yes           any             any          SEND (new run)
nothing sent           any           any             any          SEND
sent, run id known     yes           any             any          SEND (resubmit, warned)
sent, run id known     no            any             yes          REATTACH
sent or unknown, no    no            no              finds_in     FIND (in the logs; needs the
run id, user and time                                logs         record's user and time)
sent                   no            yes             any          SEND (resubmit, warned)
sent                   no            no              any          UNKNOWN
=====================  ============  ==============  ===========  ===========================
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Backend:
    """What differs per backend in the policy: its name, how its runs are named, whether it can follow one.

    :param label: the service in messages (``"Docify"``, ``"Dify"``).
    :param id_field: the key of the run id in the ledger's pending record, the marker and events.
    :param id_noun: how a message names that id (``"session"``, ``"run"``).
    :param can_reattach: the backend can follow a run it did not send, by its id.
    :param no_reattach: why it cannot (for the outcome-unknown message), when ``can_reattach`` is False.
    :param finds_in_logs: a run whose id never arrived can be looked up in the server's run logs by
        the end user and the time it was sent (Dify's Service API ``GET /workflows/logs``).
    """

    label: str
    id_field: str
    id_noun: str
    can_reattach: bool
    no_reattach: str = ""
    finds_in_logs: bool = False

    def without_reattach(self, why: str) -> Backend:
        """This backend for a run it cannot follow by id (an account-API chat or completion app)."""
        return dataclasses.replace(self, can_reattach=False, no_reattach=why)


DOCIFY = Backend(
    "Docify",
    "session_id",
    "session",
    can_reattach=False,
    no_reattach="Docify has no status endpoint, so a run cannot be followed by its session id",
)
DIFY = Backend("Dify", "workflow_run_id", "run", can_reattach=True, finds_in_logs=True)
#: The account API follows workflow and advanced-chat runs by id (events route); see ``without_reattach``.
#: It sends on the worker and records the run id before deferring, so it does not search the logs.
DIFY_OPENAPI = Backend("Dify", "workflow_run_id", "run", can_reattach=True)


@dataclass(frozen=True)
class Known:
    """What the durable state says an earlier attempt did (build it with ``from_ledger`` / ``from_marker``).

    :param sent: False when nothing was sent; True when a run request went out (or may have: the
        intent is written before sending); None when the state that would tell cannot be read.
    :param result: the ledger's bought record (``{"raw", ..., "try_number"}``), when there is one.
    :param who: who sent it, for messages (``"try 1"``, ``"an earlier trigger of this task instance"``).
    :param when: when it was sent (ISO time), if known.
    :param user: the end user the run was sent as (the ledger's pending record), for a log search.
    :param why_unknown: why the state cannot be read (``sent`` None).
    :param searchable: this is the worker's reading of the ledger (``from_ledger``), which may look a run
        whose id never arrived up in the logs; a trigger's marker is not (the trigger fails closed).
    """

    sent: bool | None
    result: Mapping[str, Any] | None = None
    run_id: str | None = None
    task_id: str | None = None
    user: str | None = None
    who: str = "an earlier try"
    when: str | None = None
    why_unknown: str = ""
    searchable: bool = False

    @classmethod
    def from_ledger(cls, stored: Mapping[str, Any], backend: Backend) -> Known:
        """``RunLedger.read()``'s answer (a read that fails raises before this: the ledger fails closed)."""
        kept = stored.get("result")
        if isinstance(kept, Mapping) and isinstance(kept.get("raw"), Mapping):
            return cls(
                sent=True,
                result=kept,
                run_id=_text(kept.get(backend.id_field)),
                who=f"try {kept.get('try_number')}",
            )
        pending = stored.get("pending")
        if not isinstance(pending, Mapping):
            return cls(sent=False)
        return cls(
            sent=True,
            run_id=_text(pending.get(backend.id_field)),
            task_id=_text(pending.get("task_id")),
            user=_text(pending.get("user")),
            who=f"try {pending.get('try_number')}",
            when=_text(pending.get("sent_at")),
            searchable=True,
        )

    @classmethod
    def from_marker(cls, marker: Any, backend: Backend) -> Known:
        """A trigger's restart marker: none or ``{"state": "deferred"}`` means no trigger has sent the run.

        A marker that cannot be read is ``Known.unreadable``, never None.
        """
        if marker is None or (isinstance(marker, Mapping) and marker.get("state") == "deferred"):
            return cls(sent=False)
        fields: Mapping[str, Any] = marker if isinstance(marker, Mapping) else {}
        return cls(
            sent=True,
            run_id=_text(fields.get(backend.id_field)),
            task_id=_text(fields.get("task_id")),
            who="an earlier trigger of this task instance",
            when=_text(fields.get("sent_at")) or "?",
        )

    @classmethod
    def after_trigger_failure(
        cls,
        label: str,
        why: str,
        event: Mapping[str, Any] | None,
        marker: Mapping[str, Any],
        pending: Mapping[str, Any],
        backend: Backend,
    ) -> Known:
        """What a failed trigger's event, its restart marker and the ledger's pending record tell together."""
        seen = [event or {}, marker, pending]
        run_id = next((str(s[backend.id_field]) for s in seen if s.get(backend.id_field)), None)
        told = (event or {}).get("sent")  # True, False, or None: no event, or the trigger could not tell
        # The pending record's user and time let a worker look a run that was never named up in the logs.
        user, sent_at = pending.get("user"), pending.get("sent_at")
        if run_id or told or marker.get("state") == "sent":
            return cls(
                sent=True,
                run_id=run_id,
                task_id=next((str(s["task_id"]) for s in seen if s.get("task_id")), None),
                user=user,
                who=f"the {label} trigger",
                when=marker.get("sent_at") or sent_at,
                searchable=True,
            )
        if told is False or marker.get("state") == "deferred":
            return cls(sent=False)
        unread = cls.unreadable(
            f"the {label} trigger failed ({why}), and neither it nor its restart marker tells whether it sent "
            "the run request."
        )
        return dataclasses.replace(unread, user=user, who=f"the {label} trigger", when=sent_at, searchable=True)

    @classmethod
    def unreadable(cls, why: str) -> Known:
        """The state that would tell cannot be read (``why``): whether a run was sent is unknown."""
        return cls(sent=None, why_unknown=why)


class Action(enum.Enum):
    REUSE = "reuse"
    REATTACH = "reattach"
    FIND = "find"
    SEND = "send"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Decision:
    """What to do, and the sentence that says why (a log line, or the outcome-unknown error's message).

    ``resubmit`` marks a SEND over a request that may already have started (and billed) a run:
    log ``message`` as a warning. A first send has no message. ``not_followed``: why an UNKNOWN
    run cannot be followed, when a reason is known (the failing try's message names it too). A FIND
    carries ``user`` and ``when`` (the run was sent as ``user`` at or after ``when``, by ``who``) and,
    in ``message``, the outcome-unknown sentence a caller that cannot search raises (``todo``: what
    the user can do).
    """

    action: Action
    message: str = ""
    run_id: str | None = None
    task_id: str | None = None
    user: str | None = None
    result: Mapping[str, Any] | None = None
    resubmit: bool = False
    not_followed: str = ""
    when: str | None = None
    who: str = ""
    todo: str = ""


def decide(
    known: Known,
    backend: Backend,
    *,
    force_rerun: bool = False,
    allow_resubmit: bool = False,
    where: str | None = None,
) -> Decision:
    """The decision for ``known`` (the module's table). ``where`` names the task state a user clears."""
    label = backend.label
    clear = f"clear the task state ({where})" if where else "clear the task state"
    todo = f"Check the run in {label}; set allow_resubmit=True or {clear} to pay for a new run."
    findable = (
        known.searchable
        and backend.finds_in_logs
        and not known.run_id
        and known.result is None
        and known.sent is not False
    )
    if findable and not (force_rerun or allow_resubmit) and known.user and known.when:
        return Decision(
            Action.FIND,
            f"{label} run outcome unknown: {known.who} may have sent the run request (at or after {known.when}, "
            f"end user {known.user!r}), and its {backend.id_noun} id never arrived. The run may have been started "
            f"and billed, so it is not re-sent. {todo}",
            user=known.user,
            when=known.when,
            who=known.who,
            todo=todo,
        )
    if known.sent is None:
        return Decision(
            Action.UNKNOWN,
            f"{label} run outcome unknown: {known.why_unknown} Whether a run request was already sent is "
            f"unknown, so nothing is sent (one may have been started and billed). {todo}",
        )
    if known.result is not None:
        if force_rerun:
            return Decision(
                Action.SEND, f"force_rerun=True: ignoring the {label} result bought by {known.who}; a new run is sent"
            )
        return Decision(
            Action.REUSE,
            f"Reusing the {label} result bought by {known.who}{_seen(known, backend)}; no new run was bought. "
            "Only post-processing is redone (set force_rerun=True to buy a new run).",
            run_id=known.run_id,
            result=known.result,
        )
    if not known.sent:
        return Decision(Action.SEND)
    seen = _seen(known, backend)
    if known.run_id and backend.can_reattach and not force_rerun:
        return Decision(
            Action.REATTACH,
            f"{known.who[:1].upper()}{known.who[1:]} started {label} run {known.run_id}; re-attaching to it "
            "instead of starting a new run",
            run_id=known.run_id,
            task_id=known.task_id,
            user=known.user,
        )
    if force_rerun or allow_resubmit:
        flag = "force_rerun" if force_rerun else "allow_resubmit"
        return Decision(
            Action.SEND,
            f"A {label} run sent by {known.who}{seen} never reported its outcome; {flag}=True, so a new run is "
            "sent (the earlier one may also have been billed)",
            resubmit=True,
        )
    if known.run_id:
        missing = "its result never arrived"
        not_followed = backend.no_reattach
    elif findable:  # force_rerun and allow_resubmit were handled above: the record lacks the user or time
        missing = f"neither its {backend.id_noun} id nor its result arrived"
        not_followed = (
            f"without its {backend.id_noun} id it cannot be followed, and the pending record, written by an "
            f"earlier build, does not name both the end user and the time it was sent, so it cannot be looked "
            f"for in {label}'s logs"
        )
    else:
        missing = f"neither its {backend.id_noun} id nor its result arrived"
        not_followed = f"without its {backend.id_noun} id it cannot be followed" if backend.can_reattach else ""
    follow = f" ({not_followed})" if not_followed else ""
    when = f" (at or after {known.when})" if known.when else ""
    return Decision(
        Action.UNKNOWN,
        f"{label} run outcome unknown: {known.who} already sent the run request{when}{seen}, and {missing}. "
        f"The run may have been started and billed, so it is not re-sent{follow}. {todo}",
        run_id=known.run_id,
        task_id=known.task_id,
        not_followed=not_followed,
    )


def _seen(known: Known, backend: Backend) -> str:
    return f" ({backend.id_noun} {known.run_id})" if known.run_id else ""


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


__all__ = ["DIFY", "DIFY_OPENAPI", "DOCIFY", "Action", "Backend", "Decision", "Known", "decide"]
