"""DAG for ``tests/deployment/test_triggerer_restart.py``: two deferred streams that outlive a triggerer.

The test copies this file into a throw-away dags folder (so other DAG files here never reach its
deployment), points both connections at an emulator whose streams are slowed down, and SIGKILLs
the triggerer while both streams are in flight:

* ``guarded`` is the default: a restarted trigger must report "outcome unknown" instead of paying
  again, and the task fail at once, its ``retries=1`` unspent (a retry would fail closed on the
  pending marker in ``docify_state``).
* ``resubmit`` opted into ``allow_resubmit=True``: the restarted trigger pays for a second run and
  the task succeeds.

Each task has its own connection (and emulator key) so the emulator counts its runs separately.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from docify_provider.operators.docify import DocifyStreamScenarioOperator

DAG_ID = "docify_triggerer_restart"
INPUTS = {"text": "A deferred stream that outlives its triggerer. It must not be paid for twice.", "language": "en"}

with DAG(dag_id=DAG_ID, schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["docify", "test"]):
    DocifyStreamScenarioOperator(
        task_id="guarded",
        docify_conn_id="docify_restart_guarded",
        inputs=INPUTS,
        deferrable=True,
        retries=1,
        retry_delay=timedelta(seconds=2),
    )
    DocifyStreamScenarioOperator(
        task_id="resubmit",
        docify_conn_id="docify_restart_resubmit",
        inputs=INPUTS,
        deferrable=True,
        allow_resubmit=True,
    )
