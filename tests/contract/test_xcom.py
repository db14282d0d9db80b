"""The XCom contract: what every run operator pushes, the same in every mode, as the docs show it.

A run operator returns one JSON-serialisable dict as its ``return_value`` XCom (one Execution API
call per task), with the keys of ``docify_provider.xcom`` (``XCOM_KEYS`` for Docify,
``DIFY_XCOM_KEYS`` for Dify, plus ``app_id``, ``app_name`` and ``mode`` on the account API); blocking,
streaming and deferred runs of the same inputs give the same dict but for the per-run fields.
``multiple_outputs=True`` also pushes every key as its own XCom.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

import xcom_examples
from airflow_helpers import AIRFLOW_LINE, console_text, new_dag, run_dag, without_mask_requests

pytestmark = pytest.mark.timeout(120)


def _docify_logs(xcoms: dict[str, dict[str, Any]], logs: str) -> None:
    """Docify: each stream's events are logged as they arrive (session id first), on a worker and in the trigger."""
    for value in xcoms.values():
        assert value["is_success"] is True and value["cost_points"] == 2.0
        assert value["json_result"]["summary"] == "Docify reads invoices."
        assert value["created_at"].endswith("+00:00") and value["finished_at"].endswith("+00:00")
    assert xcoms["blocking"]["session_id"] is None
    sessions = (xcoms["streaming"]["session_id"], xcoms["deferred"]["session_id"])
    assert all(sessions) and sessions[0] != sessions[1]
    assert len({v["run_id"] for v in xcoms.values()}) == 3
    for session in sessions:
        start = logs.index(f"Docify stream START: session {session}")
        complete = logs.index("Docify stream COMPLETE", start)
        between = logs[start:complete]
        for line in ("PREPARE_START", "PREPARE_END", "Docify: Reading text...", "Docify: Summarizing..."):
            assert line in between
        assert "cost 2 points" in logs[complete : complete + 400]
    assert "Deferring the Docify stream to the triggerer" in logs


def _dify_logs(xcoms: dict[str, dict[str, Any]], logs: str) -> None:
    for value in xcoms.values():
        assert value["status"] == "succeeded" and value["workflow_run_id"] and value["task_id"]
    assert "Dify node" in logs and "Dify workflow started" in logs


def _dify_openapi_logs(xcoms: dict[str, dict[str, Any]], logs: str) -> None:
    _dify_logs(xcoms, logs)
    for value in xcoms.values():
        assert value["mode"] == "workflow" and value["app_id"]
    assert f"Deferring: the triggerer follows Dify run {xcoms['deferred']['workflow_run_id']}" in logs


BACKEND_CHECKS = {"docify": _docify_logs, "dify": _dify_logs, "dify_openapi": _dify_openapi_logs}


@pytest.mark.airflow_line("XCom rules of the line (3.0 refuses None-valued XComs)")
def test_every_mode_pushes_the_documented_xcom_once(contract: Any, backend_emu: Any, capfd: Any) -> None:
    with new_dag(f"{contract.name}_same_xcom") as dag:
        for mode in contract.modes:
            contract.operator(mode, task_id=mode)
    out = run_dag(dag)
    logs = console_text(capfd)

    assert out.dag_state == "success", logs[-4000:]
    xcoms = {mode: out.xcom(mode) for mode in contract.modes}
    for mode, value in xcoms.items():
        assert set(value) == contract.xcom_keys, mode
        assert json.loads(json.dumps(value)) == value, f"{mode}: not plain JSON"
        # One XCom per task (each is an Execution API call): no per-key XComs without multiple_outputs.
        assert all(out.xcom(mode, key=key) is None for key in value), mode
    same = [{k: v for k, v in value.items() if k not in contract.per_run} for value in xcoms.values()]
    if contract.name == "dify":  # a blocking answer carries no per-node usage: its outputs are the same
        assert same[0]["outputs"] == same[1]["outputs"]
        same = same[1:]
    if contract.name == "dify_openapi":  # test_a_deferred_account_run_gives_no_partial_price_and_says_why
        for value in same:
            value["usage"] = {"tokens": value["usage"]["tokens"]}
    for other in same[1:]:
        assert other == same[0], {k: (same[0].get(k), other.get(k)) for k in same[0] if same[0].get(k) != other.get(k)}
    assert contract.runs(backend_emu, "cheap") == len(contract.modes)
    BACKEND_CHECKS[contract.name](xcoms, logs)
    assert contract.credential not in without_mask_requests(logs) and contract.credential not in repr(xcoms)


