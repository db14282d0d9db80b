"""DAG for ``tests/deployment/test_dify_deployment.py``: a deferred Dify stream that outlives its triggerer.

The test copies this file into a throw-away dags folder, points ``dify_long`` at a Dify emulator
(the ``LONG_APP_KEY`` app), runs a deployment with two triggerers and SIGKILLs the one holding the
stream mid-way. The other triggerer picks the trigger up; it must re-attach to the run by its
``workflow_run_id`` (from the ``dify_run_request_sent`` marker) instead of sending it again, and
the task must succeed with that run's outputs.

``RUN_SECONDS`` / ``RUN_STEPS``: the long app waits ``RUN_SECONDS`` in ``RUN_STEPS`` silent gaps
(one text chunk after each), so the stream is mid-way for most of the run (the test repeats them).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from docify_provider.operators.dify import DifyStreamWorkflowOperator

DAG_ID = "dify_two_triggerers"
RUN_SECONDS = 45
RUN_STEPS = 9

with DAG(dag_id=DAG_ID, schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["dify", "test"]):
    DifyStreamWorkflowOperator(
        task_id="long_stream",
        dify_conn_id="dify_long",
        inputs={"seconds": RUN_SECONDS, "steps": RUN_STEPS},
        deferrable=True,
    )
