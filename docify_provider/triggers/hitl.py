"""``HumanInputTrigger``: wait, deferred, for a paused run's form to be answered in Airflow or in the backend.

It polls three things every ``poll_interval`` seconds, cheapest decision first:

1. the task instance's Airflow HITL record (Airflow 3.1+; ``ti_id`` given): an answer fires
   ``{"status": "hitl_answered", "chosen_options", "params_input", "responded_by_user"}`` and the
   worker posts it to the backend (on 3.3 an answer through the REST API resumes the task directly
   instead, with the same fields);
2. the backend's form: answered there (``submitted`` / ``gone``) fires ``{"status": "hitl_resumed"}``,
   and so does a run that is no longer paused (answered, stopped, ended): the worker re-attaches;
3. the form's expiry: past it, an error event (``DifyPausedError``: the run stays paused).

While nobody answers, the task log gets a "Still waiting for an answer" line every
``notice_every`` seconds (five minutes), naming the request and the expiry.

Every event echoes ``hitl`` (the run, the backend spec and the form) so ``execute_complete`` needs
no other state. The kwargs hold the backend's class path and plain kwargs (connection id, user),
never a key; the form token is kept in them (Airflow stores trigger kwargs encrypted).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import TriggerEvent

from docify_provider.dify.forms import expiry_words, readable_duration
from docify_provider.events import error_to_event
from docify_provider.hitl_reattach import expired, expired_error
from docify_provider.triggers.base import MarkerTrigger

_CLASSPATH = "docify_provider.triggers.hitl.HumanInputTrigger"

#: How often the task log says it still waits for an answer (a person reading it sees the wait is alive).
NOTICE_SECONDS = 300.0


def _read_in_process(ti_id: Any) -> Any:
    """``dag.test()``: its in-process supervisor answers no HITL reads for triggers (only a
    triggerer's does), so read through that supervisor's Execution API client instead."""
    from airflow.sdk.execution_time import task_runner

    client = getattr(getattr(getattr(task_runner, "SUPERVISOR_COMMS", None), "supervisor", None), "client", None)
    hitl = getattr(client, "hitl", None)
    return None if hitl is None else hitl.get_detail_response(ti_id=ti_id)


class HumanInputTrigger(MarkerTrigger):
    """Fire once the form of ``hitl["workflow_run_id"]`` is answered (Airflow or backend) or expires."""

    log_label = "Human input trigger"

    def __init__(
        self,
        *,
        hitl: Mapping[str, Any],
        ti_id: str | None = None,
        poll_interval: float = 30.0,
        try_number: int | None = None,
        notice_every: float = NOTICE_SECONDS,
    ) -> None:
        super().__init__()
        self.hitl = dict(hitl)
        self.ti_id = None if ti_id is None else str(ti_id)
        self.poll_interval = float(poll_interval)
        self.notice_every = float(notice_every)
        self._set_identity(None, None, None, -1, try_number)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            _CLASSPATH,
            {
                "hitl": self.hitl,
                "ti_id": self.ti_id,
                "poll_interval": self.poll_interval,
                "try_number": self.try_number,
                "notice_every": self.notice_every,
            },
        )

    def _event(self, payload: Mapping[str, Any]) -> TriggerEvent:
        return self._fire({**payload, "hitl": self.hitl, "workflow_run_id": self.hitl.get("workflow_run_id")})

    async def _airflow_answer(self) -> dict[str, Any] | None:
        """The answer recorded in the TI's HITL record, if any (None: none yet, or no record)."""
        from uuid import UUID

        from airflow.sdk.execution_time.hitl import get_hitl_detail_content_detail
        from asgiref.sync import sync_to_async

        ti_id = UUID(str(self.ti_id))
        try:
            resp = await sync_to_async(get_hitl_detail_content_detail)(ti_id=ti_id)
            if resp is None:
                resp = await sync_to_async(_read_in_process)(ti_id)
        except Exception as exc:  # a record cleared with its task: the backend side still decides
            self.log.debug("HITL record of %s not readable: %s", self.ti_id, exc)
            return None
        if resp is None or not (resp.response_received and resp.chosen_options):
            return None
        user = resp.responded_by_user
        return {
            "status": "hitl_answered",
            "chosen_options": list(resp.chosen_options or []),
            "params_input": dict(resp.params_input or {}),
            "responded_by_user": None if user is None else {"id": user.id, "name": user.name},
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from docify_provider.hitl import FORM_EXPIRED, FORM_OPEN, backend_from_spec

        backend = backend_from_spec(self.hitl["backend"], self.hitl.get("backend_kwargs") or {})
        run_id, token = str(self.hitl["workflow_run_id"]), str(self.hitl["form_token"])
        title, expires = self.hitl.get("title"), self.hitl.get("expires_at")
        started = last_notice = time.monotonic()
        while True:
            if self.ti_id:
                answer = await self._airflow_answer()
                if answer is not None:
                    who = (answer.get("responded_by_user") or {}).get("name")
                    self.log.info("Form %r answered in Airflow by %s: %s", title, who, answer["chosen_options"])
                    yield self._event(answer)
                    return
            try:
                state = await backend.aform_state(token)
                paused = state == FORM_OPEN and await backend.arun_paused(run_id)
            except Exception as exc:
                self.log.info("Run %s: form state not readable yet (%s)", run_id, exc)
            else:
                if state == FORM_EXPIRED or (state == FORM_OPEN and paused and expired(expires)):
                    yield self._event(self._expired_error(run_id, title, expires))
                    return
                if state == FORM_OPEN and not paused:
                    # Read the form again: an answer given in Dify between the two reads resumes the
                    # run, and the log should say so rather than "the run is not paused".
                    state = await backend.aform_state(token)
                if state != FORM_OPEN or not paused:
                    why = "the form was answered outside Airflow" if state != FORM_OPEN else "the run is not paused"
                    self.log.info("Run %s goes on: %s (form %s)", run_id, why, state)
                    yield self._event({"status": "hitl_resumed", "reason": why, "form_state": state})
                    return
            if time.monotonic() - last_notice >= self.notice_every:
                last_notice = time.monotonic()
                self._still_waiting(last_notice - started)
            await asyncio.sleep(self.poll_interval)

    def _still_waiting(self, waited: float) -> None:
        """The line a person reading the task log sees every ``notice_every`` seconds while nobody answers."""
        title, run_id = self.hitl.get("title"), self.hitl.get("workflow_run_id")
        expiry, so_far = expiry_words(self.hitl.get("expires_at")), readable_duration(waited)
        if self.ti_id:
            subject = self.hitl.get("subject") or title
            self.log.info(
                "Still waiting for an answer (request %r under Required Actions, or the form in Dify; %s; "
                "waited %s so far)",
                subject,
                expiry,
                so_far,
            )
        else:
            self.log.info(
                "Still waiting for the form %r of Dify run %s to be answered in Dify (%s; waited %s so far)",
                title,
                run_id,
                expiry,
                so_far,
            )

    def _expired_error(self, run_id: str, title: Any, expires: Any) -> dict[str, Any]:
        """The form expired unanswered: the error the task fails with, saying what happens next."""
        from docify_provider.dify.errors import DifyError

        expired = expired_error(run_id, {"title": title, "expiration_time": expires}, 0, reattached=False)
        self.log.error("%s", expired)
        return dict(error_to_event(expired, posted=False, root=DifyError))


__all__ = ["HumanInputTrigger"]
