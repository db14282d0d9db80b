"""DAG for ``tests/deployment/test_not_started_deployment.py``: mapped deferrable Dify streams over a capped app.

``DOCUMENTS`` mapped ``DifyStreamWorkflowOperator`` tasks, each a run of the emulator's long app
(``RUN_SECONDS``), against an app that takes ``CAP`` runs at once (the test's emulator). No pool:
the deferred tasks outrun the cap (the issue's failing row), and each run turned away (429, not
started) is waited on and sent again by its trigger.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from docify_provider.operators.dify import DifyStreamWorkflowOperator

DAG_ID = "dify_capped_mapped"
DOCUMENTS = 24
RUN_SECONDS = 2

with DAG(dag_id=DAG_ID, schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["dify", "test"]):
    DifyStreamWorkflowOperator.partial(
        task_id="summarize", dify_conn_id="dify_long", deferrable=True, max_wait_not_started=300
    ).expand(inputs=[{"seconds": RUN_SECONDS, "steps": 2} for _ in range(DOCUMENTS)])
