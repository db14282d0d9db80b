"""The restart guard: a trigger re-created after a triggerer restart never sends its run again.

A deferred run's trigger keeps an XCom marker of its task instance (``docify_run_request_sent`` /
``dify_run_request_sent``): "sent", with the run's ids once the server named them. A triggerer
that dies is replaced by another that re-creates the trigger from its row in the metadata DB;
that trigger finds the marker and re-attaches to the run (Dify, the account API) or reports the
outcome unknown (Docify has no run lookup), and nothing is sent again unless ``allow_resubmit``.
Triggers run in-process as ``dag.test()`` runs them (``run_trigger_for``), their XComs going
through the Execution API; the real triggerer restart is ``tests/deployment/test_triggerer_restart.py``
and ``tests/deployment/test_dify_deployment.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_helpers import needs_trigger_xcom_in_dag_test, new_dag, run_dag, run_trigger_for, set_xcom
from docify_provider.events import error_from_event
from helpers import SUMMARY_INPUTS

pytestmark = [pytest.mark.timeout(120), needs_trigger_xcom_in_dag_test]


def _deferred_run(contract: Any, emu: Any, name: str) -> Any:
    with new_dag(f"{contract.name}_{name}") as dag:
        contract.operator("deferred", task_id="stream")
    out = run_dag(dag)
    assert out.state("stream") == "success"
    assert contract.runs(emu, "cheap") == 1
    return out


def _stored_trigger(contract: Any, out: Any) -> tuple[type[Any], dict[str, Any]]:
    """The class and kwargs the triggerer would re-create the run's trigger from (its DB row)."""
    import importlib

    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = [
            (row.classpath, row.encrypted_kwargs, dict(row.kwargs))
            for row in session.scalars(select(Trigger))
            if row.kwargs.get("dag_id") == out.dag_id
        ]
    ((classpath, encrypted, kwargs),) = rows
    assert contract.credential not in encrypted and contract.credential not in json.dumps(kwargs, default=str)
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name), kwargs


def _set_marker(out: Any, key: str, value: dict[str, Any]) -> None:
    set_xcom(key, value, dag_id=out.dag_id, task_id="stream", run_id=out.run_id)


def _docify(contract: Any, emu: Any, out: Any, cls: type[Any], kwargs: dict[str, Any], event: Any) -> None:
    """Docify cannot look a run up: a re-created trigger reports the outcome unknown with the session it saw."""
    from docify_provider.docify import errors
    from docify_provider.xcom import LEGACY_STREAM_MARKER_XCOM_KEY

    session_id = out.xcom("stream")["session_id"]
    marker = out.xcom("stream", key=contract.marker_key)
    assert marker["state"] == "sent" and marker["sent"] is True and marker["session_id"] == session_id
    assert (
        marker["meaning"].startswith("Sent: the Docify run request was sent") and "restart guard" in marker["meaning"]
    )
    assert out.xcom("stream", key=LEGACY_STREAM_MARKER_XCOM_KEY) is None
    assert kwargs["inputs"] == {"text": {"text": SUMMARY_INPUTS["text"]}, "language": {"text": "en"}}
    assert event.payload["status"] == "outcome_unknown" and event.payload["session_id"] == session_id
    assert "not re-sent" in event.payload["message"] and "allow_resubmit=True" in event.payload["message"]
    exc = error_from_event(event.payload, root=errors.DocifyError)
    assert isinstance(exc, errors.DocifyOutcomeUnknownError) and exc.session_id == session_id

    # As in the real triggerer: identity from the attached task instance, not from kwargs.
    bare = cls(inputs=kwargs["inputs"], docify_conn_id=kwargs["docify_conn_id"])
    bare.task_instance = out.ti("stream")
    assert run_trigger_for(out, "stream", bare).payload["status"] == "outcome_unknown"
    assert contract.runs(emu, "cheap") == 1

    # Opting in pays again.
    again = run_trigger_for(out, "stream", cls(**{**kwargs, "allow_resubmit": True}))
    assert again.payload["status"] == "success" and again.payload["session_id"] != session_id
    assert contract.runs(emu, "cheap") == 2


