"""An error a retry cannot help fails the task on its first try, on every Airflow line (``operators.fail_fast``).

Before: bad inputs (or a rejected key, a 400, an unknown outcome) waited out every retry on
Airflow 3.0 to 3.2, and on 3.3 without ``DocifyRetryPolicy``. Now the operators raise
``AirflowFailException`` from the provider's error: try 1 fails, the message keeps the error's text
and says why it is not retried, and ``__cause__`` is the error itself. An error a retry can help
(a 5xx before the run was sent) still goes to the task's ``retries``. Real ``dag.test()`` runs
against each backend's emulator, with ``retries=2`` and no retry policy.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from airflow_helpers import AIRFLOW_LINE, console_text, new_dag, run_dag
from docify_provider.testing.faults import Fault

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.airflow_line("AirflowFailException and retries under the line's task runner (no retry policy < 3.3)"),
]

RETRYING: dict[str, Any] = {"retries": 2, "retry_delay": timedelta(seconds=0)}
#: The run operators of each backend's ``mode``: the endpoint its run request goes to.
RUN_ENDPOINT = {"blocking": "run", "streaming": "stream", "deferred": "stream"}
INPUT_ERROR = {"docify": "DocifyInputError", "dify": "DifyInputError", "dify_openapi": "DifyOpenAPIInputError"}
BAD_REQUEST = {
    "docify": "DocifyBadRequestError",
    "dify": "DifyBadRequestError",
    "dify_openapi": "DifyOpenAPIBadRequestError",
}

#: What the failing task's ``on_failure_callback`` was handed (3.3+; before, the callback gets none).
SEEN: list[BaseException] = []


def _seen(context: Any) -> None:
    exc = context.get("exception")
    if isinstance(exc, BaseException):
        SEEN.append(exc)


@pytest.fixture(autouse=True)
def _clear_seen() -> None:
    SEEN.clear()


def _failed_at_once(out: Any, text: str, contract: Any, error: str) -> None:
    assert out.state("run") == "failed", text[-4000:]
    assert out.try_number("run") == 1, "failed at once, with retries=2 left"
    assert "AirflowFailException: " in text and f"Not retried ({error}): " in text, text[-4000:]
    if AIRFLOW_LINE >= (3, 3):  # the callback sees the new type, the provider's error as its cause
        from airflow.providers.common.compat.sdk import AirflowFailException

        assert len(SEEN) == 1 and isinstance(SEEN[0], AirflowFailException), SEEN
        cause = SEEN[0].__cause__
        assert type(cause).__name__ == error and isinstance(cause, contract.error_class())
        assert str(SEEN[0]).startswith(str(cause)), "the original text comes first, unchanged"


def test_bad_inputs_fail_on_the_first_try(contract: Any, backend_emu: Any, capfd: Any) -> None:
    mode = contract.modes[0]
    with new_dag(f"{contract.name}_bad_inputs") as dag:
        contract.operator(mode, task_id="run", inputs={"no_such_input": "x"}, on_failure_callback=_seen, **RETRYING)
    out = run_dag(dag)
    text = console_text(capfd)
    _failed_at_once(out, text, contract, INPUT_ERROR[contract.name])
    assert "no_such_input" in text and "retrying cannot fix them." in text
    assert contract.runs(backend_emu, "cheap") == 0


def test_a_run_refused_in_the_triggerer_fails_on_the_first_try(contract: Any, backend_emu: Any, capfd: Any) -> None:
    """The deferred resume (``execute_complete``) is an entry point too: a 400 the trigger got fails try 1."""
    backend_emu.inject(Fault("stream", "status", status=400, message="inputs refused", times=None))
    with new_dag(f"{contract.name}_refused_deferred") as dag:
        contract.operator("deferred", task_id="run", on_failure_callback=_seen, **RETRYING)
    out = run_dag(dag)
    text = console_text(capfd)
    _failed_at_once(out, text, contract, BAD_REQUEST[contract.name])
    assert "inputs refused" in text and contract.runs(backend_emu, "cheap") == 0


def test_a_5xx_before_the_run_was_sent_is_still_retried(contract: Any, backend_emu: Any, capfd: Any) -> None:
    mode = contract.modes[0]
    backend_emu.inject(Fault(RUN_ENDPOINT[mode], "status", status=503, times=1))
    with new_dag(f"{contract.name}_503") as dag:
        contract.operator(mode, task_id="run", **RETRYING)
    out = run_dag(dag)
    text = console_text(capfd)
    assert out.state("run") == "success" and out.try_number("run") == 2, text[-4000:]
    assert "AirflowFailException" not in text
    assert contract.runs(backend_emu, "cheap") == 1, "turned away once, bought once"
