"""How a try that re-attaches to a paused run finds its human-input form again (issue 17 item 6).

A task that waits on a form can end while Dify's run stays paused: a clear of the waiting task, a
lost worker, a retry. The next try re-attaches to the same run through the ledger (no second run
is bought), but what it re-attaches through may not name the form: Dify's run detail (the
blocking operator's poll) has no ``reasons``, so no form token. Without the token the try could not
wait on the form, could not post an Airflow answer and could not see it expire: it logged a pause
with no form ("form None"), polled the run until ``execution_timeout``, and failed an answer to
the request the first try had raised ("reported None") while Dify never got it.

So a pause whose form is not known is looked up in Dify's paused-run state (the events route's
state snapshot ends with ``workflow_paused``, whose ``reasons`` name the form and its token):
:meth:`FormBackend.paused_form`. The token is not kept in the task state (it answers the form);
the state's record (``hitl.HITL_STATE_KEY``: a digest of the token, the title, the action map)
tells whether the form found is the one this task already asked Airflow for, so the one request
is re-used, never raised twice. Then:

* a form that has expired fails the try at once, saying the run stays paused and how to start a
  new one (:func:`expired_error`), instead of waiting for an answer that cannot be posted;
* an Airflow answer that resumes a try holding no form (Airflow 3.3 resumes any deferred task
  with a HITL record straight from a REST answer, whatever it waits on) looks the form up the same
  way and posts the answer when it is the form the task asked for; otherwise it fails saying
  that nothing was posted and where to answer (:func:`answer_without_form_error`).

Pause reasons are keyed ``type`` in Dify's documentation and ``TYPE`` by current servers; both are
read (``dify.models.form_of_pause``, ``dify.models.human_input_reason``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from docify_provider.dify.forms import readable_time
from docify_provider.dify.narration import describe_pause


def expired(expires_at: Any) -> bool:
    """Whether an ISO expiry (``FormRequest.as_dict()["expiration_time"]``) has passed."""
    if not expires_at:
        return False
    try:
        when = datetime.fromisoformat(str(expires_at).replace("Z", "+00:00"))
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return datetime.now(tz=timezone.utc) >= when


def public_form(form: Mapping[str, Any]) -> dict[str, Any]:
    """The form without its token (for errors and events: the token answers the form)."""
    return {k: v for k, v in form.items() if k != "form_token"}


def held_record(state: Any) -> dict[str, Any]:
    """The task's HITL record (``hitl.HITL_STATE_KEY``), ``{}`` when none or unreadable."""
    from docify_provider.hitl import HITL_STATE_KEY

    try:
        held = state.get(HITL_STATE_KEY, must=False)
    except Exception:
        return {}
    return dict(held) if isinstance(held, Mapping) else {}


def asked_before(state: Any, form_token: str) -> int | None:
    """The try that asked Airflow for this form, when it was an earlier try of this task."""
    from docify_provider.hitl import form_key

    held = held_record(state)
    if held.get("form") != form_key(form_token):
        return None
    asked = held.get("try")
    return int(asked) if isinstance(asked, int) and asked != state.try_number else None


def find_form(backend: Any, run_id: str, log: Any) -> dict[str, Any]:
    """Dify's paused-run state's form for ``run_id`` (``{}`` when it names none or cannot be read)."""
    try:
        form = backend.paused_form(run_id)
    except Exception as exc:
        log.warning("Could not read the paused state of Dify run %s to find its form: %s", run_id, exc)
        return {}
    return dict(form or {})


def expired_error(run_id: str, form: Mapping[str, Any], try_number: int, reattached: bool) -> Exception:
    """The error failing a try whose form has expired. ``DifyPausedError`` is permanent: with
    ``DocifyRetryPolicy`` (3.3+) the task fails without retrying; a plain retry re-attaches and fails
    the same way at once, buying nothing."""
    from docify_provider.dify.errors import DifyPausedError

    found = f" (found when try {try_number} re-attached to the run)" if reattached else ""
    when = readable_time(form.get("expiration_time")) or "its expiry"
    return DifyPausedError(
        f"Dify run {run_id} paused for human input: the form {form.get('title') or 'of the run'!r} expired at "
        f"{when} without an answer{found}. It can no longer be answered, in Airflow or in Dify (Airflow keeps "
        "showing its request, greyed out: it has no way to mark a request expired), and the run stays paused "
        "on Dify. To go on, start a new run: clear the task with force_rerun=True (or after clearing its task "
        "state), or trigger a new DAG run.",
        run_id=run_id,
        form=public_form(form),
    )


def answer_without_form_error(run_id: str | None, chosen: list[str], who: Any, why: str, todo: str) -> Exception:
    """The error failing a try resumed by an Airflow answer it cannot post (no form to post it to)."""
    from docify_provider.dify.errors import DifyPausedError

    name = who.get("name") if isinstance(who, Mapping) else who
    answer = f"{chosen[0] if chosen else 'no option'!r}" + (f" by {name}" if name else "")
    return DifyPausedError(
        f"An Airflow answer ({answer}) resumed this task, but the task holds no human-input form to post it "
        f"to: {why}. Nothing was posted to Dify. {todo}",
        run_id=run_id,
    )


# -- what the run operators call (``operators/dify.py``: ``_on_paused``, ``_wait_for_human``,
# ``execute_complete``); ``op`` is a ``DifyRunOperatorBase``.


def pending_run(op: Any, state: Any) -> dict[str, Any]:
    """The run this task follows: ``workflow_run_id``, ``task_id``, ``user`` (the ledger's pending
    record, else the HITL record's run); ``{}`` when none is known."""
    running = op._running
    if running and running[1]:
        return {"workflow_run_id": running[1], "task_id": running[0], "user": running[2]}
    try:
        pending = op.ledger(state).read().get("pending")
    except Exception:
        pending = None
    if isinstance(pending, Mapping) and pending.get("workflow_run_id"):
        return {k: pending.get(k) for k in ("workflow_run_id", "task_id", "user")}
    run = held_record(state).get("run")
    return {"workflow_run_id": run, "task_id": None, "user": None} if run else {}


