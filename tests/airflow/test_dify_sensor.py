"""``DifyWorkflowRunSensor`` in poke, reschedule and deferrable mode against the Dify emulator."""

from __future__ import annotations

import pytest

from airflow_helpers import console_text, new_dag, run_dag
from docify_provider.hooks.dify import DifyHook
from docify_provider.sensors.dify import DifyWorkflowRunSensor
from docify_provider.testing.faults import Fault

pytestmark = pytest.mark.timeout(120)


def _finished_run(fail: bool = False) -> str:
    hook = DifyHook(dify_conn_id="dify_text")
    try:
        return hook.client.run_workflow({"topic": "sensor"}, user="sensor-test").workflow_run_id
    finally:
        hook.close()


@pytest.mark.airflow_line("the line's BaseSensorOperator (common-compat)")
@pytest.mark.parametrize("mode", ["poke", "reschedule", "deferrable"])
def test_sensor_succeeds_on_a_finished_run(dify_conns, capfd, mode):
    run_id = _finished_run()
    with new_dag(f"dify_sensor_{mode}") as dag:
        DifyWorkflowRunSensor(
            task_id="wait",
            dify_conn_id="dify_text",
            workflow_run_id=run_id,
            poke_interval=0.2,
            timeout=30,
            mode="reschedule" if mode == "reschedule" else "poke",
            deferrable=mode == "deferrable",
        )
    outcome = run_dag(dag)
    assert outcome.dag_state == "success", console_text(capfd)[-3000:]
    assert outcome.xcom("wait")["workflow_run_id"] == run_id


def test_sensor_fails_on_a_failed_run(dify_conns, capfd):
    emu = dify_conns
    emu.inject(Fault("run", "failed_run", message="broken"))
    hook = DifyHook(dify_conn_id="dify_text")
    with pytest.raises(Exception) as raised:
        hook.client.run_workflow({"topic": "sensor"}, user="sensor-test")
    hook.close()
    run_id = raised.value.run_id  # type: ignore[attr-defined]
    with new_dag("dify_sensor_failed") as dag:
        DifyWorkflowRunSensor(
            task_id="wait", dify_conn_id="dify_text", workflow_run_id=run_id, poke_interval=0.2, timeout=30
        )
    outcome = run_dag(dag)
    assert outcome.dag_state == "failed"
    assert "ended failed" in console_text(capfd)
