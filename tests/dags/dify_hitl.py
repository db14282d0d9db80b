"""DAG for ``tests/deployment/test_dify_hitl_deployment.py`` and ``tests/deployment/test_dify_hitl_browser.py``.

``dify_hitl``: ``review`` runs the emulator's human-input app (``dify_human``: one form "Review" with a
``comment`` input and the actions Approve / Reject) as a deferred stream; when the run pauses
the task raises an Airflow human-in-the-loop request and waits, deferred, for the answer given
through the REST API or the Required Actions page. ``record`` keeps what the resumed run
returned (its XCom is what the tests read back through the REST API). ``dify_hitl_two_forms``
runs the two-forms app (outline review asked in Airflow, then a sign-off answered in Dify).
``dify_hitl_blocking`` runs the one-form app as ``example_dify_human_review`` does
(``DifyRunWorkflowOperator``: blocking up to the pause); a clear of ``review`` while it waits
re-attaches through the run detail, which names no form (``tests/deployment/test_dify_hitl_deployment.py``).
``dify_hitl_account`` runs the account API's "Review Gate" app (the same one form) with
``DifyRunAppOperator`` (deferred) through the ``dify_account`` connection (a ``dify_openapi`` one,
the account token, pointing at the OpenAPI emulator ``tests/deployment.py`` starts for this DAG).

``retries=3``: Airflow 3.3 can fail a task that resumes very quickly after a deferral
(apache/airflow#67287, #72716); the next try re-attaches to the same Dify run through the
operator's ledger (nothing is sent again), so a retry never buys a second run. A clear while the
task waits is followed by two quick resumes (re-attach, then the answer), and CI saw the race take
both: hence three retries. The tests allow exactly as many extra tries as the scheduler log shows
the race failed, and report which try succeeded.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, task

from docify_provider.operators.dify import DifyRunWorkflowOperator, DifyStreamWorkflowOperator
from docify_provider.operators.dify_openapi import DifyRunAppOperator

DAG_ID = "dify_hitl"
#: Two forms one after the other (outline review, then sign-off): Airflow keeps one human-in-the-loop
#: record per task, so the first form is asked in Airflow and the second is answered in Dify.
TWO_FORMS_DAG_ID = "dify_hitl_two_forms"
#: The one-form app run blocking (as ``example_dify_human_review``), for the clear-while-waiting test.
BLOCKING_DAG_ID = "dify_hitl_blocking"
#: The one-form app of the account API ("Review Gate"), run deferred by ``DifyRunAppOperator``.
ACCOUNT_DAG_ID = "dify_hitl_account"
TOPIC = "budget"


def reviewed_dag(dag_id: str, conn_id: str, retries: int, *, blocking: bool = False, app: str | None = None) -> DAG:
    """``review`` (the Dify run, waiting deferred for the answers) then ``record`` (its outputs).

    ``app``: run that app of the account API (``DifyRunAppOperator``; ``conn_id`` a ``dify_openapi``
    connection) instead of the Service API key's workflow."""
    streamed: dict[str, Any] = {} if blocking else {"deferrable": True}
    operator: type[Any] = DifyRunWorkflowOperator if blocking else DifyStreamWorkflowOperator
    if app is not None:
        operator, streamed = DifyRunAppOperator, {**streamed, "app": app, "dify_openapi_conn_id": conn_id}
    else:
        streamed["dify_conn_id"] = conn_id
    with DAG(
        dag_id=dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["dify", "test"]
    ) as dag:
        review = operator(
            task_id="review",
            inputs={"topic": TOPIC},
            **streamed,
            on_pause="wait",
            # How often the human-input trigger looks at the form and the HITL record (default 30 s).
            pause_poll_interval=1.0,
            retries=retries,
            retry_delay=timedelta(seconds=2),
        )

        @task
        def record(result: dict[str, Any]) -> dict[str, Any]:
            """What the reviewed run produced (its outputs, with the run's id and status)."""
            return {
                "workflow_run_id": result.get("workflow_run_id"),
                "status": result.get("status"),
                **dict(result.get("outputs") or {}),
            }

        record(review.output)
    return dag


reviewed_dag(DAG_ID, "dify_human", retries=3)
reviewed_dag(TWO_FORMS_DAG_ID, "dify_two_forms", retries=3)
reviewed_dag(BLOCKING_DAG_ID, "dify_human", retries=3, blocking=True)
reviewed_dag(ACCOUNT_DAG_ID, "dify_account", retries=3, app="Review Gate")