@pytest.mark.backends("dify_openapi")
def test_a_deferred_account_run_gives_no_partial_price_and_says_why(
    contract: Any, backend_emu: Any, capfd: Any
) -> None:
    """The trigger follows the run by id once the worker saw it start; by then nodes have finished, and
    Dify replays those without their usage (or, once the run ended, sends its final frame alone, with
    tokens and no price). So the XCom has no price rather than the price of the nodes seen live, says
    why, and keeps the run's own tokens, as the worker's stream sums them."""
    from docify_provider.dify.models import PRICE_NOT_SEEN

    with new_dag("dify_openapi_usage") as dag:
        for mode in contract.modes:
            contract.operator(mode, task_id=mode)
    out = run_dag(dag)
    streamed, deferred = out.xcom("streaming"), out.xcom("deferred")

    assert streamed["usage"]["price"] > 0 and streamed["usage"]["currency"] == "USD"
    assert streamed["usage"]["price_unknown"] is None
    tokens = streamed["usage"]["tokens"]
    assert tokens == streamed["total_tokens"] == deferred["total_tokens"]
    assert deferred["usage"] == {"tokens": tokens, "price": None, "currency": None, "price_unknown": PRICE_NOT_SEEN}
    closing = f"Dify run {deferred['workflow_run_id']} succeeded in "
    line = next(x for x in console_text(capfd).splitlines() if closing in x)
    assert f"{tokens} tokens" in line and "price unknown" in line and "None" not in line


@pytest.mark.airflow_line("multiple_outputs: 3.0 refuses None-valued XComs, pushed by the operator there")
def test_multiple_outputs_pushes_each_key_for_taskflow(
    contract: Any, backend_emu: Any, capfd: Any, request: pytest.FixtureRequest
) -> None:
    """Each key is an XComArg of its own, as a TaskFlow task receives it."""
    from airflow.sdk import task

    if contract.name == "dify_openapi" and AIRFLOW_LINE < (3, 1):
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="found by this suite: on Airflow 3.0 the operator pushes the per-key XComs itself "
                "(operators/base.py _push_keys_airflow_3_0_refuses, in the Service API's _finish); "
                "DifyRunAppOperator._finish adds app_id, app_name and mode (and a chat's answer, conversation_id) after "
                "that, so they never get XComs of their own there",
            )
        )

    with new_dag(f"{contract.name}_multiple_outputs") as dag:
        run = contract.operator(contract.modes[0], task_id="run", multiple_outputs=True)

        @task
        def received(values: dict[str, Any]) -> str:
            return json.dumps(values, sort_keys=True)

        # Airflow 3.0's Execution API refuses a None XCom: such keys are only in return_value there.
        received({key: run.output[key] for key in sorted(contract.xcom_keys) if key not in contract.maybe_none})
    out = run_dag(dag)

    assert out.dag_state == "success", console_text(capfd)[-4000:]
    value = out.xcom("run")
    received = out.xcom("received")  # read back from the metadata DB, the JSON text comes back decoded
    assert received == {k: v for k, v in value.items() if k not in contract.maybe_none}


def test_the_docs_show_every_key(contract: Any) -> None:
    """docs/operators/*.md show the XCom of each backend from ``tests/xcom_examples.py``: every key
    the operators push, and nothing else."""
    from docify_provider.xcom import dify_run_to_xcom

    if contract.name == "docify":
        assert xcom_examples.keys(xcom_examples.DOCIFY_RUN_XCOM) == contract.xcom_keys
        return
    shown = xcom_examples.keys(xcom_examples.DIFY_RUN_XCOM)
    if contract.name == "dify_openapi":
        shown |= xcom_examples.keys(xcom_examples.DIFY_APP_RUN_XCOM_EXTRA) - xcom_examples.CHAT_ONLY_KEYS
    assert shown == contract.xcom_keys
    # Nested: the usage dict as dify_run_to_xcom builds it.
    fields = ("workflow_run_id", "task_id", "workflow_id", "status", "outputs", "error", "elapsed_time")
    run = SimpleNamespace(
        usage={}, files=[], **dict.fromkeys((*fields, "total_tokens", "total_steps", "created_at", "finished_at"))
    )
    assert set(xcom_examples.DIFY_RUN_XCOM["usage"]) == set(dify_run_to_xcom(run)["usage"])
