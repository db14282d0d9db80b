"""The human-in-the-loop seam: a backend's paused-run form as an Airflow HITL request, and back.

A workflow that pauses for human input (Dify's ``human_input_required`` then ``workflow_paused``)
becomes an Airflow human-in-the-loop request (Airflow 3.1+, the "Required Actions" page and
``/api/v2/.../hitlDetails``): subject = the node title, body = the form content (Markdown),
options = the form's action titles, params = the form's inputs with their defaults. The task
waits deferred in :class:`docify_provider.triggers.hitl.HumanInputTrigger`, which watches both
sides: the Airflow answer and the backend (form answered in its own UI, run ended, form expired).
An Airflow answer is posted to the backend by the worker (:func:`post_answer`), then the task
re-attaches to the resumed run.

The seam is backend-neutral: a backend is a :class:`FormBackend` (get form, submit form, and
async form and run state for the trigger), built in the triggerer from a class path and plain
kwargs (:func:`backend_from_spec`), so no key ever travels in trigger kwargs. The Dify Service
API backend is :class:`DifyServiceForms`; the account-API backend plugs in the same way.

Several forms in one run, and what Airflow 3.3 allows (checked in its source,
``execution_api/routes/hitl.py`` and ``core_api/routes/public/hitl.py``):

* ``hitl_detail`` has one row per task instance try, keyed by the TI's id; the id changes only
  when a new try starts (``prepare_db_for_next_try``), never on a deferral's resume.
* ``upsert_hitl_detail`` on an existing row never changes its subject, body, options or params;
  it only clears an answered row's response. A second form in the same try would show the first
  form's text and options, and the REST API validates answers against those options.
* On 3.3 an answer given through the Core API to a DEFERRED task resumes it directly with the
  answer as its event (the trigger is bypassed); on 3.1/3.2 the trigger sees it and fires.

So each try raises at most one request: the first form a try meets gets the try's record (kept in
the task state as ``dify_hitl``: try number and a digest of the form token). When the run pauses
on a different form in the same try, the try ends with :class:`HumanInputNextTry` (a retryable
error) and the next try, which re-attaches to the same run through the bought-once ledger, raises
the request for that form: a workflow with N forms needs ``retries >= N - 1``. Without a retry
left, the form is waited for in the backend's own UI, and the log says so. The same try meeting
the same form again (a restart) re-uses its record, answered or not, and never upserts it again
(which would drop an answer already given).

On Airflow 3.0 (no HITL) the trigger watches the backend only, and the task log says once that
the form must be answered there.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from docify_provider.compat import has_hitl

#: Task-state key of the HITL record the current try holds (``{"try", "form"}``).
HITL_STATE_KEY = "dify_hitl"

#: States :meth:`FormBackend.aform_state` answers.
FORM_OPEN, FORM_SUBMITTED, FORM_EXPIRED, FORM_GONE = "open", "submitted", "expired", "gone"


class HumanInputNextTry(Exception):
    """The run paused on another form in a try whose HITL record is used: the next try asks for it.

    Retryable on purpose (Airflow keeps one HITL record per try); the next try re-attaches to the
    same run and starts nothing new.
    """


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


@dataclass(frozen=True)
class HumanRequest:
    """A form as an Airflow HITL request, plus what is needed to answer it on the backend."""

    subject: str
    body: str
    #: action title -> action id; the titles are the request's options, in the form's order.
    actions: dict[str, str]
    #: input name -> default value (strings, as the backend resolved them).
    params: dict[str, Any] = field(default_factory=dict)
    expires_at: str | None = None

    @property
    def options(self) -> list[str]:
        return list(self.actions)

    def serialized_params(self) -> dict[str, Any]:
        """The params as ``HITLOperator.serialized_params`` writes them (one ``Param`` each)."""
        from importlib.metadata import version

        from airflow.sdk import Param
        from packaging.version import Version

        params = {name: Param(value, type=["string", "null"], title=name) for name, value in self.params.items()}
        if Version(version("apache-airflow-core")) < Version("3.1.3"):  # earlier records hold plain values
            return {name: param.value for name, param in params.items()}
        return {name: param.serialize() for name, param in params.items()}


def form_key(form_token: str | None) -> str:
    """A digest naming a form without its token (the token answers the form: kept out of state)."""
    return hashlib.sha256(str(form_token or "").encode()).hexdigest()[:16]


_PLACEHOLDER = re.compile(r"\{\{#\$output\.([A-Za-z0-9_]+)#\}\}")


def request_from_form(title: str | None, definition: Mapping[str, Any], expires_at: str | None) -> HumanRequest:
    """The HITL request for a Dify-shaped form definition (A7: ``GET /form/human_input/{token}``)."""
    content = str(definition.get("form_content") or "")
    body = _PLACEHOLDER.sub(lambda m: f"**[{m.group(1)}]**", content)
    if expires_at:
        body += f"\n\n_Expires {expires_at}._"
    actions: dict[str, str] = {}
    for action in definition.get("user_actions") or definition.get("actions") or []:
        if not isinstance(action, Mapping) or not action.get("id"):
            continue
        label = str(action.get("title") or action["id"])
        actions[label if label not in actions else f"{label} ({action['id']})"] = str(action["id"])
    defaults = definition.get("resolved_default_values") or {}
    params: dict[str, Any] = {}
    for item in definition.get("inputs") or []:
        if isinstance(item, Mapping) and item.get("output_variable_name"):
            name = str(item["output_variable_name"])
            params[name] = defaults.get(name, "") if isinstance(defaults, Mapping) else ""
    return HumanRequest(
        subject=str(title or "Human input"), body=body, actions=actions, params=params, expires_at=expires_at
    )


def raise_request(context: Any, request: HumanRequest) -> None:
    """Write the try's HITL request (``upsert_hitl_detail``); only where :func:`has_hitl`."""
    from airflow.sdk.execution_time.hitl import upsert_hitl_detail

    upsert_hitl_detail(
        ti_id=context["task_instance"].id,
        options=request.options,
        subject=request.subject,
        body=request.body,
        defaults=None,
        multiple=False,
        params=request.serialized_params(),
    )


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


# -- the Dify Workflow Service API backend ------------------------------------------------------


class DifyServiceForms:
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

    def get_form(self, form_token: str) -> Mapping[str, Any]:
        hook = self._hook()
        try:
            return hook.get_form(form_token)
        finally:
            hook.close()

    def submit_form(self, form_token: str, action: str, inputs: Mapping[str, Any]) -> bool:
        hook = self._hook()
        try:
            hook.submit_form(form_token, action=action, inputs=inputs, user=self.user)
        except Exception as exc:
            if _form_closed(exc) == FORM_SUBMITTED:
                return False
            raise
        finally:
            hook.close()
        return True

    async def aform_state(self, form_token: str) -> str:
        try:
            await self._hook().aget_form(form_token)
        except Exception as exc:
            state = _form_closed(exc)
            if state is None:
                raise
            return state
        return FORM_OPEN

    async def arun_paused(self, run_id: str) -> bool:
        run = await self._hook().aget_workflow_run(run_id)
        return bool(run.paused)


def _form_closed(exc: BaseException) -> str | None:
    """What a Dify form error says about the form (A7: 404 not found, 412 submitted / expired)."""
    status, code = getattr(exc, "status_code", None), str(getattr(exc, "code", "") or "")
    if status == 412:
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
    "DifyServiceForms",
    "FormBackend",
    "HumanInputNextTry",
    "HumanRequest",
    "answer_of",
    "backend_from_spec",
    "form_key",
    "has_hitl",
    "raise_request",
    "request_from_form",
]
