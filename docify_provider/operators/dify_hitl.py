"""How a Dify run operator waits on a run paused for human input (the layer under the shared base).

A paused run fails (``on_pause="fail"``, ``DifyPausedError`` naming the form) or waits, deferred:
on Airflow 3.1+ the form is raised as the task's human-in-the-loop request and its answer is
posted to Dify (``HumanInputTrigger``); a form answered in Dify resumes the run too. Then the
operator re-attaches to the run (``_reattach``: each API's own trigger). Kept apart from the run
flow (``operators/dify_run.py``) because it is a concern of its own, shared by the Service API
and account API operators alike; what differs per API is named here and given by each of them:
where forms are read and answered (``_form_backend``), how a pause without a form is waited on
(``_wait_without_form``) and how the resumed run is followed (``_reattach``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from docify_provider.dify.forms import expiry_words, fields_of
from docify_provider.dify.narration import log_form
from docify_provider.durable.state import TaskState
from docify_provider.hooks.base import resolve_user
from docify_provider.operators.base import RunOperatorBase

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: Why a later form of a run is answered in Dify (docify_provider.hitl: one record per task).
ONE_REQUEST = "Airflow keeps one human-in-the-loop request per task (its tries share it)"


class DifyPauseHandling(RunOperatorBase):
    """Pause handling and human input of the Dify run operators (not for direct use)."""

    on_pause: str
    pause_poll_interval: float
    #: (task_id, workflow_run_id, user) of the run in flight, for on_kill / execution_timeout.
    _running: tuple[str | None, str | None, str] | None

    def _started(self, state: TaskState, task_id: str | None, run_id: str | None, user: str) -> None:
        raise NotImplementedError

    def _on_paused(self, context: Context, run_id: str, form: Mapping[str, Any]) -> Any:
        """Fail (``on_pause="fail"``) or wait on the form; a pause that names no form (a re-attach
        through the run detail) is looked up in Dify's paused-run state first (``hitl_reattach``)."""
        from docify_provider import hitl_reattach
        from docify_provider.dify.errors import DifyPausedError

        if self.on_pause == "wait":
            running = self._running if self._running and self._running[1] == run_id else None
            form = hitl_reattach.look_up(self, run_id, form, running[2] if running else resolve_user(self, self.hook))
        log_form(self.log, form, run_id)
        if self.on_pause == "fail":
            title = form.get("title") or "a human-input form"
            raise DifyPausedError(
                f"Dify run {run_id} paused for human input ({title!r}); on_pause='fail'. Answer the form, "
                "then clear the task (it re-attaches to the run).",
                run_id=run_id,
                form=hitl_reattach.public_form(form),
            )
        if form.get("form_token"):
            return self._wait_for_human(context, run_id, form)
        return self._wait_without_form(context, run_id, form)

    def _wait_without_form(self, context: Context, run_id: str, form: Mapping[str, Any]) -> Any:
        """No form could be found: wait for Dify to resume the run (each API its own way)."""
        raise NotImplementedError

    # -- human input (docify_provider.hitl) ----------------------------------------------------

    def _wait_for_human(self, context: Context, run_id: str, form: Mapping[str, Any]) -> Any:
        """Raise the try's Airflow HITL request for ``form`` (3.1+) and wait, deferred, for an answer."""
        from docify_provider import hitl, hitl_reattach
        from docify_provider.compat import airflow_version, mask_secret_once
        from docify_provider.triggers.hitl import HumanInputTrigger

        state = TaskState(context, self.log)
        running = self._running if self._running and self._running[1] == run_id else None
        user = running[2] if running else resolve_user(self, self.hook)
        info = hitl_reattach.form_info(self, run_id, running[0] if running else None, user, form)
        # The form token lets its holder answer the form: Airflow's masker redacts it from every log
        # line from here on (Airflow 3.0 prints a deferral's kwargs).
        mask_secret_once(info["form_token"])
        hitl_reattach.check_found(self, state, run_id, form)  # the form an earlier try asked for; expired
        ti_id = None
        if hitl.has_hitl():
            ti_id = self._hitl_record(context, state, info)
        else:
            major, minor = airflow_version()
            self.log.warning(
                "Airflow %s.%s has no human-in-the-loop requests (3.1+): answer the form %r of Dify run %s in Dify "
                "(%s); the task waits, deferred, and goes on when Dify resumes the run",
                major,
                minor,
                info["title"],
                run_id,
                expiry_words(info["expires_at"]),
            )
        self.log.info(
            "Waiting, deferred (no worker slot held), for the answer to the form %r of Dify run %s (%s); "
            "then the run resumes and this task follows it",
            info["title"],
            run_id,
            expiry_words(info["expires_at"]),
        )
        self.hook.close()
        self.defer(
            trigger=HumanInputTrigger(
                hitl=info, ti_id=ti_id, poll_interval=self.pause_poll_interval, try_number=state.try_number
            ),
            method_name="execute_complete",
            kwargs={"hitl": info},
        )

    def _form_backend(self, user: str) -> Any:
        """The :class:`~docify_provider.hitl.FormBackend` that reads and answers this operator's forms."""
        raise NotImplementedError

    def _hitl_record(self, context: Context, state: TaskState, info: dict[str, Any]) -> str | None:
        """The TI id whose HITL record asks for this form, or None (the form is answered in Dify).

        One record per task (see :mod:`docify_provider.hitl`): the first form of the run gets it;
        the same form again re-uses it untouched; a later form is answered in Dify (logged).
        """
        from docify_provider import hitl

        ti = context["task_instance"]
        key, title, run_id = hitl.form_key(info["form_token"]), info["title"], info["workflow_run_id"]
        held = state.get(hitl.HITL_STATE_KEY, must=False) or {}
        if held.get("form") == key:
            info["actions"] = dict(held.get("actions") or {})
            if held.get("subject"):
                info["subject"] = held["subject"]
            self.log.info("This task already asked Airflow for form %r; waiting for its answer", title)
            return str(ti.id)
        if held:
            self._answer_in_dify(
                info, f"{ONE_REQUEST}, and this task's request already asked for the form {held.get('title')!r}"
            )
            return None
        backend = hitl.backend_from_spec(info["backend"], info["backend_kwargs"])
        try:
            definition = backend.get_form(info["form_token"])
        except Exception as exc:
            self.log.warning("Could not read the form %r of Dify run %s (%s); waiting for Dify", title, run_id, exc)
            return None
        files = [f.label for f in fields_of(definition) if not f.answerable_in_airflow]
        if files:  # an answer without the file would be refused by Dify
            self._answer_in_dify(info, f"it asks for a file ({', '.join(files)}), which Airflow's form cannot take")
            return None
        request = hitl.request_from_form(title, definition, info["expires_at"], app=_app_name(backend), run_id=run_id)
        if not hitl.raise_request(context, request):
            self._answer_in_dify(info, f"{ONE_REQUEST}, and this task's request already holds another form")
            return None
        info["actions"], info["subject"] = request.actions, request.subject
        state.set(
            hitl.HITL_STATE_KEY,
            {
                "try": state.try_number,
                "form": key,
                "title": title,
                "run": run_id,
                "actions": request.actions,
                "subject": request.subject,
            },
        )
        self.log.info(
            "Asked Airflow for human input (Required Actions): %r, options %s, fields %s",
            request.subject,
            request.options,
            ", ".join(f"{f.label} ({f.kind})" for f in request.fields) or "none",
        )
        return str(ti.id)

    def _answer_in_dify(self, info: Mapping[str, Any], why: str) -> None:
        """Say, once per form, that it must be answered in Dify, why, and where."""
        where = self._answer_where(info)
        self.log.warning(
            "Dify run %s paused on the form %r, which is NOT asked in Airflow: %s. Answer it in Dify's console at "
            "%s (%s); the task waits, deferred, and goes on when Dify resumes the run",
            info["workflow_run_id"],
            info["title"],
            why,
            where,
            expiry_words(info.get("expires_at")),
        )

    def _answer_where(self, info: Mapping[str, Any]) -> str:
        """Where the form is answered in Dify (the backend's ``answer_where``; a read of config only)."""
        from docify_provider import hitl

        try:
            backend = hitl.backend_from_spec(info["backend"], info["backend_kwargs"])
            return str(backend.answer_where(str(info["workflow_run_id"])))  # type: ignore[attr-defined]
        except Exception:
            return "the Dify console"

    def _after_human(
        self,
        context: Context,
        state: TaskState,
        info: Mapping[str, Any],
        answer: tuple[list[str], dict[str, Any], Any] | None,
    ) -> Any:
        """Post an Airflow answer to Dify (unless Dify already has one), then re-attach to the run."""
        from docify_provider import hitl
        from docify_provider.dify.errors import DifyInputError

        run_id, user = str(info["workflow_run_id"]), str(info["user"])
        self._started(state, info.get("dify_task_id"), run_id, user)
        if answer is not None:
            chosen, params, who = answer
            actions = dict(info.get("actions") or {})
            action = actions.get(chosen[0]) if chosen else None
            if action is None:
                raise DifyInputError(f"The Airflow answer {chosen} names none of the form's actions {list(actions)}")
            backend = hitl.backend_from_spec(str(info["backend"]), info.get("backend_kwargs") or {})
            # Dify refuses an answer that leaves a field out ("Missing required inputs") but takes empty
            # text, and Airflow's form sends a field left empty as null: posted as empty text.
            inputs = {k: "" if v is None else v for k, v in params.items()}
            name = who.get("name") if isinstance(who, Mapping) else who
            if backend.submit_form(str(info["form_token"]), action, inputs):
                self.log.info(
                    "Posted the Airflow answer to Dify run %s: action %r (%s), inputs %s, answered by %s",
                    run_id,
                    action,
                    chosen[0],
                    sorted(inputs),
                    name or "?",
                )
            else:
                self.log.warning(
                    "The form %r of Dify run %s was answered in Dify first; the Airflow answer (%s by %s) "
                    "was not posted",
                    info.get("title"),
                    run_id,
                    chosen[0],
                    name or "?",
                )
        return self._reattach(context, state, run_id, info.get("dify_task_id"), user)

    def _reattach(self, context: Context, state: TaskState, run_id: str, task_id: str | None, user: str) -> None:
        """Follow the resumed run from the triggerer (it may pause again): each API's own trigger."""
        raise NotImplementedError


def _app_name(backend: Any) -> str | None:
    """The app's name for the request's subject; None (the subject names the run only) when unreadable."""
    try:
        name = backend.app_name()
    except Exception:
        return None
    return str(name) if name else None


__all__ = ["DifyPauseHandling"]