def _dify(contract: Any, emu: Any, out: Any, cls: type[Any], kwargs: dict[str, Any], event: Any) -> None:
    """Dify looks a run up by id: the re-created trigger re-attaches to the marker's run."""
    from docify_provider.dify import errors

    xcom = out.xcom("stream")
    marker = out.xcom("stream", key=contract.marker_key)
    assert marker["state"] == "sent" and marker["sent"] is True
    assert marker["workflow_run_id"] == xcom["workflow_run_id"] and marker["task_id"] == xcom["task_id"]
    assert "re-attaches to workflow_run_id" in marker["meaning"]
    assert kwargs["workflow_run_id"] is None, "the trigger, not the worker, sent this run"
    assert kwargs["inputs"] == {"topic": "contracts", "tone": "formal"}
    assert event.payload["status"] == "success" and event.payload["workflow_run_id"] == xcom["workflow_run_id"]

    bare = cls(inputs=kwargs["inputs"], dify_conn_id=kwargs["dify_conn_id"], user=kwargs["user"])
    bare.task_instance = out.ti("stream")
    assert run_trigger_for(out, "stream", bare).payload["workflow_run_id"] == xcom["workflow_run_id"]
    assert contract.runs(emu, "cheap") == 1

    # A marker that says "sent" without a run id: outcome unknown, unless allow_resubmit.
    _set_marker(out, contract.marker_key, {"state": "sent", "sent_at": "2026-01-01T00:00:00+00:00"})
    unknown = run_trigger_for(out, "stream", cls(**kwargs))
    assert unknown.payload["status"] == "outcome_unknown"
    assert "not re-sent" in unknown.payload["message"] and "allow_resubmit=True" in unknown.payload["message"]
    assert isinstance(error_from_event(unknown.payload, root=errors.DifyError), errors.DifyOutcomeUnknownError)
    assert contract.runs(emu, "cheap") == 1
    again = run_trigger_for(out, "stream", cls(**{**kwargs, "allow_resubmit": True}))
    assert again.payload["status"] == "success" and again.payload["workflow_run_id"] != xcom["workflow_run_id"]
    assert contract.runs(emu, "cheap") == 2


def _dify_openapi(contract: Any, emu: Any, out: Any, cls: type[Any], kwargs: dict[str, Any], event: Any) -> None:
    """The account API's run starts on the worker: the trigger only follows it, by the id in its kwargs."""
    from docify_provider.operators.dify import run_from_record

    xcom = out.xcom("stream")
    assert kwargs["workflow_run_id"] == xcom["workflow_run_id"] and "inputs" not in kwargs
    payload = dict(event.payload)
    assert payload["status"] == "success" and payload["workflow_run_id"] == xcom["workflow_run_id"]
    assert payload["app_id"] == xcom["app_id"]
    assert run_from_record(payload["run"], None).outputs == xcom["outputs"]


CHECKS = {"docify": _docify, "dify": _dify, "dify_openapi": _dify_openapi}


def test_a_restarted_trigger_never_sends_its_run_again(contract: Any, backend_emu: Any) -> None:
    out = _deferred_run(contract, backend_emu, "restart_guard")
    cls, kwargs = _stored_trigger(contract, out)

    for _ in range(2):  # a triggerer restart (twice) re-creates the trigger from its row
        event = run_trigger_for(out, "stream", cls(**kwargs))
        assert contract.credential not in json.dumps(dict(event.payload), default=str)
    assert contract.runs(backend_emu, "cheap") == 1, "nothing was sent again"
    CHECKS[contract.name](contract, backend_emu, out, cls, kwargs, event)


def test_a_restart_marker_that_cannot_be_read_sends_nothing(
    contract: Any, backend_emu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fail closed, as the ledger does: a marker that cannot be read is not "nothing was sent"."""
    from airflow.providers.common.compat.sdk import XCom

    out = _deferred_run(contract, backend_emu, "unreadable_marker")
    cls, kwargs = _stored_trigger(contract, out)

    def unreadable(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("Execution API answered 503 Service Unavailable")

    monkeypatch.setattr(XCom, "get_one", classmethod(unreadable))
    event = run_trigger_for(out, "stream", cls(**kwargs))
    monkeypatch.undo()

    assert contract.runs(backend_emu, "cheap") == 1, "the run was sent again"
    assert event is not None
