"""What the credential tests of ``tests/contract`` share: distinctive secrets, the exceptions the failing
tasks raised, and every text an exception can be turned into.

Two test files use them: ``test_secrets.py`` (every backend's DAG runs, then a search of everything
they wrote) and ``test_authorization_header.py`` (where the ``Authorization`` header may go). They are
apart because they check different things; the helpers live here so that neither owns the other's.
"""

from __future__ import annotations

import functools
import pickle
import traceback
import uuid
from typing import Any

import pytest

from docify_provider.operators.docify import (
    DocifyRunScenarioOperator,
    DocifyStreamScenarioOperator,
    DocifyUploadFileOperator,
)
from docify_provider.sensors.docify import DocifyScenarioSensor

#: (task id, exception) of what the failing tasks of the DAG run raised, collected by their
#: ``on_failure_callback`` (``dag.test()`` runs tasks and their callbacks in this process) and, since
#: Airflow before 3.3 hands the callback no exception, by the ``capture_raised`` fixture
#: (``tests/contract/conftest.py``) as well.
CAPTURED: list[tuple[str, BaseException]] = []


def record_raised(task_id: str, exc: BaseException) -> None:
    if all(exc is not seen for _, seen in CAPTURED):
        CAPTURED.append((task_id, exc))


def capture_failure(context: Any) -> None:
    exc = context.get("exception")
    if isinstance(exc, BaseException):
        record_raised(context["ti"].task_id, exc)


def record_raised_by_operators(monkeypatch: pytest.MonkeyPatch) -> None:
    """Record every exception a provider operator or sensor raises out of Airflow's entry points.

    The methods run unchanged; the exception is recorded and re-raised, so the credential search sees
    what Airflow saw on every line, also where the failure callback gets no exception (< 3.3).
    """

    def recording(method: Any) -> Any:
        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:
                record_raised(self.task_id, exc)
                raise

        return wrapper

    from docify_provider.operators.dify import DifyRunWorkflowOperator, DifyStreamWorkflowOperator
    from docify_provider.operators.dify_openapi import DifyRunAppOperator

    classes = (
        DocifyRunScenarioOperator,
        DocifyStreamScenarioOperator,
        DocifyUploadFileOperator,
        DocifyScenarioSensor,
        DifyRunWorkflowOperator,
        DifyStreamWorkflowOperator,
        DifyRunAppOperator,
    )
    for cls in classes:
        for name in ("execute", "execute_complete"):
            if hasattr(cls, name):
                monkeypatch.setattr(cls, name, recording(getattr(cls, name)))


def new_secret(purpose: str, prefix: str = "sk-docify") -> str:
    return f"{prefix}-SECRET-{purpose}-{uuid.uuid4().hex}"


def exception_texts(exc: BaseException) -> str:
    rebuilt = pickle.loads(pickle.dumps(exc))
    parts = [
        str(exc),
        repr(exc),
        "".join(traceback.format_exception(exc)),
        repr(getattr(exc, "__dict__", {})),
        repr(rebuilt),
        repr(getattr(rebuilt, "__dict__", {})),
    ]
    cause = exc.__cause__
    while cause is not None:
        parts += [repr(cause), repr(getattr(cause, "__dict__", {}))]
        cause = cause.__cause__
    return "\n".join(parts)
