"""The human-in-the-loop seam: a backend's paused-run form as an Airflow HITL request, and back.

A workflow that pauses for human input (Dify's ``human_input_required`` then ``workflow_paused``)
becomes an Airflow human-in-the-loop request (Airflow 3.1+, the "Required Actions" page and
``/api/v2/.../hitlDetails``): subject = the node title, the app and the run (a list of requests
must tell them apart); body = the form text (Markdown) with each ``{{#$output.x#}}`` placeholder as
a pointer to its field, and until when it can be answered; options = the form's action titles;
params = the form's fields with a label, a widget Airflow renders (a text area for a paragraph, a
drop-down for a select) and their defaults (:mod:`docify_provider.dify.forms`). The task
waits deferred in :class:`docify_provider.triggers.hitl.HumanInputTrigger`, which watches both
sides: the Airflow answer and the backend (form answered in its own UI, run ended, form expired).
An Airflow answer is posted to the backend by the worker (:func:`post_answer`), then the task
re-attaches to the resumed run.

The seam is backend-neutral: a backend is a :class:`FormBackend` (get form, submit form, and
async form and run state for the trigger), built in the triggerer from a class path and plain
kwargs (:func:`backend_from_spec`), so no key ever travels in trigger kwargs. The Dify Service
API backend is :class:`DifyServiceForms`; the account API's (``DifyRunAppOperator``) is
:class:`DifyAccountForms`.

Several forms in one run, and what Airflow 3.3 allows (checked in its source,
``execution_api/routes/hitl.py`` and ``core_api/routes/public/hitl.py``):

* ``hitl_detail`` has one row per task instance, keyed by the TI's id (which a new try changes,
  ``prepare_db_for_next_try``; a deferral's resume does not), and the row follows that change
  (below): in effect one row per task, whatever the try.
* ``upsert_hitl_detail`` on an existing row never changes its subject, body, options or params;
  it only clears an answered row's response. A second form in the same try would show the first
  form's text and options, and the REST API validates answers against those options.
* On 3.3 an answer given through the Core API to a DEFERRED task resumes it directly with the
  answer as its event (the trigger is bypassed); on 3.1/3.2 the trigger sees it and fires.

* The row is carried over to the task's next try: its key is a foreign key to the task instance's
  id with ``ON UPDATE CASCADE``, so when a new try gives the TI a new id the row follows, content
  and answer included. A new try therefore cannot ask another form either.

So a task raises ONE request, for the FIRST form its run meets; it is kept in the task state
(``dify_hitl``: a digest of the form token, the run, the action map). A later form of the same
run (a workflow with several human-input nodes) is not raised again in Airflow: the task waits,
deferred, for it to be answered in the backend's own UI, and the log says so (form title, why,
where: the app's log in the Dify console); its expiry still fails the task. The same form met
again (a restart, a retry) re-uses the record, answered or not, and never upserts it (which would
drop an answer already given). :func:`raise_request` reads back what Airflow stored, so a record
left by an earlier form (e.g. the task state was cleared) is noticed and the form is answered in
the backend instead.

On Airflow 3.0 (no HITL) the trigger watches the backend only, and the task log says once that
the form must be answered there.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from docify_provider.compat import has_hitl
from docify_provider.dify.forms import FormField, body_with_pointers, fields_of, readable_duration, readable_time
from docify_provider.dify.parsing import epoch_to_datetime

#: Task-state key of the HITL record the current try holds (``{"try", "form"}``).
HITL_STATE_KEY = "dify_hitl"

#: States :meth:`FormBackend.aform_state` answers.
FORM_OPEN, FORM_SUBMITTED, FORM_EXPIRED, FORM_GONE = "open", "submitted", "expired", "gone"


class FormBackend(Protocol):
    """What the seam needs of a backend (sync on the worker, async in the triggerer)."""

    def get_form(self, form_token: str) -> Mapping[str, Any]:
        """The form definition: ``form_content``, ``inputs``, ``resolved_default_values``, ``user_actions``."""

    def submit_form(self, form_token: str, action: str, inputs: Mapping[str, Any]) -> bool:
        """Post the answer; False when the form was already answered (e.g. in the backend's UI)."""

    async def aform_state(self, form_token: str) -> str:
        """``open``, ``submitted``, ``expired`` or ``gone``."""

    async def arun_paused(self, run_id: str) -> bool:
        """Whether the run is still paused (False once it runs again or has ended)."""

    def paused_form(self, run_id: str) -> Mapping[str, Any] | None:
        """The form a paused run waits on, token included, read from the backend's paused-run state
        (a try that re-attached through a source naming no form: :mod:`docify_provider.hitl_reattach`)."""


@dataclass(frozen=True)
class HumanRequest:
    """A form as an Airflow HITL request, plus what is needed to answer it on the backend."""

    subject: str
    body: str
    #: action title -> action id; the titles are the request's options, in the form's order.
    actions: dict[str, str]
    #: The form's fields a person answers in Airflow (labels, kinds, defaults), in the form's order.
    fields: list[FormField] = field(default_factory=list)
    expires_at: str | None = None

    @property
    def options(self) -> list[str]:
        return list(self.actions)

    @property
    def params(self) -> dict[str, Any]:
        """input name -> default value (strings, as the backend resolved them)."""
        return {f.name: f.default for f in self.fields}

    def serialized_params(self) -> dict[str, Any]:
        """The params as ``HITLOperator.serialized_params`` writes them (one ``Param`` each)."""
        from importlib.metadata import version

        from packaging.version import Version

        params = {f.name: param_of(f) for f in self.fields}
        if Version(version("apache-airflow-core")) < Version("3.1.3"):  # earlier records hold plain values
            return {name: param.value for name, param in params.items()}
        return {name: param.serialize() for name, param in params.items()}


#: JSON-schema type of each field kind (Airflow's form picks its widget from type, format and enum).
_PARAM_TYPES = {"paragraph": "string", "text": "string", "select": "string", "number": "number"}


def param_of(form_field: FormField) -> Any:
    """The Airflow ``Param`` a person answers a field with, as Airflow's form renders it: the label as
    ``title``; a paragraph as a text area (``format: multiline``); a select as a drop-down (``enum``);
    ``null`` allowed (not starred as required) unless the field needs a value."""
    from airflow.sdk import Param

    kind = _PARAM_TYPES.get(form_field.kind, "string")
    schema: dict[str, Any] = {"title": form_field.label, "type": kind if form_field.required else [kind, "null"]}
    value = form_field.default
    if form_field.kind == "paragraph":
        schema["format"] = "multiline"
    if form_field.kind == "select":
        schema["enum"] = [*form_field.options, *([] if form_field.required else [None])]
    if form_field.kind == "number":
        try:
            value = float(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            value = None
    hint = {"paragraph": ", several lines allowed", "select": ", one of the options"}.get(form_field.kind, "")
    return Param(value, description=f"Dify form field {form_field.name}{hint}.", **schema)


def form_key(form_token: str | None) -> str:
    """A digest naming a form without its token (the token answers the form: kept out of state)."""
    return hashlib.sha256(str(form_token or "").encode()).hexdigest()[:16]


def subject_of(title: str | None, app: str | None = None, run_id: str | None = None) -> str:
    """``Review — Review Gate, run 1a2b3c4d``: the node title, then the app and the run, so that a list of
    requests (Airflow's Required Actions) tells apart the forms of several apps and runs."""
    where = [part for part in (app, f"run {run_id[:8]}" if run_id else None) if part]
    return f"{title or 'Human input'}" + (f" — {', '.join(where)}" if where else "")


def body_of(content: str, fields: list[FormField], expires_at: Any, now: datetime | None = None) -> str:
    """The request's Markdown body: the form text with its placeholders as pointers to the fields, and
    until when it can be answered and what happens after. (A form asking for a file is not asked in
    Airflow at all: its form takes no files, ``DifyPauseHandling._hitl_record``.)"""
    body = body_with_pointers(content, fields).strip() or "This Dify workflow waits for your answer."
    deadline = readable_time(expires_at)
    moment = epoch_to_datetime(expires_at)
    if deadline and moment is not None:
        left = readable_duration((moment - (now or datetime.now(tz=timezone.utc))).total_seconds())
        body += (
            f"\n\n---\n\n**Answer by {deadline}** ({left} left when this request was made). After that the "
            "form expires: Dify no longer takes an answer to it and this task fails; to go on, start a new run."
        )
    return body


def request_from_form(
    title: str | None,
    definition: Mapping[str, Any],
    expires_at: str | None,
    *,
    app: str | None = None,
    run_id: str | None = None,
) -> HumanRequest:
    """The HITL request for a Dify-shaped form definition (A7: ``GET /form/human_input/{token}``).

    ``app`` (the app's name) and ``run_id`` go into the subject; the definition's own expiry is used
    when ``expires_at`` is not given."""
    fields = fields_of(definition)
    expiry = expires_at or definition.get("expiration_time")
    actions: dict[str, str] = {}
    for action in definition.get("user_actions") or definition.get("actions") or []:
        if not isinstance(action, Mapping) or not action.get("id"):
            continue
        label = str(action.get("title") or action["id"])
        actions[label if label not in actions else f"{label} ({action['id']})"] = str(action["id"])
    return HumanRequest(
        subject=subject_of(title, app, run_id),
        body=body_of(str(definition.get("form_content") or ""), fields, expiry),
        actions=actions,
        fields=[f for f in fields if f.answerable_in_airflow],
        expires_at=expires_at,
    )


def raise_request(context: Any, request: HumanRequest) -> bool:
    """Write the task's HITL request (only where :func:`has_hitl`); True when Airflow now shows it.

    Airflow's upsert answers with the record as stored, and an existing record keeps its subject,
    body and options whatever is sent (module docstring). So the answer is read back: a record that
    shows another form (False) means this form cannot be asked in Airflow and is answered in the
    backend's UI instead. The read-back goes through the Task SDK's ``SUPERVISOR_COMMS`` with
    ``CreateHITLDetailPayload`` (what the public ``upsert_hitl_detail`` sends, discarding the
    answer; read in the sources of Airflow 3.1 and 3.3, not 3.2); where that private path is missing or differs, the
    public function is used and the request is taken as shown (logged).
    """
    ti_id = context["task_instance"].id
    fields: dict[str, Any] = {
        "options": request.options,
        "subject": request.subject,
        "body": request.body,
        "defaults": None,
        "multiple": False,
        "params": request.serialized_params(),
    }
    try:
        from airflow.sdk.execution_time.comms import CreateHITLDetailPayload
        from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

        stored = SUPERVISOR_COMMS.send(msg=CreateHITLDetailPayload(ti_id=ti_id, assigned_users=[], **fields))
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        import logging

        from airflow.sdk.execution_time.hitl import upsert_hitl_detail

        logging.getLogger(__name__).warning(
            "This Airflow's HITL request cannot be read back (%s: %s); the request is written through "
            "upsert_hitl_detail and taken as shown",
            type(exc).__name__,
            exc,
        )
        upsert_hitl_detail(ti_id=ti_id, **fields)
        return True
    subject, options = getattr(stored, "subject", None), getattr(stored, "options", None)
    if subject is None or options is None:  # an answer without the record: nothing says otherwise
        return True
    return bool(subject == request.subject and list(options) == request.options)


def answer_of(event: Mapping[str, Any]) -> tuple[list[str], dict[str, Any], Any] | None:
    """(chosen options, params input, responder) of an Airflow answer event, else None.

    Two shapes arrive: the trigger's ``{"status": "hitl_answered", ...}`` and, on Airflow 3.3,
    the Core API's direct resume payload (``HITLDetail.as_resume_event_payload``: no status).
    """
    if event.get("status") == "hitl_answered" or ("chosen_options" in event and "status" not in event):
        responder = event.get("responded_by_user") or event.get("responded_by")
        return list(event.get("chosen_options") or []), dict(event.get("params_input") or {}), responder
    return None


def backend_from_spec(classpath: str, kwargs: Mapping[str, Any]) -> FormBackend:
    """Build a backend from ``(class path, plain kwargs)``, as a trigger carries it."""
    module, _, name = classpath.rpartition(".")
    backend: FormBackend = getattr(importlib.import_module(module), name)(**dict(kwargs))
    return backend


class _HookForms:
    """The mechanism both Dify backends share: open a hook per call, read or answer the form, map
    a closed form's error (A7) to a state, close the hook. A subclass names its hook and the two
    form calls of its API; what differs between the backends is only those paths."""

    def _hook(self) -> Any:
        raise NotImplementedError

    def _read(self, hook: Any, form_token: str) -> Mapping[str, Any]:
        raise NotImplementedError

    async def _aread(self, hook: Any, form_token: str) -> Any:
        raise NotImplementedError

    def _submit(self, hook: Any, form_token: str, action: str, inputs: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def get_form(self, form_token: str) -> Mapping[str, Any]:
        hook = self._hook()
        try:
            return self._read(hook, form_token)
        finally:
            hook.close()

    def submit_form(self, form_token: str, action: str, inputs: Mapping[str, Any]) -> bool:
        """Answer the form; False when it was answered already (in Dify, or by an earlier try)."""
        hook = self._hook()
        try:
            self._submit(hook, form_token, action, inputs)
        except Exception as exc:
            if _form_closed(exc) == FORM_SUBMITTED:
                return False
            raise
        finally:
            hook.close()
        return True

    async def aform_state(self, form_token: str) -> str:
        try:
            await self._aread(self._hook(), form_token)
        except Exception as exc:
            state = _form_closed(exc)
            if state is None:
                raise
            return state
        return FORM_OPEN


# -- the Dify Workflow Service API backend ------------------------------------------------------


class DifyServiceForms(_HookForms):
    """:class:`FormBackend` over a ``dify`` connection (``/form/human_input/{token}``, run detail)."""

    classpath = "docify_provider.hitl.DifyServiceForms"

    def __init__(self, dify_conn_id: str, user: str) -> None:
        self.dify_conn_id = dify_conn_id
        self.user = user

    def spec(self) -> dict[str, Any]:
        return {"dify_conn_id": self.dify_conn_id, "user": self.user}

    def _hook(self) -> Any:
        from docify_provider.hooks.dify import DifyHook

        return DifyHook(dify_conn_id=self.dify_conn_id)

    def _read(self, hook: Any, form_token: str) -> Mapping[str, Any]:
        form: Mapping[str, Any] = hook.get_form(form_token)
        return form

    async def _aread(self, hook: Any, form_token: str) -> Any:
        async with hook.async_client() as client:
            return await client.get_form(form_token)

    def _submit(self, hook: Any, form_token: str, action: str, inputs: Mapping[str, Any]) -> None:
        hook.submit_form(form_token, action=action, inputs=inputs, user=self.user)

    async def arun_paused(self, run_id: str) -> bool:
        async with self._hook().async_client() as client:
            run = await client.get_workflow_run(run_id)
        return bool(run.paused)

    def paused_form(self, run_id: str) -> Mapping[str, Any] | None:
        """Re-attach to the run (the events route with its state snapshot, which ends with the
        ``workflow_paused`` naming the form; the run detail names none) and read its form."""
        from docify_provider.dify.models import form_of_events

        hook = self._hook()
        try:
            return form_of_events(hook.attach(run_id, user=self.user))
        finally:
            hook.close()

    def app_name(self) -> str | None:
        """The app's name (``GET /info``, which costs nothing), for the request's subject."""
        hook = self._hook()
        try:
            return str(hook.get_app_info().name or "") or None
        finally:
            hook.close()

    def answer_where(self, run_id: str) -> str:
        """Where a person answers the run's form in Dify (the key names no app: the console, by run id)."""
        hook = self._hook()
        try:
            base = console_base(hook.config)
        finally:
            hook.close()
        return f"{base or 'the Dify console'} (the app's logs, run {run_id})"


# -- the Dify account API (user-scoped OpenAPI) backend ---------------------------------------

#: Longest an account-API run-state read waits on the events route (its state snapshot arrives at
#: once; a run that runs again streams live events instead, which is the answer "not paused").
SNAPSHOT_SECONDS = 5.0


class DifyAccountForms(_HookForms):
    """:class:`FormBackend` over a ``dify_openapi`` connection, for one app.

    Forms are read and answered through the hook, which picks the server's path generation
    (``/apps/{id}/human-input-forms/{token}`` or the legacy ``/apps/{id}/form/human_input/{token}``).
    This API has no run-detail endpoint, so whether the run is still paused is read from the
    events route's state snapshot (``include_state_snapshot``): it ends with ``workflow_paused``
    while paused, is one ``workflow_finished`` once ended, and goes on live while the run runs.
    """

    classpath = "docify_provider.hitl.DifyAccountForms"

    def __init__(self, dify_openapi_conn_id: str, app_id: str) -> None:
        self.dify_openapi_conn_id = dify_openapi_conn_id
        self.app_id = app_id

    def spec(self) -> dict[str, Any]:
        return {"dify_openapi_conn_id": self.dify_openapi_conn_id, "app_id": self.app_id}

    def _hook(self) -> Any:
        from docify_provider.hooks.dify_openapi import DifyOpenAPIHook

        return DifyOpenAPIHook(dify_openapi_conn_id=self.dify_openapi_conn_id)

    def _read(self, hook: Any, form_token: str) -> Mapping[str, Any]:
        return dict(hook.get_form(self.app_id, form_token).raw)

    async def _aread(self, hook: Any, form_token: str) -> Any:
        async with hook.async_client() as client:
            return await client.get_form(self.app_id, form_token)

    def _submit(self, hook: Any, form_token: str, action: str, inputs: Mapping[str, Any]) -> None:
        hook.submit_form(self.app_id, form_token, action, inputs)

    async def arun_paused(self, run_id: str) -> bool:
        import asyncio

        from docify_provider.dify_openapi.errors import DifyOpenAPIRunFailedError

        async with self._hook().async_client() as client:
            events = client.task_events(self.app_id, run_id, include_state_snapshot=True)

            async def verdict() -> bool:
                async for event in events:
                    if event.event == "workflow_paused":
                        return True
                    if event.event == "workflow_finished":
                        return False
                return False

            try:
                return await asyncio.wait_for(verdict(), SNAPSHOT_SECONDS)
            except asyncio.TimeoutError:
                return False  # live events after the snapshot: the run runs again
            except DifyOpenAPIRunFailedError:
                return False  # ended failed or stopped
            finally:
                await events.aclose()

    def paused_form(self, run_id: str) -> Mapping[str, Any] | None:
        """The form of the run's state snapshot (events route; this API has no run detail). Read for
        at most ``SNAPSHOT_SECONDS`` past the first event: a run that runs again streams live events
        and names no paused form."""
        import time

        from docify_provider.dify.models import form_of_events
        from docify_provider.dify_openapi.errors import DifyOpenAPIRunFailedError

        hook = self._hook()
        deadline = time.monotonic() + SNAPSHOT_SECONDS

        def snapshot() -> Any:
            for event in hook.task_events(self.app_id, run_id, include_state_snapshot=True):
                yield event
                if time.monotonic() > deadline:
                    return

        try:
            return form_of_events(snapshot())
        except DifyOpenAPIRunFailedError:
            return None  # ended failed or stopped
        finally:
            hook.close()

    def app_name(self) -> str | None:
        """The app's name (``GET /apps/{id}``, a read), for the request's subject."""
        hook = self._hook()
        try:
            return str(hook.describe_app(self.app_id).name or "") or None
        finally:
            hook.close()

    def answer_where(self, run_id: str) -> str:
        """Where a person answers the run's form in Dify (the app's log in the console)."""
        hook = self._hook()
        try:
            return console_logs_url(hook.config, self.app_id) or "the Dify console"
        finally:
            hook.close()


def console_base(config: Any) -> str | None:
    """The Dify console: the ``console_url`` extra, else the API host without ``/openapi/v1`` (account
    API) or ``/v1`` (Service API), which is where a self-hosted Dify serves both."""
    base = str(getattr(config, "console_url", None) or "").strip()
    if not base:
        base = str(getattr(config, "base_url", "") or "").rstrip("/")
        for suffix in ("/openapi/v1", "/v1"):
            if base.endswith(suffix):
                base = base[: -len(suffix)]
                break
    return base.rstrip("/") or None


def console_logs_url(config: Any, app_id: str | None) -> str | None:
    """The app's run log in the Dify console (``<console>/app/<app_id>/logs``)."""
    base = console_base(config)
    return f"{base}/app/{app_id}/logs" if base and app_id else None


def _form_closed(exc: BaseException) -> str | None:
    """What a Dify form error says about the form (A7: 404 not found, 412 submitted / expired)."""
    status, code = getattr(exc, "status_code", None), str(getattr(exc, "code", "") or "")
    if status == 412 or code in ("human_input_form_expired", "human_input_form_submitted"):
        return FORM_EXPIRED if "expired" in code else FORM_SUBMITTED
    if status == 404:
        return FORM_GONE
    return None


__all__ = [
    "FORM_EXPIRED",
    "FORM_GONE",
    "FORM_OPEN",
    "FORM_SUBMITTED",
    "HITL_STATE_KEY",
    "DifyAccountForms",
    "DifyServiceForms",
    "FormBackend",
    "HumanRequest",
    "answer_of",
    "backend_from_spec",
    "body_of",
    "console_base",
    "console_logs_url",
    "form_key",
    "has_hitl",
    "param_of",
    "raise_request",
    "request_from_form",
    "subject_of",
]