def look_up(op: Any, run_id: str, form: Mapping[str, Any], user: str) -> dict[str, Any]:
    """``form`` when it names its token, else the form Dify's paused-run state names (logged either way)."""
    if form.get("form_token"):
        return dict(form)
    found = find_form(op._form_backend(user), run_id, op.log)
    if found.get("form_token"):
        from docify_provider.compat import mask_secret_once

        mask_secret_once(str(found["form_token"]))
        op.log.info(
            "Dify run %s is paused and what this try re-attached through names no form; found its form in Dify's "
            "paused-run state: %s",
            run_id,
            describe_pause(found),
        )
        return found
    return dict(form)


def check_found(op: Any, state: Any, run_id: str, form: Mapping[str, Any]) -> None:
    """Before waiting on ``form``: say when it is the form an earlier try asked Airflow for (the one
    request is re-used), and fail at once when it has expired (an answer could not be posted)."""
    asked = asked_before(state, str(form["form_token"]))
    if asked is not None:
        op.log.info(
            "Try %s re-attached to Dify run %s and found its form again: %r is the form try %s asked Airflow "
            "for, so that request (one per task) waits for the answer",
            state.try_number,
            run_id,
            form.get("title"),
            asked,
        )
    if expired(form.get("expiration_time")):
        error = expired_error(run_id, form, state.try_number, reattached=asked is not None or state.try_number > 1)
        op.log.error("%s", error)
        raise error


def form_info(op: Any, run_id: str, task_id: str | None, user: str, form: Mapping[str, Any]) -> dict[str, Any]:
    """What a human-input wait carries (trigger and defer kwargs): the run, the form, the backend spec."""
    backend = op._form_backend(user)
    return {
        "workflow_run_id": run_id,
        "dify_task_id": task_id,
        "user": user,
        "form_token": str(form["form_token"]),
        "title": form.get("title"),
        "expires_at": form.get("expiration_time"),
        "backend": backend.classpath,
        "backend_kwargs": backend.spec(),
        "actions": {},
    }


def warn_no_form(op: Any, run_id: str, user: str) -> None:
    """Say that a paused run's form could not be found, and where to answer it."""
    op.log.warning(
        "Dify run %s is paused, and neither what this try re-attached through nor Dify's paused-run state "
        "names its form, so it cannot be asked or answered through Airflow. Answer it in Dify (%s); the task "
        "waits, deferred, and goes on when Dify resumes the run",
        run_id,
        answer_where(op, run_id, user),
    )


def answer_where(op: Any, run_id: str, user: str) -> str:
    """Where the run's form is answered in Dify (the backend's ``answer_where``; config only)."""
    try:
        return str(op._form_backend(user).answer_where(run_id))
    except Exception:
        return "the Dify console"


def answer_found_form(op: Any, context: Any, state: Any, answer: tuple[list[str], dict[str, Any], Any]) -> Any:
    """An Airflow answer resumed a try that holds no form (3.3 resumes any deferred task with a HITL
    record from a REST answer, e.g. while a re-attached try still follows the run): find the form in
    Dify's paused-run state and post the answer when it is the form this task asked for; else fail
    saying nothing was posted."""
    from docify_provider.hitl import form_key

    chosen, _params, who = answer
    run = pending_run(op, state)
    run_id = run.get("workflow_run_id")
    if not run_id:
        raise answer_without_form_error(
            None, chosen, who, "no Dify run is known to this task", "Answer the run's form in the Dify console."
        )
    from docify_provider.hooks.base import resolve_user

    user = str(run.get("user") or resolve_user(op, op.hook))
    held = held_record(state)
    form = find_form(op._form_backend(user), str(run_id), op.log)
    token = form.get("form_token")
    if token and held.get("form") == form_key(str(token)):
        from docify_provider.compat import mask_secret_once

        mask_secret_once(str(token))
        info = form_info(op, str(run_id), run.get("task_id"), user, form)
        info["actions"] = dict(held.get("actions") or {})
        op.log.info(
            "An Airflow answer resumed this try before it waited on its form; found the form again in Dify's "
            "paused-run state (%r, asked for by try %s): posting the answer",
            form.get("title"),
            held.get("try"),
        )
        return op._after_human(context, state, info, answer)
    where = answer_where(op, str(run_id), user)
    if not token:
        why = (
            f"Dify's paused-run state of run {run_id} names no open form (it was answered in Dify, the run went "
            "on, or this Dify keeps no paused-run state)"
        )
        todo = (
            f"If the run still waits on a form, answer it in Dify ({where}). Then clear the task: it re-attaches "
            "to the run and follows it (or waits on its next form)."
        )
    else:
        why = (
            f"the form run {run_id} waits on ({form.get('title')!r}) is not the one this task asked for "
            f"({held.get('title')!r})"
            if held
            else "this task has no record of asking Airflow for the run's form (its task state was cleared?)"
        )
        todo = f"Answer the form in Dify ({where}); the run stays paused until then. Then clear the task."
    error = answer_without_form_error(str(run_id), chosen, who, why, todo)
    op.log.error("%s", error)
    raise error


__all__ = [
    "answer_found_form",
    "answer_where",
    "answer_without_form_error",
    "asked_before",
    "check_found",
    "expired",
    "expired_error",
    "find_form",
    "form_info",
    "held_record",
    "look_up",
    "pending_run",
    "public_form",
    "warn_no_form",
]
