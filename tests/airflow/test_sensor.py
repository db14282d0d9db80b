"""``DocifyScenarioSensor`` in poke, reschedule and deferrable mode, in real ``dag.test()`` runs."""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_helpers import AIRFLOW_LINE, conn_json, console_text, new_dag, run_dag
from docify_provider.sensors.docify import DocifyScenarioSensor
from docify_provider.testing import FORBIDDEN_KEY, DocifyEmulator, Fault

pytestmark = pytest.mark.timeout(120)

MODES = {
    "poke": {"mode": "poke"},
    "reschedule": {"mode": "reschedule"},
    "deferrable": {"deferrable": True},
}


def _info_requests(emu: DocifyEmulator, at_least: int = 0) -> list[Any]:
    # Records are written just after the response: give the last one a moment to land.
    deadline = time.monotonic() + 3
    while True:
        found = [r for r in emu.requests if r.endpoint == "info"]
        if len(found) >= at_least or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


@pytest.mark.airflow_line("poke and reschedule modes of the line's BaseSensorOperator (3.0: a reschedule bug)")
@pytest.mark.parametrize("mode", list(MODES))
def test_sensor_waits_through_503_then_returns_the_scenario(docify_conns, mode):
    if mode == "reschedule" and AIRFLOW_LINE < (3, 1):
        pytest.skip(
            "Airflow 3.0's task runner fails every rescheduled sensor on its second poke "
            "(TypeError: datetime - str in its reschedule bookkeeping; Airflow's own PythonSensor too)"
        )
    emu = docify_conns
    emu.inject(Fault("info", "status", status=503, times=2))
    with new_dag(f"sensor_ok_{mode}") as dag:
        DocifyScenarioSensor(
            task_id="wait",
            docify_conn_id="docify_summary",
            expected_parameters=["text", "language"],
            poke_interval=0.2,
            timeout=30,
            **MODES[mode],
        )
    out = run_dag(dag)

    assert out.state("wait") == "success"
    summary = out.xcom("wait")
    assert summary["scenario_code"] == "TEXT_SUMMARY"
    assert [p["variable"] for p in summary["parameters"]] == ["text", "title", "language"]
    assert summary["parameters"][2]["options"] == ["en", "ja", "fr"]
    statuses = [r.status for r in _info_requests(emu, at_least=3)]
    assert statuses == [503, 503, 200]  # one request per poke: the sensor is the retry loop
    assert out.try_number("wait") == 1
    if mode == "reschedule":
        assert _reschedules(out) == 2  # the worker slot was given back between pokes


def _reschedules(out: Any) -> int:
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return int(
            session.scalar(select(func.count(TaskReschedule.id)).where(TaskReschedule.ti_id == out.ti("wait").id))
        )


@pytest.mark.parametrize(("mode", "soft_fail"), [("poke", False), ("reschedule", False), ("deferrable", True)])
def test_missing_expected_parameter_keeps_waiting_until_timeout(docify_conns, capfd, mode, soft_fail):
    emu = docify_conns
    with new_dag(f"sensor_timeout_{mode}") as dag:
        DocifyScenarioSensor(
            task_id="wait",
            docify_conn_id="docify_summary",
            expected_parameters=["text", "pages"],
            poke_interval=0.3,
            timeout=1.2,
            soft_fail=soft_fail,
            **MODES[mode],
        )
    out = run_dag(dag)
    logs = console_text(capfd)

    assert out.state("wait") == ("skipped" if soft_fail else "failed")
    assert len(_info_requests(emu)) >= 2
    assert "does not offer ['pages'] yet" in logs


@pytest.mark.airflow_line("poke and reschedule modes of the line's BaseSensorOperator")
@pytest.mark.parametrize("mode", ["poke", "deferrable"])
def test_rejected_key_fails_at_once(docify_conns, monkeypatch, mode):
    emu = docify_conns
    monkeypatch.setenv("AIRFLOW_CONN_DOCIFY_FORBIDDEN", conn_json(emu.base_url, FORBIDDEN_KEY))
    with new_dag(f"sensor_403_{mode}") as dag:
        DocifyScenarioSensor(
            task_id="wait",
            docify_conn_id="docify_forbidden",
            poke_interval=0.2,
            timeout=30,
            retries=2,
            **MODES[mode],
        )
    started = time.monotonic()
    out = run_dag(dag)

    assert out.state("wait") == "failed"
    assert out.try_number("wait") == 1  # not retried: a rejected key does not heal by waiting
    assert [r.status for r in _info_requests(emu, at_least=1)] == [403]
    assert time.monotonic() - started < 20
