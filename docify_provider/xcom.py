"""The XCom contract of the Docify run operators, and the keys they keep in Airflow's stores.

``DocifyRunScenarioOperator`` and ``DocifyStreamScenarioOperator`` (blocking, streaming, and
deferrable streaming alike) return one JSON-serialisable dict, pushed as the task's
``return_value`` XCom::

    {
        "run_id": "run-123456",            # Docify run id
        "scenario_id": "1001",
        "is_success": True,
        "result": "Invoice Number: ...",   # text result (str or None)
        "json_result": {...},              # ``jsonResult`` parsed from its JSON string
                                           # (kept as the raw string when it is not JSON; None if absent)
        "cost_points": 10.5,               # float or None
        "elapsed_ms": 5000,                # int or None
        "created_at": "2026-02-26T08:00:00+00:00",   # ISO 8601 (UTC) or None
        "finished_at": "2026-02-26T08:00:05+00:00",  # ISO 8601 (UTC) or None
        "session_id": "session-uuid",      # streaming only; None for blocking runs
        "files": [                         # one entry per attachment, in the server's order
            {
                "file_name": "invoice_extracted.csv",  # name as Docify sent it
                "file_url": "https://.../download/...",
                "file_size": 2048,                     # declared size (int or None)
                "path": "/data/docify/<dag_id>/<run_id>/<task_id>/invoice_extracted.csv",
                # str of where it was stored; None when ``attachments_to`` is not set
            },
        ],
    }

The dict is one XCom (``return_value``). Downstream tasks take ``run.output`` (the whole dict) into
a TaskFlow task, or ``run.output.map(lambda r: r["json_result"])`` for one field; dynamic task
mapping (``.partial(...).expand(inputs=[...])``) gives a list of these dicts. Pass
``multiple_outputs=True`` to the operator to have every key pushed as its own XCom as well (one
Execution API call per key), so that ``run.output["json_result"]`` is a plain XComArg.

Keys kept elsewhere (internal, documented for operators of the deployment):

* ``task_state_store`` (Airflow 3.3+) ``docify_state``: one key per task instance holding either
  ``{"pending": {"sent_at": ISO, "try_number": n, "session_id": ...}}`` or ``{"result": {"raw": <run
  response as Docify sent it>, "session_id": ..., "stored_at": ISO, "try_number": n}}``.
  ``pending`` is written just before a run request is sent; found by a later try it means "a run
  may have been bought but its result was never received", and the operator refuses to pay again
  unless ``allow_resubmit=True``. ``result`` replaces it as soon as the answer arrives (before
  attachments are downloaded) and is reused by a retry instead of buying a new run. A run costs one
  read (skipped on try 1: Airflow 3 never starts a task instance's try 1 twice, clearing
  increments ``try_number``) and two writes. Earlier builds of this provider kept the same
  information under two keys, ``docify_result`` and ``docify_pending``; a retry that finds no
  ``docify_state`` still honours those.
* XCom ``docify_run_request_sent`` of the task instance (deferrable streaming), shown in the UI's
  XCom tab: ``{"state": "deferred", "sent": False, "meaning": "..."}`` written by the operator
  before deferring, then ``{"state": "sent", "sent": True, "sent_at", "session_id", "meaning"}``
  written by ``DocifyStreamTrigger`` before it POSTs (and again with the session id at START);
  ``meaning`` says in words what the marker guards. A restarted trigger that finds ``"sent"``
  reports "outcome unknown" instead of re-sending the run. XComs are cleared when a new try
  starts, so this guards one try; the ``task_state_store`` key above guards across tries. Earlier
  builds called it ``docify_stream_marker``; the trigger still reads that key, so a task that
  deferred under such a build keeps its guard.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from docify_provider.docify.models import RunResult, ScenarioInfo

#: ``task_state_store`` key of a task instance's run state: ``{"pending": {...}}`` while a run
#: request is in flight (outcome not yet known), then ``{"result": {...}}`` once it was bought.
STATE_KEY = "docify_state"
#: Keys of earlier provider versions (result and pending marker kept apart); read by retries only.
LEGACY_RESULT_STATE_KEY = "docify_result"
LEGACY_PENDING_STATE_KEY = "docify_pending"
#: XCom key of the deferrable stream's restart guard (visible in the XCom tab, hence the name).
STREAM_MARKER_XCOM_KEY = "docify_run_request_sent"
#: Its name in earlier builds; still read, so a task deferred under one keeps its guard.
LEGACY_STREAM_MARKER_XCOM_KEY = "docify_stream_marker"

_MARKER_MEANING = {
    "deferred": "Not sent yet: the task deferred; the Docify run request has not been sent. Internal restart "
    "guard of the Docify provider.",
    "sent": "Sent: the Docify run request was sent (it may have been billed). If the triggerer restarts before "
    "the result arrives, the run is not sent again (outcome unknown; allow_resubmit=True re-sends it). Internal "
    "restart guard of the Docify provider.",
}


def stream_marker(state: str, **fields: Any) -> dict[str, Any]:
    """The value of the ``STREAM_MARKER_XCOM_KEY`` XCom: ``state`` plus a sentence saying what it guards."""
    return {"state": state, "sent": state != "deferred", **fields, "meaning": _MARKER_MEANING.get(state, "")}


XCOM_KEYS = (
    "run_id",
    "scenario_id",
    "is_success",
    "result",
    "json_result",
    "cost_points",
    "elapsed_ms",
    "created_at",
    "finished_at",
    "session_id",
    "files",
)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def files_to_xcom(files: Sequence[Any], paths: Sequence[Any | None] | None = None) -> list[dict[str, Any]]:
    """The XCom ``files`` list (``file_name``, ``file_url``, ``file_size``, ``path``) of any backend."""
    stored = list(paths or [])
    out = []
    for index, file in enumerate(files):
        path = stored[index] if index < len(stored) else None
        out.append(
            {
                "file_name": file.file_name,
                "file_url": file.file_url,
                "file_size": file.file_size,
                "path": None if path is None else str(path),
            }
        )
    return out


def result_to_xcom(
    result: RunResult,
    paths: Sequence[Any | None] | None = None,
    *,
    session_id: str | None = None,
) -> dict[str, Any]:
    """The documented XCom value for ``result``.

    :param result: the run result (blocking answer or the COMPLETE event's response).
    :param paths: where each attachment was stored, in ``result.files`` order (str, path-like or
        ``ObjectStoragePath``; None entries or no list at all when attachments were not stored).
    :param session_id: the stream's session id (None for blocking runs).
    """
    files = files_to_xcom(result.files, paths)
    return {
        "run_id": result.run_id,
        "scenario_id": result.scenario_id,
        "is_success": result.is_success,
        "result": result.result,
        "json_result": result.json_result,
        "cost_points": result.cost_points,
        "elapsed_ms": result.elapsed_ms,
        "created_at": _iso(result.created_at),
        "finished_at": _iso(result.finished_at),
        "session_id": session_id,
        "files": files,
    }


def scenario_summary(info: ScenarioInfo) -> dict[str, Any]:
    """The JSON-serialisable summary ``DocifyScenarioSensor`` returns (pushed as its XCom)."""
    return {
        "scenario_id": info.scenario_id,
        "scenario_code": info.scenario_code,
        "scenario_name": info.scenario_name,
        "description": info.description,
        "product_id": info.product_id,
        "parameters": [
            {
                "variable": p.variable,
                "type": p.type,
                "label": p.label,
                "required": p.required,
                "max_length": p.max_length,
                "options": None if p.options is None else list(p.options),
            }
            for p in info.parameters
        ],
    }


# -- Dify ------------------------------------------------------------------------------------------

#: ``task_state_store`` key of a Dify run operator's bought-once ledger.
DIFY_STATE_KEY = "dify_state"
#: XCom key of the deferred Dify stream's restart marker (holds the run ids once known).
DIFY_MARKER_XCOM_KEY = "dify_run_request_sent"

DIFY_XCOM_KEYS = (
    "workflow_run_id",
    "task_id",
    "workflow_id",
    "status",
    "outputs",
    "error",
    "elapsed_time",
    "total_tokens",
    "total_steps",
    "usage",
    "created_at",
    "finished_at",
    "files",
)


def dify_marker(state: str, **fields: Any) -> dict[str, Any]:
    """The Dify restart marker: ``state`` ("deferred" / "sent") plus the run ids once known."""
    meaning = (
        "Not sent yet: the task deferred; the Dify run request has not been sent."
        if state == "deferred"
        else "Sent: the Dify run request was sent. A restarted trigger re-attaches to workflow_run_id instead "
        "of sending it again (no id: outcome unknown)."
    )
    return {"state": state, "sent": state != "deferred", **fields, "meaning": meaning}


def dify_run_to_xcom(run: Any, paths: Sequence[Any | None] | None = None) -> dict[str, Any]:
    """The Dify run operators' XCom for a ``WorkflowRun`` (``files`` with where each was stored)."""
    usage = run.usage or {}
    return {
        "workflow_run_id": run.workflow_run_id,
        "task_id": run.task_id,
        "workflow_id": run.workflow_id,
        "status": run.status,
        "outputs": run.outputs,
        "error": run.error,
        "elapsed_time": run.elapsed_time,
        "total_tokens": run.total_tokens,
        "total_steps": run.total_steps,
        "usage": {
            "tokens": usage.get("total_tokens"),
            "price": usage.get("total_price"),
            "currency": usage.get("currency"),
            # None when price is what Dify reported for every node; else why there is no price.
            "price_unknown": usage.get("price_unknown"),
        },
        "created_at": _iso(run.created_at),
        "finished_at": _iso(run.finished_at),
        "files": files_to_xcom([f for f in run.files if f.file_url], paths),
    }


__all__ = [
    "DIFY_MARKER_XCOM_KEY",
    "DIFY_STATE_KEY",
    "DIFY_XCOM_KEYS",
    "LEGACY_PENDING_STATE_KEY",
    "LEGACY_RESULT_STATE_KEY",
    "LEGACY_STREAM_MARKER_XCOM_KEY",
    "STATE_KEY",
    "STREAM_MARKER_XCOM_KEY",
    "XCOM_KEYS",
    "dify_marker",
    "dify_run_to_xcom",
    "files_to_xcom",
    "result_to_xcom",
    "scenario_summary",
    "stream_marker",
]
